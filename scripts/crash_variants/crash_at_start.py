"""A variant that crashes on its first step (a shape bug, say)."""
import torch


def train(ctx):
    for _ in ctx.steps():
        torch.zeros(2, 3) @ torch.zeros(4, 5)
