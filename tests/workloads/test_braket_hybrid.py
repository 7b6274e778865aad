"""Braket hybrid jobs through the workload, with CreateJob requests built by the Braket SDK itself."""

from __future__ import annotations

import io
import json
import os
import shutil
import sys
import tarfile
import textwrap
import threading
import time
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING

import boto3
import pytest

from jobforge.execution.context import JobStopped, LocalJobContext, WorkloadError, split_s3_uri
from jobforge.workloads.braket import hybrid
from jobforge.workloads.braket.hybrid import parse_metrics

if TYPE_CHECKING:  # the Braket SDK is imported by the tests that use it, so that collecting them stays fast
    from braket.aws import AwsQuantumJob

REGION = "us-east-1"
ACCOUNT = "000000000000"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/service-role/AmazonBraketJobsExecutionRole"
DEVICE = "local:braket/braket_sv"

ALGORITHM = '''
import os
import signal
import subprocess
import time

from braket.circuits import Circuit, Observable
from braket.devices import LocalSimulator
from braket.jobs import (
    get_input_data_dir, get_job_device_arn, get_job_name, load_job_checkpoint,
    save_job_checkpoint, save_job_result,
)
from braket.jobs.metrics import log_metric


def start_here(iterations: int, fail_at: str = "", hang: str = ""):
    try:
        start = load_job_checkpoint(checkpoint_file_suffix="ckpt")["next"]
    except FileNotFoundError:
        start = 0
    print(f"starting at {start}")
    if hang:
        child = subprocess.Popen(["sleep", "120"])
        print(f"child {child.pid}", flush=True)
        signal.signal(signal.SIGTERM, lambda *_: (print("got SIGTERM", flush=True), os._exit(143)))
        time.sleep(120)
    device = LocalSimulator(get_job_device_arn().split("/")[-1])
    energy = None
    for i in range(start, iterations):
        circuit = Circuit().ry(0, 0.3 * i).cnot(0, 1).expectation(Observable.Z(), target=[1])
        energy = device.run(circuit, shots=0).result().values[0]
        log_metric("energy", energy, iteration_number=i)
        save_job_checkpoint({"next": i + 1}, checkpoint_file_suffix="ckpt")
        if fail_at == str(i):
            raise ValueError(f"boom at iteration {i}")
    with open(os.path.join(get_input_data_dir("data"), "numbers.txt")) as numbers:
        data = numbers.read()
    with open("extra.txt", "w") as extra:
        extra.write("written to the working directory")
    save_job_result({
        "energy": energy,
        "start": start,
        "data": data,
        "job_name": get_job_name(),
        "types": [type(iterations).__name__, type(fail_at).__name__],
        "env": {name: value for name, value in os.environ.items() if name.startswith("AMZN_BRAKET_")},
        "cwd": os.getcwd(),
    })
'''


class LocalS3Answers:
    """The AWS calls of the SDK's own AwsSession, answered from the local S3 directory of the test."""

    def __init__(self, s3_root: Path):
        super().__init__(
            boto_session=boto3.Session(
                region_name=REGION, aws_access_key_id="test", aws_secret_access_key="test"
            )
        )
        self.s3_root = s3_root
        self.jobs: dict[str, dict] = {}

    def _path(self, uri: str) -> Path:
        bucket, key = split_s3_uri(uri)
        return self.s3_root / bucket / key

    def default_bucket(self):
        return f"amazon-braket-{REGION}-{ACCOUNT}"

    def get_default_jobs_role(self):
        return ROLE

    def upload_to_s3(self, filename, s3_uri):
        self._path(s3_uri).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(filename, self._path(s3_uri))

    def download_from_s3(self, s3_uri, filename):
        shutil.copyfile(self._path(s3_uri), filename)

    def get_full_image_tag(self, image_uri):
        return f"latest-cpu-py{sys.version_info.major}{sys.version_info.minor}-ubuntu22.04"

    def create_job(self, **request):
        arn = f"arn:aws:braket:{REGION}:{ACCOUNT}:job/{request['jobName']}"
        self.jobs[arn] = request
        return arn

    def get_job(self, arn):
        return {**self.jobs[arn], "jobArn": arn, "status": "COMPLETED"}


