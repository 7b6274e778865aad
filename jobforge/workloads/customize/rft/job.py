"""One REINFORCEMENT_FINE_TUNING job, phase by phase: Validation (hyperparameters, token limits, every
record), Training (the engine's loop on graded answers); then Bedrock's metric files and the model.

Hyperparameters map onto the engine's: ``batchSize`` prompts a step, each answered
``trainingSamplePerPrompt`` times (the GRPO group), ``epochCount`` passes over the prompts,
``learningRate`` for the LoRA adapter's AdamW, ``inferenceMaxTokens`` tokens an answer, held-out
validation every ``evalInterval`` steps (and before the first and after the last); ``reasoningEffort``
reaches the chat template as ``reasoning_effort``. ``loraRank``, ``loraAlpha`` and ``seed`` come from
``hyperParameters``.

Files under ``<outputDataConfig.s3Uri>/model-customization-job-<jobId>/``:
``training_artifacts/step_wise_training_metrics.csv`` (``step_number, epoch_number, training_loss,
critic/rewards/mean, critic/rewards/max, critic/rewards/min``: the policy loss and the grader's rewards of
each step) and, with validators,
``validation_artifacts/post_fine_tuning_validation/validation/validation_metrics.csv`` (``step_number,
epoch_number, validation/rewards/mean``). The merged model goes to ``outputModelUri``, the adapter under
``adapter/`` there.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from jobforge.execution.context import JobContext, WorkloadError
from jobforge.workloads.agent_rft import hyperparameters as engine
from jobforge.workloads.agent_rft.training import Training, steps_per_epoch

from ..data import DataValidationError, Record
from ..families import REINFORCEMENT_FINE_TUNING, family_of
from ..hyperparams import rft_token_limits, validate_rft_hyperparameters
from ..job import fetch_model, max_positions, read_dataset
from ..metrics import TRAINING_CSV, VALIDATION_CSV, job_output_prefix, write_csv
from ..prompting import ensure_chat_template

TRAINING_HEADER = ("step_number", "epoch_number", "training_loss", "critic/rewards/mean", "critic/rewards/max",
                   "critic/rewards/min")
VALIDATION_HEADER = ("step_number", "epoch_number", "validation/rewards/mean")
ROWS = "bedrock_metrics.json"  # beside the engine's checkpoint: the files' rows so far


def run(ctx: JobContext, spec: dict) -> None:
    import torch

    from ..model_io import device_name, export, load_tokenizer, quiet_transformers
    from .rollouts import GraderSession

    quiet_transformers()
    base_id = spec["baseModel"]["identifier"]
    ctx.status("Validation", "Validating hyperparameters and training data")
    try:
        values = validate_rft_hyperparameters(base_id, spec["rftConfig"], spec.get("hyperParameters"))
    except ValueError as err:
        raise WorkloadError(str(err)) from None
    base_dir = fetch_model(ctx, spec["baseModel"], "base")
    try:
        prompt_limit, max_tokens = rft_token_limits(values, max_positions(base_dir))
    except ValueError as err:
        raise WorkloadError(str(err)) from None
    tokenizer = load_tokenizer(base_dir)
    ensure_chat_template(tokenizer)
    effort = values["reasoningEffort"]
    if effort and "reasoning_effort" not in str(tokenizer.chat_template):
        ctx.event(f"reasoningEffort {effort} changes nothing for {base_id}: its chat template does not read "
                  "reasoning_effort")
    read = lambda uri, name, validation: _prompts(ctx, tokenizer, uri, name, validation, prompt_limit,  # noqa: E731
                                                  effort, base_id)
    channels = {"train": read(spec["trainingDataConfig"]["s3Uri"], "train", False)}
    validators = spec["validationDataConfig"].get("validators") or []
    if validators:
        channels["validation"] = [p for i, v in enumerate(validators) for p in read(v["s3Uri"], f"validation-{i}", True)]
    if len(channels["train"]) < values["batchSize"]:
        raise WorkloadError(f"The training dataset has {len(channels['train'])} prompts, fewer than batchSize "
                            f"({values['batchSize']}), the prompts of one step.")
    hp = engine_hyperparameters(values, len(channels["train"]), max_tokens)

    ctx.status("Training", "Loading the base model")
    torch.set_num_threads(max(1, int(ctx.resources.get("cpus") or 1)))
    torch.manual_seed(hp["seed"])
    session = GraderSession(ctx, hp, base_dir, base_id, spec["rftConfig"]["graderConfig"]["lambdaGrader"]["lambdaArn"],
                            effort)
    try:
        ctx.event(f"Training on {device_name(session.device)}")
        loop = RftTraining(ctx, {"hyperparameters": hp}, session, channels)
        loop.run()
        ctx.status("Training", "Saving the custom model")
        result = loop.write_files(job_output_prefix(spec["outputDataConfig"]["s3Uri"], spec["jobId"]))
        merged_dir, adapter_dir = export(session.model, session.tokenizer, Path(ctx.work_dir) / "custom-model")
    finally:
        session.close()
    model_prefix = spec["outputModelUri"].rstrip("/") + "/"
    ctx.upload(merged_dir, model_prefix)
    ctx.upload(adapter_dir, model_prefix + "adapter/")
    ctx.result({**result, "outputModelUri": model_prefix, "adapterUri": model_prefix + "adapter/"})


def engine_hyperparameters(values: dict, prompts: int, max_tokens: int) -> dict:
    """The engine's hyperparameters (its defaults, GRPO with the PPO loss) set from the job's."""
    hp = engine.training({})
    hp.update(global_batch_size=values["batchSize"], group_size=values["trainingSamplePerPrompt"],
              max_epochs=values["epochCount"],
              max_steps=values["epochCount"] * steps_per_epoch(prompts, values["batchSize"]),
              learning_rate=values["learningRate"], sampling_max_tokens=max_tokens, val_sampling_max_tokens=max_tokens,
              validation_interval=values["evalInterval"], lora_rank=values["loraRank"],
              lora_alpha=values["loraAlpha"], seed=values["seed"])
    return hp


def _prompts(ctx: JobContext, tokenizer, uri: str, name: str, validation: bool, limit: int, effort: str | None,
             base_id: str) -> list[tuple[list[dict], dict]]:
    """(messages, record) of every record of the dataset, each checked, and its prompt within ``limit`` tokens."""
    records = read_dataset(ctx, uri, REINFORCEMENT_FINE_TUNING, family_of(base_id), name, validation)
    problems = [p for p in (_prompt_problem(tokenizer, r, limit, effort) for r in records) if p]
    if problems:
        raise WorkloadError(str(DataValidationError(uri, problems))[:2048])
    return [(r.messages, r.grader_fields) for r in records]


def _prompt_problem(tokenizer, record: Record, limit: int, effort: str | None) -> tuple[int, str] | None:
    extra = {"reasoning_effort": effort} if effort else {}
    try:
        text = tokenizer.apply_chat_template(record.messages, tokenize=False, add_generation_prompt=True, **extra)
    except Exception as err:  # the template's own complaint, e.g. a role order it refuses
        return record.line, f"The messages cannot be rendered with the base model's chat template: {err}"
    count = len(tokenizer(text, add_special_tokens=False)["input_ids"])
    if count > limit:
        return record.line, f"The prompt has {count} tokens, more than maxPromptLength ({limit})."
    return None


class RftTraining(Training):
    """The engine's loop, keeping the rows of Bedrock's metric files (checkpointed with it)."""

    def __init__(self, ctx: JobContext, spec: dict, session, channels: dict):
        super().__init__(ctx, spec, session, channels)
        self.rows = {"training": [], "validation": []}

    def train_step(self) -> dict[str, float]:
        metrics = super().train_step()
        step = self.step + 1
        for name, value in self.session.dispatcher.grader_metrics.items():
            self.ctx.metric(f"grader/{name}", value, step)
        self.rows["training"].append([self.step, self.step // self.per_epoch, metrics["loss"],
                                      metrics["rollout/reward/mean"], metrics["rollout/reward/max"],
                                      metrics["rollout/reward/min"]])
        self.ctx.result({"trainingLoss": metrics["loss"]})
        return metrics

    def validate(self) -> dict:
        summary = super().validate()
        if self.step:  # a row names the last step before it; the one before training is in the log
            self.rows["validation"].append([self.step - 1, (self.step - 1) // self.per_epoch, summary["MeanReward"]])
        return summary

    def report(self) -> None:
        """Bedrock tells progress by statusDetails and the metrics: no SageMaker ServiceOutput here."""

    def save(self) -> None:
        super().save()
        path = Path(self.ctx.checkpoint_dir) / ROWS
        path.with_suffix(".tmp").write_text(json.dumps(self.rows))
        os.replace(path.with_suffix(".tmp"), path)

    def restore(self) -> bool:
        restored = super().restore()
        if restored:
            self.rows = json.loads((Path(self.ctx.checkpoint_dir) / ROWS).read_text())
        return restored

    def write_files(self, prefix: str) -> dict:
        """Bedrock's metric files, uploaded under the job's output prefix; what the job's result says of them."""
        out = Path(self.ctx.work_dir) / "output"
        write_csv(out / TRAINING_CSV, TRAINING_HEADER, self.rows["training"])
        self.ctx.upload(out / TRAINING_CSV, prefix + TRAINING_CSV)
        result = {"trainingMetricsUri": prefix + TRAINING_CSV, "stepCount": self.step,
                  "epochsCompleted": self.step // self.per_epoch, "trainedTokens": self.trained_tokens}
        if self.rows["training"]:
            result["trainingLoss"] = self.rows["training"][-1][2]
        if self.rows["validation"]:
            write_csv(out / VALIDATION_CSV, VALIDATION_HEADER, self.rows["validation"])
            self.ctx.upload(out / VALIDATION_CSV, prefix + VALIDATION_CSV)
            result["validationMetricsUri"] = prefix + VALIDATION_CSV
        return result
