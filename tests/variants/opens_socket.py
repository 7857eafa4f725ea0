"""Connects to a TCP port on 127.0.0.1 (the port number is in port.txt in the variant directory)."""
import socket
from pathlib import Path

from model.gpt import Bigram

PORT = int((Path(__file__).resolve().parents[1] / "port.txt").read_text())


def train(ctx):
    with socket.create_connection(("127.0.0.1", PORT), timeout=5) as conn:
        conn.sendall(b"val_bpb please\n")
    model = Bigram(ctx.vocab_size)
    for _ in ctx.steps():
        pass
    return model