@pytest.fixture
def session(tmp_path):
    from braket.aws import AwsSession

    class LocalS3Session(LocalS3Answers, AwsSession):
        pass

    return LocalS3Session(tmp_path / "s3")


def make_ctx(tmp_path: Path, name: str = "attempt1", attempt: int = 1, **kwargs) -> LocalJobContext:
    return LocalJobContext(
        s3_root=tmp_path / "s3",
        work_dir=tmp_path / name / "work",
        checkpoint_dir=tmp_path / name / "checkpoints",
        attempt=attempt,
        env={"AWS_DEFAULT_REGION": REGION, "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test"},
        **kwargs,
    )


def write_source(tmp_path: Path, files: dict[str, str]) -> Path:
    source = tmp_path / "src" / "algorithms"
    source.mkdir(parents=True)
    for name, text in files.items():
        (source / name).write_text(textwrap.dedent(text))
    (tmp_path / "numbers.txt").write_text("1 2 3")
    return source


def create_job(session, tmp_path, hyperparameters, *, files=None, entry_point="algorithms.algo:start_here",
               job_name="vqe-job") -> tuple[AwsQuantumJob, dict]:
    from braket.aws import AwsQuantumJob

    source = write_source(tmp_path, files or {"algo.py": ALGORITHM})
    job = AwsQuantumJob.create(
        device=DEVICE,
        source_module=str(source),
        entry_point=entry_point,
        job_name=job_name,
        hyperparameters=hyperparameters,
        input_data={"data": str(tmp_path / "numbers.txt")},
        aws_session=session,
        wait_until_complete=False,
    )
    return job, {**session.jobs[job.arn], "jobArn": job.arn, "jobToken": "job-token-1"}


def test_job_created_by_the_sdk_runs_and_its_result_is_read_by_the_sdk(session, tmp_path, monkeypatch):
    job, spec = create_job(session, tmp_path, {"iterations": 3})
    ctx = make_ctx(tmp_path)

    hybrid.run(ctx, spec)

    monkeypatch.chdir(tmp_path)
    result = job.result()
    assert result["start"] == 0
    assert result["data"] == "1 2 3"
    assert result["job_name"] == "vqe-job"
    assert result["types"] == ["int", "str"]  # hyperparameters bound as keyword arguments, converted
    assert result["energy"] == pytest.approx(0.8253356149096783)  # cos(0.6)

    env = result["env"]
    bucket = session.default_bucket()
    assert env["AMZN_BRAKET_DEVICE_ARN"] == DEVICE
    assert env["AMZN_BRAKET_JOB_TOKEN"] == "job-token-1"
    assert env["AMZN_BRAKET_OUT_S3_BUCKET"] == bucket
    assert env["AMZN_BRAKET_TASK_RESULTS_S3_URI"] == f"s3://{bucket}/jobs/vqe-job/tasks"
    assert env["AMZN_BRAKET_SCRIPT_ENTRY_POINT"] == "algorithms.algo:start_here"
    assert env["AMZN_BRAKET_SCRIPT_COMPRESSION_TYPE"] == "GZIP"
    assert env["AMZN_BRAKET_CHECKPOINT_DIR"] == str(ctx.checkpoint_dir)
    assert json.loads(Path(env["AMZN_BRAKET_HP_FILE"]).read_text()) == {"iterations": "3"}
    assert result["cwd"] == str(Path(env["AMZN_BRAKET_JOB_RESULTS_DIR"]).parent / "code/customer_code/extracted")

    # Files the code writes to its working directory (the code folder) are not results.
    archive = session.s3_root / bucket / split_s3_uri(spec["outputDataConfig"]["s3Path"])[1] / "output/model.tar.gz"
    with tarfile.open(archive) as bundle:
        assert sorted(bundle.getnames()) == ["results.json"]

    assert [(m["name"], m["step"]) for m in ctx.metrics] == [("energy", 0), ("energy", 1), ("energy", 2)]
    assert ctx.metrics[1]["value"] == pytest.approx(0.9553364891256061)  # cos(0.3)
    assert any(line.startswith("Metrics - timestamp=") for line in ctx.events)
    assert "starting at 0" in ctx.events
    assert [status for status, _ in ctx.statuses] == ["DOWNLOADING_DATA", "RUNNING", "UPLOADING_RESULTS"]

    checkpoint_uri = spec["checkpointConfig"]["s3Uri"]
    synced = session._path(f"{checkpoint_uri}/vqe-job_ckpt.json")
    assert json.loads(synced.read_text())["dataDictionary"] == {"next": 3}


