"""Tables and lines people read about a run (pure): results.tsv rows, progress, the exit summary.

Everything here takes the flat trial dicts of `Scheduler.trials()` (user attributes merged in) and
returns text, so the same functions serve a live run, a resumed one and a report.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any
from eval.record import Status

# The autoresearch columns first, then ours.
RESULT_COLUMNS = (
    "commit", "val_bpb", "memory_gb", "status", "description",
    "variant", "operator", "parents", "trial", "kept", "test_bpb", "peak_mem_mb", "training_seconds",
    "total_seconds", "num_steps", "reason",
)


def _num(value: Any, digits: int) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return ""
    return f"{value:.{digits}f}"


def _clean(text: Any) -> str:
    return " ".join(str(text or "").split())


def result_row(t: dict[str, Any]) -> dict[str, str]:
    """One results.tsv row of a trial."""
    mem = t.get("peak_mem_mb")
    kept = t.get("kept")
    return {
        "commit": (t.get("commit") or "")[:7],
        "val_bpb": _num(t.get("val_bpb"), 6),
        "memory_gb": _num(mem / 1024 if mem is not None else None, 2),
        "status": t.get("status") or t.get("state", "").lower(),
        "description": _clean(t.get("description")),
        "variant": t.get("variant") or "",
        "operator": t.get("operator") or "",
        "parents": ",".join(t.get("parent_names") or []),
        "trial": str(t.get("number", "")),
        "kept": "" if kept is None else ("keep" if kept else "discard"),
        "test_bpb": _num(t.get("test_bpb"), 6),
        "peak_mem_mb": _num(mem, 1),
        "training_seconds": _num(t.get("training_seconds"), 1),
        "total_seconds": _num(t.get("total_seconds"), 1),
        "num_steps": str(t.get("num_steps") or ""),
        "reason": _clean(t.get("reason"))[:300],
    }


def results_tsv(trials: list[dict[str, Any]]) -> str:
    """results.tsv: a header and one row per finished trial (failures and refusals included)."""
    lines = ["\t".join(RESULT_COLUMNS)]
    for t in sorted(trials, key=lambda t: t.get("number", 0)):
        if t.get("status") in (None, Status.REQUEUED):
            continue  # waiting, running, or superseded by its re-run
        row = result_row(t)
        lines.append("\t".join(row[c].replace("\t", " ") for c in RESULT_COLUMNS))
    return "\n".join(lines) + "\n"


def format_duration(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "?"
    seconds = int(round(seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m" if h else (f"{m}m{s:02d}s" if m else f"{s}s")


@dataclass
class Progress:
    """A snapshot of a run for the live line."""

    trained: int
    max_trials: int
    best_bpb: float | None
    best_name: str
    front_size: int
    waiting: int
    running: list[str]
    llm_calls: int
    llm_cost: float
    elapsed: float
    eta: float | None
    noise_floor: float | None = None
    rejected: int = 0

    def line(self) -> str:
        best = f"{self.best_bpb:.4f} ({self.best_name})" if self.best_bpb is not None else "-"
        noise = f" ±{self.noise_floor:.4f}" if self.noise_floor else ""
        running = ",".join(self.running) or "-"
        return (f"[search] trials {self.trained}/{self.max_trials} | best {best}{noise} | front {self.front_size} | "
                f"queue {self.waiting} | running {running} | refused {self.rejected} | "
                f"llm {self.llm_calls} calls ${self.llm_cost:.3f} | {format_duration(self.elapsed)} elapsed, "
                f"eta {format_duration(self.eta)}")


def eta_seconds(trained: int, max_trials: int, device_seconds: float, workers: int) -> float | None:
    """Remaining time from the mean device time per trained trial."""
    if trained == 0:
        return None
    return max(0, max_trials - trained) * (device_seconds / trained) / max(1, workers)


@dataclass
class RunSummary:
    """What a run ends with."""

    run: str
    best: dict[str, Any] | None
    front: list[dict[str, Any]]
    by_status: dict[str, int]
    by_operator: dict[str, int]
    device_seconds: float
    wall_seconds: float
    noise: dict[str, Any] | None = None
    llm: dict[str, Any] = field(default_factory=dict)

    def text(self) -> str:
        lines = [f"=== run {self.run} ==="]
        if self.best:
            b = self.best
            lines.append(f"best: {b['variant']} val_bpb {_num(b.get('val_bpb'), 6)} (test {_num(b.get('test_bpb'), 6)}) "
                         f"mem {_num(b.get('peak_mem_mb'), 1)} MB  commit {(b.get('commit') or '')[:12]}  "
                         f"{_clean(b.get('description'))}")
        else:
            lines.append("best: none yet (no trial ended ok)")
        if self.noise:
            lines.append(f"noise floor: {_num(self.noise.get('floor'), 4)} (seed mean {_num(self.noise.get('mean'), 6)}, "
                         f"std {_num(self.noise.get('std'), 4)}, n={self.noise.get('n')})")
        lines.append(f"front ({len(self.front)}):")
        for f in self.front:
            lines.append(f"  {f['variant']:>6}  val_bpb {_num(f.get('val_bpb'), 6)}  mem {_num(f.get('peak_mem_mb'), 1)} MB  "
                         f"{_clean(f.get('description'))[:80]}")
        lines.append("trials by status: " + ", ".join(f"{k} {v}" for k, v in sorted(self.by_status.items())))
        lines.append("trials by operator: " + ", ".join(f"{k} {v}" for k, v in sorted(self.by_operator.items())))
        share = 100 * self.device_seconds / self.wall_seconds if self.wall_seconds > 0 else 0.0
        lines.append(f"device time {format_duration(self.device_seconds)} of {format_duration(self.wall_seconds)} wall "
                     f"({share:.0f}%)")
        if self.llm:
            lines.append(f"llm: {self.llm.get('calls', 0)} calls, {self.llm.get('prompt_tokens', 0)} prompt + "
                         f"{self.llm.get('completion_tokens', 0)} completion tokens, ${self.llm.get('cost', 0.0):.4f}")
        return "\n".join(lines)


def count_by(trials: list[dict[str, Any]], key: str) -> dict[str, int]:
    return dict(Counter(str(t.get(key)) for t in trials if t.get("status") not in (None, Status.REQUEUED)))
