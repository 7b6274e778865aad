"""The load generator's own ceiling: how many requests a second it drives against a trivial server.

Measured at the start of each job on the cores the job's generators get, with the trivial server on other
cores where the host has them. A load test whose throughput comes near the ceiling, or whose generator kept its
core busy, measured the generator as much as the endpoint; its result is flagged as bounded by the generator.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

from jobforge.workloads.recommend.generator_process import GeneratorProcess
from jobforge.workloads.recommend.load_test import Plan, Target
from jobforge.workloads.recommend.reference_server import ServerProcess
from jobforge.workloads.recommend.traffic import Segment

USERS = 16
WARM_UP_SECONDS = 0.3
NEAR_CEILING = 0.8  # a share of the ceiling above which a result may be the generator's limit
BUSY_CORE = 0.9  # the generator's CPU over wall time above which it had no time left


@dataclass(frozen=True)
class Ceiling:
    per_second: float
    generator_cpu: float
    shared_core: bool  # the trivial server had to share the generator's cores

    def bounds(self, per_second: float, generator_cpu: float) -> str | None:
        """Why a window with this throughput and generator CPU may be bounded by the generator, or None."""
        if generator_cpu >= BUSY_CORE:
            return f"the load generator kept its core {generator_cpu:.0%} busy"
        if per_second >= NEAR_CEILING * self.per_second:
            return (f"{per_second:.0f} requests/s is {per_second / self.per_second:.0%} of the load generator's own "
                    f"ceiling ({self.per_second:.0f} requests/s against a trivial server)")
        return None

    def describe(self) -> str:
        where = "sharing its core with the trivial server" if self.shared_core else "on a core of its own"
        return (f"load generator ceiling: {self.per_second:.0f} requests/s with {USERS} users against a trivial "
                f"server ({where}; generator CPU {self.generator_cpu:.0%})")


def measure(generator_cores: list[int] | None, server_cores: list[int] | None, seconds: float = 1.0) -> Ceiling:
    with tempfile.TemporaryDirectory() as folder, ServerProcess(cores=server_cores) as server:
        payload = Path(folder) / "payload.json"
        payload.write_text('{"instances": [[0.0, 1.0, 2.0, 3.0]]}')
        plan = Plan([Segment(WARM_UP_SECONDS, USERS, 0), Segment(seconds, USERS, 1)])
        with GeneratorProcess(Target("127.0.0.1", server.port), [(payload, "application/json")], plan,
                              generator_cores) as generator:
            measured = list(generator.windows())[-1]
    shared = not generator_cores or not server_cores or bool(set(generator_cores) & set(server_cores))
    return Ceiling(measured.per_second, measured.generator_cpu, shared)
