"""Which load tests a recommendation job runs, and with what traffic: read from the request.

Each endpoint configuration (an instance type) times each point of its environment-parameter grid is one test,
one BENCHMARK step; ``MaxNumberOfTests`` keeps the first ones. An Advanced job drives the caller's traffic
pattern. A Default job ramps its own: a stair of doubling users, each step a window, as long as the job's
duration allows; it stops where the latency threshold, MaxInvocations or flattening throughput says.
"""

from __future__ import annotations

import itertools
import math

from jobforge.workloads.recommend.traffic import Segment

DEFAULT_JOB_SECONDS = {"Default": 2700, "Advanced": 7200}  # AWS: Default jobs within 45 minutes, load tests ~2 hours
MAX_JOB_SECONDS = 18000
DEFAULT_RAMP_USERS = (1, 2, 4, 8, 16, 32)
DEFAULT_STEP_SECONDS = (2.0, 60.0)  # the shortest and longest step of a Default job's ramp
SETUP_SHARE = 0.5  # the share of a Default job's time left for deploying and removing endpoints


def grid(ranges: dict | None) -> list[list[dict]]:
    """Every combination of the categorical environment values, as ModelConfiguration.EnvironmentParameters."""
    parameters = (ranges or {}).get("CategoricalParameterRanges", [])
    if not parameters:
        return [[]]
    return [[{"Key": p["Name"], "ValueType": "String", "Value": value} for p, value in zip(parameters, values)]
            for values in itertools.product(*(p["Value"] for p in parameters))]


def tests(configurations: list[dict], limit: int | None) -> tuple[list[dict], int]:
    """(the tests, in order, each {"InstanceType", "EnvironmentParameters"}; how many the limit left out)."""
    planned = [{"InstanceType": configuration["InstanceType"], "EnvironmentParameters": environment}
               for configuration in configurations
               for environment in grid(configuration.get("EnvironmentParameterRanges"))]
    kept = planned[:limit] if limit else planned
    return kept, len(planned) - len(kept)


def job_seconds(request: dict) -> int:
    return request["InputConfig"].get("JobDurationInSeconds", DEFAULT_JOB_SECONDS[request["JobType"]])


def default_ramp(job_seconds_: float, test_count: int, parallel: int) -> list[Segment]:
    """The stairs of a Default job: doubling users, steps as long as the job's time allows."""
    waves = max(1, math.ceil(test_count / parallel))
    shortest, longest = DEFAULT_STEP_SECONDS
    step = min(longest, max(shortest, job_seconds_ * (1 - SETUP_SHARE) / (waves * len(DEFAULT_RAMP_USERS))))
    return [Segment(round(step, 3), users, index) for index, users in enumerate(DEFAULT_RAMP_USERS)]
