"""Braket hybrid jobs, run with the conventions of the Braket job container.

Workload entry ``run(ctx, spec)``; spec is the CreateJob request as boto3
sends it (camelCase) plus ``jobArn`` and ``jobToken``. The job's folders live
under ``ctx.work_dir/braket`` in the container's layout (``code/customer_code``,
``input/config``, ``input/data``, ``model``, ``output``); the checkpoint
directory is ``ctx.checkpoint_dir`` so that a resumed job finds its
checkpoints. The user's code runs in a child process (``launcher.py``
beside this module) with the ``AMZN_BRAKET_*`` variables
the Braket SDK reads, in the Python environment of the job's image with its
``requirements.txt`` installed (``environments``: built once per account and
reused). Progress is reported with the Braket job event types as
secondary statuses: DOWNLOADING_DATA, RUNNING, UPLOADING_RESULTS.
"""

from __future__ import annotations

import json
import os
import posixpath
import queue
import shutil
import signal
import sys
import tarfile
import threading
import zipfile
from dataclasses import dataclass
from pathlib import Path

from jobforge.execution.context import JobContext, JobStopped, NoSuchData, WorkloadError, split_s3_uri
from jobforge.execution.local_paths import UnsafePath, path_under
from jobforge.execution.checkpoints import CheckpointSync
from jobforge.workloads.braket import environments, images
from jobforge.workloads.braket.process import Stopped, supervise

# Run as a script with -P: nothing but the user's code and the environment's packages on sys.path.
LAUNCHER = Path(__file__).with_name("launcher.py")
RESULTS_ARCHIVE = "model.tar.gz"
METRICS_MARKER = "Metrics - "
FAILURE_REASON_MAX = 1024
CHECKPOINT_SYNC_SECONDS = 10.0


@dataclass(frozen=True)
class Layout:
    root: Path

    @property
    def original(self) -> Path:
        return self.root / "code" / "customer_code" / "original"

    @property
    def code(self) -> Path:
        return self.root / "code" / "customer_code" / "extracted"

    @property
    def hyperparameters(self) -> Path:
        return self.root / "input" / "config" / "hyperparameters.json"

    @property
    def input_data(self) -> Path:
        return self.root / "input" / "data"

    @property
    def results(self) -> Path:
        return self.root / "model"

    @property
    def failure(self) -> Path:
        return self.root / "output" / "failure"

    def create(self) -> None:
        # A resumed job starts from a fresh tree, as on a new instance; only checkpoints carry over.
        shutil.rmtree(self.root, ignore_errors=True)
        for folder in (self.original, self.code, self.hyperparameters.parent, self.input_data, self.results,
                       self.failure.parent):
            folder.mkdir(parents=True)


def run(ctx: JobContext, spec: dict) -> None:
    layout = Layout(Path(ctx.work_dir) / "braket")
    layout.create()
    algorithm = spec["algorithmSpecification"]
    script = algorithm.get("scriptModeConfig")
    if not script:
        raise WorkloadError(
            "algorithmSpecification.scriptModeConfig is required: jobforge runs script-mode jobs, "
            "not the entry point of a container image."
        )
    image_uri = (algorithm.get("containerImage") or {}).get("uri")
    image = images.image_for(image_uri)
    if image_uri and images.repository(image_uri) not in images.IMAGES:
        ctx.event(f"containerImage {image_uri} is not pulled: the job runs in the Braket base image's "
                  "environment; list extra packages in requirements.txt.")
    checkpoints = CheckpointSync(ctx, Path(ctx.checkpoint_dir), (spec.get("checkpointConfig") or {}).get("s3Uri"))
    job_log = _JobLog(ctx)
    try:
        ctx.status("DOWNLOADING_DATA", "Downloading the source code and input data")
        _fetch_source(ctx, script, layout)
        hyperparameters = spec.get("hyperParameters")
        if hyperparameters is not None:
            layout.hyperparameters.write_text(json.dumps(hyperparameters))
        channels = spec.get("inputDataConfig")
        for channel in channels or []:
            _fetch_channel(ctx, channel, layout.input_data)
        if checkpoints.restore():
            ctx.event(f"Restored checkpoints from {spec['checkpointConfig']['s3Uri']}")
        env = _environment(ctx, spec, layout, hyperparameters is not None, bool(channels))
        python = _prepare_environment(ctx, image, layout, env)

        ctx.status("RUNNING", f"Running {script['entryPoint']}")
        status = supervise(
            ctx,
            [python, "-P", str(LAUNCHER), str(os.getpid()), str(layout.code), script["entryPoint"],
             str(layout.failure)],
            env=env,
            cwd=layout.code,
            on_line=job_log,
            periodic=checkpoints.push,
            period_seconds=CHECKPOINT_SYNC_SECONDS,
        )
    except Stopped:
        raise JobStopped() from None
    finally:
        job_log.close()
        checkpoints.push()
    if status != 0:
        raise WorkloadError(_failure_reason(layout, status))

    ctx.status("UPLOADING_RESULTS", "Uploading the results")
    _upload_results(ctx, layout.results, spec["outputDataConfig"]["s3Path"])


