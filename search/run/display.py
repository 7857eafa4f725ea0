"""The live line a terminal shows while a trial trains.

The trial process prints a progress line every `trial.log_every` steps (`step 00120 | loss 3.2104 |
progress  40.0% | train   24.0s | tok/s 9,800`, see eval/context.py); on a terminal the runner hands
them to a `LiveLine`, which keeps one line up to date (`\\r`, erased to its end) with the variant,
the step, the loss, the training seconds against the budget and the time left of the trial and of
the run. When the output is not a terminal nothing is drawn: the run prints its plain lines only.
"""

from __future__ import annotations

import re
from typing import Callable, TextIO

from search.record.format import format_duration

_PROGRESS = re.compile(r"step (\d+) \| loss (\S+) \| progress\s+([\d.]+)% \| train\s+([\d.]+)s")
ERASE_TO_END = "\x1b[K"


class LiveLine:
    """A stream for the runner's `echo`: draws the trial's progress lines as one live line.

    Args:
        out: the terminal.
        variant: the variant training.
        budget_seconds: its training budget.
        run_eta: the run's remaining time in seconds before this trial (None: not known yet).
    """

    def __init__(self, out: TextIO, variant: str, budget_seconds: float, run_eta: Callable[[], float | None]):
        self.out = out
        self.variant = variant
        self.budget = budget_seconds
        self.run_eta = run_eta
        self.drawn = False

    def write(self, line: str) -> None:
        match = _PROGRESS.search(line)
        if not match:
            return
        step, loss, progress, seconds = match.groups()
        left = max(0.0, self.budget - float(seconds))
        run_left = self.run_eta()
        text = (f"[search] {self.variant} step {int(step)} | loss {loss} | train {float(seconds):.0f}s of "
                f"{self.budget:.0f}s ({float(progress):.0f}%) | trial eta {format_duration(left)}"
                + (f" | run eta {format_duration(run_left)}" if run_left is not None else ""))
        self.out.write("\r" + text + ERASE_TO_END)
        self.drawn = True

    def flush(self) -> None:
        self.out.flush()

    def close(self) -> None:
        """Erase the live line, so the next plain line starts at the margin."""
        if self.drawn:
            self.out.write("\r" + ERASE_TO_END)
            self.out.flush()
            self.drawn = False
