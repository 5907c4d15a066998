"""Which process owns a job, and whether that process still runs (several workers share a catalog).

An owner is `host/boot id/pid/start time`: the start time (clock ticks after boot, from
/proc/<pid>/stat) and the boot id tell a live owner from a later process that got the same pid.
Only owners on this host can be checked; another host's are taken to be alive.
"""

from __future__ import annotations

import os
import socket
from functools import cache
from pathlib import Path

UNKNOWN = "-"


def start_time(pid: int) -> str | None:
    """The process's start time in clock ticks after boot, or None when it does not exist."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return None
    except OSError:  # no /proc here: the pid is all there is to check
        return UNKNOWN if _pid_exists(pid) else None
    fields = stat.rsplit(")", 1)[1].split()  # from field 3 on; the name before ")" may hold spaces
    return None if fields[0] in ("Z", "X") else fields[19]  # a zombie has exited; field 22 is the start


def _pid_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


@cache
def boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return UNKNOWN


def this_process() -> str:
    """This process's owner name (computed on each call: a forked child is another owner)."""
    pid = os.getpid()
    return f"{socket.gethostname()}/{boot_id()}/{pid}/{start_time(pid) or UNKNOWN}"


def is_alive(owner: str) -> bool:
    """False only when `owner` ran on this host and is certainly gone (its pid is free or reused,
    or the host rebooted since)."""
    try:
        host, boot, pid, started = owner.rsplit("/", 3)
        pid_number = int(pid)
    except ValueError:
        return False  # not an owner this code wrote
    if host != socket.gethostname():
        return True
    if boot != boot_id():
        return False
    now = start_time(pid_number)
    return now is not None and (started == UNKNOWN or now == started)


def on_this_host(owner: str) -> bool:
    """Whether `owner` names a process of this host (only those can be checked directly)."""
    return owner.rsplit("/", 3)[0] == socket.gethostname()
