"""The server's side of the fork server (``jobforge.execution.zygote``).

``fork(...)`` asks the warm fork server for a worker and returns its handle,
or None when the fork server is not ready, busy importing, gone, or does not
answer in time; the executor then starts the worker the cold way. Handles
behave like ``subprocess.Popen`` for what the executor uses: ``pid`` and
``poll()``.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

from jobforge.execution.zygote import MAX_MESSAGE, process_start_time

ANSWER_SECONDS = 0.5


class ForkedWorker:
    def __init__(self, pid: int, client: "ZygoteClient"):
        self.pid = pid
        self.returncode: int | None = None
        self._client = client
        self._start_time = process_start_time(pid)

    def poll(self) -> int | None:
        if self.returncode is None and not self._client.alive:
            # Its fork server died, so no exit status will come: only whether it still runs.
            now = process_start_time(self.pid)
            if now is None or now != self._start_time:
                self.returncode = 1
        return self.returncode


class ZygoteClient:
    def __init__(self, env: dict):
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        # The fork server's libraries must not start thread pools: forked workers would inherit broken ones.
        # Nor may it read the server user's AWS files: what it loads, its workers inherit (jobs get the same).
        env = dict(env, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONUNBUFFERED="1",
                   AWS_CONFIG_FILE=os.devnull, AWS_SHARED_CREDENTIALS_FILE=os.devnull)
        with theirs:
            self.process = subprocess.Popen([sys.executable, "-P", "-m", "jobforge.execution.zygote",
                                             str(theirs.fileno())],
                                            env=env, stdin=subprocess.DEVNULL, pass_fds=[theirs.fileno()],
                                            start_new_session=True)
        self.sock = ours
        self.alive = True
        self.idle = False  # ready and not importing
        self._lock = threading.Lock()  # one request at a time
        self._requests = itertools.count(1)
        self._waiting: set[int] = set()
        self._answers: dict[int, dict] = {}
        self._answered = threading.Condition()
        self._workers: dict[int, ForkedWorker] = {}
        self._exits: dict[int, int] = {}  # exits reported before their fork was answered
        threading.Thread(target=self._read, name="zygote-reader", daemon=True).start()

    def fork(self, job_id: str, preload: tuple[str, ...], cwd: str, log: str, pid_file: str, env: dict,
             confinement: dict) -> ForkedWorker | None:
        if not (self.alive and self.idle):
            return None
        with self._lock:
            deadline = time.monotonic() + ANSWER_SECONDS
            number = next(self._requests)
            request = {"request": number, "job": job_id, "preload": list(preload), "cwd": cwd, "log": log,
                       "pid_file": pid_file, "confinement": confinement, "deadline": deadline}
            env_fd = os.memfd_create(f"jobforge-env-{job_id}", os.MFD_CLOEXEC)
            try:
                os.write(env_fd, json.dumps(env).encode())
                os.lseek(env_fd, 0, os.SEEK_SET)
                with self._answered:
                    self._waiting.add(number)
                socket.send_fds(self.sock, [json.dumps(request).encode()], [env_fd])
            except OSError:
                with self._answered:
                    self._waiting.discard(number)
                return None
            finally:
                os.close(env_fd)
            # The fork server checks the deadline before forking, so past it (and a margin) none will come.
            answer = self._wait(number, deadline + ANSWER_SECONDS)
            if answer is None or "pid" not in answer:
                return None
            pid = answer["pid"]
            with self._answered:
                worker = self._workers[pid] = ForkedWorker(pid, self)
                if pid in self._exits:
                    worker.returncode = self._exits.pop(pid)
            return worker

    def _wait(self, number: int, until: float) -> dict | None:
        with self._answered:
            try:
                while number not in self._answers and self.alive:
                    left = until - time.monotonic()
                    if left <= 0:
                        return None
                    self._answered.wait(left)
                return self._answers.pop(number, None)
            finally:
                self._waiting.discard(number)

    def _read(self) -> None:
        while True:
            try:
                data = self.sock.recv(MAX_MESSAGE)
            except OSError:
                data = b""
            with self._answered:
                if not data:
                    self.alive = self.idle = False
                    self._answered.notify_all()
                    return
                message = json.loads(data)
                if "ready" in message or "busy" in message:
                    self.idle = not message.get("busy", False)
                elif "exited" in message:
                    worker = self._workers.pop(message["exited"], None)
                    if worker is None:
                        self._exits[message["exited"]] = message["code"]
                    else:
                        worker.returncode = message["code"]
                elif message["request"] in self._waiting:
                    self._answers[message["request"]] = message
                    self._answered.notify_all()
                elif "pid" in message:  # forked after the executor gave up and started the job otherwise
                    try:
                        os.killpg(message["pid"], signal.SIGKILL)
                    except OSError:
                        pass

    def close(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
