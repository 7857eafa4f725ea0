"""Dies by SIGKILL mid-training, as under the kernel's out-of-memory killer: no record is written."""
import os
import signal

from model.gpt import Bigram


def train(ctx):
    for step in ctx.steps():
        if step == 1:
            os.kill(os.getpid(), signal.SIGKILL)
    return Bigram(ctx.vocab_size)
