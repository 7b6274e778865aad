"""The worker process: ``python -P -m jobforge.execution.worker <job-id> <confinement>``.

Runs one attempt of one job and reports to the server's internal API. Before
anything of the job runs it confines itself (``jobforge.execution.isolation``)
as the JSON ``confinement`` from the server says. Metrics
and log lines are batched and sent by a reporter thread every half second; the
reply tells the worker whether a stop was requested. SIGTERM also requests a
stop; the workload sees it through ``ctx.should_stop()``.

The worker reaches the server only through the URL it was given
(``JOBFORGE_ENDPOINT``) and the object store's S3 API. Its work and
checkpoint directories are under the job's directory, which the executor
names (``JOBFORGE_JOB_DIR``). The checkpoint directory is kept in step with
the job's prefix in the object store (``JOBFORGE_CHECKPOINT_URI``): a resumed
attempt whose directory is gone (another node, a lost disk) starts from there.
"""

from __future__ import annotations

import importlib
import json
import os
import signal
import ssl
import sys
import threading
import time
import traceback
import urllib.request
from pathlib import Path

from jobforge.execution import isolation
from jobforge.execution.checkpoints import CheckpointSync
from jobforge.execution.context import JobContext, JobStopped, WorkloadError
from jobforge.execution.transfer import S3Transfer

FLUSH_SECONDS = 0.5
CHECKPOINT_SYNC_SECONDS = 1.0


class WorkerClient:
    def __init__(self, endpoint: str, job_id: str, token: str):
        self.base = f"{endpoint}/_jobforge/worker/{job_id}/"
        self.headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        # Over HTTPS, the server's certificate is trusted as the job's SDKs trust it.
        self.tls = ssl.create_default_context(cafile=os.environ.get("AWS_CA_BUNDLE"))

    def call(self, action: str, body: dict | None = None, attempts: int = 20) -> dict:
        data = json.dumps(body or {}).encode()
        for attempt in range(attempts):
            request = urllib.request.Request(self.base + action, data=data, headers=self.headers, method="POST")
            try:
                with urllib.request.urlopen(request, timeout=30, context=self.tls) as response:
                    return json.loads(response.read() or b"{}")
            except urllib.error.HTTPError as err:
                if err.code == 403:
                    raise SystemExit("jobforge worker: the server no longer accepts this attempt") from None
                if attempt == attempts - 1:
                    raise
            except OSError:
                if attempt == attempts - 1:
                    raise
            time.sleep(min(0.2 * 2 ** attempt, 5))


