"""The files a confined job sees: its mount namespace's covers, binds and id-mapped mounts.

Called by ``jobforge.execution.isolation.enter`` inside a new mount namespace,
before the job's code runs.
"""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

from jobforge.execution import linux

COVER_OPTIONS = "mode=0755,size=1m"
COVER_FLAGS = linux.MS_NOSUID | linux.MS_NODEV | linux.MS_NOEXEC


def build(hide: list[str], keep: list[str], shared: list[str], user: dict | None,
          scratch: dict[str, str] | None = None) -> None:
    """Mount an empty tmpfs over each hidden directory, binding back the kept and shared paths under one.

    ``scratch`` maps directories (``/tmp``) to the tmpfs options of a private,
    writable file system mounted over each, kept paths under it bound back too.

    For a job of another user, each kept or shared path's first ancestor that
    other users cannot pass through is covered the same way, so that exactly
    that path becomes reachable below it; and each shared path (an operator's
    model, whose weights are often private to its owner) is mounted read-only
    with its owner's ids mapped to the job's user, so that its files are
    readable whatever their modes.
    """
    real = lambda paths: list(dict.fromkeys(os.path.realpath(p) for p in paths if os.path.exists(p)))  # noqa: E731
    hide, keep, shared = list(dict.fromkeys(os.path.realpath(p) for p in hide)), real(keep), real(shared)
    scratch = {os.path.realpath(path): options for path, options in (scratch or {}).items()}
    covers = set(hide) | set(scratch)
    if user:
        covers.update(filter(None, map(first_closed_ancestor, keep + shared)))
    binds = [p for p in keep + shared if any(_is_within(p, cover) for cover in covers)]
    mapped = shared if user else []
    # Mounts are made from descriptors opened now, in this namespace, before anything is covered.
    sources = {path: os.open(path, os.O_PATH | os.O_CLOEXEC) for path in binds + mapped}
    namespaces: dict[tuple[int, int], int] = {}
    umask = os.umask(0o022)  # mount points made in a cover must be traversable
    try:
        # Outer paths first; at one path, the bind, then the mapped mount over it, then a cover over both.
        steps = sorted([(_depth(p), 0, p) for p in binds] + [(_depth(p), 1, p) for p in mapped]
                       + [(_depth(p), 2, p) for p in covers])
        for _, kind, path in steps:
            if kind == 2:
                os.makedirs(path, exist_ok=True)
                if path in scratch:
                    linux.mount("tmpfs", path, "tmpfs", linux.MS_NOSUID | linux.MS_NODEV, scratch[path])
                else:
                    linux.mount("tmpfs", path, "tmpfs", COVER_FLAGS, COVER_OPTIONS)
                continue
            _mount_point(path, stat.S_ISDIR(os.fstat(sources[path]).st_mode))
            if kind == 0:
                linux.mount(f"/proc/self/fd/{sources[path]}", path, None, linux.MS_BIND | linux.MS_REC)
                continue
            try:
                _mount_mapped(sources[path], path, user, namespaces)
            except OSError as err:  # e.g. a file system that cannot map ids: the files' own modes decide
                print(f"jobforge: {path} is shared with the job without id mapping ({err})", file=sys.stderr)
        for cover in covers - set(scratch):
            linux.mount(None, cover, None, linux.MS_REMOUNT | linux.MS_RDONLY | COVER_FLAGS)
    finally:
        os.umask(umask)
        for fd in [*sources.values(), *namespaces.values()]:
            os.close(fd)


def _mount_mapped(source: int, path: str, user: dict, namespaces: dict[tuple[int, int], int]) -> None:
    """Mount a read-only copy of the tree at ``source`` on path, its owner's files shown as the job user's."""
    owner = os.fstat(source)
    ids = (owner.st_uid, owner.st_gid)
    if ids not in namespaces:
        namespaces[ids] = _mapping_namespace(f"{owner.st_uid} {user['uid']} 1", f"{owner.st_gid} {user['gid']} 1")
    tree = linux.clone_mount(source)
    try:
        linux.set_mount_attributes(tree, linux.MOUNT_ATTR_IDMAP | linux.MOUNT_ATTR_RDONLY | linux.MOUNT_ATTR_NOSUID
                                   | linux.MOUNT_ATTR_NODEV, namespaces[ids])
        linux.attach_mount(tree, path)
    finally:
        os.close(tree)


def _mapping_namespace(uid_map: str, gid_map: str) -> int:
    """A descriptor of a new user namespace with these id maps, which an idmapped mount maps through."""
    ready_read, ready_write = os.pipe()
    done_read, done_write = os.pipe()
    child = os.fork()
    if child == 0:  # holds the namespace open until its descriptor is taken
        try:
            os.close(ready_read)
            os.close(done_write)
            linux.unshare(linux.CLONE_NEWUSER)
            os.write(ready_write, b"1")
            os.read(done_read, 1)
        finally:
            os._exit(0)
    os.close(ready_write)
    os.close(done_read)
    try:
        if os.read(ready_read, 1) != b"1":
            raise OSError("could not create a user namespace to map ids through")
        linux.write_id_maps(child, uid_map, gid_map)
        return os.open(f"/proc/{child}/ns/user", os.O_RDONLY | os.O_CLOEXEC)
    finally:
        os.close(ready_read)
        os.close(done_write)
        os.waitpid(child, 0)


def _mount_point(path: str, directory: bool) -> None:
    if os.path.lexists(path):
        return
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if directory:
        os.mkdir(path)
    else:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o644))


def first_closed_ancestor(path: str) -> str | None:
    """The outermost directory above path that other users cannot pass through, if any."""
    parts = Path(path).parts
    for depth in range(1, len(parts)):
        ancestor = os.path.join(*parts[:depth])
        try:
            if not os.stat(ancestor).st_mode & stat.S_IXOTH:
                return ancestor
        except OSError:
            return ancestor
    return None


def _is_within(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip("/") + "/")


def _depth(path: str) -> int:
    return len(Path(path).parts)
