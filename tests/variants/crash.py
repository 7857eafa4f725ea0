"""Raises mid-training, after a few steps."""
from model.gpt import Bigram


def train(ctx):
    model = Bigram(ctx.vocab_size)
    for step in ctx.steps():
        if step == 2:
            raise RuntimeError("boom: the variant failed at step 2")
    return model
