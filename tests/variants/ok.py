"""A well-behaved variant: trains the bigram model inside ctx.steps()."""
import torch
import torch.nn.functional as F

from model.gpt import Bigram

LR = 0.1  # Adam learning rate


def train(ctx):
    model = Bigram(ctx.vocab_size).to(ctx.device)
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    batches = ctx.batches(8)
    for _ in ctx.steps():
        x, y = next(batches)
        loss = F.cross_entropy(model(x).flatten(0, 1), y.flatten())
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        ctx.record_loss(loss)
    return model
