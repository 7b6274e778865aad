import gzip
import json

import pytest
from tiny_models import write_jsonl

from jobforge.workloads.customize.data import DataValidationError, check_jsonl_uri, load_records
from jobforge.workloads.customize.families import GENERIC, family_of
from jobforge.workloads.customize.invocation_logs import matches, read_invocation_logs

LLAMA32 = family_of("meta.llama3-2-1b-instruct-v1:0")
NOVA = family_of("amazon.nova-micro-v1:0:128k")


def conv(*turns, system=None):
    record = {"schemaVersion": "bedrock-conversation-2024", "messages": []}
    if system:
        record["system"] = [{"text": system}]
    for role, text in turns:
        record["messages"].append({"role": role, "content": [{"text": text}]})
    return record


def test_prompt_completion(tmp_path):
    path = write_jsonl(tmp_path / "a.jsonl", [{"prompt": "p1", "completion": "c1"}, "", {"prompt": "p2", "completion": "c2"}])
    records = load_records(path, "s3://b/a.jsonl", "FINE_TUNING", GENERIC)
    assert [(r.line, r.prompt, r.completion) for r in records] == [(1, "p1", "c1"), (3, "p2", "c2")]


def test_conversation_formats(tmp_path):
    path = write_jsonl(
        tmp_path / "a.jsonl",
        [
            conv(("user", "hi"), ("assistant", "hello"), system="be kind"),
            {"system": "sys", "messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]},
        ],
    )
    first, second = load_records(path, "s", "FINE_TUNING", GENERIC)
    assert first.messages == [
        {"role": "system", "content": "be kind"},
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello"},
    ]
    assert second.messages[0] == {"role": "system", "content": "sys"}


def test_every_bad_line_is_reported(tmp_path):
    path = write_jsonl(
        tmp_path / "bad.jsonl",
        [
            {"prompt": "ok", "completion": "ok"},
            "{not json",
            {"prompt": "x"},
            {"prompt": "x", "completion": "y", "extra": 1},
            ["a list"],
            {"prompt": "", "completion": "y"},
            {"text": "what"},
        ],
    )
    with pytest.raises(DataValidationError) as error:
        load_records(path, "s3://b/bad.jsonl", "FINE_TUNING", GENERIC)
    message = str(error.value)
    assert message.startswith("Validation of s3://b/bad.jsonl failed.")
    assert [line for line, _ in error.value.problems] == [2, 3, 4, 5, 6, 7]
    assert "Line 2: Invalid JSON" in message
    assert 'Line 3: "completion" must be a non-empty string.' in message
    assert "Line 4:" in message and "Unexpected key(s): extra" in message
    assert "Line 7: Unrecognized record format" in message


def test_conversation_rules(tmp_path):
    path = write_jsonl(
        tmp_path / "c.jsonl",
        [
            conv(("assistant", "a"), ("user", "b")),
            conv(("user", "a"), ("user", "b")),
            conv(("user", "only")),
            {**conv(("user", "a"), ("assistant", "b")), "schemaVersion": 2024},
            {"schemaVersion": "bedrock-conversation-2024", "messages": [{"role": "user", "content": [{"image": {}}]}]},
            {"prompt": "p", "completion": "c"},
        ],
    )
    with pytest.raises(DataValidationError) as error:
        load_records(path, "s", "FINE_TUNING", LLAMA32)
    problems = dict(error.value.problems)
    assert "alternate" in problems[1] and "alternate" in problems[2]
    assert "must end with assistant" in problems[3]
    assert problems[4] == '"schemaVersion" must be a string.'
    assert "image" in problems[5]
    assert "prompt-completion format is not supported for this base model" in problems[6]


def test_schema_version_is_optional_and_any_string(tmp_path):
    tool_use = {**conv(("user", "weather in Paris?"), ("assistant", "sunny")), "schemaVersion": "tooluse-dataset-2024"}
    unversioned = conv(("user", "hi"), ("assistant", "hello"), system="be brief")
    del unversioned["schemaVersion"]
    records = load_records(write_jsonl(tmp_path / "v.jsonl", [tool_use, unversioned]), "s", "FINE_TUNING", LLAMA32)
    assert [r.messages for r in records] == [
        [{"role": "user", "content": "weather in Paris?"}, {"role": "assistant", "content": "sunny"}],
        [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"},
         {"role": "assistant", "content": "hello"}]]


def test_nova_forbidden_markers_and_minimum(tmp_path):
    path = write_jsonl(tmp_path / "n.jsonl", [conv(("user", "User: hi"), ("assistant", "ok"))])
    with pytest.raises(DataValidationError, match="Line 1: Text must not contain 'User:'"):
        load_records(path, "s", "FINE_TUNING", NOVA)
    path = write_jsonl(tmp_path / "n2.jsonl", [conv(("user", "hi"), ("assistant", "ok"))] * 3)
    with pytest.raises(DataValidationError, match="has 3 records; the minimum is 8"):
        load_records(path, "s", "FINE_TUNING", NOVA)


def test_record_count_limit(tmp_path):
    path = write_jsonl(tmp_path / "v.jsonl", [conv(("user", "q"), ("assistant", "a"))] * 1001)
    with pytest.raises(DataValidationError, match="validation dataset has 1001 records, which exceeds the limit of 1000"):
        load_records(path, "s", "FINE_TUNING", LLAMA32, validation=True)


def test_continued_pretraining_and_distillation_prompts(tmp_path):
    cpt = write_jsonl(tmp_path / "cpt.jsonl", [{"input": "some text"}, {"input": "x", "prompt": "y"}])
    with pytest.raises(DataValidationError, match="Line 2: Continued pre-training records"):
        load_records(cpt, "s", "CONTINUED_PRE_TRAINING", GENERIC)
    prompts = write_jsonl(tmp_path / "d.jsonl", [conv(("user", "q")), {"prompt": "p"}, conv(("user", "q"), ("assistant", "gold"))])
    records = load_records(prompts, "s", "DISTILLATION", LLAMA32)
    assert records[1].prompt == "p" and records[1].completion is None
    assert records[2].messages[-1]["content"] == "gold"


def test_jsonl_uri():
    check_jsonl_uri("s3://b/train.jsonl")
    with pytest.raises(DataValidationError, match="Input data must be in .jsonl format"):
        check_jsonl_uri("s3://b/training-data/")


def test_metadata_filters():
    meta = {"project": "a", "team": "x"}
    assert matches(meta, None)
    assert matches(meta, {"equals": {"project": "a"}})
    assert not matches(meta, {"notEquals": {"project": "a"}})
    assert matches(meta, {"andAll": [{"equals": {"project": "a"}}, {"notEquals": {"team": "y"}}]})
    assert not matches(meta, {"andAll": [{"equals": {"project": "a"}}, {"equals": {"team": "y"}}]})
    assert matches(meta, {"orAll": [{"equals": {"project": "b"}}, {"equals": {"team": "x"}}]})


def test_invocation_logs(tmp_path):
    def log(meta, body, output):
        return {
            "schemaType": "ModelInvocationLog",
            "operation": "Converse",
            "requestMetadata": meta,
            "input": {"inputBodyJson": body},
            "output": {"outputBodyJson": output},
        }

    converse = {"messages": [{"role": "user", "content": [{"text": "What is 2+2?"}]}], "system": [{"text": "Be brief"}]}
    reply = {"output": {"message": {"role": "assistant", "content": [{"text": "4"}]}}}
    folder = tmp_path / "AWSLogs" / "000000000000" / "BedrockModelInvocationLogs"
    folder.mkdir(parents=True)
    with gzip.open(folder / "part-1.json.gz", "wt") as handle:
        handle.write(json.dumps(log({"project": "math"}, converse, reply)) + "\n")
        handle.write(json.dumps(log({"project": "other"}, converse, reply)) + "\n")
        handle.write(json.dumps(log({"project": "math"}, {"prompt": "Llama prompt"}, {"generation": "answer"})) + "\n")
        handle.write(json.dumps(log({"project": "math"}, {"weird": 1}, {})) + "\n")
    records, rejected = read_invocation_logs(tmp_path, {"equals": {"project": "math"}}, use_prompt_response=True)
    assert [r.messages for r in records] == [
        [{"role": "system", "content": "Be brief"}, {"role": "user", "content": "What is 2+2?"}, {"role": "assistant", "content": "4"}],
        [{"role": "user", "content": "Llama prompt"}, {"role": "assistant", "content": "answer"}],
    ]
    assert len(rejected) == 1 and "unreadable" in rejected[0]["reason"]
    prompts_only, _ = read_invocation_logs(tmp_path, {"notEquals": {"project": "math"}}, use_prompt_response=False)
    assert len(prompts_only) == 1 and prompts_only[0].messages[-1]["role"] == "user"


CLAUDE = family_of("anthropic.claude-3-haiku-20240307-v1:0:200k")


def test_distillation_prompts_are_single_turn_for_anthropic_and_meta_students(tmp_path):
    multi = conv(("user", "a"), ("assistant", "b"), ("user", "c"))
    path = write_jsonl(tmp_path / "d.jsonl", [conv(("user", "q")), multi, conv(("user", "q"), ("assistant", "gold"))])
    for family in (LLAMA32, family_of("meta.llama3-1-8b-instruct-v1:0"), CLAUDE):
        with pytest.raises(DataValidationError) as error:
            load_records(path, "s", "DISTILLATION", family)
        assert [line for line, _ in error.value.problems] == [2]
        assert "Line 2: Distillation prompts for this student model must be a single user turn" in str(error.value)
    claude = write_jsonl(tmp_path / "c.jsonl", [{"messages": [{"role": "user", "content": "a"},
                                                              {"role": "assistant", "content": "b"},
                                                              {"role": "user", "content": "c"}]}])
    with pytest.raises(DataValidationError, match="Line 1: Distillation prompts"):
        load_records(claude, "s", "DISTILLATION", CLAUDE)
    assert len(load_records(path, "s", "DISTILLATION", NOVA)) == 3  # Nova students take multi-turn prompts


def test_llama_system_holds_one_element(tmp_path):
    two = conv(("user", "q"), ("assistant", "a"))
    two["system"] = [{"text": "one"}, {"text": "two"}]
    path = write_jsonl(tmp_path / "s.jsonl", [conv(("user", "q"), ("assistant", "a"), system="one"), two])
    with pytest.raises(DataValidationError) as error:
        load_records(path, "s", "FINE_TUNING", LLAMA32)
    assert error.value.problems == [(2, '"system" may hold at most 1 element for this base model; found 2.')]
    with pytest.raises(DataValidationError, match='Line 2: "system" may hold at most 1 element'):
        load_records(path, "s", "DISTILLATION", LLAMA32)
    assert len(load_records(path, "s", "FINE_TUNING", GENERIC)) == 2
