"""Training script of the seed variant: a small GPT trained with Muon + AdamW for a fixed budget.

The search runs it as one trial (the harness imports this file and calls `train(ctx)`):

    python -m search trial

`ctx` comes from the harness and carries the device, the vocabulary and sequence length, an
endless batch iterator, the step iterator that owns the clock (`for step in ctx.steps()`), the
budget fraction used so far (`ctx.progress`, which drives every schedule), `ctx.record_loss` and
`ctx.log`. The harness, not this file, computes val_bpb from the returned model's logits.

Edit the constants below directly. Every derived size is computed inside `train()`, because the
harness may override constants on this module (e.g. a CPU preset) before calling it.
"""

import contextlib
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from model.gpt import GPT, GPTConfig

# ---------------------------------------------------------------------------------------------
# Hyperparameters (edit these directly)

DEPTH = 8  # transformer blocks; the one dial: width and heads follow from it
ASPECT_RATIO = 64  # model width per block of depth (channels); width = DEPTH * ASPECT_RATIO
HEAD_DIM = 128  # channels per attention head; width is rounded up to a multiple of it
TOTAL_BATCH_TOKENS = 2**19  # tokens per optimizer step, summed over gradient-accumulation steps
DEVICE_BATCH_SIZE = 32  # sequences per micro-batch (forward/backward pass)
MATRIX_LR = 0.04  # Muon learning rate for the 2-D matrices of the blocks
EMBED_LR = 0.3  # AdamW learning rate for the token embedding, at width 768
UNEMBED_LR = 0.004  # AdamW learning rate for the lm_head, at width 768
SCALAR_LR = 0.02  # AdamW learning rate for any other parameter (gains, scalars), at width 768
WEIGHT_DECAY = 0.1  # decoupled weight decay on the Muon matrices, multiplied by the current LR
ADAM_BETA1 = 0.8  # AdamW first-moment decay
ADAM_BETA2 = 0.95  # AdamW second-moment decay
MUON_MOMENTUM = 0.95  # Muon (Nesterov) momentum after its warmup
MUON_MOMENTUM_START = 0.85  # Muon momentum at the start of training
MUON_MOMENTUM_WARMUP_RATIO = 0.1  # fraction of the budget over which Muon momentum ramps up
WARMUP_RATIO = 0.0  # fraction of the budget for the linear LR warmup from 0
WARMDOWN_RATIO = 0.4  # fraction of the budget, at its end, for the linear LR warmdown
FINAL_LR_FRAC = 0.0  # LR at the end of the warmdown, as a fraction of the peak LR
SOFTCAP = 15.0  # logit soft-cap: logits = SOFTCAP * tanh(logits / SOFTCAP)
COMPILE = True  # torch.compile the model (CUDA only; ignored elsewhere)

# ---------------------------------------------------------------------------------------------
# Optimizer: Muon for the hidden matrices (https://kellerjordan.github.io/posts/muon/)


def orthogonalize(G: torch.Tensor, steps: int, dtype: torch.dtype) -> torch.Tensor:
    """Map a stack of matrices G (N, rows, cols) to roughly U V^T of their SVDs.

    A quintic Newton-Schulz iteration whose coefficients trade exactness for speed: they push every
    singular value into about [0.7, 1.2] within a few steps instead of converging to exactly 1,
    which is as good for the update and cheap in bf16.
    """
    a, b, c = 3.4445, -4.7750, 2.0315
    X = G.to(dtype)
    tall = X.size(-2) > X.size(-1)
    if tall:  # iterate on the wide orientation so that X @ X^T is the smaller Gram matrix
        X = X.mT
    # Frobenius norm bounds the spectral norm, so every singular value starts at most 1.
    X = X / (X.norm(dim=(-2, -1), keepdim=True) + 1e-7)
    for _ in range(steps):
        A = X @ X.mT
        X = a * X + (b * A + c * A @ A) @ X
    return X.mT if tall else X


