"""bedrock-runtime under attack from a second account, through boto3 against the real server: input and
maxTokens bounded by the model, generations interleaved fairly across accounts, a generation stopped
when its client goes away, and deeply nested native bodies refused."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from botocore.exceptions import ClientError, ReadTimeoutError

from jobforge import tinylm
from jobforge.execution.inference import MAX_GENERATIONS_PER_ACCOUNT, FairTurns, GenerationCancelled

os.environ.setdefault("HF_HUB_OFFLINE", "1")

LLAMA = "meta.llama3-1-8b-instruct-v1:0"
GENERIC = "myorg.tiny-chat-v1:0"
CONTEXT = 4096
WORDS = "red green blue north south east west river ocean forest city one two three four five".split()
LONG = 1500  # tokens of a long generation (seconds on a CPU)
ENDLESS = 4000  # tokens of a generation far longer than a client waits for it to stop (no family cap: GENERIC)


def build_model(path: Path) -> Path:
    """A tiny Llama with a 4096-token context whose end-of-sequence token is never the likeliest, so a
    greedy generation always runs to its maxTokens."""
    import torch
    from transformers import AutoModelForCausalLM

    texts = [" ".join(WORDS[(i * 7 + j) % len(WORDS)] for j in range(6)) for i in range(200)]
    tinylm.build(path, texts, hidden=128, layers=4)
    model = AutoModelForCausalLM.from_pretrained(path)
    with torch.no_grad():
        model.lm_head.weight[model.config.eos_token_id] = 0
    model.config.max_position_embeddings = CONTEXT
    model.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def registered(server, tmp_path_factory):
    model_dir = build_model(tmp_path_factory.mktemp("long-llama"))
    for model_id in (LLAMA, GENERIC):
        subprocess.run([sys.executable, "-m", "jobforge.cli", "--data-dir", str(server.data_dir), "models", "add",
                        model_id, str(model_dir)], check=True, capture_output=True, timeout=120)
    subprocess.run([sys.executable, "-m", "jobforge.cli", "--data-dir", str(server.data_dir), "accounts", "create",
                    "inference-other"], check=True, capture_output=True, timeout=60)
    runtime = server.client("bedrock-runtime")
    runtime.converse(modelId=LLAMA, messages=_ask("warm up"), inferenceConfig={"maxTokens": 1})  # loads the model
    return server


@pytest.fixture(scope="module")
def runtime(registered):
    return registered.client("bedrock-runtime")


@pytest.fixture(scope="module")
def other(registered):
    return registered.client("bedrock-runtime", profile="inference-other")


def _ask(text: str) -> list[dict]:
    return [{"role": "user", "content": [{"text": text}]}]


def _code(err) -> str:
    return err.value.response["Error"]["Code"]


def _message(err) -> str:
    return err.value.response["Error"]["Message"]


def _inference_cpu_seconds(server) -> float:
    """CPU time used so far by the server's inference process (read from /proc)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == server.process.pid and b"jobforge.execution.inference" in cmdline:
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    raise AssertionError("no inference process runs under the server")


def _assert_inference_idle(server) -> None:
    """The inference process stops using the CPU within moments, long before the abandoned generation of
    ENDLESS tokens would have ended: no generation goes on for nobody."""
    deadline = time.monotonic() + 4
    while True:
        before = _inference_cpu_seconds(server)
        time.sleep(0.5)
        used = _inference_cpu_seconds(server) - before
        if used < 0.05:
            return
        assert time.monotonic() < deadline, f"the inference process still uses {used * 2:.2f} s of CPU a second"


