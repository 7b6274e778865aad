"""Runs quantum tasks: a few warm simulator processes fed by the server.

A local simulation of a typical task takes milliseconds, far less than
starting a worker process and importing the simulator (seconds), so tasks do
not go through the job scheduler: each is handed to a long-lived simulator
process (spawned once, warmed with a tiny circuit so its JIT compilation is
paid up front). The processes keep heavy simulations off the server's event
loop and can die (out of memory) without taking the server down.

Each runner thread owns one simulator process and runs one task on it at a
time, so a task is QUEUED until a simulator is free to take it, RUNNING while
it simulates, then COMPLETED (results.json written to
``outputS3Bucket/outputS3Directory``) or FAILED. CancelQuantumTask: QUEUED →
CANCELLED at once; RUNNING → CANCELLING, then the simulator process running it
is killed (a simulation cannot be interrupted from outside) and the task is
CANCELLED; a fresh process takes the thread's next task.

A task belongs to the server that accepted it (its ``server_id``): only that
server runs it, so servers sharing a database never run one task twice. A
cancellation accepted by another server reaches the runner through the
database (read every CANCEL_CHECK_SECONDS while the task runs).

The runner starts with the server: what this server's previous life left
queued or running is queued again and runs at once, whether or not a client
calls anything (the Braket SDK's ``result()`` only polls GetQuantumTask). It
stops with the server: its simulator processes are killed, and what they
were running is queued again at the next start, or by another server once
this one's lease has expired (``reclaim``, a hook of ``core.server_leases``).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import queue
import threading
import time

import sqlalchemy as sa

from jobforge.core.objects import ObjectStore
from jobforge.core.quantum_tasks import QuantumTask, quantum_tasks, transition
from jobforge.core.store import reading

log = logging.getLogger("jobforge.braket.tasks")
RESULTS_FILENAME = "results.json"
CANCEL_POLL_SECONDS = 0.05
CANCEL_CHECK_SECONDS = 0.5  # how often a running task's status is read for a cancellation made elsewhere
_PR_SET_PDEATHSIG = 1
_WARM_UP = 'OPENQASM 3.0;\nqubit[2] q;\nbit[2] b;\nh q[0];\ncnot q[0], q[1];\nb = measure q;'


def _simulator_main(connection, server_pid: int) -> None:
    """A simulator process: die with the server, compile the simulator's kernels now, then run tasks one by one.

    Each request is (device ARN, action, shots, device parameters, task ARN); each answer ("ok", results.json
    bytes) or ("error", the failure reason).
    """
    import ctypes
    import signal
    import sys

    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != server_pid:  # the server died while this process was starting
        os._exit(1)
    from braket.ir.openqasm import Program

    from jobforge.execution.context import WorkloadError
    from jobforge.workloads.braket.tasks import results_json, run_task

    run_task("braket_sv", Program(source=_WARM_UP).json(), 10)
    while True:
        try:
            device_arn, action, shots, device_parameters, task_arn = connection.recv()
        except EOFError:  # the runner is gone
            return
        try:
            answer = ("ok", results_json(device_arn, action, shots, device_parameters, task_arn=task_arn).encode())
        except WorkloadError as err:
            answer = ("error", str(err))
        except Exception as err:  # noqa: BLE001 — the task fails with it; the process serves the next one
            answer = ("error", f"Internal error: {type(err).__name__}: {err}")
        connection.send(answer)


class _Died(Exception):
    """The simulator process ended while running a task."""


class _Cancelled(Exception):
    """The task was cancelled; the simulator process running it has been killed."""


class _Simulator:
    """One simulator process and the pipe to it."""

    def __init__(self):
        context = multiprocessing.get_context("spawn")
        self.connection, child = context.Pipe()
        self.process = context.Process(target=_simulator_main, args=(child, os.getpid()), daemon=True,
                                       name="braket-simulator")
        self.process.start()
        child.close()

    def run(self, task: QuantumTask, cancelled) -> tuple[str, object]:
        self.connection.send((task.device_arn, task.action, task.shots, task.device_parameters, task.arn))
        while not self.connection.poll(CANCEL_POLL_SECONDS):
            if not self.process.is_alive():
                raise _Died()
            if cancelled():
                self.kill()
                raise _Cancelled()
        try:
            return self.connection.recv()
        except EOFError:
            raise _Died() from None

    def kill(self) -> None:
        self.process.kill()
        self.process.join()
        self.connection.close()


class QuantumTaskRunner:
    def __init__(self, engine: sa.Engine, object_store: ObjectStore, size: int, server_id: str):
        self.engine, self.object_store, self.size = engine, object_store, size
        self.server_id = server_id
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._lock = threading.Lock()  # the threads, the simulators, the cancel requests, whether it stops
        self._threads: list[threading.Thread] = []
        self._simulators: set[_Simulator] = set()
        self._cancel_requests: set[str] = set()
        self._stopping = False

    def start(self) -> None:
        """Run again what this server's previous life left queued or running, and the tasks no server took."""
        self.reclaim(self.server_id)
        self.reclaim(None)

    def reclaim(self, server_id: str | None) -> None:
        """Take over the tasks a server that is gone left queued or running (None: tasks made before servers
        took theirs): they run here; a cancellation it was making completes."""
        owner = quantum_tasks.c.server_id.is_(None) if server_id is None else quantum_tasks.c.server_id == server_id
        with self.engine.begin() as conn:
            conn.execute(quantum_tasks.update().where(owner, quantum_tasks.c.status == "CANCELLING")
                         .values(status="CANCELLED", ended_at=time.time()))
            taken = conn.execute(quantum_tasks.update().where(owner, quantum_tasks.c.status.in_(("QUEUED", "RUNNING")))
                                 .values(status="QUEUED", started_at=None, server_id=self.server_id)
                                 .returning(quantum_tasks.c.id, quantum_tasks.c.created_at)).all()
        for task_id, _ in sorted(taken, key=lambda row: row[1]):
            self.submit(task_id)

    def submit(self, task_id: str) -> None:
        if self._start_threads():  # else the task stays queued for the next start
            self._queue.put(task_id)

    def warm(self) -> None:
        """Start the simulator processes ahead of the first task."""
        self._start_threads()

    def cancel(self, task_id: str) -> None:
        """Stop the simulation of a task the caller has moved to CANCELLING."""
        with self._lock:
            self._cancel_requests.add(task_id)

    def stop(self) -> None:
        """Kill the simulator processes at once: a simulation can run for minutes, and the server must not wait."""
        with self._lock:
            self._stopping = True
            simulators, self._simulators = list(self._simulators), set()
        for _ in self._threads:
            self._queue.put(None)
        for simulator in simulators:
            simulator.process.kill()

    def _start_threads(self) -> bool:
        """The runner's threads, started once; each starts its simulator process first. The threads live as long
        as the runner: a simulator process dies when the thread that started it ends (PR_SET_PDEATHSIG)."""
        with self._lock:
            if self._stopping:
                return False
            while len(self._threads) < self.size:
                thread = threading.Thread(target=self._serve, name=f"braket-task-{len(self._threads)}", daemon=True)
                self._threads.append(thread)
                thread.start()
            return True

    def _new_simulator(self) -> _Simulator | None:
        with self._lock:
            if self._stopping:
                return None
            simulator = _Simulator()
            self._simulators.add(simulator)
            return simulator

    def _discard(self, simulator: _Simulator) -> None:
        with self._lock:
            self._simulators.discard(simulator)

    def _serve(self) -> None:
        simulator = self._new_simulator()
        while simulator is not None and (task_id := self._queue.get()) is not None:
            try:
                if not self._run(simulator, task_id):
                    self._discard(simulator)
                    simulator = self._new_simulator()
            except Exception as err:  # never leave a task RUNNING while the server runs
                if self._stopping:
                    return  # the next start queues it again
                log.exception("quantum task %s failed", task_id)
                self._fail(task_id, f"Internal error: {err}")

    def _run(self, simulator: _Simulator, task_id: str) -> bool:
        """Run one task on the simulator; False when the simulator process is gone."""
        task = transition(self.engine, task_id, "RUNNING", ("QUEUED",), self.server_id, started_at=time.time())
        if task is None:
            return True  # cancelled while queued (or taken over by another server while this one was cut off)
        try:
            outcome, value = simulator.run(task, self._cancel_check(task_id))
        except _Cancelled:
            transition(self.engine, task.id, "CANCELLED", ("CANCELLING",), self.server_id)
            return False
        except _Died:
            if not self._stopping:  # else the next start queues it again
                self._fail(task.id, "The simulator process died while running the task "
                                    "(it may have run out of memory).")
            return False
        finally:
            with self._lock:
                self._cancel_requests.discard(task_id)
        if outcome == "error":
            self._fail(task.id, value)
        else:
            self._complete(task, value)
        return True

    def _cancel_check(self, task_id: str):
        """Whether the running task is to stop: cancelled through this server, or (read from the database every
        CANCEL_CHECK_SECONDS) through another, or this server stops."""
        read_at = time.monotonic()

        def cancelled() -> bool:
            nonlocal read_at
            with self._lock:
                if task_id in self._cancel_requests or self._stopping:
                    return True
            if time.monotonic() - read_at < CANCEL_CHECK_SECONDS:
                return False
            read_at = time.monotonic()
            with reading(self.engine) as conn:
                return conn.execute(sa.select(quantum_tasks.c.status).where(quantum_tasks.c.id == task_id)
                                    ).scalar() == "CANCELLING"
        return cancelled

    def _complete(self, task: QuantumTask, document: bytes) -> None:
        if transition(self.engine, task.id, "CANCELLED", ("CANCELLING",), self.server_id):
            return
        try:
            self.object_store.put_bytes(task.account_id, task.output_bucket,
                                        f"{task.output_directory}/{RESULTS_FILENAME}", document, "application/json")
        except Exception as err:
            self._fail(task.id, f"Could not write the result to s3://{task.output_bucket}/{task.output_directory}/: "
                                f"{getattr(err, 'message', err)}")
            return
        if transition(self.engine, task.id, "COMPLETED", ("RUNNING",), self.server_id) is None:
            transition(self.engine, task.id, "CANCELLED", ("CANCELLING",), self.server_id)

    def _fail(self, task_id: str, reason: str) -> None:
        if transition(self.engine, task_id, "FAILED", ("RUNNING",), self.server_id,
                      failure_reason=reason[:1024]) is None:
            transition(self.engine, task_id, "CANCELLED", ("CANCELLING",), self.server_id)
