"""Benchmark: harness overhead per trial, i.e. total seconds minus training seconds.

    python scripts/overhead.py [--presets smoke,cpu] [--repeats 3]

Runs `python -m search trial trial=<preset> data=shakespeare` on the seed (data prepared once,
beforehand, so the figure is the per-trial cost: process start, imports, model build, the
causality probe and the evaluation). Also reports the whole command's wall time. Writes its
table to docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_common import ROOT, SHAKESPEARE, spread, write_section


def one(preset: str, workdir: Path, i: int) -> dict:
    run_dir = workdir / f"{preset}-{i}"
    cmd = [sys.executable, "-m", "search", "trial", f"trial={preset}", "data=shakespeare", f"data.path={SHAKESPEARE}",
           f"data.cache_dir={workdir / 'cache'}", f"hydra.run.dir={run_dir}"]
    t0 = time.time()
    subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True, env=dict(os.environ, EVORESEARCH_NO_GPU_DEFAULT="1"))
    wall = time.time() - t0
    rec = json.loads((run_dir / "trial" / "record.json").read_text())
    return {"training": rec["training_seconds"], "total": rec["total_seconds"],
            "overhead": rec["total_seconds"] - rec["training_seconds"], "wall": wall, "val_bpb": rec["val_bpb"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--presets", default="smoke,cpu")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    lines = ["| preset | training s | trial total s | overhead s (total - training) | overhead share | command wall s | val_bpb |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    with tempfile.TemporaryDirectory() as tmp:
        for preset in args.presets.split(","):
            one(preset, Path(tmp), -1)  # prepares the data for this preset's vocabulary, not counted
            runs = [one(preset, Path(tmp), i) for i in range(args.repeats)]
            for r in runs:
                print(preset, r, flush=True)
            share = [r["overhead"] / r["total"] for r in runs]
            lines.append(f"| {preset} | {spread([r['training'] for r in runs])} | {spread([r['total'] for r in runs])} | "
                         f"{spread([r['overhead'] for r in runs])} | {spread(share)} | {spread([r['wall'] for r in runs])} | "
                         f"{spread([r['val_bpb'] for r in runs])} |")
    notes = ("Trial total counts from the runner starting the trial process to the record; the command wall adds "
             "Hydra's start-up, the cached data lookup and the parent's imports. Load average at the end: "
             f"{os.getloadavg()[0]:.2f}.")
    write_section("Harness overhead", f"python scripts/overhead.py --presets {args.presets} --repeats {args.repeats}",
                  "\n".join(lines), notes)


if __name__ == "__main__":
    main()
