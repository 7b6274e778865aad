"""AgentRFTEvaluation: ``eval_group_size`` rollouts of each prompt of the ``evaluation`` channel, no optimizer.

A rollout succeeds when its reward is at least ``success_threshold``; a failed rollout counts as
unsuccessful with no reward. Reported: mean reward (over the rollouts that got one), pass@k (unbiased
estimator) for each ``pass_k_values`` entry not above ``eval_group_size``, mean turns, failure rate;
``RolloutInfo{Total, Completed}`` live in DescribeJob, and a results JSON under the output path.
Metric names: ``eval/reward/mean``, ``eval/pass@<k>``, ``eval/turns/mean``, ``eval/failure_rate``, logged to
the job's MLflow run too when the document gives ``MlflowConfig``.
"""

from __future__ import annotations

import json
from pathlib import Path

from jobforge.execution.context import JobContext, JobStopped

from . import passk
from .agents import Rollout
from .mlflow_run import MlflowRun
from .session import Session
from .trajectories import REWARD_RECEIVED


def score(rollouts: list[Rollout], prompts: int, samples: int, ks: list[int], threshold: float) -> dict:
    rewarded = [r.trajectory for r in rollouts if r.trajectory and r.trajectory.state == REWARD_RECEIVED]
    successes = [0] * prompts
    for rollout in rollouts:
        trajectory = rollout.trajectory
        if trajectory and trajectory.state == REWARD_RECEIVED and trajectory.reward >= threshold:
            successes[rollout.prompt_index] += 1
    pass_at = passk.mean_pass_at_k([(samples, c) for c in successes], ks)
    return {
        "Prompts": prompts, "SamplesPerPrompt": samples, "Rollouts": len(rollouts),
        "MeanReward": sum(t.reward for t in rewarded) / len(rewarded) if rewarded else 0.0,
        "MeanTurns": sum(len(t.turns) for t in rewarded) / len(rewarded) if rewarded else 0.0,
        "FailureRate": 1 - len(rewarded) / len(rollouts) if rollouts else 0.0,
        "SuccessThreshold": threshold, "SuccessesPerPrompt": successes,
        "PassAtK": {str(k): v for k, v in pass_at.items()},
        "SkippedK": sorted(k for k in set(ks) if k > samples),
    }


def evaluate(ctx: JobContext, spec: dict, session: Session, channels: dict, mlflow: MlflowRun | None = None) -> None:
    hp = spec["hyperparameters"]
    details = {"MlflowDetails": mlflow.details} if mlflow else {}
    prompts = channels["evaluation"]
    samples = hp["eval_group_size"]
    total = len(prompts) * samples
    ctx.status("Evaluating", f"{samples} rollouts of each of {len(prompts)} prompts")
    done = 0
    rollouts: list[Rollout] = []
    # In slices, so that RolloutInfo moves while the job runs.
    per_slice = max(1, hp["max_concurrent_rollouts"] // samples)
    for start in range(0, len(prompts), per_slice):
        if ctx.should_stop():
            raise JobStopped()
        ctx.result({"ServiceOutput": {"RolloutInfo": {"Total": total, "Completed": done}, **details}})
        indices = list(range(start, min(start + per_slice, len(prompts))))
        inference = {"temperature": hp["sampling_temperature"], "top_p": hp["top_p"], "max_tokens": hp["max_tokens"]}
        batch = session.dispatcher.run(prompts, indices, samples, inference)
        rollouts += batch
        done += len(batch)
    if ctx.should_stop():
        raise JobStopped()
    summary = score(rollouts, len(prompts), samples, hp["pass_k_values"], hp["success_threshold"])
    metrics = {"eval/reward/mean": summary["MeanReward"], "eval/turns/mean": summary["MeanTurns"],
               "eval/failure_rate": summary["FailureRate"],
               **{f"eval/pass@{k}": value for k, value in summary["PassAtK"].items()}}
    for name, value in metrics.items():
        ctx.metric(name, value, 0)
    if mlflow:
        mlflow.log(metrics, 0)
    if summary["SkippedK"]:
        ctx.event(f"pass@k not reported for k = {summary['SkippedK']}: above eval_group_size ({samples})")
    ctx.event(f"evaluation: mean reward {summary['MeanReward']:.3f}, pass@k {summary['PassAtK']}, failure rate "
              f"{summary['FailureRate']:.3f}")
    ctx.status("Uploading", "the evaluation results")
    uri = spec["output_path"].rstrip("/") + f"/{ctx.job_name}/results.json"
    path = Path(ctx.work_dir) / "results.json"
    evaluated = {"BaseModelArn": spec["base_model"]["arn"]}
    if "input_package" in spec:
        evaluated["ModelPackageArn"] = spec["input_package"]["arn"]
    path.write_text(json.dumps(dict(summary, **evaluated), indent=2))
    ctx.upload(path, uri)
    ctx.result({"ServiceOutput": {"RolloutInfo": {"Total": total, "Completed": done}, "ResultsS3Uri": uri,
                                  **details}})
