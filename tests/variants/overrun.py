"""Keeps training after ctx.steps() ends: ignores its budget."""
import torch.nn.functional as F

from model.gpt import Bigram


def train(ctx):
    model = Bigram(ctx.vocab_size).to(ctx.device)
    batches = ctx.batches(8)
    for _ in ctx.steps():
        next(batches)
    while True:  # "just a few more steps"
        x, y = next(batches)
        F.cross_entropy(model(x).flatten(0, 1), y.flatten()).backward()
