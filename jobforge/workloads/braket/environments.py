"""The Python environments hybrid jobs run in: the server's own, with layers built once and cached.

A layer is a virtual environment of the server's interpreter whose
site-packages chain to its parent's (a ``.pth`` file adding the parent's
site-packages after its own), so what it installs comes first and everything
else is the parent's, never copied. Two kinds stack on the server's
environment:

- an image's layer, holding what the image's pinned list names that the
  server's environment lacks (none for the base image);
- a requirements layer, holding what the job's ``requirements.txt`` files add.

Each layer lives in the account's folder (``ctx.account_dir``), under a key
hashing what it is built from: the server's environment (its interpreter and
installed distributions), the image's list, the requirements' text (and the
source's files, when a requirement names a path). A later job of the account
with the same key runs in it with nothing installed. The job builds it, so
pip's output is in the job's log, while holding a lock on the key: concurrent
jobs wait for one build, and a layer is used only once its build has finished
(a marker written last; an unfinished one is removed and built again).
"""

from __future__ import annotations

import collections
import fcntl
import hashlib
import importlib.metadata
import shutil
import site
import sys
import sysconfig
import venv
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from packaging.requirements import InvalidRequirement, Requirement

FOLDER = "braket-environments"
COMPLETE = "jobforge-complete"  # written last: a layer without it is unfinished
CHAIN = "jobforge-parent.pth"
PIP_OUTPUT_KEPT = 20


class InstallFailed(Exception):
    """pip could not install a layer's packages: ``status`` is its exit status, the message its errors."""

    def __init__(self, message: str, status: int):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Environment:
    """Where a job's code runs: ``python`` is its interpreter; ``site_packages`` what its layers add."""

    python: str
    key: str
    site_packages: tuple[str, ...] = ()


# Runs a command, each output line to on_line; returns its exit status.
Runner = Callable[[list[str], Path, Callable[[str], None]], int]


def server_environment() -> Environment:
    """The server's own environment, with a key naming its interpreter and the distributions installed in it."""
    installed = sorted(f"{d.metadata['Name']}=={d.version}" for d in importlib.metadata.distributions()
                       if d.metadata["Name"])
    key = digest([sys.executable, sys.version, *installed])
    return Environment(sys.executable, key)


def requirements_key(parent: Environment, code_dir: Path, files: list[Path]) -> str:
    """The key of the layer that installs these requirements files on parent.

    Plain requirements (a name and a version) are keyed by their text, wherever
    the files lie in the source; a file naming anything else (a path, a URL,
    another file, an option) keys the whole source too, since what it installs
    may lie there.
    """
    texts = [file.read_text(errors="replace") for file in files]
    parts = [parent.key, *texts]
    plain = all(_is_plain(line) for text in texts for line in text.splitlines())
    if not plain:
        parts += [f"{p.relative_to(code_dir).as_posix()}\0{p.read_bytes().hex()}"
                  for p in sorted(code_dir.rglob("*")) if p.is_file()]
    return digest(parts)


def layer(cache_dir: Path, key: str, parent: Environment, install: list[list[str]], cwd: Path, run: Runner,
          log: Callable[[str], None], what: str) -> Environment:
    """The layer ``key`` on parent, built first if no earlier job finished it: each of ``install`` is a list of
    pip install arguments."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    folder = cache_dir / key
    with open(cache_dir / f"{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, also when the job is killed
        if (folder / COMPLETE).exists():
            log(f"jobforge: {what}: using the environment an earlier job built ({key[:12]}); nothing to install")
        else:
            log(f"jobforge: {what}: building an environment for this and later jobs ({key[:12]})")
            shutil.rmtree(folder, ignore_errors=True)  # an unfinished build of a job that was killed
            _create(folder, parent)
            python = str(folder / "bin" / "python")
            for arguments in install:
                _pip(run, [python, "-m", "pip", "install", "--disable-pip-version-check", "--no-input",
                           *arguments], cwd, log)
            (folder / COMPLETE).write_text(key)
    return Environment(str(folder / "bin" / "python"), key, (_site_packages(folder), *parent.site_packages))


def _create(folder: Path, parent: Environment) -> None:
    venv.EnvBuilder(symlinks=True, with_pip=False).create(folder)
    parents = list(parent.site_packages) or site.getsitepackages()
    # addsitedir also reads the parents' own .pth files (editable installs, namespace packages).
    (Path(_site_packages(folder)) / CHAIN).write_text(
        "".join(f"import site; site.addsitedir({path!r})\n" for path in parents))


def _site_packages(folder: Path) -> str:
    return sysconfig.get_path("purelib", "venv", vars={"base": str(folder), "platbase": str(folder)})


def _pip(run: Runner, command: list[str], cwd: Path, log: Callable[[str], None]) -> None:
    output = collections.deque(maxlen=PIP_OUTPUT_KEPT)

    def line(text: str) -> None:
        log(text)
        output.append(text)

    status = run(command, cwd, line)
    if status != 0:
        errors = [text for text in output if text.startswith("ERROR")] or list(output)[-1:]
        raise InstallFailed(" ".join(errors) or f"pip exit status {status}", status)


def _is_plain(line: str) -> bool:
    line = line.split(" #", 1)[0].strip()
    if not line or line.startswith("#"):
        return True
    try:
        return Requirement(line).url is None
    except InvalidRequirement:
        return False


def digest(parts: list[str]) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()


def cache_folder(account_dir: Path | None, work_dir: Path) -> Path:
    """Where a job's layers are kept: its account's folder, else (a context without one) the job's own."""
    return (account_dir or work_dir) / FOLDER

