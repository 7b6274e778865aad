"""The Linux calls job isolation needs, as thin wrappers over libc.

Written by hand with ctypes because Python 3.11's os module has none of them:
os.unshare arrives only in 3.12, and mount, the new mount API (open_tree,
mount_setattr, move_mount), capset and the prctl options are not in the
standard library at all. Each wrapper raises OSError on failure.
"""

from __future__ import annotations

import ctypes
import fcntl
import os
import socket
import struct

CLONE_NEWNS = 0x00020000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000

MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_REMOUNT = 0x20
MS_BIND = 0x1000
MS_REC = 0x4000
MS_PRIVATE = 0x40000

# The new mount API's calls have one number on every architecture (Linux 5.2 and later).
_SYS_OPEN_TREE = 428
_SYS_MOVE_MOUNT = 429
_SYS_MOUNT_SETATTR = 442
_AT_FDCWD = -100
_AT_EMPTY_PATH = 0x1000
_AT_RECURSIVE = 0x8000
_OPEN_TREE_CLONE = 1
_MOVE_MOUNT_F_EMPTY_PATH = 0x4
MOUNT_ATTR_RDONLY = 0x1
MOUNT_ATTR_NOSUID = 0x2
MOUNT_ATTR_NODEV = 0x4
MOUNT_ATTR_IDMAP = 0x100000

_SIOCGIFFLAGS = 0x8913
_SIOCSIFFLAGS = 0x8914
_IFF_UP = 0x1
_IFREQ = "16sh14x"  # struct ifreq: the interface's name, then its flags

_PR_SET_DUMPABLE = 4
_PR_SET_NO_NEW_PRIVS = 38
_CAPABILITY_VERSION_3 = 0x20080522

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


def _check(result: int, what: str) -> int:
    if result < 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")
    return result


def unshare(flags: int) -> None:
    _check(_libc.unshare(ctypes.c_int(flags)), "unshare")


def mount(source: str | None, target: str, fstype: str | None, flags: int, options: str | None = None) -> None:
    encode = lambda value: None if value is None else os.fsencode(value)  # noqa: E731
    _check(_libc.mount(encode(source), encode(target), encode(fstype), ctypes.c_ulong(flags), encode(options)),
           f"mount {target}")


class _MountAttr(ctypes.Structure):
    _fields_ = [("attr_set", ctypes.c_uint64), ("attr_clr", ctypes.c_uint64), ("propagation", ctypes.c_uint64),
                ("userns_fd", ctypes.c_uint64)]


def clone_mount(fd: int) -> int:
    """A detached copy of the mount tree at ``fd`` (a descriptor of the directory); its descriptor."""
    flags = _OPEN_TREE_CLONE | os.O_CLOEXEC | _AT_EMPTY_PATH | _AT_RECURSIVE
    return _check(_libc.syscall(_SYS_OPEN_TREE, ctypes.c_int(fd), b"", ctypes.c_uint(flags)), "open_tree")


def set_mount_attributes(fd: int, attributes: int, userns_fd: int = 0) -> None:
    """Set MOUNT_ATTR_* on the detached mount tree ``fd``; with MOUNT_ATTR_IDMAP, ids map through ``userns_fd``."""
    attr = _MountAttr(attributes, 0, 0, userns_fd)
    _check(_libc.syscall(_SYS_MOUNT_SETATTR, ctypes.c_int(fd), b"", ctypes.c_uint(_AT_EMPTY_PATH | _AT_RECURSIVE),
                         ctypes.byref(attr), ctypes.c_size_t(ctypes.sizeof(attr))), "mount_setattr")


def attach_mount(fd: int, target: str) -> None:
    """Mount the detached mount tree ``fd`` at target."""
    _check(_libc.syscall(_SYS_MOVE_MOUNT, ctypes.c_int(fd), b"", ctypes.c_int(_AT_FDCWD), os.fsencode(target),
                         ctypes.c_uint(_MOVE_MOUNT_F_EMPTY_PATH)), f"move_mount {target}")


def write_id_maps(pid: int | str, uid_map: str, gid_map: str) -> None:
    """The uid and gid maps of a process's new user namespace (``pid`` "self" for this one's)."""
    if pid == "self":  # an unprivileged process may map its own ids only with setgroups denied
        _write_control_file("/proc/self/setgroups", "deny")
    for name, mapping in (("uid_map", uid_map), ("gid_map", gid_map)):
        _write_control_file(f"/proc/{pid}/{name}", mapping)


def _write_control_file(path: str, text: str) -> None:
    """Write a /proc control file as bytes: a text-mode open looks its codec up, which imports a module, and
    while a mount view is being built the interpreter's library may be out of sight (``unknown encoding``)."""
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def loopback_up() -> None:
    """Bring up ``lo`` (a new network namespace's only interface starts down)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        flags = struct.unpack(_IFREQ, fcntl.ioctl(sock, _SIOCGIFFLAGS, struct.pack(_IFREQ, b"lo", 0)))[1]
        fcntl.ioctl(sock, _SIOCSIFFLAGS, struct.pack(_IFREQ, b"lo", flags | _IFF_UP))


def set_dumpable(dumpable: bool) -> None:
    """A process that is not dumpable cannot be read through /proc or ptrace by others of its user."""
    _check(_libc.prctl(_PR_SET_DUMPABLE, ctypes.c_ulong(int(dumpable)), 0, 0, 0), "prctl(PR_SET_DUMPABLE)")


def no_new_privileges() -> None:
    """Neither this process nor its children can gain privileges again (setuid programs run without them)."""
    _check(_libc.prctl(_PR_SET_NO_NEW_PRIVS, ctypes.c_ulong(1), 0, 0, 0), "prctl(PR_SET_NO_NEW_PRIVS)")


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


def drop_capabilities() -> None:
    """Clear every capability of this process (those a new user namespace grants included)."""
    header = _CapHeader(_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    _check(_libc.capset(ctypes.byref(header), data), "capset")
