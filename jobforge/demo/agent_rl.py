"""The demo's agent-RL section: a small multi-turn agent, a Lambda function created with boto3, trains a tiny
policy by AgentRFT (its reward rises step by step), then AgentRFTEvaluation jobs report pass@k for the base and
the trained model side by side."""

from __future__ import annotations

import io
import json
import random
import subprocess
import sys
import time
import zipfile

from jobforge import tinylm

MODEL = "tiny-digits"  # the JumpStart id it is registered under
BASE_ARN = f"arn:aws:sagemaker:us-east-1:aws:hub-content/SageMakerPublicHub/Model/{MODEL}/1.0.0"
BUCKET = "demo-agent-rl"
STEPS = 24
PASS_K = [1, 2, 4, 8]

# "Follow the signal": each turn the environment shows a digit o, the right answer is (3·o + 1) mod 10; one reward
# per turn. The agent owns the loop, and calls the policy through the job runtime API.
AGENT = """
import functools, json, random, boto3

@functools.cache  # one client per warm environment
def client(endpoint, region):
    return boto3.client("sagemakerjobruntime", endpoint_url=endpoint, region_name=region)

def handler(event, context):
    meta = event["metadata"]
    runtime = client(meta["endpoint"], meta["region"])
    ids = dict(JobArn=meta["job_arn"], TrajectoryId=meta["trajectory_id"])
    rng = random.Random(int(event["instance"]["seed"]))
    messages, rewards = [], []
    for _ in range(2):
        signal = rng.randrange(10)
        messages.append({"role": "user", "content": str(signal)})
        body = {"messages": messages, **event["inferenceParams"], "max_tokens": 1}
        answer = json.loads(runtime.sample(Body=json.dumps(body), **ids)["Body"].read())
        text = answer["choices"][0]["message"]["content"]
        rewards.append(1.0 if text == str((3 * signal + 1) % 10) else 0.0)
        messages.append({"role": "assistant", "content": text})
    runtime.complete_rollout(Status="ready", **ids)
    runtime.update_reward(Rewards=rewards, **ids)
    return {}
"""


def say(text: str) -> None:
    print(f"\n== {text}", flush=True)


def _zip(source: str) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("app.py", source)
    return buffer.getvalue()


def _jsonl(seeds) -> bytes:
    return "".join(json.dumps({"prompt": f"episode {s}", "seed": s}) + "\n" for s in seeds).encode()


def _channel(name: str, key: str) -> dict:
    return {"ChannelName": name, "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix",
                                                                 "S3Uri": f"s3://{BUCKET}/{key}"}}}


def _wait(sm, name: str, category: str, on_poll=lambda: None) -> dict:
    while True:
        job = sm.describe_job(JobName=name, JobCategory=category)
        on_poll()
        if job["JobStatus"] in ("Completed", "Failed", "Stopped"):
            if job["JobStatus"] != "Completed":
                raise SystemExit(f"The demo job {name} ended {job['JobStatus']}: {job.get('FailureReason')}")
            return job
        time.sleep(1)


def _evaluate(server, role: str, agent: str, name: str, package: str | None) -> dict:
    sm, s3 = server.client("sagemaker"), server.client("s3")
    document = {
        "AgentConfig": {"CustomAgentLambdaConfig": {"LambdaArn": agent}},
        "InputDataConfig": [_channel("evaluation", "evaluation.jsonl")],
        "OutputDataConfig": {"S3OutputPath": f"s3://{BUCKET}/evaluations"},
        "EvaluationConfig": {"BaseModelArn": BASE_ARN, "AcceptEula": True, "HyperParameters": {
            "eval_group_size": "8", "pass_k_values": json.dumps(PASS_K), "max_concurrent_rollouts": "32"}},
        "StoppingCondition": {"MaxRuntimeInSeconds": 1800},
    }
    if package:
        document["ModelPackageConfig"] = {"InputModelPackageArn": package}
    sm.create_job(JobName=name, RoleArn=role, JobCategory="AgentRFTEvaluation", JobConfigSchemaVersion="1.0.0",
                  JobConfigDocument=json.dumps(document))
    job = _wait(sm, name, "AgentRFTEvaluation")
    uri = json.loads(job["JobConfigDocument"])["ServiceOutput"]["ResultsS3Uri"]
    return json.loads(s3.get_object(Bucket=BUCKET, Key=uri.split("/", 3)[3])["Body"].read())