def test_user_exception_fails_with_its_message_and_a_new_attempt_resumes_from_the_checkpoint(session, tmp_path):
    _, spec = create_job(session, tmp_path, {"iterations": 4, "fail_at": 1})
    first = make_ctx(tmp_path)
    with pytest.raises(WorkloadError) as failure:
        hybrid.run(first, spec)
    assert str(failure.value) == "AlgorithmError: ValueError: boom at iteration 1, exit code: 1"
    assert any("Traceback" in line for line in first.events)
    assert (Path(spec["checkpointConfig"]["s3Uri"].replace("s3://", f"{tmp_path}/s3/")) / "vqe-job_ckpt.json").exists()

    # Resumed on another host: nothing local, the checkpoint comes back from S3.
    spec["hyperParameters"]["fail_at"] = ""
    second = make_ctx(tmp_path, "attempt2", attempt=2)
    hybrid.run(second, spec)
    assert "starting at 2" in second.events
    assert [m["step"] for m in second.metrics] == [2, 3]

    # Resumed on the same host: the local checkpoint directory wins.
    third = make_ctx(tmp_path, "attempt2", attempt=3)
    hybrid.run(third, spec)
    assert "starting at 4" in third.events


def test_stop_terminates_the_whole_process_group(session, tmp_path):
    _, spec = create_job(session, tmp_path, {"iterations": 1, "hang": "yes"})
    ctx = make_ctx(tmp_path)

    def stop_when_started():
        deadline = time.monotonic() + 60
        while not any(line.startswith("child ") for line in ctx.events) and time.monotonic() < deadline:
            time.sleep(0.05)
        ctx.stop_requested = True

    threading.Thread(target=stop_when_started, daemon=True).start()
    started = time.monotonic()
    with pytest.raises(JobStopped):
        hybrid.run(ctx, spec)
    assert time.monotonic() - started < 30
    assert "got SIGTERM" in ctx.events
    child = int(next(line for line in ctx.events if line.startswith("child ")).split()[1])
    assert not Path(f"/proc/{child}").exists() or "Z" in Path(f"/proc/{child}/stat").read_text().split()[2]


def test_hybrid_job_decorator(session, tmp_path, monkeypatch):
    from braket.jobs import hybrid_job

    monkeypatch.chdir(tmp_path)

    @hybrid_job(device=DEVICE, aws_session=session, job_name="decorated", dependencies=["numpy"])
    def decorated(scale: int, offset=0.5):
        from braket.circuits import Circuit
        from braket.devices import LocalSimulator
        from braket.jobs.metrics import log_metric

        counts = LocalSimulator().run(Circuit().x(0).measure(0), shots=10).result().measurement_counts
        log_metric("ones", counts["1"], iteration_number=0)
        return {"ones": counts["1"] * scale + offset}

    job = decorated(3)
    spec = {**session.jobs[job.arn], "jobArn": job.arn, "jobToken": "t"}
    assert spec["algorithmSpecification"]["scriptModeConfig"]["entryPoint"].endswith(".entry_point:decorated")
    ctx = make_ctx(tmp_path)

    hybrid.run(ctx, spec)

    assert job.result() == {"ones": 30.5}
    assert ctx.metrics[0]["name"] == "ones" and ctx.metrics[0]["value"] == 10
    # the decorator's dependencies become a requirements.txt, installed into a cached environment
    assert any("requirements.txt: building an environment" in line or "requirements.txt: using the environment" in line
               for line in ctx.events), ctx.events


def _upload(tmp_path: Path, key: str, data: bytes) -> str:
    path = tmp_path / "s3" / "bucket" / key
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return f"s3://bucket/{key}"


