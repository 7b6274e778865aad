"""Long-lived processes running users' code: Lambda execution environments, agent runtimes and model
servers.

Each process runs ``confined_start`` under the supervisor, in its own session
(``restart=False`` by default: its owner replaces it on demand; a process
declared ``restart=True`` is started again by the supervisor, with its
back-off, after it dies, and each new one is set up as the first was), with:

- its own directory under the jobs folder and the same confinement as a
  job's worker (``isolation``: per-account user, the data dir hidden, a PID
  namespace), plus a private ``/tmp`` and ``/dev/shm`` of its own (and the
  host's ``/var/tmp`` out of sight) where the host offers mount namespaces;
- its memory limited (``memory_limits``: a cgroup the process is placed in
  before it is set up, else the address-space rlimit) and held from jobs
  through ``Supervisor.reserved()``;
- a control socket of its own (``frames``), its standard output and error
  read line by line and handed to its owner's ``on_output`` (the log seam);
- the environment its owner gives, nothing of the server's.

The owner learns of the process's end from its control socket and calls
``stop``, which also ends whatever the process left running and removes its
directory and cgroup.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import jobforge
from jobforge.execution import frames
from jobforge.execution.isolation import host_isolation, prepare_job_dir
from jobforge.execution.memory_limits import MIB, MemoryLimits
from jobforge.execution.supervisor import ProcessSpec, Supervisor, Unavailable

JOBFORGE_PARENT = os.path.dirname(os.path.dirname(os.path.abspath(jobforge.__file__)))
READ_CHUNK = 65536
SHM_MB = 64
MAX_LINE = 256 * 1024  # a longer line is cut into events of this size, as CloudWatch caps an event


@dataclass(frozen=True)
class HostedSpec:
    name: str  # unique among the supervisor's processes; also its directory's name under the jobs folder
    account_id: str
    python: str  # the interpreter
    module: str  # what runs once confined: module.main(control socket, settings)
    settings: dict
    env: dict
    memory_mb: int
    on_output: Callable[[bytes | None], None]  # each line it prints (without its newline); None at its end
    scratch_mb: int = 512  # its private /tmp
    readable: tuple[str, ...] = ()
    prepare: Callable[[Path], None] | None = None  # fills its directory before it starts (as the server)
    private_network: bool = False  # a network namespace of its own: only its loopback (needs namespaces)
    restart: bool = False  # restarted by the supervisor (with its back-off) when it dies, and set up again
    # False: where no cgroup holds the memory, no address-space rlimit either (CUDA reserves far more address
    # space than it uses, and fails under one): the memory is then held from jobs but not enforced.
    address_space_limit: bool = True


class ProcessGroup(subprocess.Popen):
    """A process leading its own session, signalled as a group: the process a PID namespace's forwarder
    started, and whatever the user's code started, go with it."""

    def send_signal(self, sig):
        if self.returncode is None:
            try:
                os.killpg(self.pid, sig)
            except (ProcessLookupError, PermissionError):
                pass


@dataclass
class Hosted:
    spec: HostedSpec
    directory: Path
    process: subprocess.Popen | None = None
    control: socket.socket | None = None
    cgroup: Path | None = None
    reader: threading.Thread | None = field(default=None, repr=False)
    setup: dict | None = field(default=None, repr=False)  # the frame each new process is sent once in its cgroup

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()
        if self.cgroup is not None:  # what left the process group (setsid) is still in the cgroup
            try:
                for pid in (self.cgroup / "cgroup.procs").read_text().split():
                    os.kill(int(pid), signal.SIGKILL)
            except (OSError, ValueError):
                pass