class Muon(torch.optim.Optimizer):
    """Nesterov momentum whose update is orthogonalised before it is applied.

    Parameters of one shape share a param group so their updates are orthogonalised as one batch.
    The update is scaled by sqrt(max(1, rows / cols)) so tall matrices (the MLP up-projection)
    get a per-entry step comparable to square ones.
    """

    def __init__(self, params, lr: float, momentum: float, weight_decay: float,
                 ns_steps: int = 5, ns_dtype: torch.dtype = torch.bfloat16):
        params = list(params)
        if any(p.ndim != 2 for p in params):
            raise ValueError("Muon only takes 2-D parameters")
        shapes = sorted({tuple(p.shape) for p in params})
        groups = [{"params": [p for p in params if tuple(p.shape) == s]} for s in shapes]
        defaults = dict(lr=lr, momentum=momentum, weight_decay=weight_decay,
                        ns_steps=ns_steps, ns_dtype=ns_dtype)
        super().__init__(groups, defaults)

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            momentum = group["momentum"]
            updates = []
            for p in params:
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.zeros_like(p)
                buf = state["momentum_buffer"]
                buf.lerp_(p.grad, 1 - momentum)
                updates.append(p.grad.lerp(buf, momentum))  # Nesterov: look one step ahead
            ortho = orthogonalize(torch.stack(updates), group["ns_steps"], group["ns_dtype"])
            rows, cols = params[0].shape
            step_size = group["lr"] * max(1.0, rows / cols) ** 0.5
            for p, update in zip(params, ortho.unbind(0)):
                p.mul_(1 - group["lr"] * group["weight_decay"])
                p.add_(update.to(p.dtype), alpha=-step_size)


def build_optimizers(model: GPT, width: int, device_type: str) -> list[torch.optim.Optimizer]:
    """Muon for the blocks' matrices; AdamW, one LR per kind, for everything else."""
    matrix_params = [p for p in model.blocks.parameters() if p.ndim == 2]
    embed_params = [model.wte.weight]
    unembed_params = [model.lm_head.weight]
    taken = {id(p) for p in matrix_params + embed_params + unembed_params}
    scalar_params = [p for p in model.parameters() if id(p) not in taken]
    # The AdamW LRs were chosen at width 768; scale them by 1/sqrt(width) so that turning the
    # DEPTH dial keeps them sensible (the muP rule for these layers, https://arxiv.org/abs/2203.03466).
    adam_scale = (width / 768) ** -0.5
    adam_groups = [
        {"params": params, "lr": lr * adam_scale}
        for params, lr in ((embed_params, EMBED_LR), (unembed_params, UNEMBED_LR),
                           (scalar_params, SCALAR_LR))
        if params
    ]
    adamw = torch.optim.AdamW(adam_groups, betas=(ADAM_BETA1, ADAM_BETA2), eps=1e-10,
                              weight_decay=0.0, fused=device_type == "cuda")
    # bf16 Newton-Schulz is accurate enough and fast on tensor cores; CPUs get float32.
    muon = Muon(matrix_params, lr=MATRIX_LR, momentum=MUON_MOMENTUM, weight_decay=WEIGHT_DECAY,
                ns_dtype=torch.bfloat16 if device_type == "cuda" else torch.float32)
    optimizers = [adamw, muon]
    for opt in optimizers:
        for group in opt.param_groups:
            group["base_lr"] = group["lr"]
    return optimizers


# ---------------------------------------------------------------------------------------------
# Schedules: functions of training progress p in [0, 1], so they fit any time budget


def lr_multiplier(progress: float) -> float:
    """Linear warmup, flat, then linear warmdown to FINAL_LR_FRAC (warmup-stable-decay)."""
    if progress < WARMUP_RATIO:
        return progress / WARMUP_RATIO
    if progress > 1.0 - WARMDOWN_RATIO:
        remaining = max(0.0, 1.0 - progress) / WARMDOWN_RATIO
        return FINAL_LR_FRAC + (1.0 - FINAL_LR_FRAC) * remaining
    return 1.0