def _raw_spec(source_uri: str, entry_point: str, compression: str | None, **extra) -> dict:
    script = {"entryPoint": entry_point, "s3Uri": source_uri}
    if compression:
        script["compressionType"] = compression
    return {
        "jobName": "raw-job",
        "jobArn": f"arn:aws:braket:{REGION}:{ACCOUNT}:job/raw-job",
        "roleArn": ROLE,
        "algorithmSpecification": {"scriptModeConfig": script},
        "outputDataConfig": {"s3Path": "s3://bucket/out"},
        "instanceConfig": {"instanceType": "ml.m5.large", "volumeSizeInGb": 30, "instanceCount": 1},
        "deviceConfig": {"device": "arn:aws:braket:::device/quantum-simulator/amazon/sv1"},
        **extra,
    }


MAIN_SCRIPT = """
from braket.jobs import get_hyperparameters, save_job_result


def plain(a, b=2):
    save_job_result({"a": a, "b": b})


if __name__ == "__main__":
    save_job_result({"hyperparameters": get_hyperparameters()})
"""


def _read_result(tmp_path: Path) -> dict:
    with tarfile.open(tmp_path / "s3/bucket/out/output/model.tar.gz") as bundle:
        return json.load(bundle.extractfile("results.json"))["dataDictionary"]


def test_single_file_module_entry_point_without_compression(tmp_path):
    uri = _upload(tmp_path, "code/job_main.py", MAIN_SCRIPT.encode())
    spec = _raw_spec(uri, "job_main", "NONE", hyperParameters={"a": "1"})
    hybrid.run(make_ctx(tmp_path), spec)
    assert _read_result(tmp_path) == {"hyperparameters": {"a": "1"}}

    spec["algorithmSpecification"]["scriptModeConfig"]["entryPoint"] = "job_main:plain"
    hybrid.run(make_ctx(tmp_path, "second"), spec)
    assert _read_result(tmp_path) == {"a": "1", "b": 2}  # unannotated: passed as the string it is


def test_zip_archive_and_no_hyperparameters(tmp_path):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as bundle:
        bundle.writestr("pkg/__init__.py", "")
        bundle.writestr("pkg/job_main.py", MAIN_SCRIPT)
    uri = _upload(tmp_path, "code/source.zip", buffer.getvalue())
    ctx = make_ctx(tmp_path)
    hybrid.run(ctx, _raw_spec(uri, "pkg.job_main", "ZIP"))
    assert _read_result(tmp_path) == {"hyperparameters": {}}


def test_requirements_that_cannot_be_installed_fail_the_job_clearly(tmp_path):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as bundle:
        for name, text in {"job_main.py": MAIN_SCRIPT, "requirements.txt": "not a valid requirement!!\n"}.items():
            info = tarfile.TarInfo(name)
            info.size = len(text)
            bundle.addfile(info, io.BytesIO(text.encode()))
    uri = _upload(tmp_path, "code/source.tar.gz", buffer.getvalue())
    with pytest.raises(WorkloadError, match=r"Installing the requirements in requirements.txt failed: ERROR"):
        hybrid.run(make_ctx(tmp_path), _raw_spec(uri, "job_main", "GZIP"))


def test_missing_input_channel_and_exit_status_failures(tmp_path):
    uri = _upload(tmp_path, "code/job_main.py", b"import sys\nsys.exit(3)\n")
    missing = [{"channelName": "train", "dataSource": {"s3DataSource": {"s3Uri": "s3://bucket/nothing"}}}]
    with pytest.raises(WorkloadError, match="No data found for channel 'train'"):
        hybrid.run(make_ctx(tmp_path), _raw_spec(uri, "job_main", "NONE", inputDataConfig=missing))
    with pytest.raises(WorkloadError, match="^AlgorithmError: The job.s code exited with status 3, exit code: 3$"):
        hybrid.run(make_ctx(tmp_path, "second"), _raw_spec(uri, "job_main", "NONE"))


