"""Distillation's data-processing phase: the teacher answers the prompts.

Bedrock's distillation is sequence-level: the teacher generates up to
``maxResponseLengthForInference`` tokens per prompt, and the student is then
fine-tuned on the pairs. Every prompt of a dataset goes to the teacher, also
one that carries an answer (a "golden" assistant turn or a ``completion``):
as Bedrock's user guide describes labelled input (distillation prerequisites
and data-preparation option 1), such prompt-response pairs serve as golden
examples that show the teacher the kind of response wanted. Here up to
``GOLDEN_EXAMPLES`` of the other pairs precede each prompt as earlier turns of
the teacher's conversation (text before a plain prompt), fewer when they would
not leave the teacher room to answer. Invocation logs read with
``usePromptResponse`` already hold the teacher's responses, which are trained
on as logged. Prompts are rejected, with a reason, when they leave no room for
a response within the student's token limit, when the teacher's answer is
empty, or when prompt plus answer exceed that limit. The accepted pairs and
the rejections are written as ``distillation_artifacts/synthetic_data.jsonl``
and ``distillation_artifacts/prompt_insights.jsonl`` under the job's output
folder, and cached in the checkpoint directory so a resumed job does not ask
the teacher again.
"""

from __future__ import annotations

import json
import random
from dataclasses import asdict
from pathlib import Path

import torch

from jobforge.execution.context import JobContext, JobStopped, WorkloadError

from .data import Record
from .generate import generate_batch
from .job import max_positions
from .prompting import chat_ids, encode, ensure_chat_template, prompt_ids

DEFAULT_MAX_RESPONSE_TOKENS = 1024
GOLDEN_EXAMPLES = 3  # golden pairs shown to the teacher before each prompt
TEACHER_BATCH = 16
TEACHER_TEMPERATURE = 0.7
TEACHER_TOP_P = 0.9
SYNTHETIC = "distillation_artifacts/synthetic_data.jsonl"
INSIGHTS = "distillation_artifacts/prompt_insights.jsonl"


def synthesize(
    ctx: JobContext,
    spec: dict,
    records: list[Record],
    rejected: list[dict],
    student_tokenizer,
    limit: int,
    output_prefix: str,
    fetch_model,
) -> tuple[list[Record], dict]:
    """Return (training records, summary for the job result)."""
    cache = Path(ctx.checkpoint_dir) / "distillation"
    if (cache / "summary.json").is_file():
        ctx.event("Reusing the teacher responses generated before the restart")
        accepted = [Record(**json.loads(line)) for line in (cache / "synthetic.jsonl").read_text().splitlines()]
        return accepted, json.loads((cache / "summary.json").read_text())

    teacher = spec.get("teacherModel") or {}
    max_response = int(teacher.get("maxResponseLengthForInference") or DEFAULT_MAX_RESPONSE_TOKENS)
    logs = spec["trainingDataConfig"].get("invocationLogsConfig") or {}
    logged_responses = bool(logs.get("usePromptResponse"))
    golden = [] if logged_responses else [r for r in records if _has_answer(r)]
    rejected = list(rejected)
    accepted: list[Record] = []
    pending: list[Record] = []
    for record in records:
        if logged_responses and _has_answer(record):
            accepted.append(record)  # the teacher's response, as the invocation log holds it
        elif len(encode(student_tokenizer, _with_answer(_prompt_of(record), ""), False).input_ids) >= limit:
            rejected.append(_rejection(record, f"the prompt leaves no room for a response within {limit} tokens"))
        else:
            pending.append(record)

    if pending:
        accepted += _ask_teacher(ctx, spec, teacher, pending, golden, max_response, rejected, fetch_model)
    kept = []
    for record in accepted:
        if len(encode(student_tokenizer, record, False).input_ids) > limit:
            rejected.append(_rejection(record, f"prompt and response exceed {limit} tokens"))
        else:
            kept.append(record)
    if not kept:
        raise WorkloadError(f"Distillation produced no usable training examples ({len(rejected)} prompts rejected).")

    summary = _publish(ctx, kept, rejected, output_prefix)
    cache.mkdir(parents=True, exist_ok=True)
    (cache / "synthetic.jsonl").write_text("".join(json.dumps(asdict(r)) + "\n" for r in kept))
    (cache / "summary.json").write_text(json.dumps(summary))
    return kept, summary


