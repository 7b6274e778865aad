"""What the load generator measures in one window: completed requests, errors, latency percentiles, its own CPU.

Latencies are kept whole for the window (8 bytes each) and ranked when it closes, so the percentiles are
exact (nearest rank), not estimated from buckets.
"""

from __future__ import annotations

import math
import time
from array import array
from dataclasses import asdict, dataclass

PERCENTILES = (50, 90, 95, 99)


@dataclass(frozen=True)
class WindowStats:
    index: int
    phase: int
    users: int  # closed loop: concurrent users; open loop: the users the target rate stands for
    target_rate: float | None  # open loop: requests a second scheduled; None for closed-loop users
    seconds: float
    completed: int
    errors: int
    per_second: float  # completed requests a second
    latency_ms: dict  # "p50", "p90", "p95", "p99", "max", "mean" → milliseconds; {} when nothing completed
    generator_cpu: float  # the generator's CPU time over the window's wall time (1.0 = one core busy)
    error_sample: str | None  # what the first error of the window was

    @property
    def per_minute(self) -> float:
        return self.per_second * 60.0

    @property
    def error_rate(self) -> float:
        total = self.completed + self.errors
        return self.errors / total if total else 0.0

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> "WindowStats":
        return cls(**data)


def percentile(ranked: list[float], p: float) -> float:
    """Nearest-rank percentile of sorted values."""
    return ranked[max(0, math.ceil(p / 100.0 * len(ranked)) - 1)]


def summary_ms(latencies_s) -> dict:
    if not latencies_s:
        return {}
    ranked = sorted(latencies_s)
    out = {f"p{p}": percentile(ranked, p) * 1000.0 for p in PERCENTILES}
    out.update(max=ranked[-1] * 1000.0, mean=sum(ranked) / len(ranked) * 1000.0)
    return {key: round(value, 3) for key, value in out.items()}


class Window:
    """The recorder of one window; requests that complete after it closes count in the next."""

    def __init__(self, index: int, phase: int, users: int, target_rate: float | None):
        self.index, self.phase, self.users, self.target_rate = index, phase, users, target_rate
        self.latencies = array("d")
        self.errors = 0
        self.error_sample: str | None = None
        self._wall = time.perf_counter()
        self._cpu = time.process_time()

    def ok(self, seconds: float) -> None:
        self.latencies.append(seconds)

    def failed(self, reason: str) -> None:
        self.errors += 1
        if self.error_sample is None:
            self.error_sample = reason[:300]

    def close(self) -> WindowStats:
        wall = max(time.perf_counter() - self._wall, 1e-9)
        cpu = time.process_time() - self._cpu
        return WindowStats(
            index=self.index, phase=self.phase, users=self.users, target_rate=self.target_rate,
            seconds=round(wall, 3), completed=len(self.latencies), errors=self.errors,
            per_second=round(len(self.latencies) / wall, 3), latency_ms=summary_ms(self.latencies),
            generator_cpu=round(cpu / wall, 3), error_sample=self.error_sample)
