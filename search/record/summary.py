"""Tables and lines people read about a run (pure): results.tsv rows, progress, the exit summary.

Everything here takes the flat trial dicts of `Scheduler.trials()` (user attributes merged in) and
returns text, so the same functions serve a live run, a resumed one and a report.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from search.record.data import trial_row
from search.record.format import MISSING, format_duration, format_number, one_line
from eval.record import Status

BLANK = ""  # a missing figure in results.tsv and the exit summary

# The autoresearch columns first, then ours.
RESULT_COLUMNS = (
    "commit", "val_bpb", "memory_gb", "status", "description",
    "variant", "operator", "parents", "trial", "kept", "test_bpb", "peak_mem_mb", "training_seconds",
    "total_seconds", "num_steps", "reason",
)


def result_row(t: dict[str, Any]) -> dict[str, str]:
    """One results.tsv row of a trial: `trial_row`'s figures as text, '' where missing."""
    row = trial_row(t)
    mem, kept = row["peak_mem_mb"], row["kept"]
    return {
        "commit": row["commit"][:7],
        "val_bpb": format_number(row["val_bpb"], 6, BLANK),
        "memory_gb": format_number(mem / 1024 if mem is not None else None, 2, BLANK),
        "status": row["status"] or t.get("state", "").lower(),
        "description": row["description"],
        "variant": row["variant"],
        "operator": row["operator"],
        "parents": row["parents"],
        "trial": "" if row["trial"] is None else str(row["trial"]),
        "kept": "" if kept is None else ("keep" if kept else "discard"),
        "test_bpb": format_number(row["test_bpb"], 6, BLANK),
        "peak_mem_mb": format_number(mem, 1, BLANK),
        "training_seconds": format_number(row["training_seconds"], 1, BLANK),
        "total_seconds": format_number(row["total_seconds"], 1, BLANK),
        "num_steps": str(row["num_steps"] or ""),
        "reason": row["reason"],
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
        best = f"{format_number(self.best_bpb)} ({self.best_name})" if self.best_bpb is not None else MISSING
        noise = f" ±{format_number(self.noise_floor)}" if self.noise_floor else ""
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
    resumed: bool = False  # device and wall time then count this session's trials only

    def text(self) -> str:
        def num(value: float | None, digits: int) -> str:
            return format_number(value, digits, BLANK)

        lines = [f"=== run {self.run} ==="]
        if self.best:
            b = self.best
            lines.append(f"best: {b['variant']} val_bpb {num(b.get('val_bpb'), 6)} (test {num(b.get('test_bpb'), 6)}) "
                         f"mem {num(b.get('peak_mem_mb'), 1)} MB  commit {(b.get('commit') or '')[:12]}  "
                         f"{one_line(b.get('description'))}")
        else:
            lines.append("best: none yet (no trial ended ok)")
        if self.noise and (self.noise.get("n") or 0) < 2:
            lines.append(f"noise floor: not measured yet (the seed trained {self.noise.get('n') or 0} time(s); "
                         "it takes two repeats)")
        elif self.noise:
            n = self.noise
            lines.append(f"noise floor: {num(n.get('floor'), 4)} (seed mean {num(n.get('mean'), 6)}, "
                         f"std {num(n.get('std'), 4)}, n={n.get('n')})")
        lines.append(f"front ({len(self.front)}):")
        for f in self.front:
            lines.append(f"  {f['variant']:>6}  val_bpb {num(f.get('val_bpb'), 6)}  "
                         f"mem {num(f.get('peak_mem_mb'), 1)} MB  {one_line(f.get('description'), 80)}")
        lines.append("trials by status: " + ", ".join(f"{k} {v}" for k, v in sorted(self.by_status.items())))
        lines.append("trials by operator: " + ", ".join(f"{k} {v}" for k, v in sorted(self.by_operator.items())))
        share = 100 * self.device_seconds / self.wall_seconds if self.wall_seconds > 0 else 0.0
        lines.append(f"device time {format_duration(self.device_seconds)} of {format_duration(self.wall_seconds)} wall "
                     f"({share:.0f}%){' in this session' if self.resumed else ''}")
        if self.llm:
            lines.append(f"llm: {self.llm.get('calls', 0)} calls, {self.llm.get('prompt_tokens', 0)} prompt + "
                         f"{self.llm.get('completion_tokens', 0)} completion tokens, ${self.llm.get('cost', 0.0):.4f}")
        return "\n".join(lines)


def count_by(trials: list[dict[str, Any]], key: str) -> dict[str, int]:
    return dict(Counter(str(t.get(key)) for t in trials if t.get("status") not in (None, Status.REQUEUED)))
