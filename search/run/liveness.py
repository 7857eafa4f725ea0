"""Who is training a RUNNING trial, and whether it is still alive.

A worker is named `<host>-<pid>-<slot>` when it takes a trial, and marks the trial alive every
`scheduler.heartbeat_seconds` while it trains. A RUNNING trial is dead when its worker was a process
of this machine that no longer exists (known at once), or when nothing has marked it alive for
`stale_after` seconds (a worker on another machine that died; the machines' clocks are assumed to
agree to within seconds, as NTP keeps them).
"""

from __future__ import annotations

import os
import socket
from datetime import datetime
from typing import Any


def worker_name(slot: str) -> str:
    """The name a worker of this process takes trials under."""
    return f"{socket.gethostname()}-{os.getpid()}-{slot}"


def worker_process(name: str | None) -> tuple[str, int] | None:
    """(host, pid) of a worker name, or None if it is not one this module made."""
    parts = str(name or "").rsplit("-", 2)
    if len(parts) != 3 or not parts[1].isdigit():
        return None
    return parts[0], int(parts[1])


def alive(pid: int) -> bool:
    """Whether a process with this pid exists on this machine."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def dead_here(row: dict[str, Any]) -> bool:
    """The trial's worker was a process of this machine, other than this one, that has exited."""
    proc = worker_process(row.get("worker"))
    if proc is None or proc[0] != socket.gethostname() or proc[1] == os.getpid():
        return False
    return not alive(proc[1])


def last_sign_of_life(row: dict[str, Any]) -> float | None:
    """Epoch seconds of the trial's latest heartbeat, its start, or its pop from the queue."""
    start = row.get("datetime_start")
    times = [row.get("heartbeat"), row.get("started_at"),
             start.timestamp() if isinstance(start, datetime) else None]
    known = [float(t) for t in times if isinstance(t, (int, float))]
    return max(known) if known else None


def is_dead(row: dict[str, Any], now: float, stale_after: float) -> bool:
    """A RUNNING trial whose worker exited here, or that nothing marked alive for `stale_after` s.

    A trial of this very process is never dead by silence: its own worker finishes or re-queues it.
    """
    if dead_here(row):
        return True
    proc = worker_process(row.get("worker"))
    if proc is not None and proc[0] == socket.gethostname() and proc[1] == os.getpid():
        return False
    last = last_sign_of_life(row)
    return last is not None and now - last > stale_after


def stale_after_seconds(scheduler_conf: dict[str, Any]) -> float:
    """`scheduler.stale_after_seconds`, or by default four missed heartbeats (at least a minute)."""
    explicit = scheduler_conf.get("stale_after_seconds")
    if explicit is not None:
        if float(explicit) <= 0:
            raise ValueError(f"scheduler.stale_after_seconds must be positive, got {explicit}")
        return float(explicit)
    return max(4.0 * heartbeat_seconds(scheduler_conf), 60.0)


def heartbeat_seconds(scheduler_conf: dict[str, Any]) -> float:
    every = float(scheduler_conf.get("heartbeat_seconds") or 30.0)
    if every <= 0:
        raise ValueError(f"scheduler.heartbeat_seconds must be positive, got {every}")
    return every
