"""Bits per byte, computed by the harness from the model's logits.

val_bpb = (sum of cross-entropy in nats over target tokens) / (ln 2 * their UTF-8 byte count),
special tokens (byte length 0) left out of both sums. The model receives only the input tokens;
the targets never leave the harness. Because the denominator counts bytes, not tokens, variants
with different tokenizers or vocabularies would still compare.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F


@dataclass
class BpbResult:
    """The outcome of one evaluation."""

    bpb: float
    nats: float
    bytes: int
    tokens: int


def bits_per_byte(total_nats: float, total_bytes: int) -> float:
    """Convert summed cross-entropy in nats over `total_bytes` bytes into bits per byte."""
    if total_bytes <= 0:
        raise ValueError("no target bytes to evaluate on")
    return total_nats / (math.log(2) * total_bytes)


@torch.no_grad()
def evaluate_bpb(
    model: torch.nn.Module,
    rows: np.ndarray,
    token_bytes: np.ndarray,
    device: torch.device,
    batch_rows: int = 16,
    autocast_dtype: torch.dtype | None = None,
) -> BpbResult:
    """Bits per byte of `model` on fixed rows.

    Args:
        model: maps int64 tokens (B, T) to logits (B, T, V); it never sees the targets.
        rows: int64 (N, T + 1); inputs are rows[:, :-1], targets rows[:, 1:].
        token_bytes: UTF-8 byte length per token id (0 for special tokens).
        device: where to run the forward passes.
        batch_rows: rows per forward pass.
        autocast_dtype: e.g. torch.bfloat16 on CUDA; None for full precision.

    Returns:
        BpbResult with the summed nats, bytes and the number of scored tokens.

    Raises:
        ValueError: if the logits have the wrong shape (names the shapes).
    """
    was_training = model.training
    model.eval()
    nbytes_table = torch.as_tensor(token_bytes, dtype=torch.int64, device=device)
    total_nats = torch.zeros((), dtype=torch.float64, device=device)
    total_bytes = torch.zeros((), dtype=torch.int64, device=device)
    total_tokens = 0
    try:
        for start in range(0, len(rows), batch_rows):
            batch = torch.as_tensor(rows[start : start + batch_rows], dtype=torch.int64).to(device)
            x, y = batch[:, :-1], batch[:, 1:]
            ctx = (
                torch.autocast(device_type=device.type, dtype=autocast_dtype)
                if autocast_dtype is not None
                else contextlib.nullcontext()
            )
            with ctx:
                logits = model(x)
            if logits.shape[:2] != x.shape or logits.dim() != 3 or logits.shape[-1] < len(token_bytes):
                raise ValueError(
                    f"model returned logits of shape {tuple(logits.shape)} for input {tuple(x.shape)}; "
                    f"expected (B, T, V) with V >= {len(token_bytes)}"
                )
            logits = logits[..., : len(token_bytes)].float()
            nats = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1), reduction="none")
            nbytes = nbytes_table[y.reshape(-1)]
            counted = nbytes > 0
            total_nats += (nats.double() * counted).sum()
            total_bytes += nbytes.sum()
            total_tokens += int(counted.sum())
    finally:
        model.train(was_training)
    nats_value, bytes_value = float(total_nats), int(total_bytes)
    return BpbResult(bits_per_byte(nats_value, bytes_value), nats_value, bytes_value, total_tokens)
