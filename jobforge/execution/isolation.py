"""Keeping job code away from the server's files and from other accounts.

What a job may see is decided on the server (``JobIsolation``) and applied in
the job's own process by ``enter(confinement)``, before any job code runs:
the worker calls it first thing, whether the fork server forked it or it was
started cold, and any supervisor of user processes calls it the same way.
Everything the process starts afterwards inherits the confinement.

With the means the host offers:

- **Per-account users** (the server runs as root): each account's jobs run as
  an unprivileged uid/gid of their own (``job_users``), in a job directory of
  mode 0700 owned by it. The data dir is 0711 and the server's files in it are
  private, so even without namespaces a job cannot read them.
- **A private mount namespace** (root, or an unprivileged user namespace
  when the kernel allows one): an empty read-only tmpfs covers the data dir,
  with only the job's own directory bound back at its place. A job running as
  another user also gets the directories it needs (the Python installation,
  jobforge, registered models) bound back under empty tmpfs covers where an
  ancestor would not let it through, such as /root. With it comes a PID
  namespace where the kernel allows one: the job sees and signals only its own
  processes.

Without any of them a job runs as the server's user and can read the data dir;
the server says so in a warning at start.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import signal
import stat
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from jobforge.execution import linux, mount_view
from jobforge.execution.job_users import JobUsers

log = logging.getLogger("jobforge.isolation")
FORWARDED_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
PROBE_SECONDS = 30


# -- the server's side ----------------------------------------------------------
@dataclass(frozen=True)
class HostIsolation:
    """What this host lets jobforge do, found once at start."""

    users: bool  # per-account users
    namespaces: bool  # a private mount namespace per job
    pid_namespace: bool  # and a PID namespace with it
    missing: str  # what is not available, and why

    def summary(self) -> str:
        namespace = "no"
        if self.namespaces:
            namespace = "yes, with a PID namespace" if self.pid_namespace else "yes, without a PID namespace"
        return f"per-account users: {'yes' if self.users else 'no'}; mount namespace: {namespace}"


class JobIsolation:
    """Detects what the host offers and makes each job's confinement."""

    def __init__(self, data_dir: Path, jobs_dir: Path):
        self.data_dir = Path(os.path.realpath(data_dir))
        self.jobs_dir = Path(os.path.realpath(jobs_dir))
        self.host = detect(self.data_dir, self.jobs_dir)
        self.users = JobUsers(self.data_dir / "job-users.json") if self.host.users else None

    def report(self) -> None:
        if not (self.host.users or self.host.namespaces):
            log.warning("Job isolation: none on this host (%s). Job code runs as the server's user and can read "
                        "the data dir: the database, every account's credentials and the other jobs' files.",
                        self.host.missing)
        elif self.host.missing:
            log.info("Job isolation: %s (%s)", self.host.summary(), self.host.missing)
        else:
            log.info("Job isolation: %s", self.host.summary())

    def confinement(self, job_id: str, account_id: str, readable: list[str], scratch: dict[str, str] | None = None,
                    private_network: bool = False, account_dir: bool = False) -> dict:
        """What ``enter`` applies to one job: ``readable`` are host directories its code must be able to read;
        ``scratch`` maps directories (``/tmp``) to the tmpfs options of a private file system over each, where
        the host offers mount namespaces; ``private_network`` gives it a network namespace of its own (only
        its loopback), where the host offers namespaces; ``account_dir`` gives it, writable, the folder its
        account's jobs share (``account-<id>`` beside the job directories), which no other account's job sees."""
        return {
            "job_dir": str(self.jobs_dir / job_id),
            "account_dir": str(self.jobs_dir / f"account-{account_id}") if account_dir else None,
            "hide": [str(self.data_dir)] if self.host.namespaces else [],
            "scratch": scratch if self.host.namespaces and scratch else {},
            "readable": readable,
            "namespaces": self.host.namespaces,
            "pid_namespace": self.host.pid_namespace,
            "private_network": private_network and self.host.namespaces,
            "user": self.users.for_account(account_id).as_dict() if self.users else None,
        }


