"""Gets a child process to write a file and connect to 127.0.0.1, where the harness's audit hook (it
watches only the trial process) cannot see. The variant directory holds the target (target.txt) and
the port (port.txt); what the child achieved goes into escape.json in the working directory. Then it
trains normally."""
import json
import subprocess
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

from model.gpt import Bigram

HERE = Path(__file__).resolve().parents[1]
CHILD = """
import json, socket, sys
out = {}
try:
    with open(sys.argv[1], "w") as f:
        f.write("planted by a child\\n")
    out["write"] = "written"
except OSError as exc:
    out["write"] = exc.strerror or str(exc)
try:
    socket.create_connection(("127.0.0.1", int(sys.argv[2])), timeout=3).close()
    out["connect"] = "connected"
except OSError as exc:
    out["connect"] = exc.strerror or str(exc)
print(json.dumps(out))
"""


def train(ctx):
    target = (HERE / "target.txt").read_text().strip()
    port = (HERE / "port.txt").read_text().strip()
    done = subprocess.run([sys.executable, "-c", CHILD, target, port], capture_output=True, text=True, timeout=30)
    with open("escape.json", "w") as f:
        f.write(done.stdout or json.dumps({"stderr": done.stderr}))
    model = Bigram(ctx.vocab_size).to(ctx.device)
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
