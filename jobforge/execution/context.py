"""JobContext: the only thing a workload talks to.

A workload is a module with ``def run(ctx: JobContext, spec: dict) -> None``.
It reports through the context and never imports the server. Two
implementations exist: the worker's (reports to the server over its internal
HTTP API) and ``LocalJobContext`` (in-process, for unit tests and benchmarks).

Outcomes: returning normally completes the job; raising ``WorkloadError``
fails it with that message as the failure reason; any other exception fails it
with ``"<Type>: <message>"``; returning or raising ``JobStopped`` after
``should_stop()`` turned true marks it stopped.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

from jobforge.execution.local_paths import UnsafePath, path_under


class WorkloadError(Exception):
    """A failure the user must see verbatim as the job's failure reason."""


class NoSuchData(WorkloadError):
    """Nothing at an S3 URI: no such object or bucket, or no objects under a prefix."""


class JobStopped(Exception):
    """Raised by a workload that noticed ``should_stop()`` mid-step."""


def split_s3_uri(uri: str) -> tuple[str, str]:
    parsed = urlparse(uri)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise WorkloadError(f"Not an S3 URI: {uri}")
    return parsed.netloc, parsed.path.lstrip("/")


class JobContext:
    """Interface every workload uses. Subclasses implement the I/O."""

    job_id: str
    job_arn: str
    job_name: str
    account_id: str
    region: str
    attempt: int  # 1 on the first run; >1 when resumed after a restart
    resources: dict  # {"cpus": int, "memory_mb": int, "gpus": int}
    work_dir: Path  # private scratch space of this job
    checkpoint_dir: Path  # survives restarts of this job; resume reads it
    account_dir: Path | None  # shared by the jobs of this account, for workloads that ask for it (Workload)
    env: dict  # environment for user code: AWS credentials and endpoints

    def status(self, secondary: str, message: str = "") -> None:
        raise NotImplementedError

    def metric(self, name: str, value: float, step: int | None = None) -> None:
        raise NotImplementedError

    def event(self, text: str) -> None:
        """One log line of the job (kept as the job's log stream)."""
        raise NotImplementedError

    def should_stop(self) -> bool:
        raise NotImplementedError

    def download(self, uri: str, path: str | Path, key_prefix: bool = False) -> Path:
        """Fetch an S3 object, or every object under a prefix ending in '/', to path.

        With ``key_prefix``, every object whose key starts with the URI's key, each at its key relative to the
        key's last '/' under the folder path: ``s3://b/data/train`` fetches ``data/train-0.csv`` as
        ``train-0.csv`` and ``data/train/x.csv`` as ``train/x.csv``.
        """
        raise NotImplementedError

    def upload(self, path: str | Path, uri: str) -> None:
        """Store a file at uri, or a directory's files under uri as a prefix."""
        raise NotImplementedError

    def result(self, data: dict) -> None:
        """Merge data into the job's result record (read by the API handlers)."""
        raise NotImplementedError

    def ask_server(self, action: str, body: dict) -> dict:
        """Have the server do what only it can for this job, an action of its internal API (deploying the
        endpoints of a recommendation job's tests: ``jobforge.api.recommendation_deployments``); its answer."""
        raise NotImplementedError


@dataclass
class LocalJobContext(JobContext):
    """In-process context: S3 URIs map to ``s3_root/<bucket>/<key>``."""

    s3_root: Path
    work_dir: Path
    checkpoint_dir: Path
    job_id: str = "local-job"
    job_arn: str = "arn:aws:local:us-east-1:000000000000:job/local-job"
    job_name: str = "local-job"
    account_id: str = "000000000000"
    region: str = "us-east-1"
    attempt: int = 1
    resources: dict = field(default_factory=lambda: {"cpus": 1, "memory_mb": 2048, "gpus": 0})
    account_dir: Path | None = None
    env: dict = field(default_factory=dict)
    stop_requested: bool = False
    statuses: list = field(default_factory=list)
    metrics: list = field(default_factory=list)
    events: list = field(default_factory=list)
    results: dict = field(default_factory=dict)

    def status(self, secondary, message=""):
        self.statuses.append((secondary, message))

    def metric(self, name, value, step=None):
        self.metrics.append({"name": name, "value": float(value), "step": step, "timestamp": time.time()})

    def event(self, text):
        self.events.append(text)

    def should_stop(self):
        return self.stop_requested

    def _local(self, uri: str) -> Path:
        bucket, key = split_s3_uri(uri)
        try:
            folder = path_under(self.s3_root, bucket)
            return path_under(folder, key.rstrip("/")) if key.rstrip("/") else folder
        except UnsafePath as err:
            raise WorkloadError(f"{uri} cannot be a local path: {err}") from None

    def download(self, uri, path, key_prefix=False):
        source, target = self._local(uri), Path(path)
        if key_prefix:
            bucket, key = split_s3_uri(uri)
            folder = self._local(f"s3://{bucket}/{key[:key.rfind('/') + 1]}")
            files = [f for f in folder.rglob("*") if f.is_file()
                     and f.relative_to(self._local(f"s3://{bucket}/")).as_posix().startswith(key)]
            if not files:
                raise NoSuchData(f"No objects under {uri}")
            for file in files:
                copy = target / file.relative_to(folder)
                copy.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(file, copy)
            return target
        if uri.endswith("/"):
            if not source.is_dir():
                raise NoSuchData(f"No objects under {uri}")
            shutil.copytree(source, target, dirs_exist_ok=True)
        else:
            if not source.is_file():
                raise NoSuchData(f"No such object: {uri}")
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target)
        return target

    def upload(self, path, uri):
        source, target = Path(path), self._local(uri)
        if source.is_dir():
            shutil.copytree(source, target, dirs_exist_ok=True)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target)

    def result(self, data):
        self.results.update(data)
