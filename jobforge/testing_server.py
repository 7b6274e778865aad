"""Start a real jobforge server in a subprocess on a free port (tests, demo, benchmarks)."""

from __future__ import annotations

import configparser
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from pathlib import Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServerProcess:
    def __init__(self, data_dir: Path, port: int | None = None, extra_args=(), env=None,
                 tls: tuple[Path, Path] | None = None):
        """tls: (certificate, key) to serve HTTPS with; the certificate must name 127.0.0.1, and clients trust it."""
        self.data_dir = Path(data_dir)
        self.port = port or free_port()
        self.extra_args = list(extra_args)
        self.env = dict(os.environ, **(env or {}))
        self.process: subprocess.Popen | None = None
        self.ca_file = tls[0] if tls else None
        if tls:
            self.extra_args += ["--tls-cert", str(tls[0]), "--tls-key", str(tls[1])]

    @property
    def endpoint(self) -> str:
        return f"{'https' if self.ca_file else 'http'}://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60) -> "ServerProcess":
        log = open(self.data_dir.parent / f"server-{self.port}.log", "ab") if self.data_dir.parent.exists() else None
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "jobforge.cli", "--data-dir", str(self.data_dir), "serve",
             "--port", str(self.port), *self.extra_args],
            env=self.env, stdout=log or subprocess.DEVNULL, stderr=subprocess.STDOUT)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"jobforge server exited with code {self.process.returncode}")
            try:
                urllib.request.urlopen(self.endpoint + "/_jobforge/health", timeout=1,
                                       context=ssl.create_default_context(cafile=self.ca_file))
            except OSError:
                time.sleep(0.1)
                continue
            return self
        raise RuntimeError("jobforge server did not start in time")

    def credentials(self, profile: str = "default") -> dict:
        parser = configparser.ConfigParser()
        parser.read(self.data_dir / "credentials")
        section = parser[profile]
        return {"aws_access_key_id": section["aws_access_key_id"],
                "aws_secret_access_key": section["aws_secret_access_key"]}

    def client(self, service: str, profile: str = "default", region: str = "us-east-1", **config):
        import boto3
        from botocore.config import Config

        return boto3.client(service, endpoint_url=self.endpoint, region_name=region,
                            config=Config(retries={"max_attempts": 1}, s3={"addressing_style": "path"}, **config),
                            verify=str(self.ca_file) if self.ca_file else None, **self.credentials(profile))

    def kill(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()
