"""The harness's clock and memory gauges.

The clock counts training seconds only: the time between step boundaries, after the first
`skip_steps` steps (compilation and warm-up) and never before the first step. It takes an
injectable `now` so tests drive it without sleeping.
"""

from __future__ import annotations

import resource
import sys
import time
from typing import Callable

import torch


class TrainingClock:
    """Counts training time across step boundaries.

    Args:
        budget_seconds: training seconds a trial may spend.
        skip_steps: the first steps not counted (compilation, allocator warm-up).
        now: monotonic time source in seconds.
    """

    def __init__(self, budget_seconds: float, skip_steps: int = 1, now: Callable[[], float] = time.perf_counter):
        if budget_seconds <= 0:
            raise ValueError(f"trial.budget_seconds must be positive, got {budget_seconds}")
        self.budget = float(budget_seconds)
        self.skip_steps = max(0, int(skip_steps))
        self._now = now
        self.steps_done = 0
        self.training_seconds = 0.0
        self.longest_step = 0.0  # the longest timed step so far (a budget can end mid-step)
        self._last: float | None = None

    def boundary(self) -> None:
        """Mark a step boundary: the step that just ended (if any) is done."""
        t = self._now()
        if self._last is not None:
            self.steps_done += 1
            if self.steps_done > self.skip_steps:
                self.training_seconds += t - self._last
                self.longest_step = max(self.longest_step, t - self._last)
        self._last = t

    @property
    def counting(self) -> bool:
        """True once the step now running is on the clock."""
        return self._last is not None and self.steps_done >= self.skip_steps

    def live_seconds(self) -> float:
        """Training seconds including the step now running (what a watchdog compares)."""
        if self.counting and self._last is not None:
            return self.training_seconds + (self._now() - self._last)
        return self.training_seconds

    @property
    def progress(self) -> float:
        """Fraction of the budget spent, in [0, 1]."""
        return min(1.0, self.training_seconds / self.budget)

    @property
    def done(self) -> bool:
        return self.training_seconds >= self.budget


def peak_memory_mb(device: torch.device) -> float:
    """Peak memory of this process so far: CUDA max allocated on a GPU, peak RSS otherwise."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    if device.type == "mps" and hasattr(torch.mps, "driver_allocated_memory"):
        return torch.mps.driver_allocated_memory() / 2**20
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 2**10  # bytes on macOS, KiB on Linux


def synchronize(device: torch.device) -> None:
    """Wait for queued device work, so the clock measures work done, not work launched."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


# Dense bf16 peak of known accelerators, for MFU (FLOP/s).
PEAK_FLOPS = {
    "H200": 989.5e12,
    "H100": 989.5e12,
    "A100": 312e12,
    "L40S": 362e12,
    "A10G": 125e12,
    "RTX 4090": 165.2e12,
    "RTX 3090": 71e12,
}


def peak_flops(device: torch.device) -> float | None:
    """The bf16 dense peak of the device, or None when unknown (MFU is then not reported)."""
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    for key, flops in PEAK_FLOPS.items():
        if key in name:
            return flops
    return None
