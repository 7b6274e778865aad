"""Lambda functions' execution environments: warm worker processes, pooled per function.

An invocation takes an idle environment of its function (one whose code and
configuration are the function's current ones), or starts one (a cold
start: the code unpacked into a new directory, a confined process started by
the ``ProcessHost`` with the function's role credentials, the handler
imported). Environments are reused until the function changes, until they
have been idle ``IDLE_SECONDS``, or until they die. Limits, as AWS sets
them:

- the timeout: past it the environment is killed and the invocation answers
  ``Task timed out after N.00 seconds``;
- the memory size: the process's memory limit; an environment killed for
  it answers ``Runtime exited with error: signal: killed`` (Runtime.ExitError);
- concurrency: a function's reserved concurrency, the account's concurrent
  executions, and what memory this host has for environments
  (``Throttled``, which the API answers as TooManyRequestsException).

Every invocation's log (START, what the function printed, errors, END and
REPORT with measured numbers) goes to CloudWatch Logs, group
``/aws/lambda/NAME``, one stream per environment, through the log writer.
``Event`` invocations wait in the store (``functions.enqueue_event``) until
a background runner has run them, so a restart loses none.

Servers sharing a database each run their own environments: an invocation
runs on the server it reaches, whoever created the function. Each server
records itself with its environments' credentials and with the Event
invocations it takes, so that its start, or another server once its lease
has expired (``core.server_leases``), revokes and gives back only its own.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import logging
import math
import os
import queue
import shutil
import socket
import sys
import threading
import time
import uuid
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import sqlalchemy as sa

from jobforge.core import accounts, functions, log_events
from jobforge.core.functions import Function
from jobforge.execution import frames, function_code
from jobforge.execution import container_engine
from jobforge.execution.container_function import FunctionContainer
from jobforge.execution.container_run import NOT_FOUND, NOT_RUNNABLE
from jobforge.execution.function_worker import END_MARKER, MAX_EVENT, end_marker
from jobforge.execution.lambda_runtime_api import Answer, invocation_headers
from jobforge.execution.process_host import HostedSpec, ProcessHost

log = logging.getLogger("jobforge.functions")

IDLE_SECONDS = 300.0  # an environment unused this long is stopped
INIT_SECONDS = 10.0  # the init phase's limit, as on AWS
ACCOUNT_CONCURRENCY = 1000  # AWS's default concurrent executions per account and region
CREDENTIAL_SECONDS = 12 * 3600
ENVIRONMENT_SECONDS = 6 * 3600  # an environment is replaced before its credentials expire
MAX_RESPONSE = 6 * 1024 * 1024
TAIL_BYTES = 4096
EVENT_RUNNERS = 4
ENV_PREFIX = "lambda-env-"
MARKER_WAIT = 2.0  # seconds to read the output an answered invocation printed


class Throttled(Exception):
    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass
class Outcome:
    """One invocation's answer: the payload, whether it is an error, and its log."""

    payload: bytes
    function_error: str | None  # "Unhandled" for an error the function or its runtime raised
    log: list[tuple[float, str]]

    def tail(self) -> str:
        text = "\n".join(message for _, message in self.log) + "\n"
        return base64.b64encode(text.encode()[-TAIL_BYTES:]).decode()


@dataclass
class Environment:
    id: str
    function: Function
    stream: str
    started_at: float
    hosted: object = None
    container: FunctionContainer | None = None  # a container-image function's, instead
    init_ms: float | None = None  # set until its first invocation reports it
    last_used: float = 0.0
    max_memory_mb: int = 0
    dead: bool = False
    generation: int = 0  # its pool's when it was taken
    lines: list = field(default_factory=list)  # what the current invocation printed: (epoch, text)
    ended: set = field(default_factory=set)  # end markers seen
    output_changed: threading.Condition = field(default_factory=threading.Condition)

    @property
    def stale(self) -> bool:
        return time.time() - self.started_at > ENVIRONMENT_SECONDS


@dataclass
class _Pool:
    idle: list = field(default_factory=list)
    busy: int = 0
    generation: int = 0  # counts recycles: a busy environment of an earlier generation is stopped when released


