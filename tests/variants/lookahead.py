"""Trains a model that peeks at the next token: it must be rejected, not ranked."""
import torch
import torch.nn.functional as F

from model.gpt import Bigram


def train(ctx):
    model = Bigram(ctx.vocab_size, peek=True).to(ctx.device)
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
