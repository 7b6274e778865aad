"""The "follow the signal" game the agent-RL tests train on, and what they set up for it: each turn the
environment shows a digit o and the right answer is (3·o + 1) mod 10; a tiny random policy learns it by RL.

``LAMBDA_AGENT`` plays it as a Lambda function through the job runtime API (per-turn rewards; a row with
``broken`` reports its rollout failed); ``register_model`` builds the policy and registers it as a JumpStart
model; ``lambda_agent`` creates the function."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import textwrap
import time
import zipfile
from pathlib import Path

from jobforge import tinylm

MODEL = "tiny-digits"
BASE_ARN = f"arn:aws:sagemaker:us-east-1:aws:hub-content/SageMakerPublicHub/Model/{MODEL}/1.0.0"
TURNS = 4

LAMBDA_AGENT = """
import functools, json, random, boto3

@functools.cache  # one client per warm environment, as Lambda code keeps its clients
def client(endpoint, region):
    return boto3.client("sagemakerjobruntime", endpoint_url=endpoint, region_name=region)

def handler(event, context):
    meta = event["metadata"]
    runtime = client(meta["endpoint"], meta["region"])
    ids = dict(JobArn=meta["job_arn"], TrajectoryId=meta["trajectory_id"])
    if event["instance"].get("broken"):  # an environment that cannot start: the rollout is reported failed
        runtime.complete_rollout(Status="failed", **ids)
        return {}
    rng = random.Random(int(event["instance"]["seed"]))
    messages, rewards = [], []
    for _ in range(%(turns)d):
        signal = rng.randrange(10)
        messages.append({"role": "user", "content": str(signal)})
        body = {"messages": messages, **event["inferenceParams"], "max_tokens": 1}
        answer = json.loads(runtime.sample(Body=json.dumps(body), **ids)["Body"].read())
        text = answer["choices"][0]["message"]["content"]
        rewards.append(1.0 if text == str((3 * signal + 1) %% 10) else 0.0)
        messages.append({"role": "assistant", "content": text})
    runtime.complete_rollout(Status="ready", **ids)
    runtime.update_reward(Rewards=rewards, **ids)
    return {}
""" % {"turns": TURNS}


def code_zip(source: str) -> bytes:
    """A Lambda function's .zip: the source as app.py."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("app.py", textwrap.dedent(source))
    return buffer.getvalue()


def jsonl(rows) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


def register_model(data_dir: Path, work: Path) -> None:
    """The tiny policy, built and registered under MODEL in the server's catalog."""
    model = tinylm.build_digits(work)
    added = subprocess.run([sys.executable, "-m", "jobforge.cli", "--data-dir", str(data_dir), "models", "add",
                            MODEL, str(model)], capture_output=True, text=True, timeout=60)
    assert added.returncode == 0, added.stderr


def lambda_agent(server, role: str, name: str, source: str = LAMBDA_AGENT, timeout: int = 120) -> str:
    """The function's ARN, once it is Active."""
    lam = server.client("lambda", read_timeout=120)
    arn = lam.create_function(FunctionName=name, Runtime=f"python3.{sys.version_info[1]}", Role=role,
                              Handler="app.handler", Code={"ZipFile": code_zip(source)}, Timeout=timeout,
                              MemorySize=256)["FunctionArn"]
    deadline = time.time() + 30
    while lam.get_function_configuration(FunctionName=name)["State"] != "Active":
        assert time.time() < deadline
        time.sleep(0.1)
    return arn