def test_a_prompt_longer_than_the_context_is_refused_at_once(runtime, other):
    started = time.monotonic()
    with pytest.raises(ClientError) as err:
        other.converse(modelId=LLAMA, messages=_ask("red river " * 35_000), inferenceConfig={"maxTokens": 2})
    assert _code(err) == "ValidationException" and _message(err) == "Input is too long for requested model."
    with pytest.raises(ClientError) as err:
        other.invoke_model(modelId=LLAMA, body=json.dumps({"prompt": "blue ocean " * 35_000, "max_gen_len": 2}))
    assert _code(err) == "ValidationException" and _message(err) == "Input is too long for requested model."
    assert time.monotonic() - started < 10  # a generation over such an input took a minute

    # Short enough in characters to be tokenized, still more tokens than the context holds.
    words = " ".join(WORDS[i % len(WORDS)] for i in range(CONTEXT + 10))
    with pytest.raises(ClientError) as err:
        runtime.converse_stream(modelId=LLAMA, messages=_ask(words))  # refused before any event is sent
    assert _code(err) == "ValidationException" and _message(err) == "Input is too long for requested model."
    with pytest.raises(ClientError) as err:
        runtime.invoke_model_with_response_stream(modelId=GENERIC, body=json.dumps({"prompt": words}))
    assert _code(err) == "ValidationException"


def test_max_tokens_above_the_model_limit_are_refused(runtime):
    with pytest.raises(ClientError) as err:
        runtime.converse(modelId=LLAMA, messages=_ask("hi"), inferenceConfig={"maxTokens": 4096})
    assert _code(err) == "ValidationException"
    assert _message(err) == ("The maximum tokens you requested exceeds the model limit of 2048. Try again with a "
                             "maximum tokens value that is lower than 2048.")
    with pytest.raises(ClientError) as err:  # no family cap: the model's own context is the limit
        runtime.converse(modelId=GENERIC, messages=_ask("hi"), inferenceConfig={"maxTokens": 100_000})
    assert "exceeds the model limit of 4096" in _message(err)
    with pytest.raises(ClientError) as err:
        runtime.invoke_model(modelId=GENERIC, body=json.dumps({"messages": [{"role": "user", "content": "hi"}],
                                                                "max_tokens": CONTEXT + 1}))
    assert _code(err) == "ValidationException" and "model limit of 4096" in _message(err)
    with pytest.raises(ClientError) as err:
        runtime.invoke_model(modelId=LLAMA, body=json.dumps({"prompt": "hi", "max_gen_len": 4096}))
    assert _message(err).startswith("Malformed input request: #/max_gen_len: 4096 is not less or equal to 2048")

    # Without maxTokens, and near the end of the context, generation stops where the context is full.
    prompt = " ".join(WORDS[i % len(WORDS)] for i in range(CONTEXT - 40))
    # Greedy: a sampled token could be the end-of-sequence token, whose logit is only never the largest.
    answer = json.loads(runtime.invoke_model(modelId=GENERIC, body=json.dumps({"prompt": prompt, "temperature": 0}))
                        ["body"].read())
    assert answer["stop_reason"] == "length"
    assert answer["prompt_token_count"] + answer["generation_token_count"] == CONTEXT


def test_a_long_generation_does_not_hold_another_accounts_short_request(runtime, other):
    sent = time.monotonic()
    long_one = runtime.converse_stream(modelId=LLAMA, messages=_ask("north river"),
                                       inferenceConfig={"maxTokens": LONG, "temperature": 0})["stream"]
    events = iter(long_one)
    assert "messageStart" in next(events)
    assert "contentBlockDelta" in next(events)  # the long generation is under way

    short = other.converse(modelId=LLAMA, messages=_ask("blue city"), inferenceConfig={"maxTokens": 2})
    short_done = time.monotonic() - sent
    assert short["usage"]["outputTokens"] == 2

    rest = list(events)
    metadata = rest[-1]["metadata"]
    assert metadata["usage"]["outputTokens"] == LONG and rest[-2] == {"messageStop": {"stopReason": "max_tokens"}}
    # The short request was answered before the long generation ended on the server.
    assert short_done * 1000 < metadata["metrics"]["latencyMs"]


def test_a_stream_whose_client_disconnects_stops_generating(registered, runtime):
    stream = runtime.converse_stream(modelId=GENERIC, messages=_ask("east forest"),
                                     inferenceConfig={"maxTokens": ENDLESS, "temperature": 0})["stream"]
    events = iter(stream)
    next(events), next(events)
    before = _inference_cpu_seconds(registered)
    time.sleep(1.0)
    assert _inference_cpu_seconds(registered) - before > 0.2  # generating while the client reads nothing
    stream.close()  # the client goes away after its first events
    _assert_inference_idle(registered)

    body = json.dumps({"prompt": "west ocean", "max_gen_len": ENDLESS, "temperature": 0})
    chunks = runtime.invoke_model_with_response_stream(modelId=GENERIC, body=body)["body"]
    next(iter(chunks))
    chunks.close()
    _assert_inference_idle(registered)


