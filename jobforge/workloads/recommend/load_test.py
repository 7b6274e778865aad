"""One load test on one event loop: closed-loop users or open-loop arrivals, measured window by window.

Closed loop (AWS's users): each user keeps one connection and sends its next request as soon as the last has
answered; latency runs from the moment a request is written. When the server stalls, the users stop sending,
so a stall is recorded as a few slow requests rather than the many it would have delayed.

Open loop (jobforge's addition): requests are scheduled at a target rate whatever the answers, on as many
connections as are needed up to a cap; latency runs from the moment a request was due (its intended send
time), so time spent waiting for a connection while the server stalls is counted (no coordinated omission).
"""

from __future__ import annotations

import asyncio
import collections
from dataclasses import dataclass, field
from time import perf_counter
from typing import Callable

from jobforge.workloads.recommend.http_connection import Connection, connect, prepare_request
from jobforge.workloads.recommend.latency import Window, WindowStats
from jobforge.workloads.recommend.traffic import Segment

CONNECT_RETRY_SECONDS = 0.1
WAITING_SECONDS = 10.0  # open loop: requests due but unsent beyond this many seconds of traffic are errors


@dataclass(frozen=True)
class Target:
    """Where requests go: host and port over TCP, or a Unix socket (a model server's)."""

    host: str = "localhost"
    port: int = 0
    path: str = "/invocations"
    headers: dict = field(default_factory=dict)
    unix_path: str | None = None

    @property
    def authority(self) -> str:
        return self.host if self.unix_path else f"{self.host}:{self.port}"

    @property
    def where(self) -> str:
        return self.unix_path or self.authority


@dataclass(frozen=True)
class Payload:
    body: bytes
    content_type: str


@dataclass(frozen=True)
class Plan:
    segments: list[Segment]
    open_loop_rate_per_user: float | None = None  # requests a second each user stands for; None: closed loop
    max_connections: int = 256  # open loop
    request_timeout: float = 60.0  # an answer later than this is an error, as InvokeEndpoint times out


class _User:
    __slots__ = ("retired",)

    def __init__(self):
        self.retired = False


class LoadTest:
    def __init__(self, target: Target, payloads: list[Payload], plan: Plan, report: Callable[[WindowStats], None]):
        if not payloads:
            raise ValueError("a load test needs at least one payload")
        self._target, self._plan, self._report = target, plan, report
        self._requests = [prepare_request(target.authority, target.path, p.body, p.content_type, target.headers)
                          for p in payloads]
        self._turn = 0
        self._window: Window | None = None
        self._connections: set[Connection] = set()
        self._tasks: set[asyncio.Task] = set()
        # closed loop
        self._users: list[_User] = []
        # open loop
        self._rate = 0.0
        self._idle: list[Connection] = []
        self._waiting: collections.deque[float] = collections.deque()
        self._opened = 0

    @property
    def open_loop(self) -> bool:
        return self._plan.open_loop_rate_per_user is not None

    async def run(self, stop: asyncio.Event) -> None:
        self._spawn(self._expire_late_answers())
        try:
            for index, segment in enumerate(self._plan.segments):
                rate = segment.users * self._plan.open_loop_rate_per_user if self.open_loop else None
                self._window = Window(index, segment.phase, segment.users, rate)
                if self.open_loop:
                    if self._rate == 0:
                        self._spawn(self._arrivals())
                    self._rate = rate
                else:
                    self._set_users(segment.users)
                try:
                    await asyncio.wait_for(stop.wait(), segment.seconds)
                except asyncio.TimeoutError:
                    pass
                self._report(self._window.close())
                if stop.is_set():
                    break
        finally:
            await self._shut_down()

    # -- closed loop
    def _set_users(self, count: int) -> None:
        while len(self._users) < count:
            user = _User()
            self._users.append(user)
            self._spawn(self._user(user))
        while len(self._users) > count:
            self._users.pop().retired = True  # it leaves once its request in flight has answered

    async def _user(self, user: _User) -> None:
        connection = None
        while not user.retired:
            if connection is None or not connection.open:
                connection = await self._connect()
                if connection is None:
                    await asyncio.sleep(CONNECT_RETRY_SECONDS)
                    continue
            request = self._next_request()
            sent = perf_counter()
            try:
                status, error_body = await connection.send(request, sent)
            except OSError as err:
                self._window.failed(_describe(err))
                continue
            self._record(status, error_body, perf_counter() - sent)
        if connection is not None:
            connection.close()

    # -- open loop
    async def _arrivals(self) -> None:
        due = perf_counter()
        while True:
            now = perf_counter()
            while due <= now:
                self._dispatch(due)
                due += 1.0 / self._rate
            await asyncio.sleep(due - now)

    def _dispatch(self, due: float) -> None:
        if self._idle:
            self._send(self._idle.pop(), due)
        elif self._opened < self._plan.max_connections:
            self._opened += 1
            self._spawn(self._open_and_send(due))
        elif len(self._waiting) < max(1, self._rate * WAITING_SECONDS):
            self._waiting.append(due)
        else:
            self._window.failed(f"not sent: {len(self._waiting)} requests already waiting for one of "
                                f"{self._plan.max_connections} connections")

    async def _open_and_send(self, due: float) -> None:
        connection = await self._connect()
        if connection is None:
            self._opened -= 1
            return
        self._send(connection, due)

    def _send(self, connection: Connection, due: float) -> None:
        reply = connection.send(self._next_request(), perf_counter())
        reply.add_done_callback(lambda done: self._answered(connection, due, done))

    def _answered(self, connection: Connection, due: float, reply: asyncio.Future) -> None:
        if reply.cancelled():
            return
        error = reply.exception()
        if error is not None:
            self._window.failed(_describe(error))
        else:
            status, error_body = reply.result()
            self._record(status, error_body, perf_counter() - due)
        if not connection.open:
            self._opened -= 1
            if self._waiting and self._opened < self._plan.max_connections:
                self._opened += 1
                self._spawn(self._open_and_send(self._waiting.popleft()))
        elif self._waiting:
            self._send(connection, self._waiting.popleft())
        else:
            self._idle.append(connection)

    # -- both
    def _next_request(self) -> bytes:
        self._turn = (self._turn + 1) % len(self._requests)
        return self._requests[self._turn]

    def _record(self, status: int, error_body: bytes, seconds: float) -> None:
        if status == 200:
            self._window.ok(seconds)
        else:
            self._window.failed(f"HTTP {status}: {error_body.decode('utf-8', 'replace')}")

    async def _connect(self) -> Connection | None:
        try:
            connection = await connect(self._target.host, self._target.port, self._target.unix_path)
        except OSError as err:
            self._window.failed(f"cannot connect to {self._target.where}: {_describe(err)}")
            return None
        self._connections.add(connection)
        return connection

    async def _expire_late_answers(self) -> None:
        timeout = self._plan.request_timeout
        while True:
            await asyncio.sleep(min(1.0, timeout / 4))
            now = perf_counter()
            self._connections = {c for c in self._connections if c.open}
            for connection in [c for c in self._connections if c.busy and now - c.sent_at > timeout]:
                connection.abort(TimeoutError(f"no answer within {timeout:g} s"))

    def _spawn(self, coroutine) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _shut_down(self) -> None:
        for user in self._users:
            user.retired = True
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for connection in self._connections:
            connection.close()


def _describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
