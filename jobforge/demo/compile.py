"""The compilation part of ``jobforge demo``: a small CNN and a small transformer compiled for ml_c5.

Each model is traced to TorchScript with random weights and uploaded as the model.tar.gz SageMaker Neo
expects; CreateCompilationJob with ``"backend": "auto"`` builds every candidate backend, verifies each
against the original and keeps the fastest; the demo prints the job's report.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

BUCKET = "demo-compilation"
MODELS = (("cnn", '{"input0": [1, 3, 64, 64]}'), ("transformer", '{"input0": [1, 32, 64]}'))


def compile_models(server) -> None:
    from jobforge.demo import tiny_nets
    from jobforge.demo.main import say

    say("SageMaker compilation: a small CNN and a small transformer, compiled for ml_c5 (this host's CPU)")
    sm, s3 = server.client("sagemaker"), server.client("s3")
    role = f"arn:aws:iam::{server.client('sts').get_caller_identity()['Account']}:role/JobforgeExecutionRole"
    s3.create_bucket(Bucket=BUCKET)
    with tempfile.TemporaryDirectory() as tmp:
        for name, shapes in MODELS:
            model, example = tiny_nets.build(name)
            folder = Path(tmp) / name
            folder.mkdir()
            tarball = tiny_nets.tarball([tiny_nets.torchscript(model, example, folder / "model.pth")],
                                        folder / "model.tar.gz")
            s3.upload_file(str(tarball), BUCKET, f"{name}/model.tar.gz")
            sm.create_compilation_job(
                CompilationJobName=f"demo-{name}", RoleArn=role,
                InputConfig={"S3Uri": f"s3://{BUCKET}/{name}/model.tar.gz", "DataInputConfig": shapes,
                             "Framework": "PYTORCH"},
                OutputConfig={"S3OutputLocation": f"s3://{BUCKET}/compiled/{name}", "TargetDevice": "ml_c5",
                              "CompilerOptions": json.dumps({"backend": "auto", "timing_runs": 100})},
                StoppingCondition={"MaxRuntimeInSeconds": 900})
            print(f"   created compilation job demo-{name}")
    for name, _ in MODELS:
        job = _wait(sm, f"demo-{name}")
        if job["CompilationJobStatus"] != "COMPLETED":
            print(f"   demo-{name} ended {job['CompilationJobStatus']}: {job['FailureReason']}")
            continue
        artifact = job["ModelArtifacts"]["S3ModelArtifacts"]
        key = artifact.removeprefix(f"s3://{BUCKET}/").removesuffix(".tar.gz") + "-report.json"
        report = json.loads(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read())
        print(f"   {name}: eager PyTorch {report['original']['median_us']:.0f} us; kept {report['chosen']} "
              f"in {artifact}")
        for item in report["candidates"]:
            if "median_us" in item:
                print(f"     {item['backend']:<12} {item['status']:<11} {item['speedup']:5.2f}x eager, "
                      f"max abs diff {item['max_abs_diff']:.1e}")
            else:
                print(f"     {item['backend']:<12} {item['status']:<11} {item.get('reason', '')[:90]}")


def _wait(sm, name: str, timeout: float = 600) -> dict:
    deadline = time.time() + timeout
    while True:
        job = sm.describe_compilation_job(CompilationJobName=name)
        if job["CompilationJobStatus"] in ("COMPLETED", "FAILED", "STOPPED") or time.time() > deadline:
            return job
        time.sleep(0.5)
