"""Agent RL: jobforge's AgentRFT training step against TRL's GRPOTrainer, and the job runtime API's Sample for
32 concurrent agents against calling generate directly, side by side in one run.

1. Wall time per training step. The same tiny random policy (the digit model of ``jobforge.tinylm``, LoRA
   r=16 on every linear layer), the same single-turn task ("follow the signal": the answer to digit o is
   (3o + 1) mod 10, reward 1 or 0), the same group size and batch (32 prompts × 8 answers of one token),
   AdamW lr 3e-3, no KL. jobforge: an AgentRFT job whose agent is a Lambda function created through boto3,
   which calls Sample, CompleteRollout and UpdateReward through the runtime API; a step is the time between
   consecutive steps in the job's log (rollouts + update). TRL: GRPOTrainer (``use_cpu``), the time between
   its step callbacks. Target: jobforge at least 1.5x faster.
2. Sample throughput. 32 agents (threads of this process, each with its boto3 ``sagemakerjobruntime``
   client) call Sample on their own trajectory of a running AgentRFTEvaluation job, over and over; against
   the policy's batched ``generate`` called directly on the same model with the same 32 prompts. A larger
   random model (a BPE vocabulary, 4 layers of 256) and 32 new tokens a call, so that generation is the
   work. Completion tokens per second; target: Sample at least 0.7x of direct.

CPU timings need an otherwise idle machine: with more busy threads than cores every number collapses.

    python bench/agent_rl.py [--steps 10] [--threads 2] [--rounds 6]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from jobforge import tinylm  # noqa: E402
from jobforge.testing_server import ServerProcess  # noqa: E402

BATCH, GROUP, LR, SEED = 32, 8, 3e-3, 0
AGENTS, NEW_TOKENS = 32, 32
BUCKET = "bench-agent-rl"
POLICY, SAMPLER = "bench-digits", "bench-sampler"  # JumpStart ids the models are registered under
STEP_TARGET, SAMPLE_TARGET = 1.5, 0.7

AGENT = """
import functools, json, boto3

@functools.cache  # one client per warm environment
def client(endpoint, region):
    return boto3.client("sagemakerjobruntime", endpoint_url=endpoint, region_name=region)

def handler(event, context):
    meta = event["metadata"]
    runtime = client(meta["endpoint"], meta["region"])
    ids = dict(JobArn=meta["job_arn"], TrajectoryId=meta["trajectory_id"])
    signal = int(event["instance"]["signal"])
    body = {"messages": [{"role": "user", "content": str(signal)}], **event["inferenceParams"], "max_tokens": 1}
    answer = json.loads(runtime.sample(Body=json.dumps(body), **ids)["Body"].read())["choices"][0]["message"]
    runtime.complete_rollout(Status="ready", **ids)
    runtime.update_reward(Rewards=[float(answer["content"] == str((3 * signal + 1) % 10))], **ids)
    return {}
"""

# Keeps its trajectory open for the bench's own agents: it only records the trajectory's id.
RECORDER = """
import boto3

def handler(event, context):
    trajectory = event["metadata"]["trajectory_id"]
    boto3.client("s3").put_object(Bucket="%s", Key=f"trajectories/{trajectory}", Body=b"")
    return {}
