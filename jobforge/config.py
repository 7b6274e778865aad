"""One Settings object for the whole server."""

from __future__ import annotations

import ipaddress
import os
import socket
from dataclasses import dataclass, field
from pathlib import Path


WILDCARD_HOSTS = ("0.0.0.0", "::", "")


@dataclass
class Settings:
    data_dir: Path = field(default_factory=lambda: Path(os.environ.get("JOBFORGE_DATA_DIR", ".jobforge")))
    database_url: str | None = None  # default: SQLite in WAL mode under data_dir
    host: str = "127.0.0.1"
    port: int = 4566
    region: str = "us-east-1"
    auth: str = "sigv4"  # or "none", an explicit opt-out
    object_store: str | None = None  # default: a local directory under data_dir
    executor: str = "local"  # a name in jobforge.execution.executor.EXECUTORS
    ray_address: str = "auto"  # the Ray cluster the ray executor runs jobs on: its GCS address, or "auto"
    advertise_url: str | None = None  # how jobs reach this server; default: derived from host and port
    container_engine: str | None = None  # docker or podman: runs container images (None: they are refused)
    cpus: int | None = None  # resources the scheduler may hand out; default: what the host has
    memory_mb: int | None = None
    gpus: int | None = None
    # Modules imported at start besides jobforge.api, to serve the job kinds and operations they declare.
    plugins: tuple[str, ...] = field(default_factory=lambda: tuple(
        name for name in os.environ.get("JOBFORGE_PLUGINS", "").split(",") if name))
    stop_grace_seconds: float = 10.0
    lifecycle_interval: float = 600.0  # seconds between sweeps applying S3 buckets' lifecycle rules
    mlflow_tracking_uri: str | None = None  # MLflow Apps' store: a database URL; default: SQLite under data_dir
    # Connections (see jobforge/server/connections.py): several local clients share one address, so the
    # per-client cap is far above an SDK's pool (boto3: 10) or the AWS CLI's 10 transfer threads.
    header_timeout: float = 20.0  # seconds to send a request's line and headers
    idle_timeout: float = 5.0  # seconds a kept-alive connection may stay idle
    max_connections_per_client: int = 512
    max_connections: int = 10000  # kept below the open-file limit
    # HTTPS on the port (HTTP/1.1 and HTTP/2 by ALPN): a PEM certificate (chain) and its private key, both or neither.
    tls_cert: Path | None = field(default_factory=lambda: _path_from_env("JOBFORGE_TLS_CERT"))
    tls_key: Path | None = field(default_factory=lambda: _path_from_env("JOBFORGE_TLS_KEY"))

    def __post_init__(self):
        self.data_dir = Path(self.data_dir).absolute()
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("a TLS certificate and its key are given together (--tls-cert and --tls-key)")
        self.tls_cert = Path(self.tls_cert).absolute() if self.tls_cert else None
        self.tls_key = Path(self.tls_key).absolute() if self.tls_key else None

    @property
    def scheme(self) -> str:
        return "https" if self.tls_cert else "http"

    @property
    def db_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'jobforge.db'}"

    @property
    def endpoint_url(self) -> str:
        host = "127.0.0.1" if self.host in WILDCARD_HOSTS else self.host
        return f"{self.scheme}://{_bracketed(host)}:{self.port}"

    @property
    def advertised_url(self) -> str:
        """The URL jobs reach the server by: given, else this host's address on the port served."""
        return self.advertise_url.rstrip("/") if self.advertise_url else self.own_url

    @property
    def own_url(self) -> str:
        """The URL other servers reach this one by, past any load balancer: this host's address on the port
        served."""
        host = reachable_address(self.host) if self.host in WILDCARD_HOSTS else self.host
        return f"{self.scheme}://{_bracketed(host)}:{self.port}"

    @property
    def jobs_dir(self) -> Path:
        return self.data_dir / "jobs"

    @property
    def credentials_file(self) -> Path:
        return self.data_dir / "credentials"


def _path_from_env(name: str) -> Path | None:
    return Path(os.environ[name]) if os.environ.get(name) else None


def reachable_address(wildcard: str) -> str:
    """An address of this host that other hosts can reach, for a server bound to every address: the one its
    default route leaves from, else its name's, else loopback when that is all there is."""
    family = socket.AF_INET6 if wildcard == "::" else socket.AF_INET
    probe = "2001:db8::1" if family == socket.AF_INET6 else "192.0.2.1"  # documentation ranges: nothing is sent
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as sock:
            sock.connect((probe, 9))
            return sock.getsockname()[0]
    except OSError:
        pass
    try:
        for *_, address in socket.getaddrinfo(socket.gethostname(), None, family):
            if not ipaddress.ip_address(address[0]).is_loopback:
                return address[0]
    except (OSError, ValueError):
        pass
    return "::1" if family == socket.AF_INET6 else "127.0.0.1"


def _bracketed(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host
