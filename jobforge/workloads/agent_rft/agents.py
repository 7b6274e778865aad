"""Rollouts: each trajectory's prompt sent to the user's agent, which samples through the runtime API and reports.

The agent is a Lambda function (``CustomAgentLambdaConfig``, invoked through the Lambda API) or an AgentCore
runtime (``BedrockAgentCoreConfig``, through InvokeAgentRuntime), called with the job role's credentials, as
AWS does. Each concurrent rollout of an AgentCore agent has a runtime session of its own, which the
rollouts after it reuse (as a Lambda function's warm environments are); the job stops its sessions when it
ends. The event (the runtime's payload) serves both agent styles the SageMaker SDK knows, in one object:

- the Lambda forwarder's keys: ``prompt`` (the dataset row's prompt string), ``metadata.jobId`` (the
  job ARN), ``metadata.experimentId`` (the job name), ``metadata.rolloutId`` (the trajectory id),
  ``inferenceParams``;
- the ``RolloutRequest`` keys: ``instance`` (the whole row), ``metadata.job_arn``,
  ``metadata.trajectory_id``, ``metadata.endpoint`` (the runtime endpoint the agent can reach),
  ``metadata.region``, ``inference_params``.

Rollouts run concurrently, up to ``max_concurrent_rollouts``. An invocation that fails (the agent's
error, an error document it returns, or the API refusing) is retried ``agent_retries`` times,
each time on a fresh trajectory; a rollout whose agent returns without reporting within
``rollout_timeout_seconds`` is marked failed.
"""

from __future__ import annotations

import json
import queue
import threading
import time
import uuid
from dataclasses import dataclass

from jobforge.execution.agent_host import session_endpoint

from .trajectories import REWARD_RECEIVED, Trajectories, Trajectory

ERROR_TYPES = ("ValidationError", "Throttling", "InternalServerError", "AccessDenied")
STOP_POLL_SECONDS = 0.5  # how often a waiting dispatcher looks for a stop


@dataclass
class Rollout:
    prompt_index: int
    group: int
    trajectory: Trajectory | None = None
    error: str | None = None  # why the rollout failed, once retries are spent


class AgentError(Exception):
    pass


def _client(service: str, region: str):
    import boto3
    from botocore.config import Config

    # The worker's environment names the server as every service's endpoint, with the job role's keys.
    return boto3.client(service, region_name=region, config=Config(retries={"max_attempts": 1}, read_timeout=900,
                                                                   max_pool_connections=256))


def _answer(payload: bytes) -> object:
    """The agent's answer, parsed (None when it is not JSON); AgentError for an error document."""
    try:
        answer = json.loads(payload or b"null")
    except ValueError:
        return None
    if isinstance(answer, dict) and answer.get("errorType") in ERROR_TYPES:
        raise AgentError(f"{answer['errorType']}: {answer.get('error', '')}"[:500])
    return answer


class LambdaAgent:
    def __init__(self, function_arn: str, region: str):
        self.arn = function_arn
        self.client = _client("lambda", region)

    def endpoint(self, server_url: str) -> str:
        """The runtime endpoint as the agent reaches it."""
        return server_url

    def invoke(self, event) -> object:
        """The function's answer to the event, parsed (None when it is not JSON)."""
        try:
            response = self.client.invoke(FunctionName=self.arn, Payload=json.dumps(event).encode())
        except Exception as err:  # the Lambda API's refusal or an unreachable server
            raise AgentError(f"{type(err).__name__}: {err}") from None
        payload = response["Payload"].read()
        if response.get("FunctionError"):
            raise AgentError(f"{response['FunctionError']} error: {payload.decode(errors='replace')[:500]}")
        return _answer(payload)

    def close(self) -> None:
        pass


