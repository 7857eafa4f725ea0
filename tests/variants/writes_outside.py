"""Plants a module in the harness's own directory (eval/), catches the refusal, trains on."""
from pathlib import Path

import eval as harness

import torch
import torch.nn.functional as F

from model.gpt import Bigram

TARGET = Path(harness.__file__).resolve().parent / "planted_by_variant.py"


def train(ctx):
    try:
        TARGET.write_text("VAL_BPB = 0.0  # planted by a variant\n")
    except OSError as exc:  # a refusal swallowed: the trial must still end rejected
        print(f"variant: write refused: {exc}", flush=True)
    model = Bigram(ctx.vocab_size).to(ctx.device)
    opt = torch.optim.Adam(model.parameters(), lr=0.1)
    batches = ctx.batches(8)
    for _ in ctx.steps():
        x, y = next(batches)
        loss = F.cross_entropy(model(x).flatten(0, 1), y.flatten())
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        ctx.record_loss(loss)
    return model