class LogWriter:
    """Writes log events in batches from one thread, so that no invocation waits for the database."""

    def __init__(self, engine: sa.Engine):
        self.engine = engine
        self._queue: queue.Queue = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="function-logs", daemon=True)
        self._thread.start()

    def put(self, account_id: str, region: str, group: str, stream: str, events: list[tuple[float, str]]) -> None:
        if events:
            self._queue.put((account_id, region, group, stream, events))

    def _run(self) -> None:
        while True:
            batch = [self._queue.get()]
            while len(batch) < 500:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            if any(item is None for item in batch):
                self._write([item for item in batch if item is not None])
                return
            self._write(batch)

    def _write(self, batch) -> None:
        streams: dict[tuple, list] = {}  # one insert per stream: its group and stream are looked up once
        for account_id, region, group, stream, events in batch:
            streams.setdefault((account_id, region, group, stream), []).extend(events)
        try:
            log_events.put(self.engine, [(*key, events) for key, events in streams.items()])
        except Exception:
            log.exception("could not write %d log batches", len(batch))

    def close(self, timeout: float) -> None:
        self._queue.put(None)
        self._thread.join(timeout)


def _iso_now() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def available_runtimes() -> dict[str, str]:
    """Lambda runtime → the interpreter this host runs it with: the server's own for its Python version, and
    any other ``python3.N`` on the PATH."""
    found = {}
    for minor in (10, 11, 12, 13):
        runtime = f"python3.{minor}"
        if sys.version_info[:2] == (3, minor):
            found[runtime] = sys.executable
        elif (path := shutil.which(runtime)) is not None:
            found[runtime] = path
    return found


