"""Take a variant out of a run: a standalone directory that trains with one command, or a git branch.

    python -m search export run.name=<name> [pick=best|v0042|pareto:<max_memory_mb>] out=<dir>
    python -m search export run.name=<name> [pick=...] branch=<name>

The directory holds the variant's editable files, a copy of the harness package `eval/` of this
installation (the one the run's trials were measured with), `run_config.json` (the run's trial and
data settings), `figures.json`, `LINEAGE.md` (the path from the seed), `seed.diff`, a README, and
`train_variant.py`, which prepares the data and trains the variant there with `python -m eval.trial`,
without evoresearch.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from search.record.data import (
    FIGURES, PATH_COLUMNS, PathStep, markdown_table, path_from_seed, pick_variant, seed_noise, step_row,
)
from search.record.format import MISSING, format_number
from search import PROJECT_ROOT
from search.record.runs import RunState
from eval.record import Status

HARNESS = PROJECT_ROOT / "eval"
TEMPLATE = Path(__file__).resolve().parent / "templates" / "train_variant.py"


@dataclass
class Export:
    """What an export wrote or made."""

    variant: str
    commit: str
    out: Path | None = None
    branch: str | None = None


def export_variant(state: RunState, pick: str, out: Path) -> Export:
    """Write the variant `pick` chooses into the new directory `out`.

    Raises:
        search.record.data.PickError: if the pick names no variant or nothing satisfies it.
        FileExistsError: if `out` exists and is not an empty directory.
        search.lineage.repo.LineageError: if the variant's commit is not in the run's repository.
    """
    variants = state.variants
    name = pick_variant(variants, pick)
    v = variants[name]
    out = Path(out).expanduser().resolve()
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise FileExistsError(f"out={out} exists and is not an empty directory; choose a new one")
    with state.lineage() as lineage:
        files = lineage.read_files(v["commit"])
        base = state.attrs["base_commit"]
        seed_diff = lineage.diff(base, v["commit"])
    out.mkdir(parents=True, exist_ok=True)
    for rel, text in files.items():
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        (out / rel).write_text(text)
    harness_hash = _copy_harness(out / "eval")
    shutil.copy(TEMPLATE, out / "train_variant.py")
    trial = dict(asdict(state.conf.trial), seed=_trial_seed(v, state.conf.trial.seed))
    run_config = {"run": state.name, "variant": name, "editable": state.editable, "trial": trial,
                  "data": _absolute_paths(asdict(state.conf.data), [Path.cwd(), PROJECT_ROOT])}
    (out / "run_config.json").write_text(json.dumps(run_config, indent=2) + "\n")
    noise = seed_noise(variants, state.conf.search.noise_k)
    figures = {
        "run": state.name, "variant": name, "commit": v["commit"], "status": v["status"], "reason": v["reason"],
        "operator": v["operator"], "parents": v["parents"], "description": v["description"],
        "generation": v["generation"], "runs": len(v["runs"]),
        **{k: v.get(k) for k in FIGURES},
        "noise": {"mean": noise.mean, "std": noise.std, "n": noise.n, "floor": noise.floor} if noise else None,
        "preset": trial["name"], "budget_seconds": trial["budget_seconds"], "seed": trial["seed"],
        "devices": sorted({r.get("device") for r in v["runs"] if r.get("device")}),
        "harness_sha256": harness_hash, "base_commit": base, "lineage_repo": str(state.repo),
        "exported_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    (out / "figures.json").write_text(json.dumps(figures, indent=2) + "\n")
    (out / "seed.diff").write_text(seed_diff)
    steps = path_from_seed(variants, name)
    (out / "LINEAGE.md").write_text(_lineage_md(state.name, name, steps, figures))
    (out / "README.md").write_text(_readme(state, name, figures, files, len(steps) - 1))
    return Export(variant=name, commit=v["commit"], out=out)


def branch_variant(state: RunState, pick: str, branch: str) -> Export:
    """Create the git branch `branch` at the commit of the variant `pick` chooses, in the run's repository.

    Raises:
        search.record.data.PickError: if the pick names no variant or nothing satisfies it.
        search.lineage.repo.LineageError: if the branch exists or the name is not a valid branch name.
    """
    variants = state.variants
    name = pick_variant(variants, pick)
    with state.lineage() as lineage:
        sha = lineage.create_branch(branch, variants[name]["commit"])
    return Export(variant=name, commit=sha, branch=branch)


def _copy_harness(dest: Path) -> str:
    """Copy the harness's sources (eval/**/*.py) into `dest`; returns the SHA-256 over their
    relative paths and contents."""
    dest.mkdir(parents=True)
    h = hashlib.sha256()
    for src in sorted(HARNESS.rglob("*.py")):
        rel = src.relative_to(HARNESS).as_posix()
        data = src.read_bytes()
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        (dest / rel).write_bytes(data)
        h.update(rel.encode() + b"\0" + data + b"\0")
    return h.hexdigest()


def _trial_seed(v: dict[str, Any], default: int) -> int:
    """The trial seed of the variant's first ok run (the seed variant's repeats differ in it)."""
    ok = [r for r in v["runs"] if r.get("status") == Status.OK]
    seeds = [r.get("trial_seed") for r in (ok or v["runs"]) if r.get("trial_seed") is not None]
    return seeds[0] if seeds else default


def _absolute_paths(data: dict[str, Any], bases: list[Path]) -> dict[str, Any]:
    """The data settings with relative local paths made absolute where they exist under a base."""
    def resolve(path: str | None) -> str | None:
        if not path or Path(path).expanduser().is_absolute() or path.startswith("~"):
            return path
        for base in bases:
            if (base / path).exists():
                return str((base / path).resolve())
        return path

    out = dict(data, path=resolve(data.get("path")), paths=[resolve(p) for p in data.get("paths") or []])
    cache = data.get("cache_dir")
    if cache and not cache.startswith("~") and not Path(cache).is_absolute():
        out["cache_dir"] = str((Path.cwd() / cache).resolve())
    return out


def _lineage_md(run: str, name: str, steps: list[PathStep], figures: dict[str, Any]) -> str:
    noise = figures.get("noise")
    rows = [step_row(s) for s in steps]
    lines = [f"# Lineage of {run}/{name}", "",
             f"The first-parent path from the seed ({steps[0].name}) to {name}: {len(steps) - 1} step(s). Each "
             "delta is against the step's first parent.", "",
             markdown_table(rows, PATH_COLUMNS), ""]
    if noise:
        lines.append(f"Noise floor of the run: {format_number(noise['floor'])} (seed val_bpb std "
                     f"{format_number(noise['std'])} over {noise['n']} runs); a delta smaller than that is not an "
                     "improvement.")
    else:
        lines.append("The run's noise floor was not measured (no seed repeat ended ok).")
    lines += ["", "Each step's description:", ""]
    lines += [f"- **{s.name}** ({s.operator}): {s.description}" for s in steps]
    return "\n".join(lines) + "\n"


def _readme(state: RunState, name: str, figures: dict[str, Any], files: dict[str, str], steps: int) -> str:
    noise = figures.get("noise")
    noise_line = (f"{format_number(noise['floor'])} (seed val_bpb std {format_number(noise['std'])} over "
                  f"{noise['n']} runs)" if noise else "not measured")
    score = [
        ("status", figures["status"] + (f" ({figures['reason']})" if figures.get("reason") else "")),
        ("val_bpb", format_number(figures.get("val_bpb"), 6)
         + (f" (mean of {figures['runs']} runs)" if figures["runs"] > 1 else "")),
        ("test_bpb (held out, never used to select)", format_number(figures.get("test_bpb"), 6)),
        ("peak memory (MB)", format_number(figures.get("peak_mem_mb"), 1)),
        ("training seconds / steps",
         f"{format_number(figures.get('training_seconds'), 1)} / {format_number(figures.get('num_steps'), 0)}"),
        ("parameters (M)", format_number(figures.get("num_params_M"), 3)),
        ("trial preset / budget / seed", f"{figures['preset']} / {figures['budget_seconds']:g}s / {figures['seed']}"),
        ("device(s)", ", ".join(figures["devices"]) or MISSING),
        ("noise floor of the run", noise_line),
    ]
    data = asdict(state.conf.data)
    lines = [
        f"# {state.name}/{name}: {figures['description']}", "",
        f"A variant exported from the evoresearch run `{state.name}`: commit `{figures['commit']}` "
        f"({figures['operator']}, {steps} step(s) from the seed; see LINEAGE.md).", "",
        "## What it scored", "", "| figure | value |", "|---|---|",
        *[f"| {k} | {val} |" for k, val in score], "",
        "## Train it", "",
        "```bash",
        "pip install torch numpy tiktoken rustbpe   # pyarrow too for parquet data",
        "python train_variant.py",
        "```", "",
        f"This prepares the data ({data['name']}: {data.get('path') or data.get('url') or data['source']}; cached in "
        f"`{data['cache_dir']}`), trains the variant on a budget of {figures['budget_seconds']:g} s of training with the "
        "harness in `eval/` (the same entry point, clock, causality probe and bits-per-byte metric the search "
        "used), prints the summary and compares val_bpb with the figure above. Differences within the noise floor "
        "are noise; on another device the step count, and so the figure, differs. The settings are in "
        "`run_config.json`.", "",
        "## Files", "",
        *[f"- `{rel}`: the variant's code" for rel in files],
        "- `eval/`: the fixed harness (data preparation, tokenizer, dataloader, clock, probe, metric, trial entry)",
        "- `train_variant.py`: the one command that trains it here",
        "- `run_config.json`: the run's trial and data settings",
        "- `figures.json`: the figures above, as JSON",
        "- `LINEAGE.md`: the path from the seed, step by step",
        "- `seed.diff`: the whole change against the seed",
        "",
        f"In the run's repository ({figures['lineage_repo']}) the variant is `git show {figures['commit'][:12]}`, "
        f"tag `search/{state.name}/{name}`.", "",
    ]
    return "\n".join(lines)
