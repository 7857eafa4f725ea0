"""What the harness hands a variant's `train(ctx)`: data, device, the clock, and a watchdog.

The variant trains inside `for step in ctx.steps():`. The harness decides when the budget is
spent, measures the time, serves the training batches (only the training split) and watches for
divergence and for a variant that does not stop.
"""

from __future__ import annotations

import _thread
import math
import threading
import time
from typing import Callable, Iterator

import numpy as np
import torch

from eval.data.dataloader import TokenStore, batch_iterator, train_rows
from eval.measure import TrainingClock, synchronize
from eval.record import WATCHDOG_MARK


class TrialDiverged(Exception):
    """The training loss became NaN, infinite or exploded."""


class TrialStopped(Exception):
    """The training loss is so far behind the reference at the same progress that going on is waste."""


STEP_GRACE_SECONDS = 1.0  # overrun always allowed past the budget, for the step in flight
STOP_MIN_PROGRESS = 0.2  # early steps are too noisy to judge a variant by
STOP_SMOOTHING = 5  # the mean of the last steps' losses is compared, not one step's


def curve_value(curve: list[list[float]], progress: float) -> float:
    """Linear interpolation of a [[progress, value], ...] curve sorted by progress (clamped at the ends)."""
    if progress <= curve[0][0]:
        return curve[0][1]
    for (p0, v0), (p1, v1) in zip(curve, curve[1:]):
        if progress <= p1:
            return v0 + (v1 - v0) * (progress - p0) / max(p1 - p0, 1e-12)
    return curve[-1][1]


