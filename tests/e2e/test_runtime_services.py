"""The services a server runs beside its requests, seen from outside: the inference process is restarted
after a crash, and a server's stop ends its inference and simulator processes, even mid-generation,
within a bounded time."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from jobforge import tinylm
from jobforge.testing_server import ServerProcess

MODEL = "myorg.tiny-chat-v1:0"  # no family cap on maxTokens
ENDLESS = 4000  # tokens: far longer than the test waits
SV1 = "arn:aws:braket:::device/quantum-simulator/amazon/sv1"


def _children(pid: int) -> dict[int, bytes]:
    """pid → command line of each process whose parent is pid."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if parent == pid:
            found[int(entry.name)] = cmdline
    return found


def _inference_pid(server) -> int | None:
    return next((pid for pid, cmdline in _children(server.process.pid).items()
                 if b"jobforge.execution.inference" in cmdline), None)


def _alive(pid: int) -> bool:
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _ask(text: str) -> list[dict]:
    return [{"role": "user", "content": [{"text": text}]}]


def _endless_model(path: Path) -> Path:
    """A tiny Llama with a 4096-token context that never ends a generation before its maxTokens."""
    import torch
    from transformers import AutoModelForCausalLM

    tinylm.build(path, ["red green blue north south east west"] * 20)
    model = AutoModelForCausalLM.from_pretrained(path)
    with torch.no_grad():
        model.lm_head.weight[model.config.eos_token_id] = 0
    model.config.max_position_embeddings = 4096
    model.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    model_dir = _endless_model(tmp_path_factory.mktemp("tiny-llama"))
    srv = ServerProcess(tmp_path_factory.mktemp("runtime-services") / "data").start()
    subprocess.run([sys.executable, "-m", "jobforge.cli", "--data-dir", str(srv.data_dir), "models", "add", MODEL,
                    str(model_dir)], check=True, capture_output=True, timeout=120)
    yield srv
    srv.stop()


def test_the_inference_process_is_restarted_after_a_crash(server):
    runtime = server.client("bedrock-runtime")
    runtime.converse(modelId=MODEL, messages=_ask("red"), inferenceConfig={"maxTokens": 2})
    crashed = _inference_pid(server)
    os.kill(crashed, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while _inference_pid(server) in (None, crashed):  # restarted at once, before anyone asks
        assert time.monotonic() < deadline, "the inference process was not restarted"
        time.sleep(0.05)
    answer = runtime.converse(modelId=MODEL, messages=_ask("blue"), inferenceConfig={"maxTokens": 2})
    assert answer["usage"]["outputTokens"] >= 1


def test_a_stop_ends_the_inference_and_simulator_processes_mid_generation(server):
    server.client("braket").get_device(deviceArn=SV1)  # starts the simulator processes
    stream = server.client("bedrock-runtime").converse_stream(
        modelId=MODEL, messages=_ask("north"), inferenceConfig={"maxTokens": ENDLESS})["stream"]
    events = iter(stream)
    while "contentBlockDelta" not in next(events):  # generating
        pass
    deadline = time.monotonic() + 60
    while len(_children(server.process.pid)) < 2:  # the inference process and at least one simulator
        assert time.monotonic() < deadline, f"only {_children(server.process.pid)} run under the server"
        time.sleep(0.1)
    children = _children(server.process.pid)
    began = time.monotonic()
    server.process.terminate()
    assert server.process.wait(timeout=20) in (0, -signal.SIGTERM)  # uvicorn re-raises it once shut down
    assert time.monotonic() - began < 12  # uvicorn's 5 s for open connections, then at most 5 s for services
    deadline = time.monotonic() + 5
    while any(_alive(pid) for pid in children):
        assert time.monotonic() < deadline, f"left running: {[children[p] for p in children if _alive(p)]}"
        time.sleep(0.05)
    stream.close()
