"""The web console in a real browser: Playwright driving Debian's headless Chromium against a real server.

Signs in through the URL ``jobforge console-url`` prints, watches a Braket hybrid job (created through boto3,
its quantum tasks run by the server) and a tiny Bedrock fine-tune appear in the live job list and their charts
gain points while they run, reads their logs, downloads an artifact, stops a job and sees it stop, cannot see
another account's job (that account signs in with its access keys and sees only its own), and has a forged
action without the CSRF token refused. Screenshots of every page are kept under test-artifacts/console/.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
import time
import urllib.request
from pathlib import Path

import pytest
import sqlalchemy as sa

from jobforge import tinylm
from jobforge.core.store import create_engine, jobs_table
from jobforge.testing_server import ServerProcess
from selftest_kind import SELFTEST_ENV
from test_bedrock_customization import LLAMA31_FT, jsonl, prompt_completion, sentences

CHROMIUM = "/usr/bin/chromium"
SHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "console"
SV1 = "arn:aws:braket:::device/quantum-simulator/amazon/sv1"
BUCKET = "console-e2e"
WAIT = 240_000  # ms: jobs start and train on a shared 2-core machine
ALGORITHM = '''
import os
import time

from braket.aws import AwsDevice
from braket.circuits import Circuit
from braket.jobs import save_job_result
from braket.jobs.metrics import log_metric


def main():
    device = AwsDevice(os.environ["AMZN_BRAKET_DEVICE_ARN"])
    for i in range(40):
        counts = device.run(Circuit().h(0).cnot(0, 1), shots=40).result().measurement_counts
        log_metric(metric_name="p00", value=counts.get("00", 0) / 40, iteration_number=i)
        print(f"console-e2e iteration {i}: {dict(counts)}", flush=True)
        time.sleep(0.4)
    save_job_result({"counts": dict(counts)})
'''

if not os.path.exists(CHROMIUM):
    if os.environ.get("CI"):
        raise RuntimeError(f"{CHROMIUM} is missing: .ci/run installs Debian's chromium package")
    pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium)", allow_module_level=True)


def cli(server, *args) -> str:
    done = subprocess.run([sys.executable, "-m", "jobforge.cli", *args, "--data-dir", str(server.data_dir)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    # More CPU slots than cores, so that the three jobs of the module run side by side.
    srv = ServerProcess(tmp_path_factory.mktemp("console") / "data", env=SELFTEST_ENV,
                        extra_args=["--cpus", "8"]).start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def account(server):
    return server.client("sts").get_caller_identity()["Account"]


@pytest.fixture(scope="module")
def prepared(server, tmp_path_factory):
    """The tiny base model registered, the training data and the Braket job's code in S3."""
    model = tinylm.build(tmp_path_factory.mktemp("tiny-llama"), sentences(200, 9) + [
        r["prompt"] + r["completion"] for r in prompt_completion(60, 8)])
    cli(server, "models", "add", LLAMA31_FT, str(model))
    s3 = server.client("s3")
    s3.create_bucket(Bucket=BUCKET)
    s3.put_object(Bucket=BUCKET, Key="ft/train.jsonl", Body=jsonl(prompt_completion(200)))
    source = io.BytesIO()
    with tarfile.open(fileobj=source, mode="w:gz") as tar:
        data = ALGORITHM.encode()
        info = tarfile.TarInfo("algo.py")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    s3.put_object(Bucket=BUCKET, Key="braket/source.tar.gz", Body=source.getvalue())
    return server


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def page(browser, server):
    context = browser.new_context(viewport={"width": 1280, "height": 860}, accept_downloads=True)
    context.set_default_timeout(30_000)
    page = context.new_page()
    page.on("dialog", lambda dialog: dialog.accept())  # the Stop and Delete confirmations
    yield page
    context.close()


