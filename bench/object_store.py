"""Object store throughput: a 1 GiB file up and down through boto3's transfer
manager, on jobforge and on moto's S3 server, side by side in one run.

Both servers get the same client (default TransferConfig: 8 MiB parts, 10
threads, CRC32 checksums, SHA-256-signed payloads over http). Each server's
resident memory is sampled during the transfers; its growth over the idle
server is reported. Targets: ≥3× moto's upload, ≥5× its download, jobforge
RSS growth < 100 MB.

Measured on a 2-core machine (runs vary by about 20 %): jobforge uploads at
130-180 MiB/s and downloads at 440-640 MiB/s with 50 MB of RSS growth; moto
uploads at 120-140 MiB/s and downloads at 14-50 MiB/s, growing by 0.8-3 GB.
Download 9-45x and memory meet their targets; upload is 1.1-1.3x, short of
3x, and cannot reach it on this machine: the bench prints the CPU each side
spends per MiB uploaded, and the client alone (SHA-256 of the signed payload,
CRC32, HTTP) costs ~4.5-5 ms/MiB, which on 2 cores caps any server at
~400 MiB/s, about 3x moto, before the server does its own work. jobforge's
~6 ms/MiB is mostly what S3 semantics require of it: MD5 for the ETag
(~2 ms), SHA-256 to check the signed payload (~0.9 ms), the CRC32 the client
sent (~0.5 ms), and the write and fsync that make the object durable.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import boto3
import psutil
from boto3.s3.transfer import TransferConfig
from botocore.config import Config

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from jobforge.testing_server import ServerProcess, free_port  # noqa: E402

MIB = 1024 * 1024


class PeakRss:
    """Samples a process's resident set size in the background."""

    def __init__(self, pid: int, interval: float = 0.02):
        self.process = psutil.Process(pid)
        self.interval = interval
        self.peak = self.process.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            try:
                self.peak = max(self.peak, self.process.memory_info().rss)
            except psutil.Error:
                return
            time.sleep(self.interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *_):
        self._stop.set()
        self._thread.join()


def make_file(path: Path, size: int) -> None:
    block = os.urandom(16 * MIB)
    with open(path, "wb") as handle:
        written = 0
        while written < size:
            piece = block[: min(len(block), size - written)]
            handle.write(piece)
            written += len(piece)


def md5_of(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(8 * MIB), b""):
            digest.update(chunk)
    return digest.hexdigest()


def measure(name: str, endpoint: str, credentials: dict, pid: int, source: Path, target: Path) -> dict:
    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                          config=Config(s3={"addressing_style": "path"}), **credentials)
    client.create_bucket(Bucket="bench")
    config = TransferConfig()
    size = source.stat().st_size
    server = psutil.Process(pid)
    idle = server.memory_info().rss
    with PeakRss(pid) as rss:
        server_cpu, client_cpu = sum(server.cpu_times()[:2]), time.process_time()
        started = time.perf_counter()
        client.upload_file(str(source), "bench", "dataset.bin", Config=config)
        upload = time.perf_counter() - started
        server_cpu, client_cpu = sum(server.cpu_times()[:2]) - server_cpu, time.process_time() - client_cpu
        started = time.perf_counter()
        client.download_file("bench", "dataset.bin", str(target), Config=config)
        download = time.perf_counter() - started
    intact = md5_of(target) == md5_of(source)
    target.unlink()
    return {"name": name, "upload": size / MIB / upload, "download": size / MIB / download,
            "idle_mb": idle / 1e6, "growth_mb": (rss.peak - idle) / 1e6, "intact": intact,
            "client_ms_per_mib": client_cpu * 1000 / (size / MIB), "server_ms_per_mib": server_cpu * 1000 / (size / MIB)}


def start_moto(port: int) -> subprocess.Popen:
    moto = Path(sys.executable).with_name("moto_server")
    process = subprocess.Popen([str(moto), "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    client = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1",
                          aws_access_key_id="testing", aws_secret_access_key="testing")
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            client.list_buckets()
            return process
        except Exception:
            time.sleep(0.2)
    process.kill()
    raise RuntimeError("moto_server did not start")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--skip-moto", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="jobforge-bench-") as tmp:
        tmp = Path(tmp)
        source, target = tmp / "dataset.bin", tmp / "downloaded.bin"
        make_file(source, args.size_mib * MIB)
        results = []
        server = ServerProcess(tmp / "jobforge").start()
        try:
            results.append(measure("jobforge", server.endpoint, server.credentials(), server.process.pid,
                                   source, target))
        finally:
            server.stop()
        if not args.skip_moto:
            port = free_port()
            moto = start_moto(port)
            try:
                results.append(measure("moto", f"http://127.0.0.1:{port}",
                                       {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"},
                                       moto.pid, source, target))
            finally:
                moto.kill()
                moto.wait()
    print(f"{args.size_mib} MiB through boto3's transfer manager (8 MiB parts, 10 threads), "
          f"{os.cpu_count()} CPUs, client and server on this machine")
    print(f"{'server':10} {'upload MiB/s':>13} {'download MiB/s':>15} {'idle RSS MB':>12} {'peak RSS growth MB':>19}"
          f" {'intact':>7} {'upload CPU ms/MiB: client':>26} {'server':>7}")
    for row in results:
        print(f"{row['name']:10} {row['upload']:13.1f} {row['download']:15.1f} {row['idle_mb']:12.0f}"
              f" {row['growth_mb']:19.0f} {str(row['intact']):>7} {row['client_ms_per_mib']:26.1f}"
              f" {row['server_ms_per_mib']:7.1f}")
    client_ms = results[0]["client_ms_per_mib"]
    print(f"ceiling: on {os.cpu_count()} CPUs this client's own upload work ({client_ms:.1f} ms/MiB) allows at most "
          f"{os.cpu_count() * 1000 / client_ms:.0f} MiB/s against a server that cost nothing")
    if len(results) == 2:
        ours, moto = results
        print(f"ratio upload {ours['upload'] / moto['upload']:.1f}x (target >= 3x), "
              f"download {ours['download'] / moto['download']:.1f}x (target >= 5x), "
              f"jobforge RSS growth {ours['growth_mb']:.0f} MB (target < 100 MB)")


if __name__ == "__main__":
    main()
