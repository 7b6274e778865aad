"""Traffic patterns as segments of constant load.

AWS's users are closed-loop virtual users: each invokes the endpoint in a loop, the next request once the last
has answered. ``PHASES``: each phase starts with ``InitialNumberOfUsers`` and adds ``SpawnRate`` users a
minute for ``DurationInSeconds``. ``STAIRS``: ``NumberOfSteps`` steps of ``DurationInSeconds / NumberOfSteps``
seconds, each ``UsersPerStep`` users above the last. A segment lasts while the user count stays the same, and
no longer than a minute (the window a PHASES test is measured in); a STAIRS step is one window.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

WINDOW_SECONDS = 60.0


@dataclass(frozen=True)
class Segment:
    seconds: float
    users: int
    phase: int  # the phase or step it belongs to, from 0

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> "Segment":
        return cls(**data)


def segments(pattern: dict) -> list[Segment]:
    if pattern.get("TrafficType", "PHASES") == "STAIRS":
        return stairs(pattern["Stairs"])
    return phases(pattern["Phases"])


def stairs(stairs_: dict) -> list[Segment]:
    steps = stairs_["NumberOfSteps"]
    step_seconds = stairs_["DurationInSeconds"] / steps
    return [Segment(step_seconds, stairs_["UsersPerStep"] * (i + 1), i) for i in range(steps)]


def phases(phases_: list[dict]) -> list[Segment]:
    out: list[Segment] = []
    for index, phase in enumerate(phases_):
        duration, spawn_rate = float(phase["DurationInSeconds"]), phase.get("SpawnRate", 0)
        bounds = {duration} | {m * WINDOW_SECONDS for m in range(1, math.ceil(duration / WINDOW_SECONDS))}
        if spawn_rate:
            spawn_every = 60.0 / spawn_rate
            bounds |= {k * spawn_every for k in range(1, math.ceil(duration / spawn_every))}
        start = 0.0
        for end in sorted(b for b in bounds if 0 < b <= duration):
            users = phase["InitialNumberOfUsers"] + math.floor(spawn_rate * start / 60.0 + 1e-9)
            out.append(Segment(end - start, users, index))
            start = end
    return out


def total_seconds(plan: list[Segment]) -> float:
    return sum(segment.seconds for segment in plan)
