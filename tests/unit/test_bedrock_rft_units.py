"""Bedrock reinforcement fine-tuning's pure parts: the grader's batch format, the hyperparameters and token
limits, the record format."""

from __future__ import annotations

import pytest

from jobforge.workloads.customize.data import parse_record
from jobforge.workloads.customize.families import GENERIC, REINFORCEMENT_FINE_TUNING
from jobforge.workloads.customize.hyperparams import rft_token_limits, validate_rft_hyperparameters
from jobforge.workloads.customize.rft.grader import GraderError, read_answer, sample

RECORD = {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2 + 2?"}],
          "reference_answer": {"value": 4}, "id": "q1", "difficulty": "easy"}


def test_a_sample_carries_the_answer_and_the_record_in_both_documented_places():
    out = sample(RECORD, RECORD["messages"], "4", "t-1")
    assert out["id"] == "t-1" and out["messages"][-1] == {"role": "assistant", "content": "4"}
    assert out["messages"][:2] == RECORD["messages"] and len(RECORD["messages"]) == 2  # the record is untouched
    assert out["reference_answer"] == out["metadata"]["reference_answer"] == {"value": 4}
    assert out["difficulty"] == "easy" and out["metadata"]["id"] == "q1" and "messages" not in out["metadata"]


def test_grader_answers_are_matched_by_id_and_checked():
    grades = read_answer([{"id": "b", "aggregate_reward_score": 0.25},
                          {"id": "a", "aggregate_reward_score": 1, "metrics_list": [
                              {"name": "accuracy", "value": 1.0, "type": "Reward"}, {"name": "junk"}]}], ["a", "b"])
    assert [g.reward for g in grades] == [1.0, 0.25]
    assert grades[0].metrics == {"accuracy": 1.0} and grades[1].metrics == {}
    with pytest.raises(GraderError, match="must return a list"):
        read_answer({"id": "a", "aggregate_reward_score": 1}, ["a"])
    with pytest.raises(GraderError, match="finite number"):
        read_answer([{"id": "a", "aggregate_reward_score": float("nan")}], ["a"])
    with pytest.raises(GraderError, match="no score for 1 of the 2"):
        read_answer([{"id": "a", "aggregate_reward_score": 1}], ["a", "b"])


def test_hyperparameters_defaults_extras_and_refusals():
    values = validate_rft_hyperparameters("openai.gpt-oss-20b", {"hyperParameters": {"batchSize": 16}},
                                          {"loraRank": "8"})
    assert values["batchSize"] == 16 and values["trainingSamplePerPrompt"] == 8 and values["epochCount"] == 1
    assert values["loraRank"] == 8 and values["loraAlpha"] == 16 and values["seed"] == 0
    with pytest.raises(ValueError, match="does not support customization type REINFORCEMENT_FINE_TUNING"):
        validate_rft_hyperparameters("meta.llama3-1-8b-instruct-v1:0:128k", {}, None)
    with pytest.raises(ValueError, match="set the training in customizationConfig.rftConfig.hyperParameters"):
        validate_rft_hyperparameters("openai.gpt-oss-20b", {}, {"learningRate": "0.001"})
    with pytest.raises(ValueError, match="inferenceMaxTokens must be a positive number"):
        validate_rft_hyperparameters("openai.gpt-oss-20b", {"hyperParameters": {"inferenceMaxTokens": 0}}, None)


@pytest.mark.parametrize("given, context, expected", [
    ({}, 512, (256, 256)),
    ({}, 32768, (28672, 4096)),
    ({"maxPromptLength": 500}, 512, (500, 12)),
    ({"inferenceMaxTokens": 1}, 512, (511, 1)),
    ({"maxPromptLength": 100, "inferenceMaxTokens": 50}, 512, (100, 50)),
])
def test_token_limits_fill_the_context(given, context, expected):
    assert rft_token_limits(given, context) == expected


def test_token_limits_that_do_not_fit_are_refused():
    with pytest.raises(ValueError, match="must fit in the base model's context of 512 tokens"):
        rft_token_limits({"maxPromptLength": 400, "inferenceMaxTokens": 200}, 512)


def test_records_are_openai_chat_prompts_with_a_reference_answer():
    record = parse_record({"messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}],
                           "reference_answer": None}, 3, REINFORCEMENT_FINE_TUNING, GENERIC)
    assert record.messages == [{"role": "user", "content": "hi"}] and record.grader_fields["reference_answer"] is None
    for bad, message in [({"messages": [{"role": "user", "content": "x"}]}, "Missing key(s): reference_answer"),
                         ({"messages": [], "reference_answer": 1}, "non-empty list"),
                         ({"messages": [{"role": "tool", "content": "x"}], "reference_answer": 1}, "system, user or"),
                         ({"messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}],
                           "reference_answer": 1}, "The last message must be the user's"),
                         ({"messages": [{"role": "user", "content": " "}], "reference_answer": 1}, "non-empty text"),
                         ({"messages": [{"role": "user", "content": "x"}], "reference_answer": 1, "id": [1]},
                          '"id" must be a string')]:
        with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
            parse_record(bad, 1, REINFORCEMENT_FINE_TUNING, GENERIC)
