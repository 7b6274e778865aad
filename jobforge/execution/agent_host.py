"""AgentCore runtimes' sessions: one confined process per runtime session, as AgentCore gives each session
its own microVM.

A runtime version's code (a .zip archive) is unpacked once, read-only, when the version is created or
updated; the version is READY then, or CREATE_FAILED / UPDATE_FAILED with the reason. The first invocation
of a session starts its process (``agent_worker``): the ``ProcessHost`` confines it as it confines Lambda
environments (per-account user, data dir hidden, private /tmp, memory limit held through the supervisor),
gives it a network namespace of its own, where the agent serves the AgentCore HTTP contract on port 8080,
and the role's temporary credentials with ``AWS_*`` pointing at jobforge. The session is ready once
``GET /ping`` answers ``Healthy`` or ``HealthyBusy``; its invocations are forwarded to ``POST
/invocations`` and the answer streamed back. Later invocations with the same ``runtimeSessionId`` reach the
same process. A session ends after its idle timeout (unless its agent says ``HealthyBusy``), at its
maximum lifetime, on StopRuntimeSession, when its runtime is updated away from or deleted, or when its
agent exits. What the agent prints goes to CloudWatch Logs, group
``/aws/bedrock-agentcore/runtimes/<runtime id>-<endpoint>``, one stream per session process. A container
runtime's session is a container of its image instead (``container_agent``), run by the server's engine.

Of servers sharing a database, the one that starts a session hosts it (``core.agent_sessions``): the
session's invocations and StopRuntimeSession reaching another server are forwarded to it; once its lease
has expired (``core.server_leases``) its sessions' records and credentials go, and the session's next
invocation starts it anew on the server it reaches. A server unpacks a version's code when its first
session there needs it.
"""

from __future__ import annotations

import datetime as dt
import http.client
import json
import logging
import os
import shutil
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator
from urllib.parse import urlsplit

import sqlalchemy as sa

from jobforge.core import accounts, agent_sessions
from jobforge.core import agent_runtimes as records
from jobforge.core.server_leases import OwnedElsewhere, ServerLeases
from jobforge.execution import container_agent, container_engine, function_code
from jobforge.execution.container_agent import AgentContainer
from jobforge.execution.function_host import LogWriter, available_runtimes
from jobforge.execution.process_host import Hosted, HostedSpec, ProcessHost

log = logging.getLogger("jobforge.agents")

PREFIX = "agentcore-"
AGENT_PORT = 8080  # the AgentCore service contract's port
SESSION_MEMORY_MB = 2048  # what each session process may use, and holds from jobs while it runs
SCRATCH_MB = 1024
INIT_SECONDS = 60.0  # how long a new session's agent has to answer GET /ping, as AgentCore allows code
INVOCATION_SECONDS = 15 * 60  # the most one synchronous invocation may wait for the agent
IDLE_SECONDS = 900  # idleRuntimeSessionTimeout's default
MAX_LIFETIME = 28800  # maxLifetime's default
CREDENTIAL_SECONDS = 12 * 3600
REAP_SECONDS = 5.0
MAX_UNZIPPED = 750 * 1024 * 1024
HEALTHY = ("Healthy", "HealthyBusy")
RESPONSE_CHUNK = 65536


def session_endpoint(endpoint_url: str) -> str:
    """The server's endpoint as a session's agent reaches it from its network namespace: the same port on its
    loopback (the next one where the server's is the agent's own 8080), relayed to the server."""
    endpoint = urlsplit(endpoint_url)
    port = endpoint.port if endpoint.port != AGENT_PORT else AGENT_PORT + 1
    return f"{endpoint.scheme}://127.0.0.1:{port}"


class InitFailed(Exception):
    """The session's agent did not come up (AgentCore's RuntimeClientError); the message says why."""


class AgentFailed(Exception):
    """The agent answered an invocation with an HTTP error status."""

    def __init__(self, status: int):
        super().__init__(status)
        self.status = status


class NoRoom(Exception):
    """No memory left on this host for another session."""


