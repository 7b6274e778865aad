"""Where torch sees a CUDA GPU, a Bedrock fine-tuning job of a tiny model trains on it, through the real server
and boto3; skipped elsewhere."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from jobforge import tinylm

BASE_MODEL = "meta.llama3-1-8b-instruct-v1:0:128k"  # the variant Bedrock customizes
BUCKET = "gpu-smoke"
WORDS = "red green blue north south east west river ocean forest city one two three four five".split()


@pytest.fixture(scope="module")
def cuda() -> None:
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU visible to torch on this host")


def cli(data_dir, *args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "jobforge.cli", "--data-dir", str(data_dir), *args],
                          capture_output=True, text=True, timeout=60)


def examples(n: int) -> list[dict]:
    """Prompt and completion pairs: the completion repeats the prompt's first two words."""
    sentences = [" ".join(WORDS[(i * 7 + j * 3) % len(WORDS)] for j in range(5)) for i in range(n)]
    return [{"prompt": f"{s} ->", "completion": " " + " ".join(s.split()[:2])} for s in sentences]


def test_fine_tuning_trains_on_the_gpu(cuda, server, role_arn, tmp_path):
    records = examples(32)
    model_dir = tinylm.build(tmp_path / "tiny-llama", [r["prompt"] + r["completion"] for r in records])
    added = cli(server.data_dir, "models", "add", BASE_MODEL, str(model_dir))
    assert added.returncode == 0, added.stderr
    s3 = server.client("s3")
    s3.create_bucket(Bucket=BUCKET)
    s3.put_object(Bucket=BUCKET, Key="train.jsonl", Body="".join(json.dumps(r) + "\n" for r in records).encode())
    bedrock = server.client("bedrock")
    arn = bedrock.create_model_customization_job(
        jobName="gpu-smoke", customModelName="gpu-smoke-model", roleArn=role_arn, baseModelIdentifier=BASE_MODEL,
        trainingDataConfig={"s3Uri": f"s3://{BUCKET}/train.jsonl"}, outputDataConfig={"s3Uri": f"s3://{BUCKET}/out"},
        hyperParameters={"epochCount": "1", "batchSize": "1", "learningRate": "0.001"})["jobArn"]
    deadline = time.time() + 300
    while (job := bedrock.get_model_customization_job(jobIdentifier=arn))["status"] == "InProgress":
        assert time.time() < deadline, job.get("statusDetails")
        time.sleep(1)
    log = cli(server.data_dir, "jobs", "logs", arn).stdout
    assert job["status"] == "Completed", (job.get("failureMessage"), log)
    assert "Training on cuda:" in log, log
