import csv

import pytest
from tiny_models import losses, make_ctx, make_spec, prompt_completion_records, write_jsonl

from jobforge.execution.context import JobStopped, WorkloadError
from jobforge.workloads.customize import run
from jobforge.workloads.customize.data import Record
from jobforge.workloads.customize.prompting import Encoded, encode, ensure_chat_template

OUT = "s3/data/output/model-customization-job-abcdef123456/"


def read_csv(path):
    with open(path) as handle:
        return list(csv.reader(handle))


def stop_after(ctx, calls: int):
    seen = {"n": 0}

    def should_stop():
        seen["n"] += 1
        return seen["n"] > calls

    ctx.should_stop = should_stop


@pytest.mark.parametrize("per_sequence_attention", [False, True])
def test_packed_rows_match_separate_sequences(tiny_llama, tiny_gpt2, per_sequence_attention):
    import torch
    from transformers import AutoModelForCausalLM

    from jobforge.workloads.customize.attention import use_packed_attention
    from jobforge.workloads.customize.packing import loss_sum, pack

    examples = [Encoded(list(range(3, 3 + n)), [True] * n, 0) for n in (6, 1, 9, 2)]
    for path in (tiny_llama, tiny_gpt2):
        model = AutoModelForCausalLM.from_pretrained(path, attn_implementation="sdpa").eval()
        if per_sequence_attention:
            assert use_packed_attention(model)
        with torch.no_grad():
            packed = loss_sum(model, pack(examples))
            separate = sum(loss_sum(model, pack([e])) for e in examples)
        assert packed.item() == pytest.approx(separate.item(), rel=1e-5)
        assert len(pack(examples).targets) == sum(len(e.input_ids) - 1 for e in examples)


def test_loss_only_on_completion_and_assistant_tokens(tiny_llama):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_llama)
    ensure_chat_template(tokenizer)
    item = encode(tokenizer, Record(1, prompt="alpha bravo ->", completion=" alpha bravo"), False)
    trained = [t for t, keep in zip(item.input_ids, item.labels) if keep]
    assert tokenizer.decode(trained) == " alpha bravo</s>"
    chat = Record(
        1,
        messages=[
            {"role": "system", "content": "sys"},
            {"role": "user", "content": "one"},
            {"role": "assistant", "content": "two"},
            {"role": "user", "content": "three"},
            {"role": "assistant", "content": "four"},
        ],
    )
    item = encode(tokenizer, chat, False)
    trained = tokenizer.decode([t for t, keep in zip(item.input_ids, item.labels) if keep])
    assert trained == "two</s>\nfour</s>\n"
    assert all(encode(tokenizer, chat, True).labels)


def test_fine_tuning_end_to_end(tmp_path, tiny_llama):
    import torch

    write_jsonl(tmp_path / "s3/data/train.jsonl", prompt_completion_records(64))
    write_jsonl(tmp_path / "s3/data/valid.jsonl", prompt_completion_records(16, seed=1))
    ctx = make_ctx(tmp_path)
    spec = make_spec(tiny_llama, validationDataConfig={"validators": [{"s3Uri": "s3://data/valid.jsonl"}]})
    spec["hyperParameters"]["learningRateWarmupSteps"] = "2"
    run(ctx, spec)

    train_loss = losses(ctx)
    assert len(train_loss) == 16 and train_loss[-1] < train_loss[0] - 1.0
    phases = [s for s, _ in ctx.statuses]
    assert phases[0] == "Validation" and phases[-1] == "Training" and "DataProcessing" not in phases
    rows = read_csv(tmp_path / OUT / "training_artifacts/step_wise_training_metrics.csv")
    assert rows[0] == ["step_number", "epoch_number", "training_loss", "perplexity"]
    assert [r[:2] for r in rows[1:3]] == [["0", "0"], ["1", "0"]] and rows[-1][:2] == ["15", "1"]
    assert float(rows[-1][3]) == pytest.approx(torch.tensor(float(rows[-1][2])).exp().item(), rel=1e-6)
    valid = read_csv(tmp_path / OUT / "validation_artifacts/post_fine_tuning_validation/validation/validation_metrics.csv")
    assert valid[0] == ["step_number", "epoch_number", "validation_loss", "perplexity"]
    assert [r[:2] for r in valid[1:]] == [["7", "0"], ["15", "1"]]
    result = ctx.results
    assert result["trainingLoss"] == pytest.approx(train_loss[-1])
    assert result["validationMetrics"] == [{"validationLoss": result["validationLoss"]}]
    assert result["validationLoss"] < losses(ctx, "validation_loss")[0] + 1e-9
    assert result["outputModelUri"] == "s3://models/custom/abcdef123456/" and "adapterUri" not in result
    model_dir = tmp_path / "s3/models/custom/abcdef123456"
    assert (model_dir / "model.safetensors").is_file() and (model_dir / "tokenizer.json").is_file()