""" % BUCKET

SAMPLE_PROMPT = [{"role": "user", "content": "the river runs north past the old city, then east to the sea"}]


def archive(source: str) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zipped:
        zipped.writestr("app.py", source)
    return buffer.getvalue()


def signals(n: int) -> list[int]:
    rng = random.Random(SEED)
    return [rng.randrange(10) for _ in range(n)]


# -- TRL, in a process of its own ---------------------------------------------------------------------------
def trl_steps(model_dir: Path, steps: int) -> list[float]:
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from transformers.utils import logging
    from trl import GRPOConfig, GRPOTrainer

    logging.set_verbosity_error()
    dataset = Dataset.from_list([{"prompt": [{"role": "user", "content": str(s)}], "signal": s}
                                 for s in signals(BATCH * (steps + 1))])

    def follow_the_signal(completions, signal, **_):
        return [float(c[0]["content"].strip() == str((3 * s + 1) % 10)) for c, s in zip(completions, signal)]

    times: list[float] = []

    class StepTimes(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            times.append(time.perf_counter())

    config = GRPOConfig(output_dir=str(model_dir.parent / "trl-out"), per_device_train_batch_size=BATCH * GROUP,
                        num_generations=GROUP, max_completion_length=1, learning_rate=LR, lr_scheduler_type="constant",
                        beta=0.0, temperature=1.0, max_steps=steps, logging_steps=1, save_strategy="no",
                        report_to="none", use_cpu=True, seed=SEED, disable_tqdm=True)
    trainer = GRPOTrainer(
        model=AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32), reward_funcs=follow_the_signal,
        args=config, train_dataset=dataset, processing_class=AutoTokenizer.from_pretrained(model_dir),
        peft_config=LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, target_modules="all-linear",
                               task_type="CAUSAL_LM"), callbacks=[StepTimes()])
    trainer.train()
    return [b - a for a, b in zip(times, times[1:])]


# -- generate called directly, in a process of its own ------------------------------------------------------
def direct_tokens_per_second(model_dir: Path, rounds: int) -> float:
    import torch

    from jobforge.workloads.agent_rft.sampler import SampleRequest, generate
    from jobforge.workloads.agent_rft.session import load_policy

    model, tokenizer = load_policy(model_dir, torch.device("cpu"), None, None)
    prompt = tokenizer.encode(tokenizer.apply_chat_template(SAMPLE_PROMPT, tokenize=False, add_generation_prompt=True),
                              add_special_tokens=False)
    stop = frozenset([tokenizer.eos_token_id])
    batch = lambda: [SampleRequest(prompt, NEW_TOKENS, 1.0, 1.0, stop) for _ in range(AGENTS)]  # noqa: E731
    generate(model, batch(), tokenizer.pad_token_id)  # warm-up
    tokens, began = 0, time.perf_counter()
    for _ in range(rounds):
        tokens += sum(len(ids) for ids, _, _ in generate(model, batch(), tokenizer.pad_token_id))
    return tokens / (time.perf_counter() - began)


def child(which: str, root: Path, threads: int, steps: int, rounds: int) -> None:
    import torch

    torch.set_num_threads(threads)
    if which == "trl":
        print(json.dumps(trl_steps(root / "digits", steps)))
    else:
        print(json.dumps(direct_tokens_per_second(root / "sampler", rounds)))


def run_child(which: str, root: Path, args) -> object:
    out = subprocess.run([sys.executable, __file__, "--child", which, "--root", str(root), "--threads",
                          str(args.threads), "--steps", str(args.steps), "--rounds", str(args.rounds)],
                         env={**os.environ, "OMP_NUM_THREADS": str(args.threads)}, capture_output=True, text=True)
    if out.returncode:
        sys.exit(f"{which} failed:\n{out.stderr[-4000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


# -- jobforge, through the server ----------------------------------------------------------------------------
class Jobforge:
    def __init__(self, root: Path):
        self.server = ServerProcess(root / "data").start()
        self.account = self.server.client("sts").get_caller_identity()["Account"]
        self.role = f"arn:aws:iam::{self.account}:role/JobforgeExecutionRole"
        for name, path in ((POLICY, root / "digits"), (SAMPLER, root / "sampler")):
            subprocess.run([sys.executable, "-m", "jobforge.cli", "--data-dir", str(root / "data"), "models", "add",
                            name, str(path)], check=True, capture_output=True, timeout=120)
        self.s3 = self.server.client("s3")
        self.s3.create_bucket(Bucket=BUCKET)
        self.sm = self.server.client("sagemaker")
        self.sm.create_model_package_group(ModelPackageGroupName="bench")
        self.lam = self.server.client("lambda", read_timeout=300)

    def close(self) -> None:
        self.server.stop()

    def function(self, name: str, source: str) -> str:
        arn = self.lam.create_function(FunctionName=name, Runtime=f"python3.{sys.version_info[1]}", Role=self.role,
                                       Handler="app.handler", Code={"ZipFile": archive(source)}, Timeout=300,
                                       MemorySize=128)["FunctionArn"]
        while self.lam.get_function_configuration(FunctionName=name)["State"] != "Active":
            time.sleep(0.05)
        return arn

    def document(self, agent: str, key: str, model: str) -> dict:
        return {"AgentConfig": {"CustomAgentLambdaConfig": {"LambdaArn": agent}},
                "InputDataConfig": [{"ChannelName": "train" if key == "train.jsonl" else "evaluation",
                                     "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix",
                                                                     "S3Uri": f"s3://{BUCKET}/{key}"}}}],
                "OutputDataConfig": {"S3OutputPath": f"s3://{BUCKET}/output"},
                "ModelPackageConfig": {"OutputModelPackageGroupArn":
                                       f"arn:aws:sagemaker:us-east-1:{self.account}:model-package-group/bench"},
                "base": f"arn:aws:sagemaker:us-east-1:aws:hub-content/SageMakerPublicHub/Model/{model}/1.0.0"}

    def create(self, name: str, category: str, document: dict) -> None:
        self.sm.create_job(JobName=name, RoleArn=self.role, JobCategory=category, JobConfigSchemaVersion="1.0.0",
                           JobConfigDocument=json.dumps(document))

    def wait(self, name: str, category: str, until=("Completed", "Failed", "Stopped")) -> dict:
        while (job := self.sm.describe_job(JobName=name, JobCategory=category))["JobStatus"] not in until:
            time.sleep(0.5)
        return job

    def step_seconds(self, steps: int) -> list[float]:
        rows = "".join(json.dumps({"prompt": str(s), "signal": s}) + "\n" for s in signals(BATCH * (steps + 1)))
        self.s3.put_object(Bucket=BUCKET, Key="train.jsonl", Body=rows.encode())
        document = self.document(self.function("follow-the-signal", AGENT), "train.jsonl", POLICY)
        document["TrainingConfig"] = {"BaseModelArn": document.pop("base"), "HyperParameters": {
            k: str(v) for k, v in dict(global_batch_size=BATCH, group_size=GROUP, max_steps=steps, max_epochs=1,
                                       learning_rate=LR, max_concurrent_rollouts=64,
                                       sampling_max_tokens=512, seed=SEED).items()}}
        self.create("bench-steps", "AgentRFT", document)
        job = self.wait("bench-steps", "AgentRFT")
        if job["JobStatus"] != "Completed":
            sys.exit(f"The AgentRFT job ended {job['JobStatus']}: {job.get('FailureReason')}")
        logs = self.server.client("logs")
        group = "/aws/sagemaker/Job/AgentRFT"
        stream = logs.describe_log_streams(logGroupName=group)["logStreams"][0]["logStreamName"]
        stamps = [e["timestamp"] / 1000 for e in logs.get_log_events(logGroupName=group, logStreamName=stream,
                                                                     startFromHead=True)["events"]
                  if e["message"].startswith("step ")]
        return [b - a for a, b in zip(stamps, stamps[1:])]

    def sample_tokens_per_second(self, rounds: int) -> float:
        self.s3.put_object(Bucket=BUCKET, Key="evaluation.jsonl", Body=b'{"prompt": "hold"}\n')
        document = self.document(self.function("recorder", RECORDER), "evaluation.jsonl", SAMPLER)
        document["EvaluationConfig"] = {"BaseModelArn": document.pop("base"), "HyperParameters": {
            "eval_group_size": str(AGENTS), "max_concurrent_rollouts": str(AGENTS),
            "rollout_timeout_seconds": "3600", "max_tokens": str(NEW_TOKENS)}}
        del document["ModelPackageConfig"]
        document["StoppingCondition"] = {"MaxRuntimeInSeconds": 3600}
        self.create("bench-sample", "AgentRFTEvaluation", document)
        deadline = time.time() + 300
        while len(found := self.s3.list_objects_v2(Bucket=BUCKET, Prefix="trajectories/").get("Contents", [])) \
                < AGENTS:
            if time.time() > deadline:
                sys.exit("The evaluation job's rollouts did not start")
            time.sleep(0.2)
        job_arn = self.sm.describe_job(JobName="bench-sample", JobCategory="AgentRFTEvaluation")["JobArn"]
        trajectories = [o["Key"].split("/", 1)[1] for o in found]
        clients = [self.server.client("sagemakerjobruntime") for _ in trajectories]
        body = json.dumps({"messages": SAMPLE_PROMPT, "max_tokens": NEW_TOKENS, "temperature": 1.0})
        counts = [0] * len(trajectories)
        start = threading.Barrier(len(trajectories) + 1)

        def agent(index: int, warm: bool) -> None:
            start.wait()
            for _ in range(1 if warm else rounds):
                answer = json.loads(clients[index].sample(JobArn=job_arn, TrajectoryId=trajectories[index],
                                                          Body=body)["Body"].read())
                counts[index] += answer["usage"]["completion_tokens"]

        for warm in (True, False):
            counts[:] = [0] * len(trajectories)
            threads = [threading.Thread(target=agent, args=(i, warm)) for i in range(len(trajectories))]
            for thread in threads:
                thread.start()
            start.wait()
            began = time.perf_counter()
            for thread in threads:
                thread.join()
            seconds = time.perf_counter() - began
        self.sm.stop_job(JobName="bench-sample", JobCategory="AgentRFTEvaluation")
        return sum(counts) / seconds


def prepare(root: Path) -> None:
    tinylm.build_digits(root / "digits")
    words = "the river runs north past old city then east to sea and back again under bridge".split()
    rng = random.Random(SEED)
    tinylm.build(root / "sampler", [" ".join(rng.choice(words) for _ in range(12)) for _ in range(400)],
                 hidden=256, layers=4)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10, help="training steps of each trainer")
    parser.add_argument("--threads", type=int, default=2, help="torch threads of the direct runs")
    parser.add_argument("--rounds", type=int, default=6, help="Sample calls of each agent")
    parser.add_argument("--child", choices=("trl", "direct"), help=argparse.SUPPRESS)
    parser.add_argument("--root", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.root, args.threads, args.steps, args.rounds)
        return
    with tempfile.TemporaryDirectory(prefix="bench-agent-rl-") as tmp:
        root = Path(tmp)
        prepare(root)
        trl = run_child("trl", root, args)
        direct = run_child("direct", root, args)
        ours = Jobforge(root)
        try:
            steps = ours.step_seconds(args.steps)
            sampled = ours.sample_tokens_per_second(args.rounds)
        finally:
            ours.close()
    ours_step, trl_step = statistics.median(steps), statistics.median(trl)
    print(f"training step: {BATCH} prompts x {GROUP} answers, one token each, LoRA r=16; median of "
          f"{len(steps)} and {len(trl)} steps")
    print(f"  jobforge AgentRFT (Lambda agent, runtime API)  {ours_step:8.3f} s/step")
    print(f"  TRL GRPOTrainer (in process)                   {trl_step:8.3f} s/step")
    ratio = trl_step / ours_step
    print(f"  speed-up of jobforge over TRL: {ratio:.2f}x (target {STEP_TARGET}x: "
          f"{'met' if ratio >= STEP_TARGET else 'missed'})")
    print(f"Sample throughput: {AGENTS} agents, {NEW_TOKENS} new tokens a call, {args.rounds} calls each")
    print(f"  Sample through the runtime API                 {sampled:8.0f} tokens/s")
    print(f"  generate called directly, same batch           {direct:8.0f} tokens/s")
    ratio = sampled / direct
    print(f"  Sample / direct: {ratio:.2f}x (target {SAMPLE_TARGET}x: {'met' if ratio >= SAMPLE_TARGET else 'missed'})")


if __name__ == "__main__":
    main()
