"""Rollouts: each trajectory's prompt sent to the user's agent, which samples through the runtime API and reports.

The agent is a Lambda function, invoked through the Lambda API with the job role's credentials, as AWS
does. Its event serves both agent styles the SageMaker SDK knows, in one object:

- the Lambda forwarder's keys: ``prompt`` (the dataset row's prompt string), ``metadata.jobId`` (the
  job ARN), ``metadata.experimentId`` (the job name), ``metadata.rolloutId`` (the trajectory id),
  ``inferenceParams``;
- the ``RolloutRequest`` keys: ``instance`` (the whole row), ``metadata.job_arn``,
  ``metadata.trajectory_id``, ``metadata.endpoint`` (the runtime endpoint the agent can reach),
  ``metadata.region``, ``inference_params``.

Rollouts run concurrently, up to ``max_concurrent_rollouts``. An invocation that fails (the function's
error, an error document it returns, or the Lambda API refusing) is retried ``agent_retries`` times,
each time on a fresh trajectory; a rollout whose agent returns without reporting within
``rollout_timeout_seconds`` is marked failed.
"""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from .trajectories import REWARD_RECEIVED, Trajectories, Trajectory

ERROR_TYPES = ("ValidationError", "Throttling", "InternalServerError", "AccessDenied")


@dataclass
class Rollout:
    prompt_index: int
    group: int
    trajectory: Trajectory | None = None
    error: str | None = None  # why the rollout failed, once retries are spent


class AgentError(Exception):
    pass


class LambdaAgent:
    def __init__(self, function_arn: str, region: str):
        import boto3
        from botocore.config import Config

        self.arn = function_arn
        # The worker's environment names the server as every service's endpoint, with the job role's keys.
        self.client = boto3.client("lambda", region_name=region,
                                   config=Config(retries={"max_attempts": 1}, read_timeout=900,
                                                 max_pool_connections=256))

    def invoke(self, event) -> object:
        """The function's answer to the event, parsed (None when it is not JSON)."""
        try:
            response = self.client.invoke(FunctionName=self.arn, Payload=json.dumps(event).encode())
        except Exception as err:  # the Lambda API's refusal or an unreachable server
            raise AgentError(f"{type(err).__name__}: {err}") from None
        payload = response["Payload"].read()
        if response.get("FunctionError"):
            raise AgentError(f"{response['FunctionError']} error: {payload.decode(errors='replace')[:500]}")
        try:
            answer = json.loads(payload or b"null")
        except ValueError:
            answer = None
        if isinstance(answer, dict) and answer.get("errorType") in ERROR_TYPES:
            raise AgentError(f"{answer['errorType']}: {answer.get('error', '')}"[:500])
        return answer


class Dispatcher:
    def __init__(self, agent: LambdaAgent, trajectories: Trajectories, job_arn: str, job_name: str, region: str,
                 endpoint: str, concurrency: int, retries: int, timeout: float, should_stop):
        self.agent = agent
        self.trajectories = trajectories
        self.job_arn, self.job_name, self.region, self.endpoint = job_arn, job_name, region, endpoint
        self.pool = ThreadPoolExecutor(concurrency, thread_name_prefix="rollout")
        self.retries = retries
        self.timeout = timeout
        self.should_stop = should_stop

    def run(self, prompts: list[tuple[str, dict]], indices: list[int], group_size: int,
            inference: dict) -> list[Rollout]:
        """group_size rollouts of each prompt; returns once every one is terminal (or given up)."""
        rollouts = [Rollout(index, group) for group, index in enumerate(indices) for _ in range(group_size)]
        futures = [self.pool.submit(self._one, rollout, prompts[rollout.prompt_index], inference)
                   for rollout in rollouts]
        for future in futures:
            future.result()
        return rollouts

    def _event(self, prompt: str, row: dict, trajectory: Trajectory, inference: dict) -> dict:
        return {
            "prompt": prompt, "instance": row,
            "metadata": {"jobId": self.job_arn, "experimentId": self.job_name, "rolloutId": trajectory.id,
                         "job_arn": self.job_arn, "trajectory_id": trajectory.id, "endpoint": self.endpoint,
                         "region": self.region},
            "inferenceParams": inference, "inference_params": inference,
        }

    def _one(self, rollout: Rollout, prompt: tuple[str, dict], inference: dict) -> None:
        for attempt in range(self.retries + 1):
            if self.should_stop():
                rollout.error = "The job is stopping."
                return
            trajectory = self.trajectories.create(rollout.prompt_index, rollout.group)
            rollout.trajectory = trajectory
            try:
                self.agent.invoke(self._event(prompt[0], prompt[1], trajectory, inference))
            except AgentError as err:
                self.trajectories.fail(trajectory, str(err))
                rollout.error = f"The agent {self.agent.arn} failed: {err}"
                continue
            # The agent ran: what it reported stands (a retry would only repeat it).
            rollout.error = None if self._await(trajectory) else f"The agent {self.agent.arn}: {trajectory.failure}"
            return

    def _await(self, trajectory: Trajectory) -> bool:
        """True once the trajectory has its reward; False when it failed or its report never came."""
        deadline = time.monotonic() + self.timeout
        while not trajectory.done.wait(0.5):
            if self.should_stop() or time.monotonic() > deadline:
                self.trajectories.fail(trajectory, f"it returned without reporting CompleteRollout and "
                                                   f"UpdateReward within {self.timeout:g} s.")
                return False
        return trajectory.state == REWARD_RECEIVED

