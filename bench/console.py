"""The web console's cost to the control plane: IAM GetRole throughput with and without consoles open on a busy
job list, side by side in one run. Target: an open console costs less than 5 % of the throughput.

The server holds 500 jobs of the engine's self-test kind, one running at a time and each done in a second or two,
so the list changes about every poll. A console open on it is what its page sends: every 2 s a GET of the list's
rows with the session cookie and the version it shows (``X-Console-Version``), answered 204 while nothing changed
and with only the rows changed since when something did. The consoles are emulated by threads sending exactly those requests, so
that a browser's own rendering does not take the CPU the server is measured on. The control plane is measured as
``bench/control_plane.py`` does (pre-signed GetRole replayed over kept-alive connections); rounds alternate with
and without the consoles, and each figure is the median round.

    python bench/console.py [--consoles 1] [--seconds 4] [--rounds 5] [--threads 4]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from http.cookies import SimpleCookie
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench"), str(ROOT / "tests")]
from control_plane import POLICY, replay, signed_request  # noqa: E402
from selftest_kind import SELFTEST_ENV  # noqa: E402

from jobforge.testing_server import ServerProcess  # noqa: E402

JOBS = 500
POLL_SECONDS = 2.0  # the job list page's poll (hx-trigger "every 2s")
TARGET_LOSS = 0.05


def sign_in(server: ServerProcess) -> str:
    """The session cookie a browser gets from the URL ``jobforge console-url`` prints."""
    url = subprocess.run([sys.executable, "-m", "jobforge.cli", "console-url", "--data-dir", str(server.data_dir)],
                         capture_output=True, text=True, check=True).stdout.strip()
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port)
    conn.request("GET", f"{parts.path}?{parts.query}")
    response = conn.getresponse()
    response.read()
    cookies = SimpleCookie()
    for header in response.headers.get_all("set-cookie"):
        cookies.load(header)
    return f"jobforge_console={cookies['jobforge_console'].value}"


class Console(threading.Thread):
    """One open job list: its poll, as the page sends it."""

    def __init__(self, endpoint: str, cookie: str):
        super().__init__(daemon=True)
        self.host = urlsplit(endpoint)
        self.cookie = cookie
        self.version = ""
        self.answers: dict[int, int] = {}
        self.stopping = threading.Event()

    def run(self) -> None:
        conn = http.client.HTTPConnection(self.host.hostname, self.host.port)
        while not self.stopping.is_set():
            headers = {"Cookie": self.cookie, "HX-Request": "true", "HX-Trigger": "job-rows"}
            if self.version:
                headers["X-Console-Version"] = self.version
            conn.request("GET", "/_console/jobs/rows?search=&family=&status=", headers=headers)
            response = conn.getresponse()
            response.read()
            self.version = response.headers.get("x-console-version") or self.version
            self.answers[response.status] = self.answers.get(response.status, 0) + 1
            self.stopping.wait(POLL_SECONDS)
        conn.close()


def busy_server(tmp: Path) -> ServerProcess:
    server = ServerProcess(tmp / "data", env=SELFTEST_ENV, extra_args=["--cpus", "1"]).start()
    server.client("iam").create_role(RoleName="BenchRole", AssumeRolePolicyDocument=POLICY)
    sagemaker = server.client("sagemaker")
    account = server.client("sts").get_caller_identity()["Account"]
    for i in range(JOBS):
        sagemaker.create_job(JobName=f"busy-{i:04d}", JobCategory="DataTransformation", JobConfigSchemaVersion="1.0.0",
                             JobConfigDocument=json.dumps({"Steps": 2, "SleepSeconds": 0.5}),
                             RoleArn=f"arn:aws:iam::{account}:role/JobforgeExecutionRole")
    return server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--consoles", type=int, default=1, help="open job lists (default 1)")
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=4, help="control-plane client threads")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        server = busy_server(Path(tmp))
        try:
            creds = server.credentials()
            request = signed_request(server.endpoint, creds["aws_access_key_id"], creds["aws_secret_access_key"])
            cookie = sign_in(server)
            without, with_console, answers = [], [], {}
            for _ in range(args.rounds):  # alternating, so that drifts in the machine's load hit both alike
                without.append(replay(server.endpoint, request, args.threads, args.seconds))
                consoles = [Console(server.endpoint, cookie) for _ in range(args.consoles)]
                for console in consoles:
                    console.start()
                time.sleep(0.2)  # each console has loaded its rows once, as a page does when it opens
                with_console.append(replay(server.endpoint, request, args.threads, args.seconds))
                for console in consoles:
                    console.stopping.set()
                    console.join()
                    for status, n in console.answers.items():
                        answers[status] = answers.get(status, 0) + n
        finally:
            server.stop()
    base = sorted(without, key=lambda r: r["rps"])[len(without) // 2]
    busy = sorted(with_console, key=lambda r: r["rps"])[len(with_console) // 2]
    ratio = busy["rps"] / base["rps"]
    print(f"\nIAM GetRole, {args.threads} client threads, median of {args.rounds} rounds of {args.seconds:g} s, "
          f"{os.cpu_count()} cores; {JOBS} jobs in the list")
    print(f"{'consoles':>8} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7}")
    for consoles, r in ((0, base), (args.consoles, busy)):
        print(f"{consoles:>8} {r['rps']:>9.0f} {r['p50_ms']:>8.2f} {r['p99_ms']:>8.2f} {r['errors']:>7}")
    print(f"console polls answered: {', '.join(f'{n} x {status}' for status, n in sorted(answers.items()))} "
          "(200: the rows changed since the last poll; 204: none had)")
    print(f"\nwith {args.consoles} console(s) open / without = {ratio:.3f}: {100 * (1 - ratio):.1f} % "
          f"throughput lost (target < {100 * TARGET_LOSS:.0f} %)")


if __name__ == "__main__":
    main()
