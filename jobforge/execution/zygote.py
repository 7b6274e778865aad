"""The fork server: ``python -m jobforge.execution.zygote <socket-fd>``.

A Python start plus the worker's imports cost seconds on a small machine, so
the local executor keeps this process warm and asks it for one forked child
per job attempt. It holds no secrets (and is not dumpable, so that no process
of its user reads its memory or its view of the files): each request comes
with a memfd that only the child reads (the job's environment, credentials
included). The child starts its own session (its pid is the job's process
group), takes the job's environment, working directory and log, writes the
pid file for orphan recovery and runs the worker's ``main``, which confines
it before anything of the job runs, exactly as
``python -P -m jobforge.execution.worker <job-id> <confinement>`` would.

Messages are JSON datagrams on a SOCK_SEQPACKET socket. Requests:
``{"request", "job", "preload", "cwd", "log", "pid_file", "confinement",
"deadline"}`` (with the memfd attached); replies: ``{"request", "pid"}`` or
``{"request", "error"}``; then
``{"exited": pid, "code"}`` when a worker ends, and ``{"ready"}``/``{"busy"}``
as the fork server becomes able to answer at once or not.
A request whose ``deadline`` (``time.monotonic()``, system-wide) has passed is
answered with an error and not forked: the executor has started the worker
the cold way meanwhile. The server's end closing means the server is gone:
the fork server exits, leaving running workers to the next server's recovery.
A workload's ``preload`` modules are imported after its first job is forked,
so that job is not held up and the following ones start warm.
"""

from __future__ import annotations

import importlib
import json
import os
import selectors
import signal
import socket
import sys
import time
import traceback

from jobforge.execution import linux

# Imported before the first request: what every worker needs on its way to the workload.
CORE_MODULES = ("jobforge.execution.worker", "jobforge.execution.transfer", "boto3", "botocore.client")
MAX_MESSAGE = 65536


def process_start_time(pid: int) -> str | None:
    """The kernel's start time of a process (field 22 of /proc/PID/stat): with the pid, it names one process."""
    try:
        stat = open(f"/proc/{pid}/stat", encoding="ascii", errors="replace").read()
    except OSError:
        return None
    return stat.rpartition(")")[2].split()[19]


class Zygote:
    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.selector = selectors.DefaultSelector()
        self.selector.register(sock, selectors.EVENT_READ)
        self.children: dict[int, int] = {}  # pidfd → pid
        self.preloaded: set[str] = set()

    def serve(self) -> None:
        _import_all(CORE_MODULES)
        try:
            from jobforge.execution import transfer

            transfer.preload()
        except Exception:  # a worker's first transfer does it then
            traceback.print_exc()
        self.send({"ready": True})
        while True:
            for key, _ in self.selector.select():
                if key.fileobj is self.sock:
                    if not self.handle_request():
                        return
                else:
                    self.reap(key.fd)

    def handle_request(self) -> bool:
        data, fds, _, _ = socket.recv_fds(self.sock, MAX_MESSAGE, 1)
        if not data:
            return False
        request = json.loads(data)
        env_fd = fds[0] if fds else None
        try:
            if env_fd is None:
                self.send({"request": request["request"], "error": "no environment attached"})
            elif time.monotonic() > request["deadline"]:
                self.send({"request": request["request"], "error": "deadline passed"})
            else:
                self.fork(request, env_fd)
        finally:
            if env_fd is not None:
                os.close(env_fd)
        modules = [m for m in request.get("preload", ()) if m not in self.preloaded]
        if modules:
            self.send({"busy": True})
            _import_all(modules)
            self.preloaded.update(modules)
            self.send({"busy": False})
        return True

    def fork(self, request: dict, env_fd: int) -> None:
        try:
            pid = os.fork()
        except OSError as err:
            self.send({"request": request["request"], "error": str(err)})
            return
        if pid == 0:
            os._exit(self.run_child(request, env_fd))
        pidfd = os.pidfd_open(pid)
        self.children[pidfd] = pid
        self.selector.register(pidfd, selectors.EVENT_READ)
        self.send({"request": request["request"], "pid": pid})

    def run_child(self, request: dict, env_fd: int) -> int:
        code = 1
        try:
            self.selector.close()
            self.sock.close()
            for pidfd in self.children:
                os.close(pidfd)
            os.setsid()
            for signum in (signal.SIGTERM, signal.SIGCHLD, signal.SIGHUP):
                signal.signal(signum, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.default_int_handler)
            with os.fdopen(env_fd, "rb", closefd=True) as source:
                env = json.loads(source.read())
            os.chdir(request["cwd"])
            log = os.open(request["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            null = os.open(os.devnull, os.O_RDONLY)
            os.dup2(null, 0)
            os.dup2(log, 1)
            os.dup2(log, 2)
            os.close(null)
            os.close(log)
            os.environ.clear()
            os.environ.update(env)
            sys.argv = [sys.argv[0], request["job"]]
            pid = os.getpid()
            with open(request["pid_file"], "w", encoding="ascii") as marker:
                marker.write(f"{pid} {process_start_time(pid)}\n")
            from jobforge.execution import worker

            worker.main(request["job"], request["confinement"])
            code = 0
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
            if exit_.code is not None and not isinstance(exit_.code, int):
                print(exit_.code, file=sys.stderr)
        except BaseException:
            traceback.print_exc()
        finally:
            for stream in (sys.stdout, sys.stderr):
                try:
                    stream.flush()
                except Exception:
                    pass
        return code

    def reap(self, pidfd: int) -> None:
        pid = self.children.pop(pidfd)
        self.selector.unregister(pidfd)
        os.close(pidfd)
        _, status = os.waitpid(pid, 0)
        self.send({"exited": pid, "code": os.waitstatus_to_exitcode(status)})

    def send(self, message: dict) -> None:
        try:
            self.sock.send(json.dumps(message).encode())
        except OSError:
            pass  # the server is gone; the next read sees it


def _import_all(modules) -> None:
    for name in modules:
        try:
            importlib.import_module(name)
        except Exception:  # a worker that needs it will report the error itself
            traceback.print_exc()


def main(fd: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the server, which shuts this down
    linux.set_dumpable(False)
    Zygote(socket.socket(fileno=fd)).serve()


if __name__ == "__main__":
    main(int(sys.argv[1]))
