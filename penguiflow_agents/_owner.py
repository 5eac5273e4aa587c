"""Who holds a run or a job: ``host:pid:token:boot_id:pid_namespace``, and whether it died.

Dependency-free, shared by the planner (run claims) and the Redis bus (its consumers).
"""

from __future__ import annotations

import os
import socket
import uuid

__all__ = ["new_owner", "owner_is_dead"]

_HOST = socket.gethostname()


def _read_boot_id() -> str:
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as f:
            return f.read().strip().replace(":", "")
    except OSError:
        return ""


def _read_pid_namespace() -> str:
    try:
        return str(os.stat("/proc/self/ns/pid").st_ino)
    except OSError:
        return ""


# Where a PID means something: the running kernel (boot id) and the PID namespace.
_BOOT_ID = _read_boot_id()
_PID_NS = _read_pid_namespace()


def new_owner() -> str:
    """A claim owner: ``host:pid:token:boot_id:pid_namespace``.

    The boot id and the PID namespace say where the PID is meaningful: two
    containers may share a hostname while their PIDs name different processes.
    """
    return f"{_HOST}:{os.getpid()}:{uuid.uuid4().hex[:8]}:{_BOOT_ID}:{_PID_NS}"


def owner_is_dead(owner: str | None) -> bool:
    """True only when ``owner`` is a process of this host, this boot and this PID
    namespace that no longer exists. An owner from anywhere else (or an older
    token without boot id and namespace) is never judged dead: wait for its lease."""
    if not owner:
        return False
    parts = owner.split(":")
    if len(parts) != 5:
        return False
    host, pid_text, _token, boot_id, pid_ns = parts
    if host != _HOST or not pid_text.isdigit():
        return False
    if not _BOOT_ID or not _PID_NS or boot_id != _BOOT_ID or pid_ns != _PID_NS:
        return False
    pid = int(pid_text)
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # exists, owned by someone else
        return False
    return _is_zombie(pid)


def _is_zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return False
