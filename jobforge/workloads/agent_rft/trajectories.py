"""Trajectories and their state machine, as the job runtime API sees them.

    PENDING ──CompleteRollout(ready)──▶ READY ──UpdateReward──▶ REWARD_RECEIVED (trained on)
       └────CompleteRollout(failed)──▶ FAILED

The dispatcher creates a trajectory (PENDING) before it sends its prompt to the agent; each Sample
appends a turn. A repeated request with the same ClientToken answers the original success; any other
transition the machine does not allow is a ConflictException whose message says "not in valid status"
or "Cannot transition trajectory", which the SDK's feedback client treats as already done.
"""

from __future__ import annotations

import math
import threading
import uuid
from dataclasses import dataclass, field

from .rows import Turn

PENDING, READY, FAILED, REWARD_RECEIVED = "PENDING", "READY", "FAILED", "REWARD_RECEIVED"
TERMINAL = (FAILED, REWARD_RECEIVED)


class RuntimeApiError(Exception):
    """An error of the job runtime API: its modelled code, HTTP status and message."""

    def __init__(self, code: str, status: int, message: str):
        super().__init__(message)
        self.code, self.status, self.message = code, status, message


def not_found(message: str) -> RuntimeApiError:
    return RuntimeApiError("ResourceNotFoundException", 404, message)


def conflict(message: str) -> RuntimeApiError:
    return RuntimeApiError("ConflictException", 409, message)


def invalid(message: str) -> RuntimeApiError:
    return RuntimeApiError("ValidationException", 400, message)


@dataclass
class Trajectory:
    id: str
    prompt_index: int  # the dataset row
    group: int  # the rollout group it belongs to in its step
    state: str = PENDING
    turns: list[Turn] = field(default_factory=list)
    rewards: list[float] | None = None
    failure: str | None = None
    context: tuple[str, list[int]] | None = None  # the text and ids so far, through the last completion
    tokens: dict[str, str] = field(default_factory=dict)  # ClientToken → the operation it was used for
    done: threading.Event = field(default_factory=threading.Event)

    @property
    def reward(self) -> float:
        return sum(self.rewards) / len(self.rewards) if self.rewards else 0.0


class Trajectories:
    def __init__(self):
        self.lock = threading.Lock()
        self.by_id: dict[str, Trajectory] = {}
        self._open = 0  # how many are PENDING, counted as they change (the sampler asks at every arrival)

    def create(self, prompt_index: int, group: int) -> Trajectory:
        trajectory = Trajectory(str(uuid.uuid4()), prompt_index, group)
        with self.lock:
            self.by_id[trajectory.id] = trajectory
            self._open += 1
        return trajectory

    def forget(self, trajectories) -> None:
        with self.lock:
            for trajectory in trajectories:
                if self.by_id.pop(trajectory.id, None) is not None and trajectory.state == PENDING:
                    self._open -= 1

    def get(self, trajectory_id: str) -> Trajectory:
        with self.lock:
            found = self.by_id.get(trajectory_id)
        if found is None:
            raise not_found(f"Trajectory {trajectory_id} not found for this job.")
        return found

    def open(self) -> int:
        """How many trajectories are PENDING: the agents that may still call Sample."""
        return self._open

    def pending(self, trajectory_id: str) -> Trajectory:
        """The trajectory a Sample may append to."""
        trajectory = self.get(trajectory_id)
        if trajectory.state != PENDING:
            raise conflict(f"Trajectory {trajectory_id} is not in valid status for Sample: {trajectory.state}.")
        return trajectory

    def complete(self, trajectory_id: str, status: str, token: str | None) -> None:
        target = {"ready": READY, "failed": FAILED}.get(status)
        if target is None:
            raise invalid(f"Status must be one of ready, failed; got {status!r}.")
        with self.lock:
            trajectory = self._find(trajectory_id)
            if token and trajectory.tokens.get(token) == f"complete:{target}":
                return
            if trajectory.state != PENDING:
                raise conflict(f"Cannot transition trajectory {trajectory_id} from {trajectory.state} to {target}: "
                               "it is not in valid status (PENDING).")
            trajectory.state = target
            self._open -= 1
            if token:
                trajectory.tokens[token] = f"complete:{target}"
            if target == FAILED:
                trajectory.failure = "The agent reported the rollout failed (CompleteRollout Status=failed)."
                trajectory.done.set()

    def reward(self, trajectory_id: str, rewards: list, token: str | None) -> None:
        with self.lock:
            trajectory = self._find(trajectory_id)
            if token and trajectory.tokens.get(token) == "reward":
                return
            if trajectory.state != READY:
                raise conflict(f"Trajectory {trajectory_id} is not in valid status for UpdateReward: "
                               f"{trajectory.state} (it must be READY: call CompleteRollout first).")
            if not rewards or any(not isinstance(r, (int, float)) or not math.isfinite(r) for r in rewards):
                raise invalid("Rewards must be a non-empty list of finite numbers.")
            turns = len(trajectory.turns)
            if len(rewards) not in (1, turns):
                raise invalid(f"Rewards has {len(rewards)} values; give one for the trajectory or one per turn "
                              f"({turns}).")
            trajectory.rewards = [float(r) for r in rewards]
            trajectory.state = REWARD_RECEIVED
            if token:
                trajectory.tokens[token] = "reward"
            trajectory.done.set()

    def fail(self, trajectory: Trajectory, reason: str) -> None:
        """The dispatcher gives up on a rollout (its agent failed or never reported)."""
        with self.lock:
            if trajectory.state not in TERMINAL:
                if trajectory.state == PENDING and trajectory.id in self.by_id:
                    self._open -= 1
                trajectory.state = FAILED
                trajectory.failure = reason
            trajectory.done.set()

    def _find(self, trajectory_id: str) -> Trajectory:
        found = self.by_id.get(trajectory_id)
        if found is None:
            raise not_found(f"Trajectory {trajectory_id} not found for this job.")
        return found