class AgentCoreAgent:
    def __init__(self, runtime_arn: str, qualifier: str | None, region: str, concurrency: int):
        self.arn = runtime_arn
        self.qualifier = {"qualifier": qualifier} if qualifier else {}
        self.client = _client("bedrock-agentcore", region)
        self.idle: queue.SimpleQueue[str] = queue.SimpleQueue()  # one session per concurrent rollout
        for _ in range(concurrency):
            self.idle.put(f"agent-rft-{uuid.uuid4()}")
        self.used: set[str] = set()

    def endpoint(self, server_url: str) -> str:
        return session_endpoint(server_url)

    def invoke(self, event) -> object:
        """The agent's answer to the event (its JSON, parsed; None for any other answer, which is read whole)."""
        session = self.idle.get()
        self.used.add(session)
        try:
            response = self.client.invoke_agent_runtime(
                agentRuntimeArn=self.arn, runtimeSessionId=session, payload=json.dumps(event).encode(),
                contentType="application/json", **self.qualifier)
            payload = response["response"].read()
        except Exception as err:  # the agent's error (RuntimeClientError), the API's refusal, no server
            raise AgentError(f"{type(err).__name__}: {err}") from None
        finally:
            self.idle.put(session)
        return _answer(payload) if response.get("contentType", "").startswith("application/json") else None

    def close(self) -> None:
        """Stop the runtime sessions the rollouts used, which would otherwise wait out their idle timeout."""
        for session in self.used:
            try:
                self.client.stop_runtime_session(agentRuntimeArn=self.arn, runtimeSessionId=session, **self.qualifier)
            except Exception:  # a session that already ended
                pass


def agent_for(config: dict, region: str, concurrency: int) -> LambdaAgent | AgentCoreAgent:
    """The agent a job's spec names (``lambda_arn``, or ``agent_runtime_arn`` with its ``qualifier``)."""
    if "lambda_arn" in config:
        return LambdaAgent(config["lambda_arn"], region)
    return AgentCoreAgent(config["agent_runtime_arn"], config.get("qualifier"), region, concurrency)


class Dispatcher:
    def __init__(self, agent: LambdaAgent | AgentCoreAgent, trajectories: Trajectories, job_arn: str, job_name: str, region: str,
                 endpoint: str, concurrency: int, retries: int, timeout: float, should_stop):
        self.agent = agent
        self.trajectories = trajectories
        self.job_arn, self.job_name, self.region, self.endpoint = job_arn, job_name, region, endpoint
        self.slots = threading.BoundedSemaphore(concurrency)
        self.retries = retries
        self.timeout = timeout
        self.should_stop = should_stop

    def run(self, prompts: list[tuple[str, dict]], indices: list[int], group_size: int,
            inference: dict) -> list[Rollout]:
        """group_size rollouts of each prompt; returns once every one is terminal (or given up), or as soon as
        the job is stopping. Each rollout runs in a daemon thread, so an agent still running when the job stops
        holds up neither the job nor the worker's exit."""
        rollouts = [Rollout(index, group) for group, index in enumerate(indices) for _ in range(group_size)]
        finished, crashes = [], []

        def rollout_thread(rollout: Rollout, done: threading.Event) -> None:
            try:
                self._one(rollout, prompts[rollout.prompt_index], inference)
            except BaseException as err:  # a bug, not the agent's failure: the step fails with it
                crashes.append(err)
            finally:
                self.slots.release()
                done.set()

        for rollout in rollouts:
            while not self.slots.acquire(timeout=STOP_POLL_SECONDS):
                if self.should_stop():
                    return rollouts
            finished.append(threading.Event())
            threading.Thread(target=rollout_thread, args=(rollout, finished[-1]), name="rollout", daemon=True).start()
        for done in finished:
            while not done.wait(STOP_POLL_SECONDS):
                if self.should_stop():
                    return rollouts
        if crashes:
            raise crashes[0]
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
        while not trajectory.done.wait(STOP_POLL_SECONDS):
            if self.should_stop() or time.monotonic() > deadline:
                self.trajectories.fail(trajectory, f"it returned without reporting CompleteRollout and "
                                                   f"UpdateReward within {self.timeout:g} s.")
                return False
        return trajectory.state == REWARD_RECEIVED

