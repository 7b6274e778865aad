"""One Settings object for the whole server."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Settings:
    data_dir: Path = field(default_factory=lambda: Path(os.environ.get("JOBFORGE_DATA_DIR", ".jobforge")))
    database_url: str | None = None  # default: SQLite in WAL mode under data_dir
    host: str = "127.0.0.1"
    port: int = 4566
    region: str = "us-east-1"
    auth: str = "sigv4"  # or "none", an explicit opt-out
    object_store: str | None = None  # default: a local directory under data_dir
    executor: str = "local"
    cpus: int | None = None  # resources the scheduler may hand out; default: what the host has
    memory_mb: int | None = None
    gpus: int | None = None
    stop_grace_seconds: float = 10.0
    # Connections (see jobforge/server/connections.py): several local clients share one address, so the
    # per-client cap is far above an SDK's pool (boto3: 10) or the AWS CLI's 10 transfer threads.
    header_timeout: float = 20.0  # seconds to send a request's line and headers
    idle_timeout: float = 5.0  # seconds a kept-alive connection may stay idle
    max_connections_per_client: int = 512
    max_connections: int = 10000  # kept below the open-file limit

    def __post_init__(self):
        self.data_dir = Path(self.data_dir).absolute()

    @property
    def db_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'jobforge.db'}"

    @property
    def endpoint_url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host
        return f"http://{host}:{self.port}"

    @property
    def jobs_dir(self) -> Path:
        return self.data_dir / "jobs"

    @property
    def credentials_file(self) -> Path:
        return self.data_dir / "credentials"
