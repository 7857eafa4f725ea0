"""Benchmark: device seconds a crashing variant costs, with and without the preflight check.

    python scripts/crash_cost.py [--budget 20] [--repeats 3]

Three variants (scripts/crash_variants/): one that crashes on its first step, one that crashes
past half its budget, one whose model fails in evaluation. With the preflight check (what
`python -m search run` does by default) a candidate first runs `search.preflight_steps` steps and
a tiny evaluation; only if that passes does it get its full trial. Cost = the seconds its trial
processes ran. Writes its table to docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

from bench_common import ROOT, SHAKESPEARE, spread, write_section

sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

VARIANTS = ("crash_at_start", "crash_midway", "crash_in_eval")


def main() -> None:
    from support import compose_config  # the CLI's own config composition (tests/support.py)

    from eval.data.prepare import prepare_data
    from search.run.runner import run_trial_process

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budget", type=float, default=20.0)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    lines = ["| variant | without preflight: device s | status | with preflight: device s | status | saved |",
             "| --- | --- | --- | --- | --- | --- |"]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        conf = compose_config(["experiment=cpu_smoke", f"data.path={SHAKESPEARE}", f"data.cache_dir={tmp / 'cache'}"])
        prepared = prepare_data(conf["data"], conf["trial"]["vocab_size"], log=lambda m: None)
        trial = dict(conf["trial"], budget_seconds=args.budget, constants={})
        for name in VARIANTS:
            vdir = tmp / name
            (vdir / "train").mkdir(parents=True)
            shutil.copy(ROOT / "scripts" / "crash_variants" / f"{name}.py", vdir / "train" / "train.py")
            spec = {"variant_dir": str(vdir), "data": prepared.spec(), "editable": ["train/train.py"]}
            without, with_pre = [], []
            for r in range(args.repeats):
                rec = run_trial_process(dict(spec, trial=trial), tmp / f"{name}-{r}-full")
                without.append((rec.total_seconds or 0.0, rec.status))
                seq = trial["seq_len"]
                pre = dict(trial, max_steps=conf["search"]["preflight_steps"], eval_tokens=seq, test_tokens=seq,
                           clock_skip_steps=0)
                rec_pre = run_trial_process(dict(spec, trial=pre), tmp / f"{name}-{r}-pre")
                cost = rec_pre.total_seconds or 0.0
                status = f"{rec_pre.status} in preflight"
                if rec_pre.status == "ok":
                    rec_full = run_trial_process(dict(spec, trial=trial), tmp / f"{name}-{r}-pre-full")
                    cost += rec_full.total_seconds or 0.0
                    status = f"{rec_full.status} in the full trial"
                with_pre.append((cost, status))
                print(name, without[-1], with_pre[-1], flush=True)
            a = [c for c, _ in without]
            b = [c for c, _ in with_pre]
            lines.append(f"| {name} | {spread(a)} | {without[0][1]} | {spread(b)} | {with_pre[0][1]} | "
                         f"{sum(a) / len(a) - sum(b) / len(b):.1f} s |")
    notes = (f"experiment=cpu_smoke with trial.budget_seconds={args.budget:g} on the CPU; preflight = "
             f"{conf['search']['preflight_steps']} steps and one row of evaluation. Device seconds include each "
             "trial process's start-up (imports), which a crash at the first step pays either way.")
    write_section("Crash cost", f"python scripts/crash_cost.py --budget {args.budget:g} --repeats {args.repeats}",
                  "\n".join(lines), notes)


if __name__ == "__main__":
    main()