def test_unimportable_entry_point_and_container_only_jobs_fail_clearly(tmp_path):
    uri = _upload(tmp_path, "code/job_main.py", MAIN_SCRIPT.encode())
    with pytest.raises(WorkloadError, match="ModuleNotFoundError: No module named 'job_mian'"):
        hybrid.run(make_ctx(tmp_path), _raw_spec(uri, "job_mian:main", "NONE"))
    spec = _raw_spec(uri, "job_main", "NONE")
    spec["algorithmSpecification"] = {"containerImage": {"uri": "123456789012.dkr.ecr.us-east-1.amazonaws.com/x:1"}}
    with pytest.raises(WorkloadError, match="scriptModeConfig is required"):
        hybrid.run(make_ctx(tmp_path, "second"), spec)


def test_metrics_lines_parse_like_the_sdk():
    assert parse_metrics("Metrics - timestamp=1795457264.32; energy=0.8775; iteration_number=4;") == [
        ("energy", 0.8775, 4)
    ]
    assert parse_metrics("[node-1] Metrics - timestamp=1.0; loss=2; acc=0.5;") == [("loss", 2.0, None), ("acc", 0.5, None)]


def test_worker_private_variables_do_not_reach_user_code(tmp_path, monkeypatch):
    monkeypatch.setenv("JOBFORGE_INTERNAL_TOKEN", "secret")
    script = (
        "import os\nfrom braket.jobs import save_job_result\n"
        "save_job_result({'leak': os.environ.get('JOBFORGE_INTERNAL_TOKEN'),"
        " 'input_dir': os.environ.get('AMZN_BRAKET_INPUT_DIR')})\n"
    )
    uri = _upload(tmp_path, "code/job_main.py", script.encode())
    hybrid.run(make_ctx(tmp_path), _raw_spec(uri, "job_main", None, inputDataConfig=[]))
    assert _read_result(tmp_path) == {"leak": None, "input_dir": None}  # no channels: no input dir
    assert os.environ["JOBFORGE_INTERNAL_TOKEN"] == "secret"


def test_lines_keep_their_time_while_metrics_are_parsed(monkeypatch):
    """The first metric line imports the SDK's parser (seconds): the lines after it are not held up."""
    import time as clock

    from jobforge.workloads.braket import hybrid

    class Recorder:
        def __init__(self):
            self.events, self.metrics = [], []

        def event(self, text):
            self.events.append((clock.monotonic(), text))

        def metric(self, name, value, step=None):
            self.metrics.append((name, value, step))

    def slow_parse(line):
        clock.sleep(0.5)
        return [("energy", float(line.rsplit("=", 1)[1]), None)]

    monkeypatch.setattr(hybrid, "parse_metrics", slow_parse)
    recorder = Recorder()
    job_log = hybrid._JobLog(recorder)
    for i in range(3):
        job_log(f"Metrics - energy={i}")
        job_log(f"plain line {i}")
    assert recorder.events[-1][0] - recorder.events[0][0] < 0.3  # not 1.5 s behind the first
    job_log.close()
    assert recorder.metrics == [("energy", 0.0, None), ("energy", 1.0, None), ("energy", 2.0, None)]


def test_channel_uri_is_a_key_prefix(tmp_path):
    for key in ("datasets/train-0.csv", "datasets/train-1.csv", "datasets/train/nested.csv", "datasets/test.csv"):
        _upload(tmp_path, key, key.encode())
    script = (
        "import os\nfrom braket.jobs import get_input_data_dir, save_job_result\n"
        "root = get_input_data_dir('train')\n"
        "save_job_result({'files': sorted(os.path.relpath(os.path.join(d, f), root)"
        " for d, _, fs in os.walk(root) for f in fs)})\n"
    )
    uri = _upload(tmp_path, "code/job_main.py", script.encode())
    channels = [{"channelName": "train", "dataSource": {"s3DataSource": {"s3Uri": "s3://bucket/datasets/train"}}}]
    hybrid.run(make_ctx(tmp_path), _raw_spec(uri, "job_main", None, inputDataConfig=channels))
    assert _read_result(tmp_path) == {"files": ["train-0.csv", "train-1.csv", "train/nested.csv"]}
