"""Runs quantum tasks: a few warm simulator processes fed by the server.

A local simulation of a typical task takes milliseconds, far less than
starting a worker process and importing the simulator (seconds), so tasks do
not go through the job scheduler: each is handed to a long-lived simulator
process (spawned once, warmed with a tiny circuit so its JIT compilation is
paid up front). The processes keep heavy simulations off the server's event
loop and can die (out of memory) without taking the server down.

Status path: QUEUED → RUNNING (a simulator process took it) → COMPLETED
(results.json written to ``outputS3Bucket/outputS3Directory``) or FAILED;
CancelQuantumTask: QUEUED → CANCELLED at once, RUNNING → CANCELLING →
CANCELLED when the simulation returns (its result is dropped).

The runner starts with the server: what a previous server left queued or
running is queued again and runs at once, whether or not a client calls
anything (the Braket SDK's ``result()`` only polls GetQuantumTask). It stops
with the server: its simulator processes are killed, and what they were
running is queued again at the next start.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import threading
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool

import sqlalchemy as sa

from jobforge.core.objects import ObjectStore
from jobforge.core.quantum_tasks import QuantumTask, quantum_tasks, transition

log = logging.getLogger("jobforge.braket.tasks")
RESULTS_FILENAME = "results.json"
_PR_SET_PDEATHSIG = 1
_WARM_UP = 'OPENQASM 3.0;\nqubit[2] q;\nbit[2] b;\nh q[0];\ncnot q[0], q[1];\nb = measure q;'


def _init_simulator_process(server_pid: int) -> None:
    """Die with the server; import the simulator and compile its kernels now rather than on the first task."""
    import ctypes
    import os
    import signal
    import sys

    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != server_pid:  # the server died while this process was starting
        os._exit(1)
    from braket.ir.openqasm import Program

    from jobforge.workloads.braket.tasks import run_task

    run_task("braket_sv", Program(source=_WARM_UP).json(), 10)


def simulate(device_arn: str, action: str, shots: int, device_parameters: str | None, task_arn: str) -> bytes:
    """In a simulator process: the task's results.json document."""
    from jobforge.workloads.braket.tasks import results_json

    return results_json(device_arn, action, shots, device_parameters, task_arn=task_arn).encode()


class _Stopping(Exception):
    """The runner is stopping: the task runs after the next start."""


class QuantumTaskRunner:
    def __init__(self, engine: sa.Engine, object_store: ObjectStore, size: int):
        self.engine, self.object_store, self.size = engine, object_store, size
        self._threads = ThreadPoolExecutor(size, thread_name_prefix="braket-task")
        self._processes: ProcessPoolExecutor | None = None
        self._lock = threading.Lock()  # the process pool and whether the runner stops
        self._stopping = False

    def start(self) -> None:
        """Queue again what a previous server left queued or running, and run it."""
        with self.engine.begin() as conn:
            conn.execute(quantum_tasks.update().where(quantum_tasks.c.status == "CANCELLING")
                         .values(status="CANCELLED", ended_at=time.time()))
            conn.execute(quantum_tasks.update().where(quantum_tasks.c.status == "RUNNING")
                         .values(status="QUEUED", started_at=None))
            waiting = conn.execute(sa.select(quantum_tasks.c.id).where(quantum_tasks.c.status == "QUEUED")
                                   .order_by(quantum_tasks.c.created_at)).scalars().all()
        for task_id in waiting:
            self.submit(task_id)

    def submit(self, task_id: str) -> None:
        self._on_runner_thread(self._run, task_id)

    def warm(self) -> None:
        """Start the simulator processes ahead of the first task."""
        self._on_runner_thread(lambda: self._pool().submit(int))

    def stop(self) -> None:
        """Kill the simulator processes at once: a simulation can run for minutes, and the server must not wait."""
        with self._lock:
            self._stopping = True
            pool, self._processes = self._processes, None
        self._threads.shutdown(wait=False, cancel_futures=True)
        if pool is not None:
            _kill_workers(pool)
            pool.shutdown(wait=False, cancel_futures=True)

    def _on_runner_thread(self, fn, *args) -> None:
        """Run fn on one of the runner's own threads, which live as long as the runner: a simulator process
        dies when the thread that started it ends (PR_SET_PDEATHSIG), and a request thread may end."""
        with self._lock:
            if not self._stopping:  # else the task stays queued for the next start
                self._threads.submit(fn, *args)

    def _pool(self) -> ProcessPoolExecutor:
        with self._lock:
            if self._stopping:
                raise _Stopping()
            if self._processes is None:
                self._processes = ProcessPoolExecutor(self.size, multiprocessing.get_context("spawn"),
                                                      initializer=_init_simulator_process,
                                                      initargs=(os.getpid(),))
            return self._processes

    def _discard_pool(self, broken: ProcessPoolExecutor) -> None:
        with self._lock:
            if self._processes is broken:
                self._processes = None
        broken.shutdown(wait=False, cancel_futures=True)

    def _run(self, task_id: str) -> None:
        task = transition(self.engine, task_id, "RUNNING", ("QUEUED",), started_at=time.time())
        if task is None:
            return  # cancelled while queued
        try:
            self._execute(task)
        except Exception as err:  # never leave a task RUNNING
            if self._stopping:
                return  # the next start queues it again
            log.exception("quantum task %s failed", task.arn)
            transition(self.engine, task.id, "FAILED", ("RUNNING",), failure_reason=f"Internal error: {err}")
            transition(self.engine, task.id, "CANCELLED", ("CANCELLING",))

    def _execute(self, task: QuantumTask) -> None:
        from jobforge.execution.context import WorkloadError

        pool = self._pool()
        try:
            document = pool.submit(simulate, task.device_arn, task.action, task.shots, task.device_parameters,
                                   task.arn).result()
        except BrokenProcessPool:
            if self._stopping:
                raise _Stopping() from None
            self._discard_pool(pool)
            self._fail(task, "The simulator process died while running the task (it may have run out of memory).")
            return
        except WorkloadError as err:
            self._fail(task, str(err))
            return
        if transition(self.engine, task.id, "CANCELLED", ("CANCELLING",)):
            return
        try:
            self.object_store.put_bytes(task.account_id, task.output_bucket,
                                        f"{task.output_directory}/{RESULTS_FILENAME}", document, "application/json")
        except Exception as err:
            self._fail(task, f"Could not write the result to s3://{task.output_bucket}/{task.output_directory}/: "
                             f"{getattr(err, 'message', err)}")
            return
        if transition(self.engine, task.id, "COMPLETED", ("RUNNING",)) is None:
            transition(self.engine, task.id, "CANCELLED", ("CANCELLING",))

    def _fail(self, task: QuantumTask, reason: str) -> None:
        if transition(self.engine, task.id, "FAILED", ("RUNNING",), failure_reason=reason[:1024]) is None:
            transition(self.engine, task.id, "CANCELLED", ("CANCELLING",))


def _kill_workers(pool: ProcessPoolExecutor) -> None:
    """SIGKILL a pool's processes (ProcessPoolExecutor.terminate_workers from Python 3.14 on)."""
    for process in list((pool._processes or {}).values()):
        process.kill()
