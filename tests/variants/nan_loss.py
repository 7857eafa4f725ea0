"""Its loss turns to NaN (a learning rate blown up, in effect)."""
import torch
import torch.nn.functional as F

from model.gpt import Bigram


def train(ctx):
    model = Bigram(ctx.vocab_size).to(ctx.device)
    batches = ctx.batches(8)
    for step in ctx.steps():
        x, y = next(batches)
        loss = F.cross_entropy(model(x).flatten(0, 1), y.flatten())
        if step == 3:
            loss = loss * float("nan")
        ctx.record_loss(loss)
    return model
