"""MaxInvocations from the windows of a ramp, and when to stop the ramp.

AWS publishes no algorithm; its documents give the ramp of users, three stopping conditions and report
MaxInvocations and ModelLatency "at maximum invocations". jobforge reads that as: the highest throughput (in
requests a minute) of a window whose latency percentile stayed within the threshold and whose requests did not
fail, with the latency of that window. A ramp stops when a window breaks the latency threshold, reaches the
expected MaxInvocations, fails more than 1% of its requests, or (FlatInvocations=Stop) when two successive
increases of the users added less than 5% of throughput between them.
"""

from __future__ import annotations

from dataclasses import dataclass

from jobforge.workloads.recommend.latency import WindowStats

MAX_ERROR_RATE = 0.01
FLAT_GAIN = 0.05
DEFAULT_PERCENTILE = "P95"


@dataclass(frozen=True)
class StopRules:
    max_invocations: int | None = None  # requests a minute expected at most
    percentile: str = DEFAULT_PERCENTILE  # P95 or P99: the one ModelLatency reports and the threshold applies to
    threshold_ms: int | None = None
    stop_when_flat: bool = True

    @classmethod
    def from_request(cls, conditions: dict | None) -> "StopRules":
        conditions = conditions or {}
        threshold = (conditions.get("ModelLatencyThresholds") or [{}])[0]
        return cls(max_invocations=conditions.get("MaxInvocations"),
                   percentile=threshold.get("Percentile", DEFAULT_PERCENTILE),
                   threshold_ms=threshold.get("ValueInMilliseconds"),
                   stop_when_flat=conditions.get("FlatInvocations", "Stop") == "Stop")


class Ramp:
    """Judges the windows of one load test as they close."""

    def __init__(self, rules: StopRules):
        self.rules = rules
        self.best: WindowStats | None = None
        self._levels: list[list] = []  # [users, best throughput a minute] for each increase of the users

    def latency_ms(self, window: WindowStats) -> float | None:
        return window.latency_ms.get(self.rules.percentile.lower())

    def add(self, window: WindowStats) -> str | None:
        """Take a window; the reason to stop the ramp, or None to go on."""
        if window.completed == 0:
            return f"no request completed ({window.error_sample or 'none answered'})" if window.errors else None
        if window.error_rate > MAX_ERROR_RATE:
            return f"{window.error_rate:.1%} of the requests with {window.users} users failed ({window.error_sample})"
        latency = self.latency_ms(window)
        threshold = self.rules.threshold_ms
        if threshold is not None and latency > threshold:
            return (f"{self.rules.percentile} model latency {latency:.1f} ms with {window.users} users is above the "
                    f"threshold of {threshold} ms")
        if self.best is None or window.per_minute > self.best.per_minute:
            self.best = window
        if self.rules.max_invocations and window.per_minute >= self.rules.max_invocations:
            return (f"{window.per_minute:.0f} invocations a minute with {window.users} users reached MaxInvocations "
                    f"({self.rules.max_invocations})")
        self._climb(window)
        if self.rules.stop_when_flat and self._flat():
            levels = self._levels[-3:]
            return (f"invocations flattened: {' → '.join(f'{best:.0f}' for _, best in levels)} a minute with "
                    f"{' → '.join(str(users) for users, _ in levels)} users")
        return None

    def _climb(self, window: WindowStats) -> None:
        if not self._levels or window.users > self._levels[-1][0]:
            self._levels.append([window.users, window.per_minute])
        elif window.users == self._levels[-1][0]:
            self._levels[-1][1] = max(self._levels[-1][1], window.per_minute)

    def _flat(self) -> bool:
        return len(self._levels) >= 3 and self._levels[-1][1] < self._levels[-3][1] * (1 + FLAT_GAIN)
