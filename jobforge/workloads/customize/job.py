"""One model customization job, phase by phase: Validation, DataProcessing
(distillation only), Training; then Bedrock's output files and the model."""

from __future__ import annotations

import hashlib
import json
import os
import random
from pathlib import Path

from jobforge.execution.context import JobContext, WorkloadError

from .data import DataValidationError, Record, check_jsonl_uri, load_records
from .families import CONTINUED_PRE_TRAINING, DISTILLATION, FINE_TUNING, ModelFamily, family_of
from .hyperparams import validate_hyperparameters
from .metrics import TRAINING_CSV, TRAINING_HEADER, VALIDATION_CSV, VALIDATION_HEADER, job_output_prefix, write_csv
from .prompting import Encoded, encode, ensure_chat_template


def run(ctx: JobContext, spec: dict) -> None:
    import torch

    from . import distill
    from .model_io import device_name, export, load_for_training, load_tokenizer, pick_device, quiet_transformers
    from .train import TrainSettings, train

    quiet_transformers()
    torch.set_num_threads(max(1, int(ctx.resources.get("cpus") or 1)))
    customization = spec["customizationType"]
    base_id = spec["baseModel"]["identifier"]
    family = family_of(base_id)
    ctx.status("Validation", "Validating hyperparameters and training data")
    try:
        hp = validate_hyperparameters(base_id, customization, spec.get("hyperParameters"))
    except ValueError as exc:
        raise WorkloadError(str(exc)) from None
    base_dir = fetch_model(ctx, spec["baseModel"], "base")
    tokenizer = load_tokenizer(base_dir)
    ensure_chat_template(tokenizer)
    limit = min(hp["maxSequenceLength"], max_positions(base_dir))
    train_records, rejected = _training_records(ctx, spec, customization, family)
    valid_records = _validation_records(ctx, spec, customization, family)
    if not valid_records and "evalPercentage" in hp:
        train_records, valid_records = _split(train_records, hp["evalPercentage"], hp["seed"])
    all_tokens = customization == CONTINUED_PRE_TRAINING
    valid_set = _encode_all(tokenizer, valid_records, all_tokens, limit, "validation")

    output_prefix = job_output_prefix(spec["outputDataConfig"]["s3Uri"], spec["jobId"])
    distill_summary = {}
    if customization == DISTILLATION:
        ctx.status("DataProcessing", "Generating responses with the teacher model")
        train_records, distill_summary = distill.synthesize(
            ctx, spec, train_records, rejected, tokenizer, limit, output_prefix, fetch_model
        )
    train_set = _encode_all(tokenizer, train_records, all_tokens, limit, "train")

    ctx.status("Training", "Loading the base model")
    device = pick_device(ctx.resources)
    ctx.event(f"Training on {device_name(device)}")
    torch.manual_seed(hp["seed"])  # LoRA initialization: the same job trains the same weights
    model = load_for_training(base_dir, device, hp["fullFineTuning"], hp["loraRank"], hp["loraAlpha"])
    settings = TrainSettings.from_hyperparameters(hp)
    progress = train(ctx, model, train_set, valid_set, settings, device, _fingerprint(spec, hp, train_set, valid_set))

    ctx.status("Training", "Saving the custom model")
    out = Path(ctx.work_dir) / "output"
    write_csv(out / TRAINING_CSV, TRAINING_HEADER, progress.training_rows)
    ctx.upload(out / TRAINING_CSV, output_prefix + TRAINING_CSV)
    result = {
        "trainingLoss": progress.training_rows[-1][2] if progress.training_rows else None,
        "trainingMetricsUri": output_prefix + TRAINING_CSV,
        "stepCount": progress.step,
        "epochsCompleted": progress.epoch,
        "earlyStopped": progress.early_stopped,
        "trainedTokens": progress.tokens,
        "tokensPerSecond": progress.tokens / progress.train_seconds if progress.train_seconds else None,
        **distill_summary,
    }
    if progress.validation_rows:
        write_csv(out / VALIDATION_CSV, VALIDATION_HEADER, progress.validation_rows)
        ctx.upload(out / VALIDATION_CSV, output_prefix + VALIDATION_CSV)
        final = progress.validation_rows[-1][2]
        result.update(
            validationLoss=final,
            validationMetrics=[{"validationLoss": final}],
            validationMetricsUri=output_prefix + VALIDATION_CSV,
        )
    merged_dir, adapter_dir = export(model, tokenizer, out / "custom-model")
    model_prefix = spec["outputModelUri"].rstrip("/") + "/"
    ctx.upload(merged_dir, model_prefix)
    result["outputModelUri"] = model_prefix
    if adapter_dir is not None:
        ctx.upload(adapter_dir, model_prefix + "adapter/")
        result["adapterUri"] = model_prefix + "adapter/"
    ctx.result(result)


