"""A memory limit for one user process and everything it starts.

Where the host lets the server make memory cgroups below its own (cgroup v2
with the memory controller delegated to its cgroup's children, or a writable
cgroup v1 memory hierarchy, as when it runs as root), each process gets one:
past its limit the kernel's OOM killer ends it with SIGKILL, as AWS Lambda's
sandbox does. Elsewhere the limit is the address-space rlimit, which the
process applies to itself: an allocation past it fails with MemoryError.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

log = logging.getLogger("jobforge.memory")
MIB = 1024 * 1024


def _own_cgroup(controller_line: re.Pattern) -> str | None:
    try:
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            found = controller_line.fullmatch(line)
            if found:
                return found.group(1)
    except OSError:
        pass
    return None


def _mounted(fstype: str, option: str | None = None) -> Path | None:
    try:
        mounts = Path("/proc/self/mounts").read_text().splitlines()
    except OSError:
        return None
    for line in mounts:
        fields = line.split()
        if len(fields) >= 4 and fields[2] == fstype and (option is None or option in fields[3].split(",")):
            return Path(fields[1])
    return None


class MemoryLimits:
    def __init__(self, name: str):
        """``name``: this server's folder among the cgroups of its own cgroup (one per server process)."""
        self.base, self.version = self._find_base(name)
        if self.base is None:
            log.info("Memory limits of user processes: the address-space rlimit (no writable memory cgroup)")

    @staticmethod
    def _find_base(name: str) -> tuple[Path | None, int]:
        candidates = []
        v2 = _mounted("cgroup2")
        own_v2 = _own_cgroup(re.compile(r"0::(/.*)"))
        if v2 is not None and own_v2 is not None:
            candidates.append((v2 / own_v2.lstrip("/"), 2))
        v1 = _mounted("cgroup", "memory")
        own_v1 = _own_cgroup(re.compile(r"\d+:(?:[^:]*,)?memory(?:,[^:]*)?:(/.*)"))
        if v1 is not None and own_v1 is not None:
            candidates.append((v1 / own_v1.lstrip("/"), 1))
        for own, version in candidates:
            if version == 2:
                try:
                    if "memory" not in (own / "cgroup.subtree_control").read_text().split():
                        continue
                except OSError:
                    continue
            base = own / name
            try:
                _remove_stale(own, name)
                base.mkdir(exist_ok=True)
                if version == 2:
                    (base / "cgroup.subtree_control").write_text("+memory")
                return base, version
            except OSError:
                continue
        return None, 0

    @property
    def by_cgroup(self) -> bool:
        return self.base is not None

    def create(self, name: str, megabytes: int) -> Path | None:
        """A cgroup limited to ``megabytes`` (None where limits are rlimits)."""
        if self.base is None:
            return None
        group = self.base / name
        group.mkdir(exist_ok=True)
        limit = str(megabytes * MIB)
        if self.version == 2:
            (group / "memory.max").write_text(limit)
            _try_write(group / "memory.swap.max", "0")
        else:
            (group / "memory.limit_in_bytes").write_text(limit)
            _try_write(group / "memory.memsw.limit_in_bytes", limit)
        return group

    @staticmethod
    def place(group: Path, pid: int) -> None:
        (group / "cgroup.procs").write_text(str(pid))

    @staticmethod
    def remove(group: Path | None) -> None:
        """Remove a cgroup whose processes have all exited."""
        if group is not None:
            try:
                group.rmdir()
            except OSError:
                pass

    def close(self) -> None:
        if self.base is not None:
            for child in self.base.iterdir() if self.base.exists() else ():
                if child.is_dir():
                    self.remove(child)
            self.remove(self.base)


def _remove_stale(own: Path, name: str) -> None:
    """The folders of servers that were killed (``jobforge-<pid>`` of a pid no longer running)."""
    for stale in own.glob("jobforge-*"):
        pid = stale.name.removeprefix("jobforge-")
        if stale.name != name and stale.is_dir() and pid.isdigit() and not Path(f"/proc/{pid}").exists():
            for child in stale.iterdir():
                if child.is_dir():
                    MemoryLimits.remove(child)
            MemoryLimits.remove(stale)


def _try_write(path: Path, value: str) -> None:
    try:
        path.write_text(value)
    except OSError:
        pass  # no swap accounting on this host: no swap to limit
