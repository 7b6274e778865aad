"""The AgentRFT training loop.

Each step takes ``global_batch_size`` prompts (an epoch's seeded shuffle) and has the agent roll out
``group_size`` trajectories of each. Once all of them are terminal, the trajectories that received a
reward are scored by ``advantage_method``, turned into rows of captured ids (``rows``), and the policy
takes one optimizer step on ``loss_fn``. Turns sampled by a policy more than ``max_staleness`` versions
old are left out. The held-out ``validation`` channel, when given, is rolled out before the first step,
every ``validation_interval`` steps where the job has one, and after the last (``validation/reward/mean``,
``validation/pass@k``). The rollouts come from the session's ``dispatcher``: the user's agent for AgentRFT
(``agents``), the policy and a grader for Bedrock's reinforcement fine-tuning (``customize.rft``).

The adapter, the optimizer and the position are checkpointed after every step; a resumed attempt
continues from there. At the end the adapter and the merged model are written under the job's output
path.
"""

from __future__ import annotations

import math
import os
import random
import tempfile
import time
from pathlib import Path

import torch

from jobforge.execution.context import JobContext, JobStopped, WorkloadError

from . import advantages, packages, rows
from .agents import Rollout
from .evaluation import score
from .mlflow_run import MlflowRun
from .session import Session
from .trainer import Trainer
from .trajectories import REWARD_RECEIVED

CHECKPOINT = "policy.pt"