def shot(page, name: str) -> None:
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def job_id(server, name: str) -> str:
    engine = create_engine(f"sqlite:///{server.data_dir / 'jobforge.db'}")
    try:
        with engine.connect() as conn:
            return conn.execute(sa.select(jobs_table.c.id).where(jobs_table.c.name == name)).scalar_one()
    finally:
        engine.dispose()


def points(page, metric: str) -> int:
    return int(page.locator(f"figure[data-metric='{metric}']").get_attribute("data-points") or 0)


def wait_for_more_points(page, metric: str, than: int) -> int:
    page.wait_for_function(f"""() => {{
        const f = document.querySelector("figure[data-metric='{metric}']");
        return f && Number(f.dataset.points) > {than}; }}""", timeout=WAIT)
    return points(page, metric)


def test_sign_in_through_the_one_time_url(page, server, account):
    url = cli(server, "console-url").strip()
    assert url.startswith(f"{server.endpoint}/_console/federation?token=")
    page.goto(url)
    page.wait_for_url("**/_console/jobs")
    assert page.get_by_test_id("account").inner_text() == account
    cookie = next(c for c in page.context.cookies() if c["name"] == "jobforge_console")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["expires"] > time.time()
    assert cookie["value"] not in page.content()
    page.goto(url)  # single use
    assert "expired or has been used" in page.content()
    page.goto(f"{server.endpoint}/_console/jobs")
    shot(page, "jobs-empty")


def test_a_braket_job_and_a_fine_tune_appear_in_the_live_list(page, prepared, account):
    page.goto(f"{prepared.endpoint}/_console/jobs")
    role = f"arn:aws:iam::{account}:role/JobforgeExecutionRole"
    prepared.client("braket").create_job(
        jobName="console-bell", roleArn=role, deviceConfig={"device": SV1},
        algorithmSpecification={"scriptModeConfig": {"entryPoint": "algo:main", "compressionType": "GZIP",
                                                     "s3Uri": f"s3://{BUCKET}/braket/source.tar.gz"}},
        outputDataConfig={"s3Path": f"s3://{BUCKET}/braket/output"},
        instanceConfig={"instanceType": "ml.m5.large", "volumeSizeInGb": 30})
    prepared.client("bedrock").create_model_customization_job(
        jobName="console-tune", customModelName="console-tune-model", roleArn=role, baseModelIdentifier=LLAMA31_FT,
        trainingDataConfig={"s3Uri": f"s3://{BUCKET}/ft/train.jsonl"},
        outputDataConfig={"s3Uri": f"s3://{BUCKET}/bedrock"},
        hyperParameters={"epochCount": "10", "batchSize": "1", "learningRate": "0.003", "fullFineTuning": "true"})
    # No reload: the list's rows come by themselves.
    page.locator("tr[data-job='console-bell']").wait_for()
    page.locator("tr[data-job='console-tune']").wait_for()
    assert "Braket hybrid job" in page.locator("tr[data-job='console-bell']").inner_text()
    assert "Bedrock customization" in page.locator("tr[data-job='console-tune']").inner_text()
    page.select_option("select[name=family]", "braket-job")
    page.locator("tr[data-job='console-tune']").wait_for(state="detached")
    assert page.locator("tr[data-job='console-bell']").count() == 1
    page.select_option("select[name=family]", "")
    page.locator("tr[data-job='console-tune']").wait_for()
    shot(page, "jobs")


def test_the_fine_tune_s_loss_chart_grows_while_it_trains(page, prepared):
    page.goto(f"{prepared.endpoint}/_console/jobs/{job_id(prepared, 'console-tune')}")
    first = wait_for_more_points(page, "training_loss", 0)
    assert wait_for_more_points(page, "training_loss", first) > first
    assert page.get_by_test_id("job-state").inner_text() == "InProgress"
    assert page.locator("#log-lines li").count() > 0
    shot(page, "bedrock-fine-tune-training")