@functools.cache
def host_isolation(data_dir: Path, jobs_dir: Path) -> JobIsolation:
    """The one JobIsolation of a data dir, shared by every part of the server that confines user code (its
    per-account users must be allocated in one place)."""
    isolation = JobIsolation(data_dir, jobs_dir)
    isolation.report()
    return isolation


def make_data_dir_private(data_dir: Path, jobs_dir: Path) -> None:
    """The data dir traversable only (0711), everything in it private to the server but the jobs folder (0711)
    and each job's own directory (0700, owned by the job's user)."""
    data_dir.chmod(0o711)
    jobs_dir.mkdir(exist_ok=True)
    jobs_dir.chmod(0o711)
    for entry in data_dir.iterdir():
        if entry != jobs_dir and not entry.is_symlink():
            entry.chmod(stat.S_IMODE(entry.stat().st_mode) & 0o700)
    for entry in jobs_dir.iterdir():
        if not entry.is_symlink():
            entry.chmod(stat.S_IMODE(entry.stat().st_mode) & 0o700)


def prepare_job_dir(confinement: dict) -> Path:
    """Create the job's directory and its account's folder, when it has one (0700, owned by the job's user
    when it has one)."""
    job_dir = Path(confinement["job_dir"])
    user = confinement["user"]
    for folder in filter(None, (job_dir, confinement.get("account_dir"))):
        folder = Path(folder)
        folder.mkdir(mode=0o700, exist_ok=True)
        if user:
            os.chown(folder, user["uid"], user["gid"])
        folder.chmod(0o700)
    return job_dir


def detect(data_dir: Path, jobs_dir: Path) -> HostIsolation:
    missing = []
    why_no_pid_namespace = _probe(data_dir, jobs_dir, pid_namespace=True)
    why_no_namespace = _probe(data_dir, jobs_dir, pid_namespace=False) if why_no_pid_namespace else None
    if why_no_namespace:
        missing.append(f"no mount namespace: {why_no_namespace}")
    elif why_no_pid_namespace:
        missing.append(f"no PID namespace: {why_no_pid_namespace}")
    users = os.geteuid() == 0
    if not users:
        missing.append("no per-account users: the server does not run as root")
    elif why_no_namespace:
        needed = [*interpreter_paths(), str(jobs_dir / "job")]
        blocked = next(filter(None, map(mount_view.first_closed_ancestor, needed)), None)
        if blocked:
            users = False
            missing.append(f"no per-account users: {blocked} is closed to other users, so a job running as "
                           "one could not reach Python or its own directory")
    return HostIsolation(users, why_no_namespace is None, why_no_pid_namespace is None, "; ".join(missing))


