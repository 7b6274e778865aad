"""An AgentRFT job survives kill -9 of the server and of its worker mid-training: the next server resumes it
from its last checkpoint (adapter, optimizer, step, token counts) and it completes its steps."""

from __future__ import annotations

import json
import os
import random
import signal
import time

import sqlalchemy as sa

from jobforge.core.store import create_engine, jobs_table
from jobforge.execution.local import local_pid
from jobforge.testing_server import ServerProcess

from signal_game import BASE_ARN, jsonl, lambda_agent, register_model

BUCKET = "resume-rft"
STEPS = 8


def _record(data_dir, name: str):
    with create_engine(f"sqlite:///{data_dir / 'jobforge.db'}").connect() as conn:
        return conn.execute(sa.select(jobs_table).where(jobs_table.c.name == name)).one()


def _describe(server) -> dict:
    return server.client("sagemaker").describe_job(JobName="survivor", JobCategory="AgentRFT")


def _progress(job: dict) -> dict:
    return json.loads(job["JobConfigDocument"]).get("ServiceOutput", {})


def test_training_resumes_from_its_checkpoint_after_kill_9(tmp_path):
    server = ServerProcess(tmp_path / "data").start()
    try:
        register_model(server.data_dir, tmp_path / "digits")
        account = server.client("sts").get_caller_identity()["Account"]
        role = f"arn:aws:iam::{account}:role/JobforgeExecutionRole"
        s3 = server.client("s3")
        s3.create_bucket(Bucket=BUCKET)
        rng = random.Random(11)
        s3.put_object(Bucket=BUCKET, Key="train.jsonl", Body=jsonl(
            {"prompt": f"episode {s}", "seed": s} for s in (rng.randrange(10 ** 6) for _ in range(32))))
        group = server.client("sagemaker").create_model_package_group(
            ModelPackageGroupName="survivors")["ModelPackageGroupArn"]
        document = {
            "AgentConfig": {"CustomAgentLambdaConfig": {"LambdaArn": lambda_agent(server, role, "signal-player")}},
            "InputDataConfig": [{"ChannelName": "train", "DataSource": {"S3DataSource": {
                "S3DataType": "S3Prefix", "S3Uri": f"s3://{BUCKET}/train.jsonl"}}}],
            "OutputDataConfig": {"S3OutputPath": f"s3://{BUCKET}/output"},
            "ModelPackageConfig": {"OutputModelPackageGroupArn": group},
            "TrainingConfig": {"BaseModelArn": BASE_ARN, "HyperParameters": {
                "global_batch_size": "32", "group_size": "2", "max_steps": str(STEPS), "max_epochs": str(STEPS),
                "max_concurrent_rollouts": "16", "sampling_max_tokens": "512", "learning_rate": "0.005"}},
        }
        server.client("sagemaker").create_job(JobName="survivor", RoleArn=role, JobCategory="AgentRFT",
                                              JobConfigSchemaVersion="1.0.0", JobConfigDocument=json.dumps(document))
        deadline = time.time() + 300
        while (reached := _progress(_describe(server)).get("ProgressInfo", {}).get("CurrentStep", 0)) < 2:
            assert time.time() < deadline, _describe(server)["SecondaryStatus"]
            time.sleep(0.2)
        server.kill()
        os.killpg(local_pid(_record(server.data_dir, "survivor").handle), signal.SIGKILL)
    finally:
        server.kill()

    restarted = ServerProcess(tmp_path / "data", port=server.port).start()
    try:
        deadline = time.time() + 600
        while (job := _describe(restarted))["JobStatus"] == "InProgress":
            assert time.time() < deadline, job["SecondaryStatus"]
            time.sleep(0.5)
        assert job["JobStatus"] == "Completed", job.get("FailureReason")
        assert _record(restarted.data_dir, "survivor").attempt == 2
        statuses = [t["Status"] for t in job["SecondaryStatusTransitions"]]
        assert "Restarting" in statuses and statuses[-3:] == ["Training", "Uploading", "Completed"], statuses
        output = _progress(job)
        assert output["ProgressInfo"]["CurrentStep"] == STEPS and output["OutputModelPackageArn"]
        logs = restarted.client("logs")
        stream = logs.describe_log_streams(logGroupName="/aws/sagemaker/Job/AgentRFT")["logStreams"][0]
        messages = [e["message"] for e in logs.get_log_events(
            logGroupName="/aws/sagemaker/Job/AgentRFT", logStreamName=stream["logStreamName"])["events"]]
        resumed = [m for m in messages if m.startswith("Resuming at step")]
        assert len(resumed) == 1 and int(resumed[0].split()[3]) >= reached, resumed
        # Each step ran once: the steps before the kill are not run again.
        steps = [int(m.split()[1].split("/")[0]) for m in messages if m.startswith("step ")]
        assert sorted(set(steps)) == list(range(1, STEPS + 1))
        assert len(steps) - len(set(steps)) <= 1  # at most the step the kill interrupted is run again
    finally:
        restarted.stop()
