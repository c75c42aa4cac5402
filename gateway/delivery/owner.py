"""Who holds an outbox claim: this process, named so that a successor can tell it is dead.

An owner is ``"<machine> <pid> <start> <run>"``: the machine is the host name with the
kernel's boot id and the process's PID namespace (two containers with one host name are
two machines), the start is the process's start time in clock ticks (a PID reused by
another process does not look alive), and the run is random per process.  Only claims of
this machine can be judged: a claim of a dead process here is released at once; a claim of
another machine is left to its lease.
"""
from __future__ import annotations

import os
import socket
import uuid
from pathlib import Path


def _read(path: str) -> str:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return ""


def _machine() -> str:
    host = (socket.gethostname() or "localhost").replace(" ", "_")[:100]
    boot = _read("/proc/sys/kernel/random/boot_id")[:8] or "noboot"
    try:
        pidns = os.readlink("/proc/self/ns/pid").strip("pid:[]")
    except OSError:
        pidns = "nons"
    return f"{host}/{boot}/{pidns}"


def start_ticks(pid: int) -> str | None:
    """The start time of process PID (clock ticks since boot); None when there is none."""
    stat = _read(f"/proc/{pid}/stat")
    if stat:
        fields = stat.rpartition(")")[2].split()  # after the command name, which may hold spaces
        return fields[19] if len(fields) > 19 else "0"
    if Path("/proc/self/stat").exists():
        return None  # /proc works and has no such process
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass
    return "0"  # no /proc: alive, start unknown


MACHINE = _machine()
_me: tuple[int, str] | None = None


def me() -> str:
    """This process as an owner (made again in a forked child: a new PID is a new owner)."""
    global _me
    pid = os.getpid()
    if _me is None or _me[0] != pid:
        _me = (pid, f"{MACHINE} {pid} {start_ticks(pid)} {uuid.uuid4().hex[:12]}")
    return _me[1]


def is_dead(owner: str, machine: str = MACHINE) -> bool:
    """Is OWNER a process of this machine that no longer runs (or not the one named)?"""
    parts = (owner or "").split(" ")
    if len(parts) != 4 or parts[0] != machine or owner == me():
        return False
    try:
        pid = int(parts[1])
    except ValueError:
        return False
    if pid <= 0:
        return False
    started = start_ticks(pid)
    return started is None or (started != "0" and parts[2] != "0" and started != parts[2])
