"""The endpoints an inference recommendation job's tests load: deployed, measured and removed for its worker.

A worker reaches the server only through its internal API, and cannot see the data dir where model servers
keep their sockets. So the server deploys a test's model (``ctx.runtime.endpoints.launch``) when the job's
worker asks (``deploy``), and hard-links each instance's Unix socket into the job's own directory, the one
folder of the data dir the worker sees: its load generator then calls the model servers directly, as
SageMaker's front end calls a container. ``usage`` reads the instances' CPU time and memory, ``undeploy``
removes the deployment; whatever a job leaves is removed once it ends (``close_job``). An existing endpoint
named by the job (``InputConfig.Endpoints``) is attached the same way, and left running.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from jobforge.core import hosting, jobs
from jobforge.execution.endpoint_host import Deployment, DeployFailed

if TYPE_CHECKING:
    from jobforge.server.runtime import Runtime

log = logging.getLogger("jobforge.recommendations")
FAMILY = "sagemaker-recommendation"
LOG_GROUP = "/aws/sagemaker/InferenceRecommendationsJobs"


@dataclass
class Loaded:
    job_id: str
    deployment: Deployment
    links: Path  # the folder of socket links in the job's directory
    launched: bool  # False for an existing endpoint's deployment, which stays when the test ends


_loaded: dict[str, Loaded] = {}
_lock = threading.Lock()


class Refused(Exception):
    """A request this job may not make; the message says why."""


def _links_folder(runtime: Runtime, job: jobs.Job, key: str) -> Path:
    job_dir = runtime.settings.jobs_dir / job.id
    folder = job_dir / "deployments" / key
    folder.mkdir(parents=True, exist_ok=True)
    owner = job_dir.stat()
    for path in (folder.parent, folder):  # the worker runs as the job's user
        os.chown(path, owner.st_uid, owner.st_gid)
    return folder


def _describe(key: str, loaded: Loaded, setup_seconds: float | None) -> dict:
    instances = loaded.deployment.instances
    links = []
    for index, instance in enumerate(instances):
        link = loaded.links / f"{index}.sock"
        link.unlink(missing_ok=True)
        os.link(instance.socket_path, link)
        links.append(str(link))
    first = instances[0].instance_type
    return {"deployment": key, "sockets": links, "cores": sorted({c for i in instances for c in i.cpus}),
            "vcpus": first.vcpus * len(instances), "memory_bytes": first.memory_mb * 2**20 * len(instances),
            "setup_seconds": setup_seconds}


def deploy(runtime: Runtime, job: jobs.Job, test_index: int) -> dict:
    """Deploy the job's model for one of its planned tests; {"failed": reason} where it cannot run."""
    _check(job)
    tests = job.spec["tests"]
    if not 0 <= test_index < len(tests):
        raise Refused(f"the job plans no test {test_index}")
    test = tests[test_index]
    environment = {p["Key"]: p["Value"] for p in test["EnvironmentParameters"]}
    started = time.monotonic()
    try:
        deployment = runtime.endpoints.launch(job.account_id, job.region, job.spec["model"], test["InstanceType"],
                                              environment=environment, log_group=LOG_GROUP)
    except DeployFailed as err:
        return {"failed": str(err)}
    setup_seconds = time.monotonic() - started
    key = uuid.uuid4().hex[:12]
    loaded = Loaded(job.id, deployment, _links_folder(runtime, job, key), launched=True)
    with _lock:
        _loaded[key] = loaded
    return _describe(key, loaded, setup_seconds)


def attach(runtime: Runtime, job: jobs.Job) -> dict:
    """The instances of the existing endpoint the job benchmarks; {"failed": reason} where none serves."""
    _check(job)
    endpoint = hosting.endpoint(runtime.engine, job.account_id, job.region, job.spec["endpoint"])
    deployment = runtime.endpoints.serving(endpoint.id) if endpoint is not None else None
    if deployment is None:
        return {"failed": f"The endpoint {job.spec['endpoint']} has no instance serving"
                          + (f": it is {endpoint.status}." if endpoint is not None else ": it was deleted.")}
    key = uuid.uuid4().hex[:12]
    loaded = Loaded(job.id, deployment, _links_folder(runtime, job, key), launched=False)
    with _lock:
        _loaded[key] = loaded
    return _describe(key, loaded, None)


def usage(runtime: Runtime, job: jobs.Job, key: str) -> dict:
    """Each instance's CPU seconds so far and resident memory now (None for one not running)."""
    loaded = _mine(job, key)
    measured = [runtime.endpoints.usage(instance) for instance in loaded.deployment.instances]
    return {"instances": [None if u is None else {"cpu_seconds": u.cpu_seconds, "memory_bytes": u.memory_bytes}
                          for u in measured]}


def undeploy(runtime: Runtime, job: jobs.Job, key: str) -> dict:
    loaded = _mine(job, key)
    with _lock:
        _loaded.pop(key, None)
    _release(runtime, loaded)
    return {}


def close_job(runtime: Runtime, job: jobs.Job) -> None:
    """Remove what an ended job left deployed (its worker died, or was stopped mid-test)."""
    with _lock:
        left = [(key, loaded) for key, loaded in _loaded.items() if loaded.job_id == job.id]
        for key, _ in left:
            del _loaded[key]
    for _, loaded in left:
        _release(runtime, loaded)


def _release(runtime: Runtime, loaded: Loaded) -> None:
    shutil.rmtree(loaded.links, ignore_errors=True)
    if loaded.launched:
        try:
            runtime.endpoints.close(loaded.deployment)
        except Exception:  # the job goes on; its instances are swept when the server next starts
            log.exception("removing the deployment %s failed", loaded.deployment.id)


def _check(job: jobs.Job) -> None:
    if job.family != FAMILY:
        raise Refused("only inference recommendation jobs deploy models")
    if job.terminal:
        raise Refused(f"the job has ended ({job.state})")


def _mine(job: jobs.Job, key: str) -> Loaded:
    with _lock:
        loaded = _loaded.get(key)
    if loaded is None or loaded.job_id != job.id:
        raise Refused(f"the job has no deployment {key}")
    return loaded