@dataclass
class Reply:
    status: int
    content_type: str
    body: bytes | None  # a whole answer (JSON), or None for a stream
    chunks: Iterator[bytes] | None = None
    close: Callable[[], None] | None = None


@dataclass
class Session:
    key: tuple[str, int, str]  # (runtime record id, version, runtimeSessionId)
    runtime: records.AgentRuntime
    version: records.Version
    endpoint: str
    stream: str
    idle_seconds: int
    max_lifetime: int
    started_at: float = field(default_factory=time.monotonic)
    last_used: float = field(default_factory=time.monotonic)
    active: int = 0
    name: str = field(default_factory=lambda: PREFIX + uuid.uuid4().hex)
    hosted: Hosted | None = None
    container: AgentContainer | None = None  # a container runtime's, instead
    dial: socket.socket | None = None
    ready: threading.Event = field(default_factory=threading.Event)
    failure: str | None = None
    control_lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def alive(self) -> bool:
        if self.container is not None:
            return self.failure is None and self.container.exit_code() is None
        return self.failure is None and self.hosted is not None and self.hosted.process is not None \
            and self.hosted.process.poll() is None


class _AgentConnection(http.client.HTTPConnection):
    """HTTP to the agent over a socket its session process connected for us."""

    def __init__(self, sock: socket.socket, timeout: float):
        super().__init__("127.0.0.1", AGENT_PORT, timeout=timeout)
        sock.settimeout(timeout)
        self.sock = sock

    def connect(self):
        raise ConnectionError("the connection to the agent is closed")


def python_of(runtime: str) -> str:
    """PYTHON_3_11 → python3.11."""
    return "python" + runtime.removeprefix("PYTHON_").replace("_", ".")


