"""Plain helpers the tests share: paths, git, seed repositories, config composition, variants.

Tests and scripts import these (`from support import make_repo`); fixtures built on them live in
tests/conftest.py, which no module imports.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]  # this checkout
SHAKESPEARE = ROOT.parent / "shared" / "data" / "tinyshakespeare.txt"
VARIANTS = Path(__file__).resolve().parent / "variants"
EDITABLE = ["train/train.py", "model/gpt.py"]
_IDENTITY = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}


def git(repo: Path, *args: str) -> str:
    """Run git in `repo` as a configured user; its stdout (raises on a non-zero exit)."""
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True,
                          env=dict(os.environ, **_IDENTITY)).stdout


def make_repo(repo: Path, files: dict[str, str] | None = None, branch: str | None = None) -> Path:
    """A git repository at `repo` with one commit, "seed", of `files` (path -> text).

    By default the files are this checkout's seed (EDITABLE), so a test run's lineage, commits and
    tags go there and not into this checkout. `branch` names the first branch (else git's default).
    """
    if files is None:
        files = {rel: (ROOT / rel).read_text() for rel in EDITABLE}
    for rel, text in files.items():
        (repo / rel).parent.mkdir(parents=True, exist_ok=True)
        (repo / rel).write_text(text)
    git(repo, "init", "-q", *(["-b", branch] if branch else []))
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "seed")
    return repo


def compose_config(overrides: list[str]) -> dict:
    """The composed, resolved configuration, as the CLI would see it (plain containers)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import OmegaConf

    from search.cli import CONF_DIR

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose(config_name="config", overrides=overrides)
    GlobalHydra.instance().clear()
    return OmegaConf.to_container(cfg, resolve=True)


def make_variant(dest: Path, train_file: str) -> Path:
    """A variant directory holding tests/variants/<train_file> as train/train.py and the tiny model."""
    (dest / "train").mkdir(parents=True)
    (dest / "model").mkdir(parents=True)
    shutil.copy(VARIANTS / train_file, dest / "train" / "train.py")
    shutil.copy(VARIANTS / "tiny_model.py", dest / "model" / "gpt.py")
    return dest


def wait_until(condition, timeout: float, interval: float = 0.05, what: str = "the condition"):
    """Poll `condition()` until it returns something true (returned) or `timeout` seconds pass
    (AssertionError naming `what`)."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what} did not happen within {timeout:g} s")
        time.sleep(interval)


def alive(pid: int) -> bool:
    """True while the process exists and is not a zombie waiting to be reaped."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def processes_in(directory) -> list[int]:
    """Live processes (not zombies) whose working directory is `directory` (inside a sandbox too)."""
    found = []
    for entry in os.listdir("/proc"):
        try:
            if entry.isdigit() and os.readlink(f"/proc/{entry}/cwd") == str(directory) and alive(int(entry)):
                found.append(int(entry))
        except OSError:
            continue
    return found


def bwrap_problem() -> str | None:
    """Why trial.sandbox=bwrap would not work here (the trials' own check), or None."""
    from search.run.sandbox import SandboxError, resolve_sandbox

    try:
        resolve_sandbox("bwrap")
    except SandboxError as exc:
        return str(exc)
    return None


def bwrap_mark():
    """A skip mark for tests of the bubblewrap sandbox, naming why it does not work here."""
    import pytest

    problem = bwrap_problem()
    return pytest.mark.skipif(problem is not None, reason=f"no bubblewrap sandbox: {problem}")