def fetch_model(ctx: JobContext, model: dict, name: str) -> Path:
    """A local directory holding the model: its path, or its S3 prefix downloaded."""
    location = model.get("path") or ""
    if location.startswith("s3://"):
        target = Path(ctx.work_dir) / "models" / name
        if not (target / "config.json").is_file():
            ctx.download(location.rstrip("/") + "/", target)
        return target
    path = Path(location)
    unreadable = [p for p in [path, *path.rglob("*")] if p.exists() and not os.access(p, os.R_OK)]
    if unreadable:  # the job runs as a user of its own, which the files' modes may leave out
        raise WorkloadError(f"The model {model.get('identifier')} at {location} is not readable by the job's user "
                            f"(uid {os.getuid()}): {unreadable[0]}. Make the model's files readable by other users.")
    if not (path / "config.json").is_file():
        raise WorkloadError(f"The model {model.get('identifier')} has no Hugging Face model at {location}.")
    return path


def _training_records(ctx, spec, customization, family) -> tuple[list[Record], list[dict]]:
    config = spec["trainingDataConfig"]
    if "invocationLogsConfig" in config:
        from .invocation_logs import read_invocation_logs

        if customization != DISTILLATION:
            raise WorkloadError("invocationLogsConfig is only supported for DISTILLATION jobs.")
        logs = config["invocationLogsConfig"]
        source = logs["invocationLogSource"]["s3Uri"]
        root = Path(ctx.work_dir) / "data" / "invocation-logs"
        ctx.download(source.rstrip("/") + "/", root)
        try:
            records, rejected = read_invocation_logs(
                root, logs.get("requestMetadataFilters"), bool(logs.get("usePromptResponse", False))
            )
        except ValueError as exc:
            raise WorkloadError(str(exc)) from None
        if not records:
            raise WorkloadError(f"No invocation log records under {source} match the request metadata filters.")
        return records, rejected
    return read_dataset(ctx, config["s3Uri"], customization, family, "train", validation=False), []


def _validation_records(ctx, spec, customization, family) -> list[Record]:
    validators = (spec.get("validationDataConfig") or {}).get("validators") or []
    # Distillation validators hold reference answers, checked as fine-tuning data.
    kind = FINE_TUNING if customization == DISTILLATION else customization
    records: list[Record] = []
    for index, validator in enumerate(validators):
        records += read_dataset(ctx, validator["s3Uri"], kind, family, f"validation-{index}", validation=True)
    return records


def read_dataset(ctx, uri: str, customization: str, family: ModelFamily, name: str, validation: bool) -> list[Record]:
    try:
        check_jsonl_uri(uri)
        path = ctx.download(uri, Path(ctx.work_dir) / "data" / f"{name}.jsonl")
        return load_records(path, uri, customization, family, validation=validation)
    except DataValidationError as exc:
        raise WorkloadError(str(exc)[:2048]) from None


def _encode_all(tokenizer, records: list[Record], all_tokens: bool, limit: int, kind: str) -> list[Encoded]:
    encoded, problems = [], []
    for record in records:
        item = encode(tokenizer, record, all_tokens)
        if len(item.input_ids) > limit:
            problems.append(
                (record.line, f"Maximum input token count {len(item.input_ids)} exceeds limit of {limit} for {kind} data")
            )
        encoded.append(item)
    if problems:
        raise WorkloadError(str(DataValidationError(f"the {kind} data", problems))[:2048])
    return encoded


def _split(records: list[Record], percent: float, seed: int) -> tuple[list[Record], list[Record]]:
    shuffled = records[:]
    random.Random(seed).shuffle(shuffled)
    count = max(1, round(len(records) * percent / 100))
    if count >= len(records):
        return records, []
    return shuffled[count:], shuffled[:count]


def max_positions(model_dir: Path) -> int:
    config = json.loads((model_dir / "config.json").read_text())
    config = config.get("text_config", config)
    return int(config.get("max_position_embeddings") or config.get("n_positions") or 1_000_000)


def _fingerprint(spec: dict, hp: dict, train_set: list[Encoded], valid_set: list[Encoded]) -> str:
    digest = hashlib.sha256(json.dumps([spec["customizationType"], spec["baseModel"]["identifier"], hp]).encode())
    for item in train_set + valid_set:
        digest.update(bytes(str(item.input_ids), "ascii"))
    return digest.hexdigest()