def test_the_braket_job_s_chart_grows_while_it_runs_and_its_log_reads(page, prepared):
    page.goto(f"{prepared.endpoint}/_console/jobs/{job_id(prepared, 'console-bell')}")
    first = wait_for_more_points(page, "p00", 0)
    assert page.get_by_test_id("job-state").inner_text() in ("QUEUED", "RUNNING")
    assert wait_for_more_points(page, "p00", first) > first
    assert page.get_by_test_id("job-state").inner_text() == "RUNNING"  # gained while it ran
    page.locator("#log-lines li", has_text="console-e2e iteration 1:").wait_for(timeout=WAIT)
    page.fill("#log-search", "iteration 1:")
    visible = page.locator("#log-lines li:not([hidden])")
    assert visible.count() >= 1 and all("iteration 1:" in t for t in visible.all_inner_texts())
    page.fill("#log-search", "")
    shot(page, "braket-job-running")


def test_download_an_artifact_of_the_finished_braket_job(page, prepared):
    page.goto(f"{prepared.endpoint}/_console/jobs/{job_id(prepared, 'console-bell')}")
    page.get_by_test_id("job-state").filter(has_text="COMPLETED").wait_for(timeout=WAIT)
    link = page.locator("#artifacts a", has_text="model.tar.gz")
    link.wait_for()
    with page.expect_download() as download:
        link.click()
    with tarfile.open(download.value.path()) as tar:
        result = json.load(tar.extractfile("results.json"))["dataDictionary"]  # what save_job_result saved
    assert sum(result["counts"].values()) == 40
    assert points(page, "p00") == 40
    shot(page, "braket-job-completed")


def test_stop_a_job_and_see_it_stop(page, prepared, account):
    prepared.client("sagemaker").create_job(
        JobName="console-long", JobCategory="DataTransformation", JobConfigSchemaVersion="1.0.0",
        JobConfigDocument=json.dumps({"Steps": 600, "SleepSeconds": 0.5}),
        RoleArn=f"arn:aws:iam::{account}:role/JobforgeExecutionRole")
    page.goto(f"{prepared.endpoint}/_console/jobs/{job_id(prepared, 'console-long')}")
    page.get_by_test_id("job-state").filter(has_text="InProgress").wait_for(timeout=WAIT)
    wait_for_more_points(page, "progress", 0)
    page.get_by_role("button", name="Stop").click()  # confirmed by the dialog handler
    page.get_by_test_id("job-state").filter(has_text="Stopped").wait_for(timeout=60_000)
    described = prepared.client("sagemaker").describe_job(JobName="console-long", JobCategory="DataTransformation")
    assert described["JobStatus"] == "Stopped"
    shot(page, "job-stopped")
    page.get_by_role("button", name="Delete").click()  # there once the job has ended; confirmed by the handler
    page.wait_for_url("**/_console/jobs")
    assert page.locator("tr[data-job='console-long']").count() == 0
    with pytest.raises(Exception, match="ResourceNotFound"):
        prepared.client("sagemaker").describe_job(JobName="console-long", JobCategory="DataTransformation")


def test_a_forged_action_without_the_csrf_token_is_refused(page, prepared, account):
    prepared.client("sagemaker").create_job(
        JobName="console-target", JobCategory="DataTransformation", JobConfigSchemaVersion="1.0.0",
        JobConfigDocument=json.dumps({"Steps": 600, "SleepSeconds": 0.5}),
        RoleArn=f"arn:aws:iam::{account}:role/JobforgeExecutionRole")
    target = job_id(prepared, "console-target")
    page.goto(f"{prepared.endpoint}/_console/jobs/{target}")
    token = json.loads(page.locator("body").get_attribute("hx-headers"))["X-CSRF-Token"]
    stop = f"{prepared.endpoint}/_console/jobs/{target}/stop"
    request = page.context.request  # carries the session cookie, as a forged submission would
    assert request.post(stop, form={"csrf": "not-the-token"}).status == 403
    assert request.post(stop, form={}).status == 403
    refused = request.post(stop, headers={"X-CSRF-Token": token, "Origin": "http://elsewhere.example"})
    assert refused.status == 403
    status = prepared.client("sagemaker").describe_job(JobName="console-target", JobCategory="DataTransformation")
    assert status["JobStatus"] == "InProgress"
    assert request.post(stop, headers={"X-CSRF-Token": token}, max_redirects=0).status == 303  # the page's token
    assert prepared.client("sagemaker").describe_job(
        JobName="console-target", JobCategory="DataTransformation")["JobStatus"] in ("Stopping", "Stopped")