class ProcessHost:
    def __init__(self, settings, supervisor: Supervisor):
        self.settings = settings
        self.supervisor = supervisor
        self._limits: MemoryLimits | None = None
        self._lock = threading.Lock()

    @property
    def limits(self) -> MemoryLimits:
        with self._lock:
            if self._limits is None:
                self._limits = MemoryLimits(f"jobforge-{os.getpid()}")
            return self._limits

    def isolation(self):
        return host_isolation(self.settings.data_dir, self.settings.jobs_dir)

    def start(self, spec: HostedSpec) -> Hosted:
        """Start the process and set it up; OSError when it cannot start."""
        isolation = self.isolation()
        confinement = isolation.confinement(spec.name, spec.account_id, list(spec.readable),
                                            scratch={"/tmp": f"mode=1777,size={spec.scratch_mb}m",
                                                     "/dev/shm": f"mode=1777,size={SHM_MB}m"},
                                            private_network=spec.private_network)
        if confinement["namespaces"]:  # the host's other shared, writable folder goes out of sight
            confinement["hide"] += [path for path in ("/var/tmp",) if os.path.isdir(path)]
        hosted = Hosted(spec, prepare_job_dir(confinement))
        try:
            if spec.prepare is not None:
                spec.prepare(hosted.directory)
            limits = self.limits
            hosted.cgroup = limits.create(spec.name, spec.memory_mb)
            hosted.setup = {"confinement": confinement, "module": spec.module, "settings": spec.settings,
                            "address_space_bytes": None if limits.by_cgroup or not spec.address_space_limit
                            else spec.memory_mb * MIB}
            self.supervisor.add(ProcessSpec(spec.name, (), reserves={"memory_mb": spec.memory_mb},
                                            launch=lambda: self._launch(hosted),
                                            on_start=lambda _: self._set_up(hosted), restart=spec.restart,
                                            stop_grace=0.5))
            try:
                self.supervisor.ensure(spec.name)
            except Unavailable as err:
                raise OSError(str(err)) from None
        except BaseException:
            self.stop(hosted)
            raise
        return hosted

    def _set_up(self, hosted: Hosted) -> None:
        """Place a new process in its cgroup, then send it its setup (called by the supervisor, under its lock)."""
        if hosted.cgroup is not None:
            self.limits.place(hosted.cgroup, hosted.process.pid)
        frames.send(hosted.control, hosted.setup)

    def _launch(self, hosted: Hosted) -> subprocess.Popen:
        """Start the process (called by the supervisor, under its lock)."""
        if hosted.control is not None:  # a restart: the control socket of the process that died goes with it
            hosted.control.close()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        output_read, output_write = os.pipe()
        bootstrap = (f"import sys; sys.path.insert(0, {JOBFORGE_PARENT!r}); "
                     "from jobforge.execution.confined_start import main; main(int(sys.argv[1]))")
        try:
            # -I: nothing of the environment (PYTHONPATH, a user site) is imported before it is confined.
            process = ProcessGroup([hosted.spec.python, "-I", "-c", bootstrap, str(theirs.fileno())],
                                   env=hosted.spec.env, cwd="/", stdin=subprocess.DEVNULL, stdout=output_write,
                                   stderr=output_write, pass_fds=[theirs.fileno()], start_new_session=True)
        except BaseException:
            ours.close()
            os.close(output_read)
            raise
        finally:
            theirs.close()
            os.close(output_write)
        hosted.process, hosted.control = process, ours
        hosted.reader = threading.Thread(target=_read_lines, args=(output_read, hosted.spec.on_output),
                                         name=f"output-{hosted.spec.name}", daemon=True)
        hosted.reader.start()
        return process

    def stop(self, hosted: Hosted) -> None:
        """End the process and everything it started; remove its directory and cgroup."""
        self.supervisor.stop(hosted.spec.name, deadline=time.monotonic())  # first, so that nothing restarts it
        hosted.kill()
        if hosted.process is not None:
            hosted.process.wait()
        if hosted.control is not None:
            hosted.control.close()
        if hosted.reader is not None:
            hosted.reader.join(timeout=5)
        shutil.rmtree(hosted.directory, ignore_errors=True)
        for _ in range(50):  # the kernel lets a cgroup go once its last process is reaped
            if hosted.cgroup is None or not hosted.cgroup.exists():
                break
            MemoryLimits.remove(hosted.cgroup)
            time.sleep(0.01)

    def sweep(self, prefix: str) -> None:
        """Remove the directories a previous server's processes named with prefix left behind."""
        jobs_dir = self.settings.jobs_dir
        if jobs_dir.exists():
            for entry in jobs_dir.iterdir():
                if entry.name.startswith(prefix) and entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry, ignore_errors=True)

    def close(self) -> None:
        if self._limits is not None:
            self._limits.close()


def _read_lines(fd: int, on_output: Callable[[bytes | None], None]) -> None:
    pending = b""
    with open(fd, "rb", buffering=0) as source:
        while True:
            chunk = source.read(READ_CHUNK)
            if not chunk:
                break
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for line in lines:
                on_output(line)
            while len(pending) > MAX_LINE:
                on_output(pending[:MAX_LINE])
                pending = pending[MAX_LINE:]
    if pending:
        on_output(pending)
    on_output(None)
