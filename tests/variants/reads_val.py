"""Finds the validation tokens through the spec.json in its working directory and reads them."""
import json

import numpy as np

from model.gpt import Bigram


def train(ctx):
    val_path = json.load(open("spec.json"))["data"]["val"]
    with np.load(val_path) as z:  # raises: the harness refuses this open
        print(f"variant: read {len(z['tokens'])} validation tokens", flush=True)
    model = Bigram(ctx.vocab_size)
    for _ in ctx.steps():
        pass
    return model