def test_another_account_s_job_stays_invisible(page, browser, prepared):
    cli(prepared, "accounts", "create", "other")
    other = prepared.client("sagemaker", profile="other")
    other_account = prepared.client("sts", profile="other").get_caller_identity()["Account"]
    other.create_job(JobName="theirs", JobCategory="DataTransformation", JobConfigSchemaVersion="1.0.0",
                     JobConfigDocument=json.dumps({"Steps": 2, "SleepSeconds": 0.1}),
                     RoleArn=f"arn:aws:iam::{other_account}:role/JobforgeExecutionRole")
    theirs = job_id(prepared, "theirs")
    page.goto(f"{prepared.endpoint}/_console/jobs?search=theirs")
    assert page.locator("tr[data-job='theirs']").count() == 0
    assert "No jobs match" in page.locator("#job-rows").inner_text()
    response = page.goto(f"{prepared.endpoint}/_console/jobs/{theirs}")
    assert response.status == 404 and "theirs" not in page.content()
    assert page.context.request.get(f"{prepared.endpoint}/_console/api/jobs/{theirs}/updates").status == 404

    # The other account signs in with its access keys and sees its job, not ours.
    keys = prepared.credentials("other")
    context = browser.new_context(viewport={"width": 1280, "height": 860})
    try:
        theirs_page = context.new_page()
        theirs_page.goto(f"{prepared.endpoint}/_console/jobs")
        theirs_page.wait_for_url("**/_console/signin")
        shot(theirs_page, "signin")
        theirs_page.fill("input[name=access_key_id]", keys["aws_access_key_id"])
        theirs_page.fill("input[name=secret_access_key]", "wrong")
        theirs_page.click("button[type=submit]")
        assert "is not right" in theirs_page.content()
        theirs_page.fill("input[name=access_key_id]", keys["aws_access_key_id"])
        theirs_page.fill("input[name=secret_access_key]", keys["aws_secret_access_key"])
        theirs_page.click("button[type=submit]")
        theirs_page.wait_for_url("**/_console/jobs")
        assert theirs_page.get_by_test_id("account").inner_text() == other_account
        theirs_page.locator("tr[data-job='theirs']").wait_for()
        assert theirs_page.locator("tr[data-job='console-bell']").count() == 0
        assert keys["aws_secret_access_key"] not in theirs_page.content()
    finally:
        context.close()


def test_s3_upload_download_presign_and_delete(page, prepared, tmp_path):
    page.goto(f"{prepared.endpoint}/_console/s3")
    page.get_by_role("link", name=BUCKET).click()
    page.get_by_role("link", name="ft/").click()
    upload = tmp_path / "notes.txt"
    upload.write_text("uploaded from the console")
    page.set_input_files("input[name=file]", str(upload))
    page.get_by_role("button", name="Upload", exact=True).click()
    row = page.locator("tr[data-key='ft/notes.txt']")
    row.wait_for()
    assert prepared.client("s3").get_object(Bucket=BUCKET, Key="ft/notes.txt")["Body"].read() == \
        b"uploaded from the console"
    with page.expect_download() as download:
        row.get_by_role("link", name="notes.txt").click()
    assert Path(download.value.path()).read_text() == "uploaded from the console"
    shot(page, "s3-objects")
    row.get_by_role("button", name="Presigned link").click()
    url = page.get_by_test_id("presigned-url").input_value()
    assert "X-Amz-Signature=" in url
    assert urllib.request.urlopen(url, timeout=10).read() == b"uploaded from the console"  # no cookie needed
    shot(page, "s3-presigned")
    page.go_back()
    page.locator("tr[data-key='ft/notes.txt']").get_by_role("button", name="Delete").click()
    page.locator("tr[data-key='ft/notes.txt']").wait_for(state="detached")
    assert "Contents" not in prepared.client("s3").list_objects_v2(Bucket=BUCKET, Prefix="ft/notes.txt")