def test_an_account_has_a_bounded_number_of_generations_in_flight(registered, runtime, other):
    streams = []
    try:
        for _ in range(MAX_GENERATIONS_PER_ACCOUNT):
            stream = runtime.converse_stream(modelId=GENERIC, messages=_ask("one two"),
                                             inferenceConfig={"maxTokens": ENDLESS, "temperature": 0})["stream"]
            next(iter(stream))
            streams.append(stream)
        with pytest.raises(ClientError) as err:
            runtime.converse(modelId=GENERIC, messages=_ask("three"), inferenceConfig={"maxTokens": 2})
        assert _code(err) == "ThrottlingException"
        assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 429
        assert other.converse(modelId=GENERIC, messages=_ask("four"),
                              inferenceConfig={"maxTokens": 2})["usage"]["outputTokens"] == 2
    finally:
        for stream in streams:
            stream.close()
    _assert_inference_idle(registered)
    assert runtime.converse(modelId=GENERIC, messages=_ask("five"),
                            inferenceConfig={"maxTokens": 2})["usage"]["outputTokens"] == 2


def test_a_request_whose_client_gives_up_stops_generating(registered):
    impatient = registered.client("bedrock-runtime", read_timeout=1)
    with pytest.raises(ReadTimeoutError):
        impatient.invoke_model(modelId=GENERIC, body=json.dumps({"prompt": "south", "max_gen_len": ENDLESS,
                                                                 "temperature": 0}))
    _assert_inference_idle(registered)
    with pytest.raises(ReadTimeoutError):
        impatient.converse(modelId=GENERIC, messages=_ask("south"), inferenceConfig={"maxTokens": ENDLESS,
                                                                                   "temperature": 0})
    _assert_inference_idle(registered)


def _nest(depth: int):
    value = []
    for _ in range(depth - 1):
        value = [value]
    return value


@pytest.mark.parametrize("body", [
    "[" * 100_000 + "]" * 100_000,  # deeper than the JSON reader goes
    json.dumps({"prompt": "hi", "images": _nest(100)}),  # readable, and deeper than any native body
])
def test_deeply_nested_native_bodies_are_refused(runtime, body):
    for call in (runtime.invoke_model, runtime.invoke_model_with_response_stream):
        with pytest.raises(ClientError) as err:
            call(modelId=LLAMA, body=body)
        assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
        assert _code(err) == "ValidationException" and "nested deeper than" in _message(err)


def test_turns_alternate_between_accounts_whatever_each_has_in_flight():
    """Account a runs two generations, b one: a step of b's follows every step of a's, and a cancelled
    generation leaves its place, waiting or running."""
    turns, steps, lock = FairTurns(), [], threading.Lock()
    first = turns.turn("a")
    waiting = [turns.turn("a"), turns.turn("b"), turns.turn("c")]

    def generate(turn, name, count):
        try:
            with turn:
                for _ in range(count):
                    with lock:
                        steps.append(name)
                    turn.next_token()
        except GenerationCancelled:
            with lock:
                steps.append(name + " cancelled")

    first.__enter__()  # a1 holds the turn until the others wait
    threads = [threading.Thread(target=generate, args=args)
               for args in ((waiting[0], "a2", 3), (waiting[1], "b", 3), (waiting[2], "c", 3))]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 10
    while sum(len(queued) for queued in turns._waiting.values()) < 3:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    waiting[2].cancel()  # c leaves while waiting
    threads[2].join(10)
    assert steps == ["c cancelled"]

    def run_first():
        first.next_token()
        with lock:
            steps.append("a1")
        first.next_token()
        first.__exit__(None, None, None)

    runner = threading.Thread(target=run_first)
    runner.start()
    for thread in [runner, *threads]:
        thread.join(10)
    # a1 handed on after its step: b, then a's other generation, then b again, and so on.
    assert steps[1:] == ["b", "a2", "b", "a1", "b", "a2", "a2"]