def _fetch_source(ctx: JobContext, script: dict, layout: Layout) -> None:
    uri = script["s3Uri"]
    name = posixpath.basename(split_s3_uri(uri)[1]) or "source"
    try:
        archive = ctx.download(uri, path_under(layout.original, name))
    except UnsafePath as error:
        raise WorkloadError(f"Unable to download the code from {uri}: its file name {error}") from None
    except WorkloadError as error:
        raise WorkloadError(f"Unable to download the code from {uri}: {error}") from error
    compression = (script.get("compressionType") or "NONE").upper()
    if compression == "NONE":
        shutil.copy(archive, layout.code)
        return
    # The container unpacks GZIP and ZIP alike, whichever the archive really is.
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as bundle:
                bundle.extractall(layout.code)
        else:
            with tarfile.open(archive) as bundle:
                bundle.extractall(layout.code, filter="data")
    except (tarfile.TarError, zipfile.BadZipFile, OSError) as error:
        raise WorkloadError(f"Unable to unpack the source archive {uri} ({compression}): {error}") from error


def _fetch_channel(ctx: JobContext, channel: dict, input_dir: Path) -> None:
    """Copy one input channel: every object whose key starts with its s3Uri, a key prefix as on AWS.

    Each lands at its key relative to the prefix's last '/': ``s3://b/data/train``
    fetches ``data/train-0.csv`` to ``<channel>/train-0.csv`` and ``data/train/x.csv``
    to ``<channel>/train/x.csv``.
    """
    name = channel["channelName"]
    uri = channel["dataSource"]["s3DataSource"]["s3Uri"]
    try:
        target = path_under(input_dir, name)
    except UnsafePath as error:
        raise WorkloadError(f"The channel name {error}") from None
    target.mkdir(parents=True, exist_ok=True)
    try:
        ctx.download(uri, target, key_prefix=True)
    except NoSuchData:
        raise WorkloadError(f"No data found for channel '{name}' at {uri}") from None


def _environment(ctx: JobContext, spec: dict, layout: Layout, has_hyperparameters: bool, has_inputs: bool) -> dict:
    """The job process's environment: the worker's (less jobforge's own), the job's AWS settings, AMZN_BRAKET_*."""
    job_name = spec["jobName"]
    script = spec["algorithmSpecification"]["scriptModeConfig"]
    bucket, key = split_s3_uri(spec["outputDataConfig"]["s3Path"])
    env = {name: value for name, value in os.environ.items() if not name.startswith("JOBFORGE_")}
    env.update(ctx.env)
    env.setdefault("AWS_DEFAULT_REGION", ctx.region)
    env.setdefault("OMP_NUM_THREADS", str(ctx.resources.get("cpus") or 1))
    env.update(
        {
            "PYTHONUNBUFFERED": "1",
            "AMZN_BRAKET_JOB_NAME": job_name,
            "AMZN_BRAKET_DEVICE_ARN": spec["deviceConfig"]["device"],
            "AMZN_BRAKET_JOB_RESULTS_DIR": str(layout.results),
            "AMZN_BRAKET_CHECKPOINT_DIR": str(ctx.checkpoint_dir),
            "AMZN_BRAKET_OUT_S3_BUCKET": bucket,
            "AMZN_BRAKET_TASK_RESULTS_S3_URI": f"s3://{bucket}/jobs/{job_name}/tasks",
            "AMZN_BRAKET_JOB_RESULTS_S3_PATH": posixpath.join(key, job_name, "output"),
            "AMZN_BRAKET_SCRIPT_S3_URI": script["s3Uri"],
            "AMZN_BRAKET_SCRIPT_ENTRY_POINT": script["entryPoint"],
        }
    )
    if script.get("compressionType"):
        env["AMZN_BRAKET_SCRIPT_COMPRESSION_TYPE"] = script["compressionType"]
    if has_hyperparameters:
        env["AMZN_BRAKET_HP_FILE"] = str(layout.hyperparameters)
    if has_inputs:
        env["AMZN_BRAKET_INPUT_DIR"] = str(layout.input_data)
    if spec.get("jobToken"):
        env["AMZN_BRAKET_JOB_TOKEN"] = spec["jobToken"]
    for association in spec.get("associations") or []:
        if association.get("type") == "RESERVATION_TIME_WINDOW_ARN":
            env["AMZN_BRAKET_RESERVATION_DEVICE_ARN"] = spec["deviceConfig"]["device"]
            env["AMZN_BRAKET_RESERVATION_TIME_WINDOW_ARN"] = association["arn"]
    return env