def steps_per_epoch(prompts: int, batch: int) -> int:
    return max(1, prompts // batch)


def batch_indices(prompts: int, batch: int, step: int, seed: int) -> list[int]:
    per_epoch = steps_per_epoch(prompts, batch)
    order = list(range(prompts))
    random.Random(seed * 1_000_003 + step // per_epoch).shuffle(order)
    start = (step % per_epoch) * batch
    return order[start:start + batch]


class Training:
    def __init__(self, ctx: JobContext, spec: dict, session: Session, channels: dict, mlflow: MlflowRun | None = None):
        self.ctx, self.spec, self.session = ctx, spec, session
        self.mlflow = mlflow  # the run the metrics also go to, when the document gives MlflowConfig
        self.hp = hp = spec["hyperparameters"]
        self.train = channels["train"]
        self.validation = channels.get("validation")
        if len(self.train) < hp["global_batch_size"]:
            raise WorkloadError(f"The train channel has {len(self.train)} prompts; global_batch_size is "
                                f"{hp['global_batch_size']}: give at least that many (ten times as many is "
                                "recommended).")
        self.per_epoch = steps_per_epoch(len(self.train), hp["global_batch_size"])
        self.max_steps = min(hp["max_steps"], hp["max_epochs"] * self.per_epoch)
        params = [p for p in session.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(params, lr=hp["learning_rate"])
        self.trainer = Trainer(session.model, self.optimizer, hp["loss_fn"], hp["clip_low_threshold"],
                               hp["clip_high_threshold"], session.tokenizer.pad_token_id, session.lock)
        self.step = 0
        self.trained_tokens = 0
        self.output_package: str | None = None  # the registered model's package, once exported
        self.validate_every = hp.get("validation_interval")  # steps; None: before the first and after the last

    # -- checkpoints ---------------------------------------------------------------------------
    def restore(self) -> bool:
        path = Path(self.ctx.checkpoint_dir) / CHECKPOINT
        if not path.is_file():
            return False
        from peft import set_peft_model_state_dict

        state = torch.load(path, map_location=self.session.device, weights_only=False)
        set_peft_model_state_dict(self.session.model, state["adapter"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.step, self.trained_tokens = state["step"], state["trained_tokens"]
        self.session.version = state["step"]
        self.session.usage.add(*state["usage"])
        return True

    def save(self) -> None:
        from peft import get_peft_model_state_dict

        state = {"adapter": get_peft_model_state_dict(self.session.model), "optimizer": self.optimizer.state_dict(),
                 "step": self.step, "trained_tokens": self.trained_tokens,
                 "usage": (self.session.usage.prefill, self.session.usage.sampled)}
        folder = Path(self.ctx.checkpoint_dir)
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, suffix=".tmp", delete=False) as handle:
            torch.save(state, handle)
        os.replace(handle.name, folder / CHECKPOINT)  # a checkpoint is replaced whole, never seen half-written

    # -- the loop ------------------------------------------------------------------------------
    def inference_params(self, max_tokens: int) -> dict:
        return {"temperature": self.hp["temperature"], "top_p": self.hp["sampling_top_p"], "max_tokens": max_tokens}

    def run(self) -> None:
        ctx, hp = self.ctx, self.hp
        if self.restore():
            ctx.event(f"Resuming at step {self.step} of {self.max_steps} (attempt {ctx.attempt})")
        elif self.validation:
            self.validate()
        ctx.status("Training", f"{self.max_steps} steps of {hp['global_batch_size']} prompts × "
                               f"{hp['group_size']} rollouts")
        self.report()
        while self.step < self.max_steps:
            if ctx.should_stop():
                raise JobStopped()
            self.train_step()
            self.step += 1
            self.session.version = self.step
            self.save()
            if self.step % self.hp["checkpoint_interval"] == 0 and self.step < self.max_steps:
                self.register_checkpoint()
            self.report()
            if self.validation and self.validate_every and self.step % self.validate_every == 0 \
                    and self.step < self.max_steps:
                self.validate()
        if self.validation:
            self.validate()

    def train_step(self) -> dict[str, float]:
        """One step: rollouts, advantages, an optimizer step; the step's metrics."""
        hp, session = self.hp, self.session
        session.policy.set_defaults(max_tokens=hp["sampling_max_tokens"])
        indices = batch_indices(len(self.train), hp["global_batch_size"], self.step, hp["seed"])
        began = time.monotonic()
        rollouts = session.dispatcher.run(self.train, indices, hp["group_size"],
                                          self.inference_params(hp["sampling_max_tokens"]))
        rolled = time.monotonic()
        if self.ctx.should_stop():
            raise JobStopped()
        usable = self._usable(rollouts)
        if not usable:
            errors = [r.error for r in rollouts if r.error]
            raise WorkloadError(f"Every rollout of step {self.step + 1} failed. "
                                f"Last error: {errors[-1] if errors else 'none reported'}"[:1000])
        groups: dict[int, list[Rollout]] = {}
        for rollout in usable:
            groups.setdefault(rollout.group, []).append(rollout)
        ordered = list(groups.values())
        scored = [[advantages.Scored(r.trajectory.rewards, sum(len(t.completion_ids) for t in r.trajectory.turns))
                   for r in group] for group in ordered]
        counts = [[len(r.trajectory.turns) for r in group] for group in ordered]
        values = advantages.compute(hp["advantage_method"], scored, counts)
        batch = [row for group, group_values in zip(ordered, values) for rollout, turn_values in
                 zip(group, group_values) for row in rows.build(rollout.trajectory.turns, turn_values)]
        stats = self.trainer.step(batch)
        updated = time.monotonic()
        self.trained_tokens += stats.total_tokens
        step = self.step + 1
        trajectories = [r.trajectory for r in usable]
        rewards = [t.reward for t in trajectories]
        metrics = {"rollout/reward/mean": sum(rewards) / len(rewards), "rollout/reward/max": max(rewards),
                   "rollout/reward/min": min(rewards),
                   "rollout/turns/mean": sum(len(t.turns) for t in trajectories) / len(trajectories),
                   "rollout/failed": len(rollouts) - len(usable), "training/total_tokens": stats.total_tokens,
                   "training/num_trajectories": len(trajectories), "loss": stats.loss, "kl": stats.kl}
        for name, value in metrics.items():
            self.ctx.metric(name, value, step)
        if self.mlflow:
            self.mlflow.log(metrics, step)
        self.ctx.event(f"step {step}/{self.max_steps}: reward {metrics['rollout/reward/mean']:.3f}, "
                       f"{len(trajectories)} trajectories ({len(rollouts) - len(usable)} failed), loss "
                       f"{stats.loss:.4f}, kl {stats.kl:.5f}; rollouts {rolled - began:.3f} s, update "
                       f"{updated - rolled:.3f} s")
        session.trajectories.forget(r.trajectory for r in rollouts if r.trajectory)
        return metrics

    def _usable(self, rollouts: list[Rollout]) -> list[Rollout]:
        """Rollouts with a reward and no turn sampled by a policy older than the staleness bound allows."""
        oldest = self.session.version - self.hp["max_staleness"]
        return [r for r in rollouts if r.trajectory and r.trajectory.state == REWARD_RECEIVED and r.trajectory.turns
                and min(t.policy_version for t in r.trajectory.turns) >= oldest]

    def validate(self) -> dict:
        """Rollouts of every validation prompt with the current policy; their score (``evaluation.score``)."""
        hp = self.hp
        self.session.policy.set_defaults(max_tokens=hp["val_sampling_max_tokens"])
        rollouts = self.session.dispatcher.run(self.validation, list(range(len(self.validation))), hp["group_size"],
                                               self.inference_params(hp["val_sampling_max_tokens"]))
        if self.ctx.should_stop():
            raise JobStopped()
        summary = score(rollouts, len(self.validation), hp["group_size"], hp["pass_k_values"],
                        hp["success_threshold"])
        metrics = {"validation/reward/mean": summary["MeanReward"],
                   **{f"validation/pass@{k}": value for k, value in summary["PassAtK"].items()}}
        for name, value in metrics.items():
            self.ctx.metric(name, value, self.step)
        if self.mlflow:
            self.mlflow.log(metrics, self.step)
        self.ctx.event(f"validation after step {self.step}: mean reward {summary['MeanReward']:.3f}, pass@k "
                       f"{summary['PassAtK']}")
        self.session.trajectories.forget(r.trajectory for r in rollouts if r.trajectory)
        return summary

    def report(self) -> None:
        usage = self.session.usage
        package = {"OutputModelPackageArn": self.output_package} if self.output_package else {}
        if self.mlflow:
            package["MlflowDetails"] = self.mlflow.details
        self.ctx.result({"ServiceOutput": {**package,
            "ProgressInfo": {"MaxEpoch": math.ceil(self.max_steps / self.per_epoch), "StepsPerEpoch": self.per_epoch,
                             "CurrentEpoch": min(self.step // self.per_epoch + 1,
                                                 math.ceil(self.max_steps / self.per_epoch)),
                             "CurrentStep": self.step, "MaxSteps": self.max_steps,
                             "BatchSize": self.hp["global_batch_size"]},
            "BillableTokenUsage": {"TrainTokenCount": self.trained_tokens, "PrefillTokenCount": usage.prefill,
                                   "SampleTokenCount": usage.sampled},
        }})

    def register_checkpoint(self) -> None:
        """The adapter at this step, uploaded and registered in the intermediate checkpoint group (if given)."""
        group = self.spec.get("model_packages", {}).get("IntermediateCheckpointModelPackageGroupArn")
        if not group:
            return
        ctx, session = self.ctx, self.session
        uri = self.spec["output_path"].rstrip("/") + f"/{ctx.job_name}/checkpoints/step-{self.step}/"
        folder = Path(ctx.work_dir) / "checkpoints" / f"step-{self.step}"
        session.model.save_pretrained(folder)
        session.tokenizer.save_pretrained(folder)
        ctx.upload(folder, uri)
        arn = packages.register(ctx, self.spec, group, uri, self.step, checkpoint=True)
        ctx.event(f"checkpoint at step {self.step} registered as {arn}")

    def export(self) -> dict:
        """The adapter and the merged model, written under the output path and the model registered in the output
        model package group; their S3 URIs and the package's ARN."""
        ctx, session = self.ctx, self.session
        ctx.status("Uploading", "the LoRA adapter and the merged model")
        base = self.spec["output_path"].rstrip("/") + f"/{ctx.job_name}/output/"
        folder = Path(ctx.work_dir) / "output"
        session.model.save_pretrained(folder / "adapter")
        session.tokenizer.save_pretrained(folder / "adapter")
        merged = session.model.merge_and_unload()
        merged.save_pretrained(folder / "model")
        session.tokenizer.save_pretrained(folder / "model")
        ctx.upload(folder / "adapter", base + "adapter/")
        ctx.upload(folder / "model", base + "model/")
        outputs = {"AdapterS3Uri": base + "adapter/", "ModelS3Uri": base + "model/"}
        group = self.spec.get("model_packages", {}).get("OutputModelPackageGroupArn")
        if group:
            self.output_package = packages.register(ctx, self.spec, group, outputs["ModelS3Uri"], self.step,
                                                    checkpoint=False)
            outputs["OutputModelPackageArn"] = self.output_package
        return outputs