def test_resource_pages(page, prepared):
    page.goto(f"{prepared.endpoint}/_console/quantum-tasks")
    tasks = page.locator("tbody tr a")
    assert tasks.count() >= 40
    tasks.first.click()
    histogram = page.get_by_test_id("histogram")
    labels = histogram.locator("code").all_inner_texts()
    assert labels and set(labels) <= {"00", "01", "10", "11"}
    counts = [int(li.locator("span").last.inner_text()) for li in histogram.locator("li").all()]
    assert sum(counts) == 40
    shot(page, "quantum-task")
    for name, heading in (("models", "Models"), ("endpoints", "Endpoints"), ("functions", "Functions and agents"),
                          ("quantum-tasks", "Quantum tasks"), ("s3", "S3 buckets")):
        page.goto(f"{prepared.endpoint}/_console/{name}")
        assert page.get_by_role("heading", level=1).inner_text() == heading
        assert page.locator(".alert").count() == 0, page.locator(".alert").all_inner_texts()
        shot(page, name)
    assert LLAMA31_FT in page.goto(f"{prepared.endpoint}/_console/models").text()


def test_keyboard_phone_width_and_dark_theme(page, browser, prepared):
    page.goto(f"{prepared.endpoint}/_console/jobs")
    page.keyboard.press("/")
    assert page.evaluate("document.activeElement.id") == "search"
    page.keyboard.type("console-bell")
    page.locator("tr[data-job='console-tune']").wait_for(state="detached")
    page.locator("tr[data-job='console-bell'] a").focus()
    page.keyboard.press("Enter")
    page.wait_for_url("**/_console/jobs/*")
    assert page.get_by_role("heading", level=1).inner_text() == "console-bell"

    cookies = page.context.cookies()
    phone = browser.new_context(viewport={"width": 390, "height": 844}, color_scheme="dark", is_mobile=True)
    try:
        phone.add_cookies(cookies)
        small = phone.new_page()
        small.goto(f"{prepared.endpoint}/_console/jobs")
        assert small.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
        background = small.evaluate("getComputedStyle(document.body).backgroundColor")
        assert background == "rgb(18, 22, 28)"  # the dark theme, as the system asks
        shot(small, "jobs-phone-dark")
        small.locator("[data-theme-toggle]").click()
        assert small.evaluate("getComputedStyle(document.body).backgroundColor") == "rgb(247, 248, 250)"
        small.goto(f"{prepared.endpoint}/_console/jobs/{job_id(prepared, 'console-tune')}")
        assert small.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
        shot(small, "job-phone-light")
    finally:
        phone.close()


def test_the_fine_tune_completes_and_its_metrics_file_downloads(page, prepared):
    page.goto(f"{prepared.endpoint}/_console/jobs/{job_id(prepared, 'console-tune')}")
    page.get_by_test_id("job-state").filter(has_text="Completed").wait_for(timeout=WAIT)
    link = page.locator("#artifacts a", has_text="step_wise_training_metrics.csv")
    link.wait_for()
    with page.expect_download() as download:
        link.click()
    header = Path(download.value.path()).read_text().splitlines()[0]
    assert header.startswith("step_number,epoch_number,training_loss")
    shot(page, "bedrock-fine-tune-completed")
