"""Everything a running server holds: settings, the database, keys, and its long-lived services.

The services start and stop with the server (the app's lifespan): the object store, the job
scheduler, the supervisor of long-lived child processes (the inference host's among them), the
quantum-task runner, the sweep applying S3 buckets' lifecycle rules, the host of Lambda
functions, the host of AgentCore runtimes' sessions and the runner of SageMaker pipeline executions.
Handlers reach them as ``ctx.runtime.<service>``.
"""

from __future__ import annotations

import asyncio
import configparser
import os
import time

import sqlalchemy as sa

from jobforge.config import Settings
from jobforge.core import accounts
from jobforge.core.endpoint_metrics import EndpointMetrics
from jobforge.core.lifecycle import LifecycleSweep
from jobforge.core.objects import open_object_store
from jobforge.core.server_leases import ServerLeases, server_id_of
from jobforge.core.store import open_store
from jobforge.execution.agent_host import AgentHost
from jobforge.execution.endpoint_host import EndpointHost
from jobforge.execution.function_host import FunctionHost
from jobforge.execution.inference import InferenceHost
from jobforge.execution.isolation import make_data_dir_private
from jobforge.execution.pipeline_runner import PipelineRunner
from jobforge.execution.process_host import ProcessHost
from jobforge.execution.quantum_task_runner import QuantumTaskRunner
from jobforge.execution.resources import host_capacity
from jobforge.execution.supervisor import Supervisor
from jobforge.server.auth import Verifier

DEFAULT_ACCOUNT = "default"
STOP_SECONDS = 5.0  # the most a server's stop waits for its services, all together


class Runtime:
    def __init__(self, settings: Settings):
        self.settings = settings
        os.umask(0o077)  # everything the server writes is its own; job code may run as other users
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        make_data_dir_private(settings.data_dir, settings.jobs_dir)
        self.engine: sa.Engine = open_store(settings.db_url)
        # What this server starts is its own; another server takes it over once this one's lease has expired.
        self.leases = ServerLeases(self.engine, server_id_of(settings.data_dir), settings.own_url)
        self.keys = accounts.KeyRing(self.engine)
        self.verifier = Verifier(self.keys, settings.region)
        self.default_credential = self._default_account()
        self.object_store = open_object_store(settings, self.engine)
        self.lifecycle = LifecycleSweep(self.object_store, settings.lifecycle_interval)
        from jobforge.execution.executor import open_executor
        from jobforge.execution.scheduler import Scheduler

        self.supervisor = Supervisor()  # before the scheduler, which leaves out what its processes hold
        self.scheduler = Scheduler(self, open_executor(settings))
        # Inference and simulations run on the server's host, beside the jobs, each on half of its CPUs.
        half_the_cpus = max(1, (settings.cpus or len(os.sched_getaffinity(0))) // 2)
        self.inference = InferenceHost(self.supervisor, threads=half_the_cpus)
        self.quantum_tasks = QuantumTaskRunner(self.engine, self.object_store, size=min(4, half_the_cpus),
                                               server_id=self.leases.server_id)
        # Users' long-lived code: Lambda environments and AgentCore runtime sessions.
        self.processes = ProcessHost(settings, self.supervisor)
        # They run on this host whatever the executor: its memory bounds theirs.
        memory_mb = host_capacity(settings.cpus, settings.memory_mb, settings.gpus).memory_mb
        self.functions = FunctionHost(self.engine, settings, self.processes, self.keys, memory_mb,
                                      self.leases.server_id)
        self.agents = AgentHost(self.engine, settings, self.processes, self.keys, memory_mb, self.leases)
        self.endpoints = EndpointHost(self.engine, settings, self.processes, self.object_store, self.keys,
                                      self.leases)
        self.endpoint_metrics = EndpointMetrics(self.engine)  # invocations' CloudWatch metrics, written in batches
        self.pipeline_runner = PipelineRunner(self)  # SageMaker pipeline executions, through the server's own API

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Start every service, each resuming the work a previous server left (at the server's start, before
        the first request; a runtime built beside a running server, as ``jobforge accounts create`` builds
        one, is never started and leaves that server's work alone)."""
        self.object_store.blobs.sweep_staging()  # what uploads cut short by a crash left
        self.leases.register()
        self.scheduler.start(loop)
        self.quantum_tasks.start()
        self.functions.start()
        self.agents.start()
        self.endpoints.start()
        self.endpoint_metrics.start()
        self.lifecycle.start()
        self.pipeline_runner.start()
        for service in (self.quantum_tasks, self.functions, self.agents, self.endpoints):
            self.leases.on_reclaim(service.reclaim)
        self.leases.start()

    async def stop(self) -> None:
        """Stop the services, the last started first, waiting STOP_SECONDS at most in all (at the server's exit)."""
        deadline = time.monotonic() + STOP_SECONDS
        self.pipeline_runner.stop(deadline)
        self.lifecycle.stop()
        self.leases.stop()  # first: from now on what this server ran is another's to take over
        self.endpoints.stop(deadline)
        self.endpoint_metrics.stop(deadline)
        self.agents.stop(deadline)
        self.functions.stop(deadline)
        self.quantum_tasks.stop()
        self.supervisor.close(deadline)
        await self.scheduler.shutdown()

    def _default_account(self) -> accounts.Credential:
        credential = accounts.account_credentials(self.engine, DEFAULT_ACCOUNT)
        if credential is None:
            credential = accounts.create_account(self.engine, DEFAULT_ACCOUNT)
        if not self.settings.credentials_file.exists():
            write_profile(self.settings, "default", credential)
        return credential

    def create_account(self, name: str) -> accounts.Credential:
        credential = accounts.create_account(self.engine, name)
        write_profile(self.settings, name, credential)
        return credential


def write_profile(settings: Settings, profile: str, credential: accounts.Credential) -> None:
    """Add a profile to DIR/credentials and DIR/config (AWS shared-file formats)."""
    creds = configparser.ConfigParser()
    creds.read(settings.credentials_file)
    creds[profile] = {"aws_access_key_id": credential.access_key_id,
                      "aws_secret_access_key": credential.secret_key}
    _write_private(settings.credentials_file, creds)
    config_file = settings.data_dir / "config"
    config = configparser.ConfigParser()
    config.read(config_file)
    section = "default" if profile == "default" else f"profile {profile}"
    # An account made while no server runs goes to the server its data dir was last served by.
    endpoint = config.get("default", "endpoint_url", fallback=settings.endpoint_url)
    config[section] = {"region": settings.region, "endpoint_url": endpoint,
                       "s3": "\naddressing_style = path\nsignature_version = s3v4"}
    _write_private(config_file, config)


def point_profiles_at(settings: Settings) -> None:
    """Point every profile in DIR/config at this server, which may have served the data dir on another port."""
    config_file = settings.data_dir / "config"
    config = configparser.ConfigParser()
    config.read(config_file)
    stale = [section for section in config.sections()
             if config[section].get("endpoint_url") != settings.endpoint_url]
    for section in stale:
        config[section]["endpoint_url"] = settings.endpoint_url
    if stale:
        _write_private(config_file, config)


def _write_private(path, parser: configparser.ConfigParser) -> None:
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        parser.write(handle)
    os.replace(tmp, path)
