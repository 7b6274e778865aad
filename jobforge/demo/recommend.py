"""The inference recommendation part of ``jobforge demo``: a small scikit-learn model, load-tested on two
instance types by an Advanced CreateInferenceRecommendationsJob (a short STAIRS pattern), and the table of what
each served, at what latency and cost."""

from __future__ import annotations

import io
import tarfile
import time

BUCKET = "demo-recommender"
IMAGE = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.2-1-cpu-py3"
INSTANCE_TYPES = ("ml.t2.medium", "ml.c5.large")


def _tarball(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _model_bytes() -> bytes:
    import joblib
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    features = rng.normal(size=(500, 8))
    buffer = io.BytesIO()
    joblib.dump(LogisticRegression().fit(features, (features.sum(axis=1) > 0).astype(int)), buffer)
    return buffer.getvalue()


def recommend_instances(server) -> None:
    from jobforge.demo.main import say

    say(f"SageMaker inference recommendations: a scikit-learn model load-tested on {' and '.join(INSTANCE_TYPES)}")
    sm, s3 = server.client("sagemaker"), server.client("s3")
    role = f"arn:aws:iam::{server.client('sts').get_caller_identity()['Account']}:role/JobforgeExecutionRole"
    s3.create_bucket(Bucket=BUCKET)
    s3.put_object(Bucket=BUCKET, Key="model.tar.gz", Body=_tarball({"model.joblib": _model_bytes()}))
    s3.put_object(Bucket=BUCKET, Key="payload.tar.gz", Body=_tarball({"row.csv": b"0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8"}))
    sm.create_model(ModelName="demo-classifier", ExecutionRoleArn=role,
                    PrimaryContainer={"ModelDataUrl": f"s3://{BUCKET}/model.tar.gz", "Image": IMAGE})
    sm.create_inference_recommendations_job(
        JobName="demo-recommendation", JobType="Advanced", RoleArn=role,
        InputConfig={"ModelName": "demo-classifier", "JobDurationInSeconds": 120,
                     "EndpointConfigurations": [{"InstanceType": name} for name in INSTANCE_TYPES],
                     "TrafficPattern": {"TrafficType": "STAIRS", "Stairs": {
                         "DurationInSeconds": 3, "NumberOfSteps": 3, "UsersPerStep": 1}},
                     "ContainerConfig": {"PayloadConfig": {"SamplePayloadUrl": f"s3://{BUCKET}/payload.tar.gz",
                                                           "SupportedContentTypes": ["text/csv"]}}},
        StoppingConditions={"ModelLatencyThresholds": [{"Percentile": "P95", "ValueInMilliseconds": 100}]})
    while (job := sm.describe_inference_recommendations_job(JobName="demo-recommendation"))["Status"] not in (
            "COMPLETED", "FAILED", "STOPPED"):
        time.sleep(0.5)
    print(f"   job {job['Status']} in {(job['CompletionTime'] - job['CreationTime']).total_seconds():.0f} s")
    if job["Status"] != "COMPLETED":
        print(f"   {job.get('FailureReason')}")
    print(f"   {'instance type':<14} {'invocations/min':>15} {'p95 ms':>7} {'CPU %':>6} {'memory %':>8} "
          f"{'$/hour':>7} {'$/inference':>12}")
    for recommendation in job.get("InferenceRecommendations", []):
        metrics = recommendation["Metrics"]
        print(f"   {recommendation['EndpointConfiguration']['InstanceType']:<14} {metrics['MaxInvocations']:>15} "
              f"{metrics['ModelLatency']:>7} {metrics['CpuUtilization']:>6.1f} {metrics['MemoryUtilization']:>8.1f} "
              f"{metrics['CostPerHour']:>7.3f} {metrics['CostPerInference']:>12.3g}")
    for step in sm.list_inference_recommendations_job_steps(JobName="demo-recommendation", Status="FAILED")["Steps"]:
        print(f"   skipped {step['InferenceBenchmark']['EndpointConfiguration']['InstanceType']}: "
              f"{step['InferenceBenchmark']['FailureReason']}")
