"""Causality probe: changing a future token must not change the logits of earlier positions.

Run on the trained model before it is evaluated. A model that peeks at later tokens (a missing
causal mask, a convolution that looks right, a shift in the wrong direction) would score a
bits-per-byte it could never achieve when generating; the probe catches it and the trial is
rejected instead of ranked.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch


@dataclass
class ProbeResult:
    """Whether the model is causal, and the evidence."""

    passed: bool
    max_leak: float  # largest change of an earlier logit caused by a later token
    tolerance: float  # changes up to this are run-to-run noise
    position: int  # the changed position that leaked most (-1 when none leaked)

    def reason(self) -> str:
        return (
            f"causality probe failed: changing the token at position {self.position} changed earlier "
            f"logits by up to {self.max_leak:.3g} (tolerance {self.tolerance:.3g}); the model looks ahead"
        )


@torch.no_grad()
def probe_causality(
    model: torch.nn.Module,
    vocab_size: int,
    seq_len: int,
    device: torch.device,
    batch: int = 2,
    seed: int = 1234,
    autocast_dtype: torch.dtype | None = None,
) -> ProbeResult:
    """Check that logits at positions < p do not depend on the token at p.

    Args:
        model: maps int64 tokens (B, T) to logits (B, T, V).
        vocab_size: ids are drawn below this.
        seq_len: probe at the evaluation length, where a cheat would pay off.
        device: where the model lives.
        batch: rows in the probe batch.
        seed: seed of the random probe tokens (fixed, so the probe is reproducible).
        autocast_dtype: the autocast used in evaluation, or None.

    Returns:
        ProbeResult; `passed` is False when any earlier logit moved beyond noise.
    """
    was_training = model.training
    model.eval()
    gen = torch.Generator().manual_seed(seed)
    x = torch.randint(0, vocab_size, (batch, seq_len), generator=gen).to(device)
    ctx = (
        (lambda: torch.autocast(device_type=device.type, dtype=autocast_dtype))
        if autocast_dtype is not None
        else contextlib.nullcontext
    )
    try:
        with ctx():
            base = model(x).float()
            again = model(x).float()
        noise = float((base - again).abs().max())
        scale = float(base.abs().max())
        tolerance = max(10.0 * noise, 1e-4 * (1.0 + scale))
        worst, worst_pos = 0.0, -1
        positions = sorted({1, seq_len // 3, (2 * seq_len) // 3, seq_len - 1})
        for p in positions:
            if p <= 0:
                continue
            changed = x.clone()
            changed[:, p] = (changed[:, p] + 1 + torch.randint(0, vocab_size - 1, (batch,), generator=gen).to(device)) % vocab_size
            with ctx():
                out = model(changed).float()
            leak = float((out[:, :p] - base[:, :p]).abs().max())
            if leak > worst:
                worst, worst_pos = leak, p
    finally:
        model.train(was_training)
    passed = worst <= tolerance
    return ProbeResult(passed=passed, max_leak=worst, tolerance=tolerance, position=worst_pos if not passed else -1)
