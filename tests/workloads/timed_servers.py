"""Servers with known answer times for the load generator's tests, each in a process of its own.

    python timed_servers.py delay 20            # every answer 20 ms after the request
    python timed_servers.py stall 100 1000      # answers at once, except that every 1000 ms all answers
                                                # are held for 100 ms: a request that arrives in a stall
                                                # is answered when it ends

Each prints its port and serves until its stdin closes (``ServerProcess``).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from jobforge.workloads.recommend.reference_server import ReferenceServer, serve_main

SCRIPT = Path(__file__).resolve()


class DelayServer(ReferenceServer):
    def __init__(self, delay_ms: float):
        self.delay = delay_ms / 1000.0

    def answer_delay(self) -> float:
        return self.delay


class StallServer(ReferenceServer):
    def __init__(self, stall_ms: float, period_ms: float):
        self.stall, self.period = stall_ms / 1000.0, period_ms / 1000.0

    def answer_delay(self) -> float:
        into_period = asyncio.get_running_loop().time() % self.period
        return self.stall - into_period if into_period < self.stall else 0.0


def argv(kind: str, *numbers: float) -> list[str]:
    return [sys.executable, str(SCRIPT), kind, *map(str, numbers)]


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("kind", choices=("delay", "stall"))
    parser.add_argument("milliseconds", type=float, nargs="+")
    parser.add_argument("--cores", default="")
    args = parser.parse_args()
    serve_main(DelayServer(*args.milliseconds) if args.kind == "delay" else StallServer(*args.milliseconds),
               ["--cores", args.cores])