def muon_momentum(progress: float) -> float:
    """Ramp from MUON_MOMENTUM_START to MUON_MOMENTUM: less inertia while the weights move most."""
    if MUON_MOMENTUM_WARMUP_RATIO <= 0:
        return MUON_MOMENTUM
    frac = min(1.0, progress / MUON_MOMENTUM_WARMUP_RATIO)
    return MUON_MOMENTUM_START + (MUON_MOMENTUM - MUON_MOMENTUM_START) * frac


# ---------------------------------------------------------------------------------------------
# Entry point: setup, loop, summary


def train(ctx) -> nn.Module:
    """Train a GPT within the harness's budget and return it, ready to map ids to logits."""
    # -----------------------------------------------------------------------------------------
    # Setup: sizes derived from the dial, model, optimizers, precision, compilation

    width = HEAD_DIM * math.ceil(DEPTH * ASPECT_RATIO / HEAD_DIM)  # a whole number of heads
    n_head = width // HEAD_DIM
    tokens_per_micro = DEVICE_BATCH_SIZE * ctx.seq_len
    grad_accum = max(1, TOTAL_BATCH_TOKENS // tokens_per_micro)

    config = GPTConfig(vocab_size=ctx.vocab_size, n_layer=DEPTH, n_head=n_head, n_embd=width,
                       head_dim=HEAD_DIM, seq_len=ctx.seq_len, softcap=SOFTCAP)
    with torch.device(ctx.device):
        model = GPT(config)
    optimizers = build_optimizers(model, width, ctx.device_type)
    muon = optimizers[-1]

    on_cuda = ctx.device_type == "cuda"
    if on_cuda:
        torch.set_float32_matmul_precision("high")
    # bf16 autocast on GPUs: params and the residual stream stay float32, matmuls run in bf16.
    autocast = (torch.autocast(device_type="cuda", dtype=torch.bfloat16) if on_cuda
                else contextlib.nullcontext())
    fwd = torch.compile(model, dynamic=False) if COMPILE and on_cuda else model

    ctx.log(f"model: depth {DEPTH}, width {width}, heads {n_head} x {HEAD_DIM}, "
            f"{model.num_params() / 1e6:.1f}M parameters")
    ctx.log(f"batch: {DEVICE_BATCH_SIZE} x {ctx.seq_len} tokens x {grad_accum} accumulation steps "
            f"= {tokens_per_micro * grad_accum} tokens per step")

    if fwd is not model:
        # Compile on a throwaway batch so compilation is startup, not training time. No optimizer
        # step is taken and the gradients are discarded, so nothing is learnt here.
        dummy = torch.zeros(DEVICE_BATCH_SIZE, ctx.seq_len, dtype=torch.long, device=ctx.device)
        with autocast:
            fwd(dummy).sum().backward()
        model.zero_grad(set_to_none=True)

    # -----------------------------------------------------------------------------------------
    # Loop: one iteration per optimizer step until the harness's budget is spent

    batches = ctx.batches(DEVICE_BATCH_SIZE)
    steps = 0
    for _ in ctx.steps():
        progress = ctx.progress
        lr_mult = lr_multiplier(progress)
        for opt in optimizers:
            for group in opt.param_groups:
                group["lr"] = group["base_lr"] * lr_mult
        for group in muon.param_groups:
            group["momentum"] = muon_momentum(progress)

        step_loss = torch.zeros((), device=ctx.device)
        for _ in range(grad_accum):
            x, y = next(batches)
            with autocast:
                logits = fwd(x)
            loss = F.cross_entropy(logits.view(-1, logits.size(-1)), y.view(-1)) / grad_accum
            loss.backward()
            step_loss += loss.detach()

        for opt in optimizers:
            opt.step()
        model.zero_grad(set_to_none=True)
        ctx.record_loss(step_loss)
        steps += 1

    # -----------------------------------------------------------------------------------------
    # Summary

    ctx.log(f"trained {steps} steps, {steps * grad_accum * tokens_per_micro} tokens")
    return model.eval()