def _probe(data_dir: Path, jobs_dir: Path, pid_namespace: bool) -> str | None:
    """None when a process can enter the namespaces a job would; else why not."""
    confinement = {"job_dir": str(jobs_dir), "hide": [str(data_dir)], "readable": [], "namespaces": True,
                   "pid_namespace": pid_namespace, "user": None}
    try:
        done = subprocess.run([sys.executable, "-P", "-m", "jobforge.execution.isolation", json.dumps(confinement)],
                              capture_output=True, text=True, timeout=PROBE_SECONDS, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as err:
        return str(err)
    if done.returncode == 0:
        return None
    return (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]


def _probe_main(confinement: dict) -> None:
    try:
        enter(confinement)
        visible = os.listdir(confinement["hide"][0])
        if visible != [Path(confinement["job_dir"]).name]:
            raise OSError(f"the data dir still shows {sorted(visible)}")
    except OSError as err:
        print(err, file=sys.stderr)
        os._exit(1)
    os._exit(0)


# -- the job's side ---------------------------------------------------------------
def enter(confinement: dict) -> None:
    """Confine this process and all it will start, as ``confinement`` says; then work in the job's directory.

    Call once, while the process has a single thread (right after fork, or
    first thing in a fresh interpreter): a user namespace cannot be entered by
    a threaded process. With a PID namespace this process forks: the caller
    continues in the child, and this process stays behind only to pass on
    signals and exit with the child's status.
    """
    job_dir = confinement["job_dir"]
    user = confinement["user"]
    as_root = os.geteuid() == 0
    if confinement["namespaces"]:
        writable = [job_dir, *filter(None, [confinement.get("account_dir")])]
        _enter_namespaces(confinement["hide"], [*writable, *interpreter_paths()], confinement["readable"], user,
                          pid_namespace=confinement["pid_namespace"], as_root=as_root,
                          scratch=confinement.get("scratch"), private_network=confinement.get("private_network"))
    if user:
        os.setgroups([])
        os.setgid(user["gid"])
        os.setuid(user["uid"])  # from root to another uid: every capability goes with it
        os.environ.update(HOME=job_dir, USER=user["name"], LOGNAME=user["name"])
    elif confinement["namespaces"] and not as_root:
        linux.drop_capabilities()  # those the user namespace granted
    if user or confinement["namespaces"]:
        linux.no_new_privileges()
    os.chdir(job_dir)  # through the new mounts


def interpreter_paths() -> list[str]:
    """What Python needs to run jobforge's worker: its installation, the environment's packages, jobforge."""
    import jobforge

    paths = [sys.base_prefix, sys.base_exec_prefix, sys.prefix, sys.exec_prefix,
             os.path.dirname(os.path.realpath(sys.executable)), os.path.dirname(os.path.dirname(jobforge.__file__))]
    paths += [p for p in sys.path if p and os.path.realpath(p) != os.path.realpath(os.getcwd())]  # not a library
    return list(dict.fromkeys(os.path.realpath(p) for p in paths if p and os.path.exists(p)))


def _enter_namespaces(hide: list[str], keep: list[str], shared: list[str], user: dict | None, pid_namespace: bool,
                      as_root: bool, scratch: dict[str, str] | None = None, private_network: bool = False) -> None:
    uid, gid = os.getuid(), os.getgid()
    network = linux.CLONE_NEWNET if private_network else 0
    linux.unshare((linux.CLONE_NEWNS if as_root else linux.CLONE_NEWNS | linux.CLONE_NEWUSER) | network)
    if not as_root:  # stay the same user inside, with the namespace's capabilities until they are dropped
        linux.set_dumpable(True)  # a process that is not dumpable cannot write its own /proc files
        linux.write_id_maps("self", f"{uid} {uid} 1", f"{gid} {gid} 1")
        linux.set_dumpable(False)  # nothing of this user (another account's job) reads this process
    if private_network:
        linux.loopback_up()
    linux.mount(None, "/", None, linux.MS_REC | linux.MS_PRIVATE)  # nothing done here reaches the host
    mount_view.build(hide, keep, shared, user, scratch)
    if pid_namespace:  # after the mounts: making them may fork, and a first fork would become the namespace's init
        linux.unshare(linux.CLONE_NEWPID)
        _fork_into_pid_namespace()


def _fork_into_pid_namespace() -> None:
    """Fork the namespace's first process, which returns; this one forwards signals and exits like it."""
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, FORWARDED_SIGNALS)
    child = os.fork()
    if child == 0:
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
        # A /proc of this namespace: the processes of the host and of other jobs are not in it.
        linux.mount("proc", "/proc", "proc", linux.MS_NOSUID | linux.MS_NODEV | linux.MS_NOEXEC)
        return
    for signum in FORWARDED_SIGNALS:
        signal.signal(signum, lambda received, _frame: os.kill(child, received))
    signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
    _, status = os.waitpid(child, 0)
    code = os.waitstatus_to_exitcode(status)
    if code < 0:  # end the same way, so that whoever waits for this process sees what happened
        if -code not in (signal.SIGKILL, signal.SIGSTOP):  # those two can be neither handled nor blocked
            signal.signal(-code, signal.SIG_DFL)
            signal.pthread_sigmask(signal.SIG_UNBLOCK, [-code])
        os.kill(os.getpid(), -code)
    os._exit(code if code >= 0 else 128 - code)


if __name__ == "__main__":
    _probe_main(json.loads(sys.argv[1]))
