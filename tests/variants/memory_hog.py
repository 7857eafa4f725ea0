"""Allocates 64 MB tensors (and touches them) until an allocation fails."""
import torch

from model.gpt import Bigram


def train(ctx):
    model = Bigram(ctx.vocab_size)
    hoard = []
    for _ in ctx.steps():
        while True:
            hoard.append(torch.ones(64 * 2**20, dtype=torch.uint8))
    return model
