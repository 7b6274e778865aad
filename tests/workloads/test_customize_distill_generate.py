import gzip
import json

import pytest
from tiny_models import WORDS, build_model, corpus, losses, make_ctx, make_spec, write_jsonl

from jobforge.execution.context import JobStopped
from jobforge.workloads.customize import run

OUT = "s3/data/output/model-customization-job-abcdef123456/"


@pytest.fixture(scope="module")
def teacher(tmp_path_factory, tiny_llama):
    """A teacher that really learned something: 8 facts ("delta ->" answers " echo golf"), memorized."""
    root = tmp_path_factory.mktemp("teacher")
    rows = [{"prompt": f"{WORDS[i]} ->", "completion": f" {WORDS[i + 1]} {WORDS[i + 2]}"} for i in range(8)] * 8
    write_jsonl(root / "s3/data/train.jsonl", rows)
    spec = make_spec(tiny_llama)
    spec["hyperParameters"].update(epochCount="20", learningRate="0.01")
    run(make_ctx(root), spec)
    return root / "s3/models/custom/abcdef123456"


def distillation_spec(student, teacher, **extra):
    spec = make_spec(student, "DISTILLATION", identifier="meta.llama3-2-1b-instruct-v1:0", **extra)
    spec["teacherModel"] = {"identifier": "meta.llama3-1-70b-instruct-v1:0", "path": str(teacher), "maxResponseLengthForInference": 8}
    spec["hyperParameters"] = {"epochCount": "2", "learningRate": "0.01"}
    return spec


def test_distillation_from_prompts(tmp_path, teacher):
    student = build_model(tmp_path / "student", "gpt2", seed=5)
    prompts = [{"schemaVersion": "bedrock-conversation-2024", "messages": [{"role": "user", "content": [{"text": t}]}]} for t in corpus(20, seed=7)]
    prompts.append({"prompt": "golden ->", "completion": " golden"})
    prompts.append({"prompt": "alpha " * 600})  # longer than the student's 512 positions
    write_jsonl(tmp_path / "s3/data/train.jsonl", prompts)
    ctx = make_ctx(tmp_path)
    run(ctx, distillation_spec(student, teacher))

    phases = [s for s, _ in ctx.statuses]
    assert phases.index("Validation") < phases.index("DataProcessing") < phases.index("Training")
    result = ctx.results
    assert result["acceptedPromptCount"] + result["rejectedPromptCount"] == 22
    assert result["acceptedPromptCount"] >= 2 and result["rejectedPromptCount"] >= 1
    synthetic = (tmp_path / OUT / "distillation_artifacts/synthetic_data.jsonl").read_text().splitlines()
    assert len(synthetic) == result["acceptedPromptCount"]
    assert {"prompt": "golden ->", "completion": " golden"} in [json.loads(s) for s in synthetic]
    insights = [json.loads(s) for s in (tmp_path / OUT / "distillation_artifacts/prompt_insights.jsonl").read_text().splitlines()]
    assert any("no room for a response" in i["reason"] for i in insights)
    train_loss = losses(ctx)
    assert train_loss[-1] < train_loss[0]
    assert (tmp_path / "s3/models/custom/abcdef123456/model.safetensors").is_file()


def test_distillation_from_invocation_logs(tmp_path, teacher):
    student = build_model(tmp_path / "student", "llama", seed=6)
    folder = tmp_path / "s3/data/logs/AWSLogs/000000000000/BedrockModelInvocationLogs/us-east-1"
    folder.mkdir(parents=True)
    with gzip.open(folder / "log.json.gz", "wt") as handle:
        for i, text in enumerate(corpus(12, seed=9)):
            handle.write(
                json.dumps(
                    {
                        "operation": "Converse",
                        "requestMetadata": {"project": "keep" if i % 3 else "drop"},
                        "input": {"inputBodyJson": {"messages": [{"role": "user", "content": [{"text": text}]}]}},
                        "output": {"outputBodyJson": {"output": {"message": {"content": [{"text": text.split()[0]}]}}}},
                    }
                )
                + "\n"
            )
    logs = {
        "invocationLogSource": {"s3Uri": "s3://data/logs/"},
        "usePromptResponse": True,
        "requestMetadataFilters": {"equals": {"project": "keep"}},
    }
    spec = distillation_spec(student, teacher, trainingDataConfig={"invocationLogsConfig": logs})
    ctx = make_ctx(tmp_path)
    run(ctx, spec)
    assert ctx.results["acceptedPromptCount"] == 8 and ctx.results["rejectedPromptCount"] == 0

    # Prompts only: the teacher answers; a stop during generation leaves no model.
    logs["usePromptResponse"] = False
    again = make_ctx(tmp_path / "stopped")
    (tmp_path / "stopped/s3/data").mkdir(parents=True)
    (tmp_path / "stopped/s3/data/logs").symlink_to(tmp_path / "s3/data/logs")
    again.should_stop = lambda: True
    with pytest.raises(JobStopped):
        run(again, spec)
    assert not (tmp_path / "stopped/s3/models").exists()


def test_generate_and_stream(teacher):
    from jobforge.workloads.customize.generate import generate, stream

    text, input_tokens, output_tokens, reason = generate(teacher, prompt="delta ->", max_tokens=6, temperature=0)
    assert text == " echo foxtrot" and reason == "end_turn"  # what the fine-tuned weights learned
    assert input_tokens >= 2 and output_tokens <= 6
    pieces = stream(teacher, prompt="delta ->", max_tokens=6, temperature=0)
    assert "".join(pieces) == text and pieces.output_tokens == output_tokens and pieces.stop_reason == reason

    capped = generate(teacher, messages=[{"role": "user", "content": "hello"}], max_tokens=3, temperature=0.8, top_p=0.9)
    assert capped[2] <= 3 and capped[3] in ("end_turn", "max_tokens")
    stopped = generate(teacher, prompt="delta ->", max_tokens=6, temperature=0, stop=["ho f"])
    assert stopped[0] == " ec" and stopped[3] == "stop_sequence"


def test_zero_max_tokens_generates_nothing(tiny_llama):
    """Titan admits maxTokenCount 0: the prompt is counted and nothing is generated."""
    from jobforge.workloads.customize.generate import generate

    text, input_tokens, output_tokens, reason = generate(tiny_llama, prompt="delta ->", max_tokens=0)
    assert (text, output_tokens, reason) == ("", 0, "max_tokens") and input_tokens >= 2
