"""Starts a long-lived child process, then crashes: the child must die with the trial."""
import subprocess


def train(ctx):
    child = subprocess.Popen(["sleep", "300"])
    with open("child.pid", "w") as f:
        f.write(str(child.pid))
    raise RuntimeError("crashed with a child still running")
