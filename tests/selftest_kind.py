"""The engine's self-test job kind, for test servers: SageMaker JobCategory ``DataTransformation`` run by
``jobforge.workloads.testing``. A server serves it when started with ``JOBFORGE_PLUGINS=selftest_kind`` and
this folder on its import path (``SELFTEST_ENV``); tests that use the job store directly import it.

Tests import what they need of it from here, never from a conftest: each test folder has a conftest module
of its own, and which one the name ``conftest`` means depends on the order pytest collects them in."""

from __future__ import annotations

import os

from jobforge.api import sagemaker_jobs
from jobforge.core import kinds
from jobforge.core.instance_types import resources_for
from jobforge.core.kinds import Workload

CATEGORY = "DataTransformation"
TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
SELFTEST_ENV = {"JOBFORGE_PLUGINS": "selftest_kind",
                "PYTHONPATH": os.pathsep.join(filter(None, (TESTS_DIR, os.environ.get("PYTHONPATH"))))}
SCHEMA = {"type": "object", "properties": {
    "Steps": {"type": "integer"}, "SleepSeconds": {"type": "number"}, "FailAtStep": {"type": "integer"},
    "StoppingCondition": {"type": "object"}, "InstanceType": {"type": "string"}}}


def build(document: dict, req: dict):
    spec = {"steps": document.get("Steps", 5), "sleep": document.get("SleepSeconds", 0.1),
            "fail_at": document.get("FailAtStep"), "JobConfigSchemaVersion": req["JobConfigSchemaVersion"]}
    runtime = document.get("StoppingCondition", {}).get("MaxRuntimeInSeconds")
    if "InstanceType" in document:  # what the instance catalog says the type has, custom resources included
        return spec, resources_for(document["InstanceType"]), runtime
    return spec, {"cpus": 1, "memory_mb": 256, "gpus": document.get("Gpus", 0)}, runtime


KIND = kinds.register(sagemaker_jobs.job_category(
    CATEGORY, Workload("jobforge.workloads.testing", resumable=True, preload=("jobforge.workloads.testing",)),
    {"1.0.0": SCHEMA}, build))