class WorkerJobContext(JobContext):
    def __init__(self, client: WorkerClient, info: dict):
        self.client = client
        self.job_id = info["id"]
        self.job_arn = info["arn"]
        self.job_name = info["name"]
        self.account_id = info["account_id"]
        self.region = info["region"]
        self.attempt = info["attempt"]
        self.resources = info["resources"]
        job_dir = Path(os.environ["JOBFORGE_JOB_DIR"])
        self.work_dir = job_dir / f"attempt-{self.attempt}"
        self.checkpoint_dir = job_dir / "checkpoints"
        self.account_dir = Path(os.environ["JOBFORGE_ACCOUNT_DIR"]) if os.environ.get("JOBFORGE_ACCOUNT_DIR") else None
        self.work_dir.mkdir(parents=True, exist_ok=True)
        # Compiler caches (torch.compile's Inductor, Triton) live with the job, whatever the server's environment
        # named: a directory another job's user made is not writable here, and one another account wrote is
        # code this job must not load.
        for variable, cache in (("TORCHINDUCTOR_CACHE_DIR", "torchinductor"), ("TRITON_CACHE_DIR", "triton")):
            os.environ[variable] = str(job_dir / "cache" / cache)
        self.env = {name: value for name, value in os.environ.items() if not name.startswith("JOBFORGE_")}
        self.transfer = S3Transfer()
        self.checkpoints = CheckpointSync(self, self.checkpoint_dir, os.environ.get("JOBFORGE_CHECKPOINT_URI"),
                                          delete=self.transfer.delete)
        self._sync_lock = threading.Lock()
        self._sync_failed = False
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._pending: dict = {"metrics": [], "events": []}
        self._closed = threading.Event()
        self._reporter = threading.Thread(target=self._report_loop, daemon=True)
        self._reporter.start()

    def sync_checkpoints(self) -> None:
        """Fill a resumed attempt's empty checkpoint directory from the object store, then keep the object
        store's copy in step with it (every CHECKPOINT_SYNC_SECONDS, and at the end of the attempt)."""
        if self.attempt > 1:
            try:
                if self.checkpoints.restore():
                    self.event("jobforge: restored the checkpoints from the object store")
            except WorkloadError as err:
                self.event(f"jobforge: could not restore the checkpoints from the object store: {err}")
        self.checkpoint_dir.mkdir(parents=True, exist_ok=True)
        threading.Thread(target=self._checkpoint_loop, daemon=True).start()

    def push_checkpoints(self) -> None:
        with self._sync_lock:
            try:
                self.checkpoints.push()
            except WorkloadError as err:  # the job goes on; only a resume elsewhere would miss them
                if not self._sync_failed:
                    self.event(f"jobforge: could not store the checkpoints in the object store: {err}")
                self._sync_failed = True

    def _checkpoint_loop(self):
        while not self._closed.wait(CHECKPOINT_SYNC_SECONDS):
            self.push_checkpoints()

    def request_stop(self, *_):
        self._stop.set()

    def status(self, secondary, message=""):
        with self._lock:
            self._pending["status"] = {"secondary": secondary, "message": message}
        self.flush()

    def metric(self, name, value, step=None):
        with self._lock:
            self._pending["metrics"].append({"name": name, "value": float(value), "step": step,
                                             "timestamp": time.time()})

    def event(self, text):
        with self._lock:
            self._pending["events"].append((time.time(), str(text)))

    def should_stop(self):
        return self._stop.is_set()

    def download(self, uri, path, key_prefix=False):
        return self.transfer.download(uri, Path(path), key_prefix)

    def upload(self, path, uri):
        self.transfer.upload(Path(path), uri)

    def result(self, data):
        with self._lock:
            self._pending.setdefault("result", {}).update(data)
        self.flush()

    def ask_server(self, action, body):
        return self.client.call(action, body)

    def _take(self) -> dict:
        with self._lock:
            batch, self._pending = self._pending, {"metrics": [], "events": []}
        return batch

    def flush(self, action: str = "report", **extra) -> None:
        batch = self._take()
        batch.update(extra)
        reply = self.client.call(action, batch)
        if reply.get("stop"):
            self._stop.set()

    def _report_loop(self):
        while not self._closed.wait(FLUSH_SECONDS):
            try:
                self.flush()
            except Exception as err:  # the next flush retries; the final report must not be lost
                print(f"jobforge worker: report failed: {err}", file=sys.stderr)

    def close(self, outcome: str, reason: str | None = None):
        self._closed.set()
        self.push_checkpoints()
        self._reporter.join(timeout=5)
        self.flush("finish", outcome=outcome, reason=reason)


def run_workload(ctx: WorkerJobContext, info: dict) -> tuple[str, str | None]:
    try:
        module = importlib.import_module(info["workload"])
        module.run(ctx, info["spec"])
    except JobStopped:
        return "stopped", None
    except WorkloadError as err:
        return "failed", str(err)
    except BaseException as err:  # the job fails; the traceback goes to its log
        for line in traceback.format_exc().splitlines():
            ctx.event(line)
        return "failed", f"{type(err).__name__}: {err}"
    return ("stopped", None) if ctx.should_stop() else ("completed", None)


def main(job_id: str, confinement: dict) -> None:
    client = WorkerClient(os.environ["JOBFORGE_ENDPOINT"], job_id, os.environ["JOBFORGE_WORKER_TOKEN"])
    try:
        isolation.enter(confinement)
    except OSError as err:
        client.call("finish", {"outcome": "failed", "reason": f"The job could not be isolated from the host: {err}"})
        return
    info = client.call("job")
    ctx = WorkerJobContext(client, info)
    signal.signal(signal.SIGTERM, ctx.request_stop)
    ctx.sync_checkpoints()
    if client.call("running").get("stop"):
        ctx.request_stop()
    outcome, reason = run_workload(ctx, info)
    ctx.close(outcome, reason)


if __name__ == "__main__":
    main(sys.argv[1], json.loads(sys.argv[2]))