def _prepare_environment(ctx: JobContext, image: images.Image, layout: Layout, env: dict) -> str:
    """The interpreter the job's code runs with: the server's, or the cached layers that add what the image's
    list and the code's requirements.txt files name (built first if no earlier job of the account built them).

    An image's packages that cannot be installed fail the job with the reason; its requirements, with
    ``AlgorithmError``, as the job's own code does.
    """
    requirements = sorted(layout.code.rglob("requirements.txt"))
    missing = image.missing()
    if not (missing or requirements):
        return sys.executable
    cache = environments.cache_folder(ctx.account_dir, ctx.work_dir)
    run = lambda command, cwd, on_line: supervise(ctx, command, env=env, cwd=cwd, on_line=on_line)  # noqa: E731
    environment = environments.server_environment()
    if missing:
        key = environments.digest([environment.key, image.digest()])
        try:
            environment = environments.layer(cache, key, environment, [missing], layout.code, run, ctx.event,
                                             f"the {image.name} image's packages")
        except environments.InstallFailed as error:
            raise WorkloadError(_truncate(f"Installing the {image.name} image's packages "
                                          f"({', '.join(missing)}) failed: {error}")) from None
    if requirements:
        names = ", ".join(str(r.relative_to(layout.code)) for r in requirements)
        key = environments.requirements_key(environment, layout.code, requirements)
        try:
            environment = environments.layer(cache, key, environment, [["-r", str(r)] for r in requirements],
                                             layout.code, run, ctx.event, names)
        except environments.InstallFailed as error:
            reason = f"AlgorithmError: Installing the requirements in {names} failed: {error}"
            suffix = f", exit code: {error.status}"
            raise WorkloadError(_truncate(reason, FAILURE_REASON_MAX - len(suffix)) + suffix) from None
    return environment.python


class _JobLog:
    """Every output line is a log event; ``log_metric`` lines also become metrics.

    Metrics are parsed on a thread of their own: the parser's first use imports
    the Braket SDK (seconds), and the lines read meanwhile must keep the time
    they were printed at.
    """

    def __init__(self, ctx: JobContext):
        self._ctx = ctx
        self._metric_lines: queue.Queue[str | None] = queue.Queue()
        self._parser: threading.Thread | None = None

    def __call__(self, line: str) -> None:
        self._ctx.event(line)
        if METRICS_MARKER in line:
            if self._parser is None:
                self._parser = threading.Thread(target=self._parse, name="metrics", daemon=True)
                self._parser.start()
            self._metric_lines.put(line)

    def _parse(self) -> None:
        while (line := self._metric_lines.get()) is not None:
            try:
                parsed = parse_metrics(line)
            except Exception as err:  # noqa: BLE001 — one bad line must not silence the metrics after it
                self._ctx.event(f"jobforge: could not read metrics from {line!r}: {err}")
                continue
            for name, value, step in parsed:
                self._ctx.metric(name, value, step)

    def close(self) -> None:
        """Wait until every metric line seen is recorded."""
        if self._parser is not None:
            self._metric_lines.put(None)
            self._parser.join()


def parse_metrics(line: str) -> list[tuple[str, float, int | None]]:
    """(name, value, iteration) of each metric on a ``log_metric`` line, parsed as the SDK does."""
    # Importing the SDK takes seconds: only jobs that log metrics pay for it, and not before their code starts.
    from braket.jobs.metrics_data.log_metrics_parser import LogMetricsParser

    parser = LogMetricsParser()
    parser.parse_log_message("", line)
    metrics = []
    for row in parser.all_metrics:
        iteration = row.pop(LogMetricsParser.ITERATION_NUMBER, None)
        row.pop(LogMetricsParser.TIMESTAMP, None)
        row.pop(LogMetricsParser.NODE_ID, None)
        step = int(iteration) if iteration is not None else None
        metrics.extend((name, value, step) for name, value in row.items())
    return metrics


def _failure_reason(layout: Layout, status: int) -> str:
    """``AlgorithmError: <message>, exit code: <code>``, as Braket words a failure of the job's code."""
    reason = layout.failure.read_text(encoding="utf-8").strip() if layout.failure.exists() else ""
    code = 128 - status if status < 0 else status  # killed by a signal: the shell's 128 + signal number
    if not reason:
        if status < 0:
            reason = f"The job's code was killed by signal {signal.Signals(-status).name}"
        else:
            reason = f"The job's code exited with status {status}"
    suffix = f", exit code: {code}"
    return _truncate(f"AlgorithmError: {reason}", FAILURE_REASON_MAX - len(suffix)) + suffix


def _truncate(text: str, limit: int = FAILURE_REASON_MAX) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _upload_results(ctx: JobContext, results_dir: Path, s3_path: str) -> None:
    """Tar the results folder's contents to ``<s3Path>/output/model.tar.gz``, where AwsQuantumJob reads them."""
    archive = results_dir.parent / RESULTS_ARCHIVE
    with tarfile.open(archive, "w:gz") as bundle:
        for entry in sorted(results_dir.iterdir()):
            bundle.add(entry, arcname=entry.name)
    ctx.upload(archive, f"{s3_path}/output/{RESULTS_ARCHIVE}")
