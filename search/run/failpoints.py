"""Named points where a test can kill the search process, to prove that nothing is lost.

    EVORESEARCH_FAILPOINT=finished:2 python -m search run ...

kills the process with SIGKILL the second time it passes the point `finished` (after a trial's
result is in the study, before its tag). Without the variable, `failpoint()` does nothing. The
points are where a crash would leave the study, the lineage and results.tsv out of step:

    baseline-queued  after one of the seed's repeats is queued
    proposed         a candidate passed the guards, nothing stored yet
    committed        its commit exists, no candidate ref, no trial
    queued           its trial is waiting in the study
    refusing         a refused candidate is about to be recorded
    training         a worker took a trial, before its trial process starts
    finishing        the trial process ended, its result not yet in the study
    finished         the result is in the study, the variant not yet tagged
    tagged           tagged, results.tsv not yet rewritten
    results-written  the new results.tsv is written beside the old one, not yet moved in place
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from search.config import UserError

ENV = "EVORESEARCH_FAILPOINT"
POINTS = ("baseline-queued", "proposed", "committed", "queued", "refusing", "training", "finishing", "finished",
          "tagged", "results-written")

_hits: dict[str, int] = {}
_lock = threading.Lock()


def failpoint(name: str) -> None:
    """SIGKILL this process if EVORESEARCH_FAILPOINT names this point (and this is its N-th pass)."""
    wanted = os.environ.get(ENV)
    if not wanted:
        return
    point, _, nth = wanted.partition(":")
    if point not in POINTS:
        raise UserError(f"{ENV}={wanted!r} names no failpoint; the points are: {', '.join(POINTS)}")
    if point != name:
        return
    with _lock:
        _hits[name] = _hits.get(name, 0) + 1
        if _hits[name] < int(nth or 1):
            return
    print(f"[failpoint] {name}: killing process {os.getpid()}", flush=True)
    sys.stderr.flush()
    os.kill(os.getpid(), signal.SIGKILL)
