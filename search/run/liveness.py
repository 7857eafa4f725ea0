"""Who is training a RUNNING trial, and whether it is still alive.

A worker is named `<host>-<pid>-<slot>` when it takes a trial, and marks the trial alive every
`scheduler.heartbeat_seconds` while it trains. A RUNNING trial is dead when its worker was a process
of this machine that no longer exists (known at once), or when nothing has marked it alive for
`stale_after` seconds (a worker on another machine that died; the machines' clocks are assumed to
agree to within seconds, as NTP keeps them). `keep_alive` is the heartbeat thread; the study
stores the beats (`Scheduler.heartbeat`).
"""

from __future__ import annotations

import os
import socket
import threading
from contextlib import contextmanager
from datetime import datetime
from typing import Any, Callable, Iterator

from search.config import SchedulerConfig, UserError


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


def stale_after_seconds(scheduler: SchedulerConfig) -> float:
    """`scheduler.stale_after_seconds`, or by default four missed heartbeats (at least a minute)."""
    explicit = scheduler.stale_after_seconds
    if explicit is not None:
        if float(explicit) <= 0:
            raise UserError(f"scheduler.stale_after_seconds must be positive, got {explicit}")
        return float(explicit)
    return max(4.0 * heartbeat_seconds(scheduler), 60.0)


def heartbeat_seconds(scheduler: SchedulerConfig) -> float:
    """`scheduler.heartbeat_seconds`, checked."""
    every = float(scheduler.heartbeat_seconds)
    if every <= 0:
        raise UserError(f"scheduler.heartbeat_seconds must be positive, got {every}")
    return every


@contextmanager
def keep_alive(beat: Callable[[], bool], every: float, on_error: Callable[[Exception], None],
               name: str = "heartbeat") -> Iterator[None]:
    """Call `beat()` every `every` seconds in a thread while the block runs (a worker marking its
    trial alive); a beat that returns False ends the beats (the trial is finished), one that
    raises is reported to `on_error` and tried again at the next beat."""
    done = threading.Event()

    def run() -> None:
        while not done.wait(every):
            try:
                if not beat():
                    return
            except Exception as exc:  # a missed beat is retried; the trial goes on
                on_error(exc)

    thread = threading.Thread(target=run, name=name, daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join(timeout=10)