class FunctionHost:
    def __init__(self, engine: sa.Engine, settings, processes: ProcessHost, keys: accounts.KeyRing,
                 memory_mb: int, server_id: str):
        self.engine = engine
        self.settings = settings
        self.processes = processes
        self.keys = keys  # ends an environment's credentials with it
        self.memory_mb = memory_mb  # what this host gives environments, all together
        self.server_id = server_id
        self.code_root = settings.data_dir / "lambda-code"
        self.runtimes = available_runtimes()
        self.containers = container_engine.configured(settings)  # runs container-image functions
        self._lock = threading.Lock()
        self._pools: dict[str, _Pool] = defaultdict(_Pool)
        self._busy_per_account: dict[tuple[str, str], int] = defaultdict(int)
        self._memory_held = 0
        self._closed = threading.Event()
        self._wake_events = threading.Event()
        self._in_flight: set[int] = set()
        self._logs: LogWriter | None = None
        self._runners: ThreadPoolExecutor | None = None
        self._threads: list[threading.Thread] = []

    # -- lifecycle -----------------------------------------------------------------
    def start(self) -> None:
        """Clear what this server's previous life's environments left (their processes died with it: their
        credentials go too), finish functions left Pending or InProgress, and run the queued Event invocations."""
        self.processes.sweep(ENV_PREFIX)
        if self.containers is not None:
            self.containers.sweep(ENV_PREFIX)
        self.reclaim(self.server_id)
        self.keys.revoke_server(None, ENV_PREFIX)  # issued before servers recorded themselves with credentials
        self._logs = LogWriter(self.engine)
        self._runners = ThreadPoolExecutor(EVENT_RUNNERS, thread_name_prefix="function-event")
        for function in functions.with_states(self.engine, (functions.PENDING,), (functions.IN_PROGRESS,)):
            self.prepare(function)
        for target, name in ((self._reap_idle, "function-reaper"), (self._run_events, "function-events")):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def reclaim(self, server_id: str) -> None:
        """What a server that is gone left: its environments' credentials go, its Event invocations are run."""
        self.keys.revoke_server(server_id, ENV_PREFIX)
        functions.release_events(self.engine, server_id)
        self._wake_events.set()

    def stop(self, deadline: float) -> None:
        self._closed.set()
        self._wake_events.set()
        with self._lock:
            environments = [env for pool in self._pools.values() for env in pool.idle]
            for pool in self._pools.values():
                pool.idle.clear()
        for env in environments:
            self._discard(env)
        if self._runners is not None:
            self._runners.shutdown(wait=False, cancel_futures=True)
        if self._logs is not None:
            self._logs.close(max(0.0, deadline - time.monotonic()))
        self.processes.close()

    # -- code ------------------------------------------------------------------------
    def store_code(self, function_id: str, data: bytes) -> Path:
        return function_code.store(self.code_root, function_id, data)

    def prepare(self, function: Function) -> None:
        """Bring a function that was just created or changed to Active / Successful, in the background: its code
        checked again from the store (a restart may have cut its upload short)."""
        threading.Thread(target=self._prepare, args=(function,), name=f"prepare-{function.name}",
                         daemon=True).start()

    def _prepare(self, function: Function) -> None:
        problem, reason_code = self._code_problem(function)
        creating = function.state == functions.PENDING
        try:
            if problem is None:
                values = dict(state=functions.ACTIVE, state_reason=None, state_reason_code=None)
                if not creating:
                    values.update(last_update_status=functions.SUCCESSFUL, last_update_reason=None,
                                  last_update_reason_code=None)
            elif creating:
                values = dict(state=functions.FAILED, state_reason=problem, state_reason_code=reason_code)
            else:
                values = dict(last_update_status="Failed", last_update_reason=problem,
                              last_update_reason_code=reason_code)
            functions.update(self.engine, function, new_revision=False, **values)
        except Exception:  # the function was deleted meanwhile
            return
        if problem is None and function.package_type == functions.ZIP:  # its earlier archives are not needed
            for archive in Path(function.code_file).parent.glob("*.zip"):
                if archive != Path(function.code_file):
                    archive.unlink(missing_ok=True)
        self.recycle(function.id)

    def _code_problem(self, function: Function) -> tuple[str | None, str | None]:
        """Why the function's code cannot run and Lambda's reason code for it, or (None, None)."""
        if function.package_type == functions.IMAGE:
            if self.containers is None:
                return ("This server runs no container engine: start it with jobforge serve --container-engine "
                        "docker (or podman) to run container-image functions.", "InvalidImage")
            try:
                image = self.containers.image(function.image_id)
            except OSError as err:
                return f"The container engine did not answer: {err}", "InvalidImage"
            if image is None:
                return (f"The image {function.resolved_image_uri} is no longer on this host's "
                        f"{self.containers.name}.", "ImageDeleted")
            return None, None
        try:
            function_code.check(Path(function.code_file).read_bytes())
        except (OSError, function_code.CodeError) as err:
            return str(err), "InvalidZipFileException"
        return None, None

    def forget(self, function: Function) -> None:
        """A deleted function: its environments stop (busy ones once their invocation ends), its code goes."""
        self.recycle(function.id)
        shutil.rmtree(self.code_root / function.id, ignore_errors=True)

    # -- environments ----------------------------------------------------------------
    def recycle(self, function_id: str) -> None:
        """Stop the function's idle environments (its code or configuration changed, or it was deleted); busy
        ones are stopped when their invocation ends."""
        with self._lock:
            pool = self._pools.get(function_id)
            doomed = list(pool.idle) if pool else []
            if pool:
                pool.idle.clear()
                pool.generation += 1
        for env in doomed:
            self._discard(env)

    def _acquire(self, function: Function) -> tuple[Environment, bool]:
        """An environment for one invocation, and whether it must be started (cold)."""
        stale = []
        try:
            with self._lock:
                pool = self._pools[function.id]
                if function.reserved_concurrency is not None and pool.busy >= function.reserved_concurrency:
                    raise Throttled("ReservedFunctionConcurrentInvocationLimitExceeded")
                account = (function.account_id, function.region)
                if self._busy_per_account[account] >= ACCOUNT_CONCURRENCY:
                    raise Throttled("ConcurrentInvocationLimitExceeded")
                while pool.idle:
                    env = pool.idle.pop()
                    if env.function.revision_id == function.revision_id and not env.dead and not env.stale:
                        pool.busy += 1
                        self._busy_per_account[account] += 1
                        env.generation = pool.generation
                        return env, False
                    stale.append(env)
                self._make_room(function.memory_size, stale)
                pool.busy += 1
                self._busy_per_account[account] += 1
                self._memory_held += function.memory_size
                env = Environment(uuid.uuid4().hex, function, self._stream_name(), time.time(),
                                  generation=pool.generation)
                return env, True
        finally:
            for env in stale:
                self._discard(env)

    def _make_room(self, memory_mb: int, doomed: list) -> None:
        """Free memory for a new environment by stopping the longest idle ones (caller holds the lock)."""
        held = self._memory_held - sum(env.function.memory_size for env in doomed)
        if held + memory_mb <= self.memory_mb:
            return
        idle = sorted(((env.last_used, env, pool) for pool in self._pools.values() for env in pool.idle),
                      key=lambda item: item[0])
        for _, env, pool in idle:
            if held + memory_mb <= self.memory_mb:
                break
            pool.idle.remove(env)
            doomed.append(env)
            held -= env.function.memory_size
        if held + memory_mb > self.memory_mb:
            raise Throttled("ConcurrentInvocationLimitExceeded")

    def _release(self, env: Environment, keep: bool) -> None:
        """Back to the idle pool, unless the function changed or went while it ran (``recycle``; a change made
        through another server is caught when the environment is next taken, by its revision)."""
        with self._lock:
            pool = self._pools[env.function.id]
            pool.busy -= 1
            self._busy_per_account[(env.function.account_id, env.function.region)] -= 1
            keep = keep and not env.dead and not self._closed.is_set() and env.generation == pool.generation
            if keep:
                env.last_used = time.monotonic()
                pool.idle.append(env)
        if not keep:
            self._discard(env)

    def _discard(self, env: Environment) -> None:
        env.dead = True
        if env.hosted is not None:
            self.processes.stop(env.hosted)
            env.hosted = None
        if env.container is not None:
            env.container.stop()
        self.keys.revoke_job(ENV_PREFIX + env.id)
        with self._lock:
            self._memory_held -= env.function.memory_size

    @staticmethod
    def _stream_name() -> str:
        return f"{dt.datetime.now(dt.timezone.utc):%Y/%m/%d}/[{functions.LATEST}]{uuid.uuid4().hex}"

    def _reap_idle(self) -> None:
        while not self._closed.wait(min(30.0, IDLE_SECONDS / 4)):
            now = time.monotonic()
            with self._lock:
                doomed = [(pool, env) for pool in self._pools.values() for env in pool.idle
                          if now - env.last_used > IDLE_SECONDS]
                for pool, env in doomed:
                    pool.idle.remove(env)
            for _, env in doomed:
                self._discard(env)

    # -- a cold start ----------------------------------------------------------------
    def _environment_variables(self, env: Environment, credential) -> dict:
        function = env.function
        isolation = self.processes.isolation()
        own_dir = self.settings.jobs_dir / (ENV_PREFIX + env.id)
        endpoint = self.settings.advertised_url
        variables = {
            "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"), "LANG": "en_US.UTF-8", "TZ": ":UTC",
            "LAMBDA_TASK_ROOT": str(own_dir / "task"), "LAMBDA_RUNTIME_DIR": sys.base_prefix,
            "_HANDLER": function.handler, "AWS_EXECUTION_ENV": f"AWS_Lambda_{function.runtime}",
            "AWS_LAMBDA_FUNCTION_NAME": function.name, "AWS_LAMBDA_FUNCTION_VERSION": functions.LATEST,
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(function.memory_size),
            "AWS_LAMBDA_LOG_GROUP_NAME": function.log_group, "AWS_LAMBDA_LOG_STREAM_NAME": env.stream,
            "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
            "AWS_REGION": function.region, "AWS_DEFAULT_REGION": function.region,
            "AWS_ACCESS_KEY_ID": credential.access_key_id, "AWS_SECRET_ACCESS_KEY": credential.secret_key,
            "AWS_SESSION_TOKEN": credential.session_token, "AWS_ENDPOINT_URL": endpoint,
            "AWS_CONFIG_FILE": os.devnull, "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
            "TMPDIR": "/tmp" if isolation.host.namespaces else str(own_dir / "tmp"),
        }
        variables.update(function.environment)
        return variables

    def _start(self, env: Environment) -> Outcome | None:
        """Start the environment and run its init phase; the invocation's answer when init fails."""
        function = env.function
        name = ENV_PREFIX + env.id
        role_name = function.role.rsplit("/", 1)[-1]
        credential = accounts.issue_temporary_credentials(
            self.engine, function.account_id, f"arn:aws:sts::{function.account_id}:assumed-role/{role_name}/"
            f"{function.name}", CREDENTIAL_SECONDS, name, self.server_id)
        if function.package_type == functions.IMAGE:
            return self._start_container(env, name, credential)
        python = self.runtimes.get(function.runtime)
        if python is None:
            raise OSError(f"this host no longer has the {function.runtime} runtime")
        settings = {"handler": function.handler, "function_name": function.name,
                    "function_version": functions.LATEST, "memory_mb": function.memory_size,
                    "log_group": function.log_group, "log_stream": env.stream,
                    "memory_by_rlimit": not self.processes.limits.by_cgroup}
        spec = HostedSpec(
            name=name, account_id=function.account_id, python=python, module="jobforge.execution.function_worker",
            settings=settings, env=self._environment_variables(env, credential), memory_mb=function.memory_size,
            on_output=lambda line: self._output(env, line), scratch_mb=function.ephemeral_storage,
            prepare=lambda directory: function_code.extract(Path(function.code_file), directory / "task"))
        settings["task_dir"] = str(self.settings.jobs_dir / name / "task")
        began = time.monotonic()
        env.hosted = self.processes.start(spec)
        env.hosted.control.settimeout(max(INIT_SECONDS, function.timeout))
        try:
            received = frames.receive(env.hosted.control, MAX_EVENT)
        except (OSError, socket.timeout):
            received = None
        env.init_ms = (time.monotonic() - began) * 1000
        if received is not None and received[0].get("init") == "ok":
            self._wait_for_marker(env, "init")
            self._flush_stray(env)
            return None
        self._wait_for_marker(env, "init")
        lines = self._take_lines(env)
        if received is None:
            exit_error = self._exit_error(env, "")
            return Outcome(exit_error[0], "Unhandled", lines + exit_error[1])
        header, body = received
        return Outcome(body, "Unhandled", lines + [(time.time(), header.get("log") or "")])

    def _start_container(self, env: Environment, name: str, credential) -> Outcome | None:
        """Start a container-image function's environment: its init phase ends at its runtime's first
        ``/next``; the invocation's answer when it fails."""
        if self.containers is None:
            raise OSError("this server runs no container engine (jobforge serve --container-engine)")
        function = env.function
        env.container = FunctionContainer(self.containers, name, function, env.stream, credential,
                                          self.settings.endpoint_url, lambda line: self._output(env, line))
        began = time.monotonic()
        init = env.container.start(max(INIT_SECONDS, function.timeout))
        env.init_ms = (time.monotonic() - began) * 1000
        env.container.mark(end_marker("init"))
        self._wait_for_marker(env, "init")
        if init == "ok":
            self._flush_stray(env)
            return None
        lines = self._take_lines(env)
        if isinstance(init, Answer):  # posted to /init/error (the runtime logged it)
            return Outcome(init.body, "Unhandled", lines)
        if env.container.exit_code() is None:
            env.dead = True
            message = (f"Runtime init did not finish within {max(INIT_SECONDS, function.timeout):.0f} seconds: the "
                       "image's runtime never asked $AWS_LAMBDA_RUNTIME_API for an event")
            return Outcome(_error_payload("Runtime.Unknown", message), "Unhandled", lines + [(time.time(), message)])
        payload, events = self._exit_error(env, "")
        return Outcome(payload, "Unhandled", lines + events)

    def _run_container(self, env: Environment, payload: bytes, request_id: str, client_context, invoked_arn: str
                       ) -> tuple[Outcome, bool]:
        """One invocation through the environment's Runtime API."""
        function = env.function
        self._flush_stray(env)
        started, began = time.time(), time.monotonic()
        headers = invocation_headers(request_id, int((started + function.timeout) * 1000), invoked_arn,
                                     client_context)
        answer = env.container.invoke(request_id, payload, headers, function.timeout)
        duration = (time.monotonic() - began) * 1000
        if answer is None and env.container.exit_code() is None:
            return self._timed_out(env, request_id, began), False
        env.container.mark(end_marker(request_id))
        self._wait_for_marker(env, request_id)
        if answer is None:  # the container exited
            payload_, events = self._exit_error(env, request_id)
            return self._finish(env, request_id, Outcome(payload_, "Unhandled", events), duration,
                                env.container.peak_mb(), "error", "Runtime.ExitError"), False
        outcome = Outcome(answer.body, "Unhandled" if answer.status == "error" else None, [])
        return self._finish(env, request_id, outcome, duration, env.container.peak_mb()), True

    # -- output ------------------------------------------------------------------------
    def _output(self, env: Environment, line: bytes | None) -> None:
        with env.output_changed:
            if line is None:
                env.ended.add(None)
            elif line.startswith(END_MARKER):
                env.ended.add(line[len(END_MARKER):].decode(errors="replace"))
            else:
                env.lines.append((time.time(), line.decode("utf-8", "replace")))
            env.output_changed.notify_all()

    def _wait_for_marker(self, env: Environment, request_id: str) -> None:
        deadline = time.monotonic() + MARKER_WAIT
        with env.output_changed:
            while request_id not in env.ended and None not in env.ended:
                left = deadline - time.monotonic()
                if left <= 0:
                    return
                env.output_changed.wait(left)
            env.ended.discard(request_id)

    def _take_lines(self, env: Environment) -> list[tuple[float, str]]:
        with env.output_changed:
            lines, env.lines = env.lines, []
        return lines

    def _flush_stray(self, env: Environment) -> None:
        """What the environment printed outside an invocation (its init phase) goes to its stream at once."""
        self._write_log(env, self._take_lines(env))

    def _write_log(self, env: Environment, events: list[tuple[float, str]]) -> None:
        function = env.function
        self._logs.put(function.account_id, function.region, function.log_group, env.stream, events)

    # -- invocations -----------------------------------------------------------------------
    def invoke(self, function: Function, payload: bytes, request_id: str, client_context: dict | None = None,
               invoked_arn: str | None = None) -> Outcome:
        """Run one invocation to its end. Raises Throttled, or OSError when no environment could start."""
        env, cold = self._acquire(function)
        keep = False
        try:
            if cold:
                try:
                    failed = self._start(env)
                except BaseException:
                    self._take_lines(env)
                    raise
                if failed is not None:
                    return self._finish(env, request_id, failed, 0.0, env.function.memory_size, "error",
                                        self._error_type(failed))
            outcome, keep = self._run(env, payload, request_id, client_context, invoked_arn or function.arn)
            return outcome
        finally:
            self._release(env, keep)

    def _run(self, env: Environment, payload: bytes, request_id: str, client_context, invoked_arn: str
             ) -> tuple[Outcome, bool]:
        if env.container is not None:
            return self._run_container(env, payload, request_id, client_context, invoked_arn)
        function = env.function
        control = env.hosted.control
        self._flush_stray(env)  # what it printed between invocations (a thread of its own)
        started, began = time.time(), time.monotonic()
        header = {"request_id": request_id, "deadline_ms": (started + function.timeout) * 1000,
                  "invoked_function_arn": invoked_arn, "client_context": client_context}
        try:
            control.settimeout(function.timeout)
            frames.send(control, header, payload)
            received = frames.receive(control, MAX_RESPONSE + 1024 * 1024)
        except socket.timeout:
            return self._timed_out(env, request_id, began), False
        except OSError:
            received = None
        duration = (time.monotonic() - began) * 1000
        if received is None:  # the environment died
            self._wait_for_marker(env, "\0never")
            env.hosted.process.wait()
            payload_, events = self._exit_error(env, request_id)
            return self._finish(env, request_id, Outcome(payload_, "Unhandled", events), duration,
                                env.function.memory_size, "error", "Runtime.ExitError"), False
        reply, body = received
        self._wait_for_marker(env, request_id)
        env.max_memory_mb = max(env.max_memory_mb, math.ceil(reply.get("max_memory_kb", 0) / 1024))
        extra = [(time.time(), reply["log"])] if reply.get("log") else []
        if reply["status"] == "ok" and len(body) > MAX_RESPONSE:
            body = _error_payload("Function.ResponseSizeTooLarge",
                                  f"Response payload size ({len(body)} bytes) exceeded maximum allowed payload "
                                  f"size ({MAX_RESPONSE} bytes).")
            outcome = Outcome(body, "Unhandled", extra)
        else:
            outcome = Outcome(body, "Unhandled" if reply["status"] == "error" else None, extra)
        return self._finish(env, request_id, outcome, duration, env.max_memory_mb), True

    def _timed_out(self, env: Environment, request_id: str, began: float) -> Outcome:
        timeout = env.function.timeout
        peak = self._peak_mb(env)
        if env.container is not None:
            env.container.stop()
        else:
            self.processes.stop(env.hosted)
            env.hosted = None
        env.dead = True
        message = f"{_iso_now()} {request_id} Task timed out after {timeout:.2f} seconds"
        outcome = Outcome(_json({"errorMessage": message}), "Unhandled", [(time.time(), message)])
        return self._finish(env, request_id, outcome, (time.monotonic() - began) * 1000, peak, "timeout")

    def _peak_mb(self, env: Environment) -> int | None:
        """The environment's peak memory as its cgroup measured it, else what it last reported."""
        if env.container is not None:
            return env.container.peak_mb()
        cgroup = env.hosted.cgroup if env.hosted is not None else None
        for name in ("memory.peak", "memory.max_usage_in_bytes"):
            try:
                return math.ceil(int((cgroup / name).read_text()) / (1024 * 1024))
            except (OSError, ValueError, TypeError):
                continue
        return env.max_memory_mb

    def _exit_error(self, env: Environment, request_id: str) -> tuple[bytes, list[tuple[float, str]]]:
        if env.container is not None:
            code = env.container.exit_code()
            if code in (NOT_RUNNABLE, NOT_FOUND):  # the engine could not run the entry point
                env.dead = True
                said = env.container.last_line()
                message = f"RequestId: {request_id} Error: {said}" if request_id else said
                return _error_payload("Runtime.InvalidEntrypoint", message), \
                    self._take_lines(env) + [(time.time(), f"{message}\nRuntime.InvalidEntrypoint")]
        else:
            code = env.hosted.process.wait() if env.hosted is not None and env.hosted.process is not None else 1
        code = 1 if code is None else code
        env.dead = True
        how = "signal: killed" if code == -9 else (f"signal: {-code}" if code < 0 else f"exit status {code}")
        message = f"RequestId: {request_id} Error: Runtime exited with error: {how}" if request_id \
            else f"Runtime exited with error: {how}"
        events = self._take_lines(env) + [(time.time(), f"{message}\nRuntime.ExitError")]
        return _error_payload("Runtime.ExitError", message), events

    @staticmethod
    def _error_type(outcome: Outcome) -> str | None:
        try:
            return json.loads(outcome.payload).get("errorType")
        except (ValueError, AttributeError):
            return None

    def _finish(self, env: Environment, request_id: str, outcome: Outcome, duration_ms: float,
                memory_used: int | None,
                status: str | None = None, error_type: str | None = None) -> Outcome:
        """Frame the invocation's log with START, END and REPORT, write it, and return the outcome with it."""
        function = env.function
        now = time.time()
        start = (now - duration_ms / 1000, f"START RequestId: {request_id} Version: {functions.LATEST}")
        printed = self._take_lines(env)
        report = (f"REPORT RequestId: {request_id}\tDuration: {duration_ms:.2f} ms\tBilled Duration: "
                  f"{max(1, math.ceil(duration_ms))} ms\tMemory Size: {function.memory_size} MB")
        if memory_used is not None:  # None: a container whose cgroup this server cannot read
            report += f"\tMax Memory Used: {memory_used} MB"
        if env.init_ms is not None:
            report += f"\tInit Duration: {env.init_ms:.2f} ms"
            env.init_ms = None
        if status is not None:
            report += f"\tStatus: {status}"
            if error_type:
                report += f"\tError Type: {error_type}"
        events = [start, *printed, *outcome.log, (now, f"END RequestId: {request_id}"), (now, report)]
        self._write_log(env, events)
        return Outcome(outcome.payload, outcome.function_error, events)

    # -- Event invocations -----------------------------------------------------------------
    def enqueue(self, function: Function, payload: bytes, request_id: str) -> None:
        functions.enqueue_event(self.engine, function.id, request_id, payload)
        self._wake_events.set()

    def _run_events(self) -> None:
        while not self._closed.is_set():
            self._wake_events.wait(1.0)
            self._wake_events.clear()
            with self._lock:
                busy = set(self._in_flight)
                room = EVENT_RUNNERS * 4 - len(busy)
            if room <= 0:
                continue
            for row in functions.take_events(self.engine, self.server_id, busy, room):
                with self._lock:
                    self._in_flight.add(row.id)
                try:
                    self._runners.submit(self._run_event, row)
                except RuntimeError:  # shutting down
                    return

    def _run_event(self, row) -> None:
        try:
            function = functions.get(self.engine, row.function_id)
            if function is None:
                functions.drop_event(self.engine, row.id)
                return
            try:
                self.invoke(function, row.payload, row.request_id)
            except Throttled:
                time.sleep(0.5)  # it stays queued and is tried again
                return
            except OSError as err:
                log.warning("Event invocation %s of %s could not run: %s", row.request_id, function.name, err)
            functions.drop_event(self.engine, row.id)
        finally:
            with self._lock:
                self._in_flight.discard(row.id)
            self._wake_events.set()


def _json(document: dict) -> bytes:
    return json.dumps(document).encode()


def _error_payload(error_type: str, message: str) -> bytes:
    return _json({"errorType": error_type, "errorMessage": message})