class TrialContext:
    """The variant's view of the harness.

    Attributes:
        device: where to train.
        device_type: "cuda", "mps" or "cpu".
        vocab_size: token ids are below this (special tokens included).
        seq_len: tokens per row.
        bos_id: the id opening every document.
        seed: the trial's seed (torch is already seeded with it).
    """

    def __init__(
        self,
        *,
        device: torch.device,
        vocab_size: int,
        seq_len: int,
        bos_id: int,
        seed: int,
        train_store: TokenStore,
        clock: TrainingClock,
        diverge_loss: float = 1e4,
        log_every: int = 10,
        max_steps: int | None = None,
        stop_curve: list[list[float]] | None = None,
        log: Callable[[str], None] = print,
    ):
        self.device = device
        self.device_type = device.type
        self.vocab_size = vocab_size
        self.seq_len = seq_len
        self.bos_id = bos_id
        self.seed = seed
        self.clock = clock
        self.diverge_loss = diverge_loss
        self.log_every = max(1, log_every)
        self.max_steps = max_steps
        self.stop_curve = sorted(stop_curve) if stop_curve else None
        self.curve: list[tuple[float, float]] = []  # (progress, loss) of every step
        self._store = train_store
        self._log = log
        self.tokens_served = 0
        self.last_loss: float | None = None
        self.losses: list[float] = []
        self._t_log = time.perf_counter()
        self._tokens_at_log = 0

    @property
    def progress(self) -> float:
        """Fraction of the training budget spent, in [0, 1] (drive schedules with it)."""
        if self.max_steps:
            return min(1.0, max(self.clock.progress, self.clock.steps_done / self.max_steps))
        return self.clock.progress

    def batches(self, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Endless (inputs, targets) of shape (batch_size, seq_len) on the device."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        rows = train_rows(self._store, self.bos_id, self.seq_len, self.seed)
        pin = self.device.type == "cuda"
        for batch in batch_iterator(rows, batch_size):
            pair = []
            for part in (batch[:, :-1], batch[:, 1:]):
                t = torch.from_numpy(np.ascontiguousarray(part))
                pair.append(t.pin_memory().to(self.device, non_blocking=True) if pin else t.to(self.device))
            self.tokens_served += batch_size * self.seq_len
            yield pair[0], pair[1]

    def steps(self) -> Iterator[int]:
        """One iteration per optimizer step, until the budget (or max_steps) is spent."""
        step = 0
        while True:
            synchronize(self.device)
            self.clock.boundary()
            if step and step % self.log_every == 0:
                self._progress_line(step)
            if self.clock.done or (self.max_steps is not None and step >= self.max_steps):
                if step % self.log_every:
                    self._progress_line(step)
                return
            yield step
            step += 1

    def record_loss(self, loss: torch.Tensor | float) -> None:
        """Report the step's training loss (for the log and divergence detection).

        Raises:
            TrialDiverged: if it is NaN, infinite or above the preset's diverge_loss.
        """
        value = float(loss.detach().float().item()) if isinstance(loss, torch.Tensor) else float(loss)
        self.last_loss = value
        self.losses.append(value)
        self.curve.append((self.progress, value))
        if not math.isfinite(value) or value > self.diverge_loss:
            raise TrialDiverged(f"training loss became {value} at step {self.clock.steps_done}")
        if self.stop_curve and self.progress >= STOP_MIN_PROGRESS:
            recent = self.losses[-STOP_SMOOTHING:]
            smoothed = sum(recent) / len(recent)
            limit = curve_value(self.stop_curve, self.progress)
            if smoothed > limit:
                raise TrialStopped(f"training loss {smoothed:.4f} at {100 * self.progress:.0f}% of the budget is above "
                                   f"the early-stop limit {limit:.4f} (the best variant's loss at that point plus the margin)")

    def loss_curve(self, points: int = 50) -> list[list[float]]:
        """About `points` (progress, loss) samples of the training loss, for reports and early stopping."""
        if not self.curve:
            return []
        stride = max(1, len(self.curve) // points)
        sampled = self.curve[::stride]
        if sampled[-1] != self.curve[-1]:
            sampled.append(self.curve[-1])
        return [[round(p, 4), round(v, 5)] for p, v in sampled]

    def log(self, msg: str) -> None:
        self._log(msg)

    def _progress_line(self, step: int) -> None:
        now = time.perf_counter()
        dt = max(now - self._t_log, 1e-9)
        tps = (self.tokens_served - self._tokens_at_log) / dt
        self._t_log, self._tokens_at_log = now, self.tokens_served
        loss = f"{self.last_loss:.4f}" if self.last_loss is not None else "-"
        self._log(
            f"step {step:05d} | loss {loss} | progress {100 * self.progress:5.1f}% | "
            f"train {self.clock.training_seconds:6.1f}s | tok/s {tps:,.0f}"
        )


ESCALATE_SECONDS = 10.0


class Watchdog:
    """Interrupts the main thread when the variant overruns its budget or never starts its clock.

    Args:
        clock: the trial's training clock.
        budget_seconds: training budget.
        tolerance: overrun allowed, as a fraction of the budget.
        startup_seconds: time allowed before the clock starts counting (build, compile, warm-up).
        poll_seconds: how often to look.
        now: time source (the same as the clock's).
        interrupt: what to call when it fires (default: KeyboardInterrupt in the main thread).
        escalate: what to call when the main thread has not stopped ESCALATE_SECONDS after the first
            interrupt (the harness: SIGTERM to its own process); None: keep interrupting.
    """

    def __init__(
        self,
        clock: TrainingClock,
        budget_seconds: float,
        tolerance: float,
        startup_seconds: float,
        poll_seconds: float = 0.25,
        now: Callable[[], float] = time.perf_counter,
        interrupt: Callable[[], None] = _thread.interrupt_main,
        escalate: Callable[[], None] | None = None,
    ):
        self.clock = clock
        self.limit = budget_seconds * (1.0 + tolerance)
        self.startup_seconds = startup_seconds
        self.poll_seconds = poll_seconds
        self._now = now
        self._interrupt = interrupt
        self._escalate = escalate
        self._started = now()
        self.fired: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def check(self) -> str | None:
        """The reason to stop the variant now, or None."""
        if self.clock.counting:
            live = self.clock.live_seconds()
            # The budget can run out in the middle of a step, so a step or two past it is normal on a slow
            # or loaded machine: allow the larger of the tolerance and twice the longest step (and 1 s).
            limit = max(self.limit, self.clock.budget + max(STEP_GRACE_SECONDS, 2.0 * self.clock.longest_step))
            if live > limit:
                return (
                    f"the variant trained {live:.1f}s past a budget of {self.clock.budget:.1f}s "
                    f"(limit {limit:.1f}s) without stopping; it must end when ctx.steps() does"
                )
        elif self._now() - self._started > self.startup_seconds:
            return (
                f"the variant did not start its timed steps within trial.startup_seconds="
                f"{self.startup_seconds:.0f}s; it must train inside `for step in ctx.steps():`"
            )
        return None

    def _run(self) -> None:
        first = None
        while not self._stop.wait(self.poll_seconds):
            reason = self.check()
            if reason:
                if self.fired is None:
                    first = self._now()
                    # Said at once: if the process has to be ended, the runner reports this reason.
                    print(f"{WATCHDOG_MARK}{reason}", flush=True)
                self.fired = reason
                self._interrupt()
                # Keep interrupting in case the variant swallows KeyboardInterrupt; a main thread that
                # never takes it (an interrupt can land where Python discards it) is ended outright.
                if self._escalate is not None and first is not None and self._now() - first > ESCALATE_SECONDS:
                    self._escalate()
                    return
                self._stop.wait(1.0)

    def start(self) -> "Watchdog":
        self._started = self._now()
        self._thread = threading.Thread(target=self._run, name="trial-watchdog", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