def agent_rl(server) -> None:
    say(f"Agent RL: register a tiny policy under a JumpStart model id ({MODEL})")
    model_dir = tinylm.build_digits(server.data_dir.parent / "tiny-digits")
    print(f"   a 2-layer Llama with random weights over the ten digits, in {model_dir}")
    subprocess.run([sys.executable, "-m", "jobforge.cli", "--data-dir", str(server.data_dir), "models", "add", MODEL,
                    str(model_dir)], check=True, capture_output=True)
    account = server.client("sts").get_caller_identity()["Account"]
    role = f"arn:aws:iam::{account}:role/JobforgeExecutionRole"
    s3, sm, lam = server.client("s3"), server.client("sagemaker"), server.client("lambda", read_timeout=120)

    say("Agent RL: the agent, a Lambda function created with boto3, plays two turns of \"follow the signal\"")
    agent = lam.create_function(FunctionName="follow-the-signal", Runtime=f"python3.{sys.version_info[1]}",
                                Role=role, Handler="app.handler", Code={"ZipFile": _zip(AGENT)}, Timeout=120,
                                MemorySize=256)["FunctionArn"]
    while lam.get_function_configuration(FunctionName="follow-the-signal")["State"] != "Active":
        time.sleep(0.1)
    print(f"   {agent}\n   each turn it shows the policy a digit o through Sample and rewards the answer "
          "(3·o + 1) mod 10")
    s3.create_bucket(Bucket=BUCKET)
    rng = random.Random(7)
    s3.put_object(Bucket=BUCKET, Key="train.jsonl", Body=_jsonl(rng.randrange(10 ** 6) for _ in range(320)))
    s3.put_object(Bucket=BUCKET, Key="evaluation.jsonl", Body=_jsonl(range(10 ** 6, 10 ** 6 + 16)))
    group = sm.create_model_package_group(ModelPackageGroupName="tiny-digits-agent")["ModelPackageGroupArn"]

    say(f"Agent RL: AgentRFT, {STEPS} steps of 32 prompts x 8 rollouts; the reward of each step, from the job's log")
    document = {
        "AgentConfig": {"CustomAgentLambdaConfig": {"LambdaArn": agent}},
        "InputDataConfig": [_channel("train", "train.jsonl")],
        "OutputDataConfig": {"S3OutputPath": f"s3://{BUCKET}/output"},
        "ModelPackageConfig": {"OutputModelPackageGroupArn": group},
        "TrainingConfig": {"BaseModelArn": BASE_ARN, "HyperParameters": {k: str(v) for k, v in dict(
            global_batch_size=32, group_size=8, max_steps=STEPS, max_epochs=3, learning_rate=0.005,
            max_concurrent_rollouts=32, sampling_max_tokens=512).items()}},
    }
    sm.create_job(JobName="follow-the-signal", RoleArn=role, JobCategory="AgentRFT", JobConfigSchemaVersion="1.0.0",
                  JobConfigDocument=json.dumps(document))
    logs, shown = server.client("logs"), set()

    def print_steps() -> None:
        for event in logs.filter_log_events(logGroupName="/aws/sagemaker/Job/AgentRFT")["events"]:
            if event["eventId"] not in shown and event["message"].startswith("step "):
                shown.add(event["eventId"])
                step, rest = event["message"].split(": ", 1)
                reward = float(rest.split()[1].rstrip(","))
                print(f"   {step:11} reward {reward:.3f}  {'#' * round(reward * 40)}", flush=True)

    job = _wait(sm, "follow-the-signal", "AgentRFT", print_steps)
    print_steps()
    package = json.loads(job["JobConfigDocument"])["ServiceOutput"]["OutputModelPackageArn"]
    print(f"   the trained model is registered as {package}")

    say("Agent RL: AgentRFTEvaluation of the base and the trained model, 16 held-out episodes x 8 rollouts")
    base = _evaluate(server, role, agent, "base-model-eval", None)
    trained = _evaluate(server, role, agent, "fine-tuned-model-eval", package)
    print(f"   {'':12}{'base':>8}{'trained':>9}")
    print(f"   {'mean reward':12}{base['MeanReward']:8.3f}{trained['MeanReward']:9.3f}")
    for k in PASS_K:
        print(f"   {f'pass@{k}':12}{base['PassAtK'][str(k)]:8.3f}{trained['PassAtK'][str(k)]:9.3f}")
    print("   (a rollout passes when its reward reaches success_threshold 1: both turns right; unbiased estimator)")