def _ask_teacher(ctx, spec, teacher: dict, prompts: list[Record], golden: list[Record], max_response, rejected,
                 fetch_model):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if not teacher.get("path"):
        raise WorkloadError("Distillation needs a teacher model for prompts without responses.")
    teacher_dir = fetch_model(ctx, teacher, "teacher")
    tokenizer = AutoTokenizer.from_pretrained(teacher_dir)
    ensure_chat_template(tokenizer)
    device = torch.device("cuda" if ctx.resources.get("gpus") and torch.cuda.is_available() else "cpu")
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    model = AutoModelForCausalLM.from_pretrained(teacher_dir, dtype=dtype).to(device).eval()
    seed = int((spec.get("hyperParameters") or {}).get("seed", 0))
    torch.manual_seed(seed)
    if golden:
        ctx.event(f"The teacher answers {len(prompts)} prompts, guided by {len(golden)} golden examples")
    room = max_positions(teacher_dir) - max_response
    inputs = [teacher_input(tokenizer, r, golden_examples(r, golden, seed), room) for r in prompts]
    # Similar lengths share a batch, so little left padding is generated over.
    order = sorted(range(len(prompts)), key=lambda i: len(inputs[i]))
    answered: list[Record] = []
    for start in range(0, len(order), TEACHER_BATCH):
        if ctx.should_stop():
            raise JobStopped()
        chunk = order[start : start + TEACHER_BATCH]
        outputs = generate_batch(
            model, tokenizer, [inputs[i] for i in chunk], max_response, TEACHER_TEMPERATURE, TEACHER_TOP_P
        )
        for index, (ids, _truncated) in zip(chunk, outputs):
            text = tokenizer.decode(ids, skip_special_tokens=True)
            if not text.strip():
                rejected.append(_rejection(prompts[index], "the teacher returned an empty response"))
            else:
                answered.append(_with_answer(_prompt_of(prompts[index]), text))
        done = min(start + TEACHER_BATCH, len(order))
        ctx.metric("teacher_prompts_processed", done, done)
        ctx.status("DataProcessing", f"Teacher answered {done} of {len(order)} prompts")
    del model
    answered.sort(key=lambda r: r.line)
    return answered


def golden_examples(record: Record, golden: list[Record], seed: int) -> list[Record]:
    """The golden pairs shown to the teacher before a prompt: up to GOLDEN_EXAMPLES others in the prompt's own
    format (chat turns or plain text), the same each run."""
    others = [g for g in golden if g.line != record.line and (g.messages is None) == (record.messages is None)]
    return random.Random(seed * 1_000_003 + record.line).sample(others, min(GOLDEN_EXAMPLES, len(others)))


def teacher_input(tokenizer, record: Record, examples: list[Record], room: int) -> list[int]:
    """The teacher's input ids for a record's prompt: the golden examples as earlier turns of its conversation
    (text before a plain prompt), as many as fit in ``room`` tokens."""
    prompt = _prompt_of(record)
    while True:
        if prompt.messages is not None:
            system = [m for m in prompt.messages if m["role"] == "system"]
            shots = [turn for example in examples for turn in _turns(example)]
            turns = system + shots + [m for m in prompt.messages if m["role"] != "system"]
            ids = chat_ids(tokenizer, turns, add_generation_prompt=True)
        else:
            ids = prompt_ids(tokenizer, "".join(_text(example) + "\n\n" for example in examples) + prompt.prompt)
        if len(ids) <= room or not examples:
            return ids
        examples = examples[:-1]


def _turns(example: Record) -> list[dict]:
    return [m for m in example.messages if m["role"] != "system"]


def _text(example: Record) -> str:
    return example.prompt + example.completion


def _prompt_of(record: Record) -> Record:
    """The record without its answer: what the teacher is asked."""
    if not _has_answer(record):
        return record
    if record.messages is not None:
        return Record(record.line, messages=record.messages[:-1])
    return Record(record.line, prompt=record.prompt)


def _has_answer(record: Record) -> bool:
    if record.messages is not None:
        return record.messages[-1]["role"] == "assistant"
    return record.completion is not None


def _with_answer(record: Record, text: str) -> Record:
    if record.messages is not None:
        return Record(record.line, messages=record.messages + [{"role": "assistant", "content": text}])
    return Record(record.line, prompt=record.prompt, completion=text)


def _rejection(record: Record, reason: str) -> dict:
    return {"source": f"line {record.line}", "reason": reason}


def _publish(ctx, accepted: list[Record], rejected: list[dict], output_prefix: str) -> dict:
    out = Path(ctx.work_dir) / "output"
    synthetic, insights = out / SYNTHETIC, out / INSIGHTS
    synthetic.parent.mkdir(parents=True, exist_ok=True)
    with open(synthetic, "w") as handle:
        for record in accepted:
            handle.write(json.dumps(_as_bedrock(record)) + "\n")
    with open(insights, "w") as handle:
        for item in rejected:
            handle.write(json.dumps({"status": "REJECTED", **item}) + "\n")
    ctx.upload(synthetic, output_prefix + SYNTHETIC)
    ctx.upload(insights, output_prefix + INSIGHTS)
    ctx.event(f"Distillation data: {len(accepted)} prompts accepted, {len(rejected)} rejected")
    return {
        "acceptedPromptCount": len(accepted),
        "rejectedPromptCount": len(rejected),
        "syntheticDataUri": output_prefix + SYNTHETIC,
        "promptInsightsUri": output_prefix + INSIGHTS,
    }


def _as_bedrock(record: Record) -> dict:
    if record.messages is None:
        return {"prompt": record.prompt, "completion": record.completion}
    system = [{"text": m["content"]} for m in record.messages if m["role"] == "system"]
    messages = [{"role": m["role"], "content": [{"text": m["content"]}]} for m in record.messages if m["role"] != "system"]
    return {"schemaVersion": "bedrock-conversation-2024", "system": system, "messages": messages}