class AgentHost:
    def __init__(self, engine: sa.Engine, settings, processes: ProcessHost, keys: accounts.KeyRing,
                 memory_mb: int, leases: ServerLeases):
        self.engine = engine
        self.leases = leases
        self.server_id = leases.server_id
        self.settings = settings
        self.processes = processes
        self.keys = keys
        self.memory_mb = memory_mb  # what this host gives sessions, all together
        self.code_root = settings.data_dir / "agentcore-code"
        self.containers = container_engine.configured(settings)  # runs container runtimes' sessions
        self.runtimes = {name.replace("python", "PYTHON_").replace(".", "_"): path
                         for name, path in available_runtimes().items()}
        self._lock = threading.Lock()
        self._sessions: dict[tuple[str, int, str], Session] = {}
        self._closed = threading.Event()
        self._logs: LogWriter | None = None
        self._reaper: threading.Thread | None = None

    # -- lifecycle -----------------------------------------------------------------
    def start(self) -> None:
        """Clear what this server's previous life's sessions left (their processes are gone: their credentials
        go too) and finish the versions left preparing."""
        self.processes.sweep(PREFIX)
        if self.containers is not None:
            self.containers.sweep(PREFIX)
        self.reclaim(self.server_id)
        self.keys.revoke_server(None, PREFIX)  # issued before servers recorded themselves with credentials
        self._logs = LogWriter(self.engine)
        for version in records.unsettled(self.engine):
            self.prepare(version)
        self._reaper = threading.Thread(target=self._reap, name="agent-session-reaper", daemon=True)
        self._reaper.start()

    def reclaim(self, server_id: str) -> None:
        """The sessions of a server that is gone end: their records and credentials go."""
        self.keys.revoke_server(server_id, PREFIX)
        agent_sessions.release_server(self.engine, server_id)

    def stop(self, deadline: float) -> None:
        self._closed.set()
        with self._lock:
            sessions = list(self._sessions.values())
            self._sessions.clear()
        for session in sessions:
            self._discard(session)
        if self._logs is not None:
            self._logs.close(max(0.0, deadline - time.monotonic()))

    def network_problem(self) -> str | None:
        """Why this host cannot give a session a network of its own, if it cannot."""
        isolation = self.processes.isolation()
        if isolation.host.namespaces:
            return None
        return f"this host cannot give an agent its own network namespace ({isolation.host.missing})"

    # -- code ------------------------------------------------------------------------
    def store_code(self, runtime_key: str, data: bytes) -> Path:
        return function_code.store(self.code_root, runtime_key, data)

    def drop_code(self, runtime_key: str) -> None:
        shutil.rmtree(self.code_root / runtime_key, ignore_errors=True)

    def code_dir(self, version: records.Version) -> Path:
        return self.code_root / version.runtime / f"v{version.version}"

    def prepare(self, version: records.Version) -> None:
        """Unpack a new version's code in the background, then settle it READY or failed with the reason."""
        threading.Thread(target=self._prepare, args=(version,), name=f"agent-code-{version.runtime}",
                         daemon=True).start()

    def _prepare(self, version: records.Version) -> None:
        try:
            failure = self._version_problem(version)
        except Exception as err:  # noqa: BLE001  (the reason is the runtime's failureReason)
            failure = f"The code could not be unpacked: {err}"
        try:
            records.settle(self.engine, version, failure)
        except Exception:  # the runtime was deleted meanwhile
            log.debug("version %s of %s was not settled", version.version, version.runtime, exc_info=True)
            return
        self.retire(version.runtime)

    def _version_problem(self, version: records.Version) -> str | None:
        """Why the version cannot run here, if it cannot: its image is not on the engine, or its code."""
        image = container_agent.image_of(version)
        if image is None:
            return self.network_problem() or self._unpack(version)
        if self.containers is None:
            return "This server runs no container engine: start it with jobforge serve --container-engine docker " \
                   "(or podman) to run container runtimes."
        if self.containers.image(image) is None:
            return f"The image {image} is not on this host's {self.containers.name}: build, pull or load it there."
        return None

    def _unpack(self, version: records.Version) -> str | None:
        target = self.code_dir(version)
        data = Path(version.code_file).read_bytes()
        try:
            function_code.check(data, MAX_UNZIPPED)
        except function_code.CodeError as err:
            return str(err)
        staging = target.with_name(target.name + ".unpacking")
        shutil.rmtree(staging, ignore_errors=True)
        function_code.extract(Path(version.code_file), staging)
        entry = version.config["agentRuntimeArtifact"]["codeConfiguration"]["entryPoint"][-1]
        if not (staging / entry).is_file():
            shutil.rmtree(staging, ignore_errors=True)
            return f"The entry point {entry} is not a file in the code archive."
        shutil.rmtree(target, ignore_errors=True)
        staging.rename(target)
        return None

    def forget(self, runtime: records.AgentRuntime) -> None:
        """A deleted runtime: its sessions end, its code goes."""
        self._end_sessions(lambda session: session.runtime.id == runtime.id)
        self.drop_code(runtime.id)

    def retire(self, runtime_key: str) -> None:
        """End the runtime's sessions of versions no endpoint serves any more."""
        served = {endpoint.live_version for endpoint in records.endpoints(self.engine, runtime_key)}
        self._end_sessions(lambda s: s.runtime.id == runtime_key and s.version.version not in served)

    # -- sessions --------------------------------------------------------------------
    def invoke(self, runtime: records.AgentRuntime, version: records.Version, endpoint: str, session_id: str,
               payload: bytes, headers: dict[str, str]) -> Reply:
        """Forward one invocation to the session's agent. Raises InitFailed, NoRoom or AgentFailed, or
        OwnedElsewhere when another server hosts the session."""
        self._host_here(runtime, session_id)
        session = self._session(runtime, version, endpoint, session_id)
        try:
            sock = self._connect(session)
            connection = _AgentConnection(sock, INVOCATION_SECONDS)
            connection.request("POST", "/invocations", body=payload, headers=dict(
                headers, **{"X-Amzn-Bedrock-AgentCore-Runtime-Session-Id": session_id}))
            response = connection.getresponse()
        except (OSError, http.client.HTTPException) as err:
            self._release(session)
            raise InitFailed(f"The runtime session's agent did not answer: {err}. Please check your CloudWatch "
                             "logs for more information.") from None
        content_type = response.getheader("Content-Type") or "application/json"
        if not 200 <= response.status < 300 or not content_type.startswith("text/event-stream"):
            try:
                body = response.read()
            except (OSError, http.client.HTTPException):
                body = None
            connection.close()
            self._release(session)
            if body is None or not 200 <= response.status < 300:
                raise AgentFailed(response.status if body is not None else 500)
            return Reply(response.status, content_type, body)
        released = threading.Event()

        def finish() -> None:
            connection.close()
            if not released.is_set():
                released.set()
                self._release(session)

        def chunks() -> Iterator[bytes]:
            try:
                while chunk := response.read1(RESPONSE_CHUNK):
                    yield chunk
            except (OSError, http.client.HTTPException):
                return  # the agent went away mid-stream: the stream ends there
            finally:
                finish()

        return Reply(response.status, content_type, None, chunks(), finish)

    def stop_session(self, runtime: records.AgentRuntime, session_id: str) -> bool:
        """End a session's process; False when no such session runs. Raises OwnedElsewhere when another server
        hosts it."""
        host = agent_sessions.host_of(self.engine, runtime.id, session_id)
        if host not in (None, self.server_id) and (url := self.leases.url_of(host)) is not None:
            raise OwnedElsewhere(url)
        return self._end_sessions(lambda s: s.runtime.id == runtime.id and s.key[2] == session_id) > 0

    def _host_here(self, runtime: records.AgentRuntime, session_id: str) -> None:
        """Record this server as the session's host, unless another live server hosts it (OwnedElsewhere)."""
        host = agent_sessions.claim(self.engine, runtime.id, session_id, self.server_id)
        while host != self.server_id:
            url = self.leases.url_of(host)
            if url is not None:
                raise OwnedElsewhere(url)
            host = agent_sessions.claim(self.engine, runtime.id, session_id, self.server_id, replacing=host)

    def _session(self, runtime: records.AgentRuntime, version: records.Version, endpoint: str,
                 session_id: str) -> Session:
        key = (runtime.id, version.version, session_id)
        lifecycle = version.config.get("lifecycleConfiguration") or {}
        with self._lock:
            if self._closed.is_set():
                raise InitFailed("The server is stopping.")
            session = self._sessions.get(key)
            stale = session if session is not None and session.ready.is_set() and not session.alive else None
            if session is None or stale is not None:
                held = sum(1 for s in self._sessions.values() if s is not stale) * SESSION_MEMORY_MB
                if held + SESSION_MEMORY_MB > self.memory_mb:
                    raise NoRoom(f"This host has no memory left for another runtime session ({held} MB of "
                                 f"{self.memory_mb} MB held by sessions).")
                session = Session(key, runtime, version, endpoint, _stream_name(),
                                  lifecycle.get("idleRuntimeSessionTimeout", IDLE_SECONDS),
                                  lifecycle.get("maxLifetime", MAX_LIFETIME))
                self._sessions[key] = session
                starter = True
            else:
                starter = False
            session.active += 1
            session.last_used = time.monotonic()
        if stale is not None:
            self._discard(stale)
        if starter:
            try:
                self._start(session)
            except BaseException as err:
                session.failure = str(err) if isinstance(err, InitFailed) else f"The session could not start: {err}"
            session.ready.set()
        elif not session.ready.wait(INIT_SECONDS + 10):
            session.failure = session.failure or _init_exceeded()
        if session.failure is not None:
            failure = session.failure
            self._release(session)
            with self._lock:
                if self._sessions.get(key) is session:
                    del self._sessions[key]
            self._discard(session)
            raise InitFailed(failure)
        return session

    def _release(self, session: Session) -> None:
        with self._lock:
            session.active -= 1
            session.last_used = time.monotonic()

    def _end_sessions(self, chosen: Callable[[Session], bool]) -> int:
        with self._lock:
            doomed = [session for session in self._sessions.values() if chosen(session)]
            for session in doomed:
                del self._sessions[session.key]
        for session in doomed:
            self._discard(session)
        return len(doomed)

    def _discard(self, session: Session) -> None:
        hosted, session.hosted = session.hosted, None
        if hosted is not None:
            self.processes.stop(hosted)
        container, session.container = session.container, None
        if container is not None:
            container.stop()
        if session.dial is not None:
            session.dial.close()
        self.keys.revoke_job(session.name)
        runtime, _, session_id = session.key
        with self._lock:
            other_version = any(key[0] == runtime and key[2] == session_id for key in self._sessions)
        if not other_version:
            agent_sessions.release(self.engine, runtime, session_id, self.server_id)

    def _reap(self) -> None:
        while not self._closed.wait(REAP_SECONDS):
            now = time.monotonic()
            with self._lock:
                candidates = [s for s in self._sessions.values() if s.ready.is_set() and s.active == 0]
            for session in candidates:
                ended = not session.alive or now - session.started_at > session.max_lifetime
                if not ended and now - session.last_used > session.idle_seconds:
                    ended = self._ping(session) != "HealthyBusy"  # a busy agent keeps its session
                if ended:
                    self._end_sessions(lambda s, session=session: s is session and s.active == 0)

    # -- a session's process -----------------------------------------------------------
    def _start(self, session: Session) -> None:
        version = session.version
        if container_agent.image_of(version) is not None:
            return self._start_container(session)
        code = version.config["agentRuntimeArtifact"]["codeConfiguration"]
        python = self.runtimes.get(code["runtime"])
        if python is None:
            raise InitFailed(f"This host no longer has the {code['runtime']} runtime.")
        code_dir = self.code_dir(version)
        if not code_dir.is_dir():  # prepared by another server
            problem = self._unpack(version)
            if problem is not None:
                raise InitFailed(problem)
        role = version.config["roleArn"]
        runtime = session.runtime
        credential = accounts.issue_temporary_credentials(
            self.engine, runtime.account_id, f"arn:aws:sts::{runtime.account_id}:assumed-role/"
            f"{role.rsplit('/', 1)[-1]}/BedrockAgentCore-{session.key[2][:32]}", CREDENTIAL_SECONDS, session.name,
            self.server_id)
        endpoint = urlsplit(self.settings.endpoint_url)
        inside = urlsplit(session_endpoint(self.settings.endpoint_url))
        settings = {"code_dir": str(code_dir), "entry_point": code["entryPoint"][-1], "agent_port": AGENT_PORT,
                    "endpoint_port": inside.port}
        env = {
            "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"), "LANG": "C.UTF-8",
            "PYTHONPATH": str(code_dir), "PYTHONUNBUFFERED": "1", "TMPDIR": "/tmp",
            "AWS_REGION": runtime.region, "AWS_DEFAULT_REGION": runtime.region,
            "AWS_ACCESS_KEY_ID": credential.access_key_id, "AWS_SECRET_ACCESS_KEY": credential.secret_key,
            "AWS_SESSION_TOKEN": credential.session_token,
            "AWS_ENDPOINT_URL": inside.geturl(),
            "AWS_CONFIG_FILE": os.devnull, "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
            "OTEL_RESOURCE_ATTRIBUTES": f"service.name={runtime.name},cloud.resource_id={runtime.arn}",
        }
        env.update(version.config.get("environmentVariables") or {})
        spec = HostedSpec(name=session.name, account_id=runtime.account_id, python=python,
                          module="jobforge.execution.agent_worker", settings=settings, env=env,
                          memory_mb=SESSION_MEMORY_MB, on_output=lambda line: self._output(session, line),
                          scratch_mb=SCRATCH_MB, readable=(str(code_dir),), private_network=True)
        session.hosted = self.processes.start(spec)
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            socket.send_fds(session.hosted.control, [b"d"], [theirs.fileno()])
        finally:
            theirs.close()
        session.dial = ours
        threading.Thread(target=self._answer_dials, args=(ours, endpoint.hostname, endpoint.port),
                         name=f"dial-{session.name}", daemon=True).start()
        self._wait_until_healthy(session)

    def _start_container(self, session: Session) -> None:
        """A container runtime's session: its image run by the engine, healthy once GET /ping says so."""
        if self.containers is None:
            raise InitFailed("This server runs no container engine (jobforge serve --container-engine).")
        runtime, version = session.runtime, session.version
        credential = accounts.issue_temporary_credentials(
            self.engine, runtime.account_id, f"arn:aws:sts::{runtime.account_id}:assumed-role/"
            f"{version.config['roleArn'].rsplit('/', 1)[-1]}/BedrockAgentCore-{session.key[2][:32]}",
            CREDENTIAL_SECONDS, session.name, self.server_id)
        env = container_agent.environment(runtime, credential, version.config.get("environmentVariables"))
        session.container = AgentContainer(self.containers, session.name, container_agent.image_of(version), env,
                                           self.settings.endpoint_url, SESSION_MEMORY_MB,
                                           lambda line: self._output(session, line))
        try:
            session.container.start(INIT_SECONDS)
        except OSError as err:
            raise InitFailed(f"Runtime initialization failed: the container could not start: {err}") from None
        self._wait_until_healthy(session)

    def _wait_until_healthy(self, session: Session) -> None:
        deadline = time.monotonic() + INIT_SECONDS
        while time.monotonic() < deadline:
            code = session.container.exit_code() if session.container is not None else session.hosted.process.poll()
            if code is not None:
                how = f"signal {-code}" if code < 0 else f"status {code}"
                raise InitFailed(f"Runtime initialization failed: the agent exited with {how} before it answered "
                                 f"GET /ping on port {AGENT_PORT}. Please check your CloudWatch logs for more "
                                 "information.")
            if self._ping(session) in HEALTHY:
                return
            time.sleep(0.05)
        raise InitFailed(_init_exceeded())

    def _ping(self, session: Session) -> str | None:
        """The agent's health status, or None when it does not answer."""
        try:
            connection = _AgentConnection(self._connect(session), 5.0)
            connection.request("GET", "/ping")
            answer = connection.getresponse()
            document = json.loads(answer.read()) if answer.status == 200 else {}
            connection.close()
        except (OSError, http.client.HTTPException, ValueError):
            return None
        return document.get("status") if isinstance(document, dict) else None

    def _connect(self, session: Session) -> socket.socket:
        """A socket connected to the session's agent, made inside its network namespace (or its container's)."""
        if session.container is not None:
            return session.container.connect(10.0)
        hosted = session.hosted
        if hosted is None or hosted.control is None:
            raise ConnectionRefusedError("the session has ended")
        with session.control_lock:
            hosted.control.settimeout(10.0)
            hosted.control.sendall(b"c")
            _, fds, _, _ = socket.recv_fds(hosted.control, 1, 1)
        if not fds:
            raise ConnectionRefusedError(f"the agent is not listening on port {AGENT_PORT}")
        return socket.socket(fileno=fds[0])

    @staticmethod
    def _answer_dials(dial: socket.socket, host: str, port: int) -> None:
        """Connect the session to jobforge's endpoint, each time it asks."""
        while True:
            try:
                if not dial.recv(1):
                    return
            except OSError:
                return
            try:
                with socket.create_connection((host, port), timeout=10.0) as connection:
                    connection.settimeout(None)
                    connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # relayed piece by piece
                    socket.send_fds(dial, [b"d"], [connection.fileno()])
            except OSError:
                try:
                    dial.sendall(b"e")
                except OSError:
                    return

    def _output(self, session: Session, line: bytes | None) -> None:
        if line is None or self._logs is None:
            return
        runtime = session.runtime
        self._logs.put(runtime.account_id, runtime.region, records.log_group(runtime, session.endpoint),
                       session.stream, [(time.time(), line.decode("utf-8", "replace"))])


def _stream_name() -> str:
    return f"{dt.datetime.now(dt.timezone.utc):%Y/%m/%d}/[runtime-logs]{uuid.uuid4()}"


def _init_exceeded() -> str:
    return f"Runtime initialization time exceeded. Please make sure that initialization completes in " \
           f"{INIT_SECONDS:.0f}s."