def test_lora_conversation_on_gpt2(tmp_path, tiny_gpt2):
    rows = [
        {
            "schemaVersion": "bedrock-conversation-2024",
            "system": [{"text": "Repeat the first word."}],
            "messages": [
                {"role": "user", "content": [{"text": r["prompt"]}]},
                {"role": "assistant", "content": [{"text": r["completion"].split()[0]}]},
            ],
        }
        for r in prompt_completion_records(48)
    ]
    write_jsonl(tmp_path / "s3/data/train.jsonl", rows)
    ctx = make_ctx(tmp_path)
    spec = make_spec(tiny_gpt2, identifier="meta.llama3-2-1b-instruct-v1:0")
    spec["hyperParameters"] = {"epochCount": "3", "learningRate": "0.05", "loraRank": "8"}
    run(ctx, spec)
    train_loss = losses(ctx)
    assert len(train_loss) == 144  # Llama 3.2 batch size is 1
    assert sum(train_loss[-10:]) / 10 < sum(train_loss[:10]) / 10
    adapter = tmp_path / "s3/models/custom/abcdef123456/adapter"
    assert (adapter / "adapter_model.safetensors").is_file() and (adapter / "adapter_config.json").is_file()
    assert (tmp_path / "s3/models/custom/abcdef123456/model.safetensors").is_file()
    assert ctx.results["adapterUri"] == "s3://models/custom/abcdef123456/adapter/"


def test_continued_pre_training(tmp_path, tiny_llama):
    from tiny_models import corpus

    write_jsonl(tmp_path / "s3/data/train.jsonl", [{"input": text} for text in corpus(48)])
    ctx = make_ctx(tmp_path)
    run(ctx, make_spec(tiny_llama, "CONTINUED_PRE_TRAINING"))
    train_loss = losses(ctx)
    assert len(train_loss) == 12 and train_loss[-1] < train_loss[0] - 0.5
    assert ctx.results["trainedTokens"] > 0


def test_bad_data_fails_validation_with_line_numbers(tmp_path, tiny_llama):
    records = prompt_completion_records(10)
    records[3] = "{oops"
    records[7] = {"prompt": "no completion"}
    write_jsonl(tmp_path / "s3/data/train.jsonl", records)
    ctx = make_ctx(tmp_path)
    with pytest.raises(WorkloadError) as error:
        run(ctx, make_spec(tiny_llama))
    assert "Line 4: Invalid JSON" in str(error.value)
    assert 'Line 8: "completion" must be a non-empty string.' in str(error.value)
    assert [s for s, _ in ctx.statuses] == ["Validation"]
    assert not (tmp_path / "s3/models").exists() and not ctx.metrics


def test_token_limit(tmp_path, tiny_llama):
    records = prompt_completion_records(10)
    records[5] = {"prompt": "alpha " * 40, "completion": "bravo"}
    write_jsonl(tmp_path / "s3/data/train.jsonl", records)
    spec = make_spec(tiny_llama)
    spec["hyperParameters"]["maxSequenceLength"] = "32"
    with pytest.raises(WorkloadError, match=r"Line 6: Maximum input token count \d+ exceeds limit of 32 for train data"):
        run(make_ctx(tmp_path), spec)


def test_hyperparameter_error_is_a_workload_error(tmp_path, tiny_llama):
    spec = make_spec(tiny_llama)
    spec["hyperParameters"]["epochCount"] = "0"
    with pytest.raises(WorkloadError, match="epochCount value 0 is out of range"):
        run(make_ctx(tmp_path), spec)


def test_stop_mid_training_saves_nothing(tmp_path, tiny_llama):
    write_jsonl(tmp_path / "s3/data/train.jsonl", prompt_completion_records(64))
    ctx = make_ctx(tmp_path)
    stop_after(ctx, 5)
    with pytest.raises(JobStopped):
        run(ctx, make_spec(tiny_llama))
    assert len(losses(ctx)) == 5
    assert not (tmp_path / "s3/models").exists()
    assert not (tmp_path / OUT).exists()


@pytest.mark.parametrize("full", ["true", "false"])
def test_resume_continues_from_checkpoint(tmp_path, tiny_llama, full):
    write_jsonl(tmp_path / "full/s3/data/train.jsonl", prompt_completion_records(64))
    write_jsonl(tmp_path / "cut/s3/data/train.jsonl", prompt_completion_records(64))
    spec = make_spec(tiny_llama)
    spec["hyperParameters"].update(checkpointInterval="3", learningRateWarmupSteps="2", fullFineTuning=full)
    spec["hyperParameters"]["learningRate"] = "0.003" if full == "true" else "0.02"

    reference = make_ctx(tmp_path / "full")
    run(reference, spec)

    first = make_ctx(tmp_path / "cut")
    stop_after(first, 7)  # stops during step 8, after the checkpoint at step 6
    with pytest.raises(JobStopped):
        run(first, spec)
    second = make_ctx(tmp_path / "cut", attempt=2)
    run(second, spec)

    assert "Resumed from the checkpoint at step 6" in second.events
    assert [m["step"] for m in second.metrics if m["name"] == "training_loss"] == list(range(7, 17))
    rows = read_csv(tmp_path / "cut" / OUT / "training_artifacts/step_wise_training_metrics.csv")
    assert [int(r[0]) for r in rows[1:]] == list(range(16))  # step_number counts from 0
    assert second.results["trainingLoss"] == pytest.approx(reference.results["trainingLoss"], rel=1e-4)


def test_early_stopping_with_carved_validation(tmp_path, tiny_llama):
    write_jsonl(tmp_path / "s3/data/train.jsonl", prompt_completion_records(40))
    spec = make_spec(tiny_llama, identifier="cohere.command-light-text-v14")
    spec["hyperParameters"] = {
        "epochCount": "6",
        "learningRate": "0.000005",
        "earlyStoppingThreshold": "0.1",
        "earlyStoppingPatience": "1",
        "evalPercentage": "20",
    }
    ctx = make_ctx(tmp_path)
    run(ctx, spec)
    assert ctx.results["earlyStopped"] is True and ctx.results["epochsCompleted"] == 2
    assert len(losses(ctx, "validation_loss")) == 2
    assert len(losses(ctx)) == 8  # 32 training records, batch 8, two epochs
