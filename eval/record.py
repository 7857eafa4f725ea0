"""The trial record: what a trial ended in and the figures the harness measured.

Written by the harness (or, when the trial process died before it could, by the runner) as JSON
beside the trial's log. The printed summary after `---` follows the autoresearch layout for people;
programs read the JSON.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields
from enum import Enum
from pathlib import Path
from typing import Any

WATCHDOG_MARK = "trial: watchdog: "  # the line the harness's watchdog prints when it fires (the runner reads it)


class Status(str, Enum):
    """What a trial ended in; string-valued, so records, study attributes and tables stay plain text.

    The first seven are a trial's outcomes (`OUTCOMES`), written by the harness or the runner.
    `REQUEUED` is the study's mark on an attempt that was interrupted (its worker died or the run
    stopped) and queued again as a fresh trial: never a record's status, and left out of every count.
    """

    OK = "ok"
    CRASH = "crash"
    OOM = "oom"
    TIMEOUT = "timeout"
    DIVERGED = "diverged"
    REJECTED = "rejected"
    STOPPED = "stopped"
    REQUEUED = "requeued"

    __str__ = str.__str__
    __format__ = str.__format__


OUTCOMES = tuple(s.value for s in Status if s is not Status.REQUEUED)
STATUSES = OUTCOMES  # the statuses a trial record may hold


@dataclass
class TrialRecord:
    """One trial's outcome. Figures are None when the trial did not get as far as them."""

    status: str
    reason: str = ""
    val_bpb: float | None = None
    test_bpb: float | None = None
    uniform_bpb: float | None = None  # val bits per byte of uniform guessing: the untrained reference
    peak_mem_mb: float | None = None
    training_seconds: float | None = None
    total_seconds: float | None = None
    num_steps: int | None = None
    num_params_M: float | None = None
    tokens_M: float | None = None
    tokens_per_second: float | None = None
    mfu_percent: float | None = None
    eval_tokens: int | None = None
    test_tokens: int | None = None
    code_hash: str = ""
    preset: str = ""
    seed: int | None = None
    device: str = ""
    data: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    constants: dict[str, Any] = field(default_factory=dict)
    probe: dict[str, Any] = field(default_factory=dict)
    loss_curve: list[list[float]] = field(default_factory=list)  # (progress, training loss) samples
    saved_seconds: float | None = None  # budget left unspent by a trial stopped early
    sandbox: str = ""  # what confined the trial process: "bwrap" or "none"
    log_tail: str = ""

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"unknown trial status {self.status!r}; expected one of {STATUSES}")

    def to_json(self) -> str:
        return json.dumps(_finite(asdict(self)), indent=2, sort_keys=False)

    @classmethod
    def from_json(cls, text: str) -> "TrialRecord":
        raw = json.loads(text)
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in raw.items() if k in known})

    @classmethod
    def load(cls, path: Path) -> "TrialRecord":
        return cls.from_json(Path(path).read_text())

    def summary(self) -> str:
        """The autoresearch-style block people read at the end of a trial log."""
        lines = ["---", f"status:           {self.status}"]
        if self.reason:
            lines.append(f"reason:           {self.reason}")

        def add(key: str, value: Any, fmt: str) -> None:
            if value is not None:
                lines.append(f"{key + ':':<18}{format(value, fmt)}")

        add("val_bpb", self.val_bpb, ".6f")
        add("test_bpb", self.test_bpb, ".6f")
        add("peak_mem_mb", self.peak_mem_mb, ".1f")
        add("training_seconds", self.training_seconds, ".1f")
        add("total_seconds", self.total_seconds, ".1f")
        add("num_steps", self.num_steps, "d")
        add("num_params_M", self.num_params_M, ".2f")
        add("tokens_M", self.tokens_M, ".2f")
        add("mfu_percent", self.mfu_percent, ".2f")
        return "\n".join(lines)


def _finite(obj: Any) -> Any:
    """JSON has no NaN: non-finite floats become None."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_finite(v) for v in obj]
    return obj
