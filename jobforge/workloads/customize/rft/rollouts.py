"""Single-turn rollouts: the policy answers each prompt, the grader scores the answers.

``GraderRollouts`` takes the place of the agent dispatcher in the engine's session: the same trajectories,
turns captured by the same ``Sample`` path (``TurnSampler``: token ids, log-probabilities, policy version),
the same ``CompleteRollout`` and ``UpdateReward`` transitions, so the trainer cannot tell them apart. The
answers to a step's prompts are sampled concurrently, so the batch sampler generates them together.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from jobforge.execution.context import JobContext
from jobforge.workloads.agent_rft.agents import Rollout
from jobforge.workloads.agent_rft.policy_server import TurnSampler
from jobforge.workloads.agent_rft.sampler import MAX_BATCH
from jobforge.workloads.agent_rft.session import PolicySession
from jobforge.workloads.agent_rft.trajectories import RuntimeApiError, Trajectory

from . import grader as grading

Prompt = tuple[list[dict], dict]  # the messages to answer, the record as given (for the grader)


class GraderRollouts:
    def __init__(self, turns: TurnSampler, grader: grading.Grader, reasoning_effort: str | None, should_stop):
        self.turns = turns
        self.trajectories = turns.trajectories
        self.grader = grader
        self.reasoning_effort = reasoning_effort
        self.should_stop = should_stop
        self.pool = ThreadPoolExecutor(MAX_BATCH, thread_name_prefix="rollout")
        self.grader_metrics: dict[str, float] = {}  # the last run's metrics_list values, averaged by name

    def run(self, prompts: list[Prompt], indices: list[int], group_size: int, inference: dict) -> list[Rollout]:
        """group_size graded answers to each prompt of ``indices``."""
        rollouts = [Rollout(index, group) for group, index in enumerate(indices) for _ in range(group_size)]
        for rollout in rollouts:
            rollout.trajectory = self.trajectories.create(rollout.prompt_index, rollout.group)
        answers = list(self.pool.map(lambda r: self._answer(r, prompts[r.prompt_index][0], inference), rollouts))
        answered = [(r, a) for r, a in zip(rollouts, answers) if a is not None]
        if self.should_stop():
            return rollouts
        samples = [grading.sample(prompts[r.prompt_index][1], prompts[r.prompt_index][0], answer, r.trajectory.id)
                   for r, answer in answered]
        grades = self.grader.grade(samples)
        for (rollout, _), grade in zip(answered, grades):
            self._report(rollout, grade)
        named: dict[str, list[float]] = {}
        for grade in grades:
            for name, value in grade.metrics.items():
                named.setdefault(name, []).append(value)
        self.grader_metrics = {name: sum(values) / len(values) for name, values in named.items()}
        return rollouts

    def _answer(self, rollout: Rollout, messages: list[dict], inference: dict) -> str | None:
        body = {"messages": [dict(m) for m in messages], **inference}
        if self.reasoning_effort:
            body["reasoning_effort"] = self.reasoning_effort
        try:
            return self.turns.sample(rollout.trajectory.id, body, None)["content"]
        except RuntimeApiError as err:  # a prompt the model cannot take
            self._fail(rollout, rollout.trajectory, err.message)
            return None

    def _report(self, rollout: Rollout, grade: grading.Grade) -> None:
        trajectory = rollout.trajectory
        if grade.reward is None:
            self._fail(rollout, trajectory, grade.error)
            return
        self.trajectories.complete(trajectory.id, "ready", None)
        self.trajectories.reward(trajectory.id, [grade.reward], None)

    def _fail(self, rollout: Rollout, trajectory: Trajectory, reason: str) -> None:
        self.trajectories.fail(trajectory, reason)
        rollout.error = reason

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
        self.grader.close()


class GraderSession(PolicySession):
    """The policy, trained on its own answers as the grader scores them."""

    def __init__(self, ctx: JobContext, hp: dict, model_dir: Path, model_name: str, grader_arn: str,
                 reasoning_effort: str | None):
        super().__init__(ctx, hp, model_dir, model_name, training=True)
        self.dispatcher = GraderRollouts(TurnSampler(self.policy, self.trajectories, self.usage),
                                         grading.Grader(grader_arn, ctx.region, hp["agent_retries"]),
                                         reasoning_effort, ctx.should_stop)

    def close(self) -> None:
        self.dispatcher.close()
        super().close()
