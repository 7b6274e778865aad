import gzip
import json

import pytest
from tiny_models import WORDS, build_model, corpus, losses, make_ctx, make_spec, write_jsonl

from jobforge.execution.context import JobStopped
from jobforge.workloads.customize import run

OUT = "s3/data/output/model-customization-job-abcdef123456/"


@pytest.fixture(scope="module")
def teacher(tmp_path_factory, tiny_llama):
    """A teacher that really learned something: 8 facts ("delta ->" answers " echo golf"), memorized, asked
    alone or after another fact as an example."""
    root = tmp_path_factory.mktemp("teacher")
    facts = [(f"{WORDS[i]} ->", f" {WORDS[i + 1]} {WORDS[i + 2]}") for i in range(8)]
    rows = [{"prompt": q, "completion": a} for q, a in facts] * 8 + [
        {"prompt": f"{eq}{ea}\n\n{q}", "completion": a} for q, a in facts for eq, ea in facts if eq != q]
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
    prompts += [{"prompt": f"{WORDS[i]} ->"} for i in range(1, 6)]
    prompts.append({"prompt": f"{WORDS[0]} ->", "completion": " golden answer"})  # a pair: guidance, not data
    prompts.append({"prompt": "alpha " * 600})  # longer than the student's 512 positions
    write_jsonl(tmp_path / "s3/data/train.jsonl", prompts)
    ctx = make_ctx(tmp_path)
    run(ctx, distillation_spec(student, teacher))

    phases = [s for s, _ in ctx.statuses]
    assert phases.index("Validation") < phases.index("DataProcessing") < phases.index("Training")
    result = ctx.results
    assert result["acceptedPromptCount"] + result["rejectedPromptCount"] == 27
    assert result["acceptedPromptCount"] >= 2 and result["rejectedPromptCount"] >= 1
    synthetic = (tmp_path / OUT / "distillation_artifacts/synthetic_data.jsonl").read_text().splitlines()
    assert len(synthetic) == result["acceptedPromptCount"]
    answered = {r["prompt"]: r["completion"] for r in map(json.loads, synthetic) if "prompt" in r}
    assert answered[f"{WORDS[0]} ->"] != " golden answer"  # the teacher answered the pair's prompt too
    asked = [m["value"] for m in ctx.metrics if m["name"] == "teacher_prompts_processed"]
    assert asked[-1] == 26  # every prompt but the one too long for the student
    insights = [json.loads(s) for s in (tmp_path / OUT / "distillation_artifacts/prompt_insights.jsonl").read_text().splitlines()]
    assert any("no room for a response" in i["reason"] for i in insights)
    train_loss = losses(ctx)
    assert train_loss[-1] < train_loss[0]
    assert (tmp_path / "s3/models/custom/abcdef123456/model.safetensors").is_file()


def test_golden_pairs_precede_the_prompt_in_the_teachers_input(teacher):
    from transformers import AutoTokenizer

    from jobforge.workloads.customize.data import Record
    from jobforge.workloads.customize.distill import golden_examples, teacher_input

    tokenizer = AutoTokenizer.from_pretrained(teacher)
    golden = [Record(line, prompt=f"{WORDS[line]} ->", completion=f" {WORDS[line + 1]}") for line in range(1, 6)]
    question = Record(9, prompt=f"{WORDS[9]} ->")
    examples = golden_examples(question, golden, seed=0)
    assert len(examples) == 3 and examples == golden_examples(question, golden, seed=0)
    text = tokenizer.decode(teacher_input(tokenizer, question, examples, room=500))
    assert text.endswith(f"{WORDS[9]} ->") and all(e.prompt + e.completion in text for e in examples)
    assert golden_examples(golden[0], golden, seed=0).count(golden[0]) == 0  # never its own answer
    alone = tokenizer.decode(teacher_input(tokenizer, question, examples, room=4))
    assert alone.endswith(f"{WORDS[9]} ->") and examples[0].completion not in alone  # no room: the prompt alone
    assert golden_examples(Record(9, messages=[{"role": "user", "content": "red ->"}]), golden, seed=0) == []
    chat = Record(9, messages=[{"role": "system", "content": "be brief"}, {"role": "user", "content": "red ->"},
                               {"role": "assistant", "content": " golden"}])
    shown = Record(3, messages=[{"role": "system", "content": "other"}, {"role": "user", "content": "blue ->"},
                                {"role": "assistant", "content": " sky"}])
    assert golden_examples(chat, [chat, shown], seed=0) == [shown]
    text = tokenizer.decode(teacher_input(tokenizer, chat, [shown], room=500))
    assert text.index("be brief") < text.index("blue ->") < text.index(" sky") < text.index("red ->")
    assert " golden" not in text and "other" not in text


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
