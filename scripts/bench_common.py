"""Shared pieces of the benchmarks: a throwaway seed repository, the search CLI, run figures."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from datetime import date
from pathlib import Path
from statistics import mean, stdev

ROOT = Path(__file__).resolve().parents[1]
SHAKESPEARE = ROOT.parent / "shared" / "data" / "tinyshakespeare.txt"
EDITABLE = ["train/train.py", "model/gpt.py"]
sys.path.insert(0, str(ROOT / "tests"))  # the scripted OpenAI-compatible server lives with the tests


def seed_repo(where: Path) -> Path:
    """A git repository holding this checkout's seed files, so a benchmark's lineage stays out of ours."""
    where.mkdir(parents=True, exist_ok=True)
    for rel in EDITABLE:
        (where / rel).parent.mkdir(parents=True, exist_ok=True)
        (where / rel).write_text((ROOT / rel).read_text())
    env = dict(os.environ, GIT_AUTHOR_NAME="bench", GIT_AUTHOR_EMAIL="b@b", GIT_COMMITTER_NAME="bench",
               GIT_COMMITTER_EMAIL="b@b")
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "seed"]):
        subprocess.run(["git", *args], cwd=where, check=True, env=env, capture_output=True)
    return where


def run_search(workdir: Path, name: str, overrides: list[str], log: Path) -> float:
    """Run `python -m search run` to its end; returns its wall seconds."""
    cmd = [sys.executable, "-m", "search", "run", "experiment=cpu_smoke", f"data.path={SHAKESPEARE}",
           f"data.cache_dir={workdir / 'cache'}", f"lineage.repo={seed_repo(workdir / ('repo-' + name))}",
           f"run.name={name}", f"hydra.run.dir={workdir / 'outputs' / name}", *overrides]
    env = dict(os.environ, EVORESEARCH_NO_GPU_DEFAULT="1", OPENAI_API_KEY="")
    t0 = time.time()
    with open(log, "w") as f:
        subprocess.run(cmd, cwd=ROOT, env=env, stdout=f, stderr=subprocess.STDOUT, check=True)
    return time.time() - t0


def study_rows(workdir: Path, name: str) -> tuple[list[dict], dict]:
    """The trials and run attributes of a finished run's study."""
    sys.path.insert(0, str(ROOT))
    from search.run.scheduler import Scheduler

    s = Scheduler(None, workdir / "outputs" / name, name)
    return s.trials(), s.run_attrs()


def seed_trial(label: str, overrides: list[str], run_dir: Path) -> tuple[dict, float]:
    """`python -m search trial <overrides>` on this checkout's seed: its record and the command's wall
    seconds. Raises SystemExit, with the error or the log's tail, unless the trial ended ok."""
    cmd = [sys.executable, "-m", "search", "trial", *overrides, f"hydra.run.dir={run_dir}"]
    t0 = time.time()
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=dict(os.environ, EVORESEARCH_NO_GPU_DEFAULT="1"))
    wall = time.time() - t0
    record_path = run_dir / "trial" / "record.json"
    if not record_path.exists():
        raise SystemExit(f"[{label}] the trial command failed (exit {out.returncode}): {' '.join(cmd)}\n"
                         f"{(out.stderr or out.stdout)[-3000:]}")
    record = json.loads(record_path.read_text())
    if record.get("status") != "ok":
        raise SystemExit(f"[{label}] the seed ended {record.get('status')}: {record.get('reason')}\n"
                         f"{(record.get('log_tail') or out.stdout)[-3000:]}")
    return record, wall


def trial_overrides(argv: list[str]) -> tuple[list[str], list[str], list[str]]:
    """Split a benchmark's argv at `--`: (its own arguments, the overrides after `--`, and those
    overrides with the data defaulting to Tiny Shakespeare from ../shared/data when none names `data`)."""
    own, extra = (argv[: argv.index("--")], argv[argv.index("--") + 1:]) if "--" in argv else (argv, [])
    if any(o.startswith("data") for o in extra):
        return own, extra, list(extra)
    return own, extra, ["data=shakespeare", f"data.path={SHAKESPEARE}", *extra]


def spread(values: list[float]) -> str:
    """mean ± std (n)."""
    if len(values) == 1:
        return f"{values[0]:.3f} (n=1)"
    return f"{mean(values):.3f} ± {stdev(values):.3f} (n={len(values)})"


def machine() -> str:
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    try:
        import torch

        gpu = f"GPU {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else "no GPU"
    except ImportError:
        gpu = "no GPU"
    return f"{os.cpu_count()} CPU cores ({platform.machine()}), {gpu}, Python {platform.python_version()}; " \
           f"load average when written: {load}"


def write_section(title: str, command: str, table: str, notes: str = "") -> None:
    """Replace (or add) one section of docs/BENCHMARKS.md."""
    path = ROOT / "docs" / "BENCHMARKS.md"
    text = path.read_text() if path.exists() else "# Benchmarks\n\nEach section: the command that wrote it, the machine and the date.\n"
    body = (f"## {title}\n\n`{command}`\n\n{machine()}; {date.today().isoformat()}\n\n{table.rstrip()}\n\n"
            + (notes.rstrip() + "\n\n" if notes else ""))
    marker = f"## {title}\n"
    if marker in text:
        start = text.index(marker)
        end = text.find("\n## ", start + len(marker))
        text = text[:start] + body + (text[end + 1:] if end >= 0 else "")
    else:
        text = text.rstrip() + "\n\n" + body
    path.parent.mkdir(exist_ok=True)
    path.write_text(text.rstrip() + "\n")
    print(json.dumps({"wrote": str(path), "section": title}))
