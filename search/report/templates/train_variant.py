"""Train this exported variant once, with the harness it was measured with.

    python train_variant.py

Prepares the data (eval/data/prepare.py; cached in the run's data.cache_dir), trains train/train.py and
model/gpt.py of this directory for the run's budget with `python -m eval.trial` (the same entry point
the search used), prints the harness's summary and compares val_bpb with the figure the search
recorded. The settings are in run_config.json (trial: budget, sequence length, preset constants,
seed, device; data: source and path): edit them there. Needs torch, numpy, tiktoken and rustbpe
(pyarrow for parquet data), not evoresearch. Exit code: 0 when the trial ended ok, 1 otherwise.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def hard_limit(trial: dict) -> float:
    """Seconds after which the trial process is killed, whatever it is doing."""
    return (trial["startup_seconds"] + trial["budget_seconds"] * (1.0 + trial["budget_tolerance"])
            + trial["eval_seconds"] + 30.0)


def main() -> int:
    sys.path.insert(0, str(HERE))  # this directory's eval/, whatever the working directory
    from eval.data import DataError
    from eval.data.prepare import prepare_data

    conf = json.loads((HERE / "run_config.json").read_text())
    figures = json.loads((HERE / "figures.json").read_text())
    trial, data = conf["trial"], conf["data"]
    try:
        prepared = prepare_data(data, trial["vocab_size"])
        prepared.check_evaluation(trial)
    except (DataError, ValueError) as exc:  # the data cannot be had, or is too small for the preset
        print(f"train_variant: {exc}", file=sys.stderr)
        return 2

    out = HERE / "trial"
    out.mkdir(exist_ok=True)
    record_path = out / "record.json"
    record_path.unlink(missing_ok=True)
    spec = {"variant_dir": str(HERE), "data": prepared.spec(), "trial": trial, "editable": conf["editable"],
            "record_path": str(record_path), "spawn_time": time.time()}
    spec_path = out / "spec.json"
    spec_path.write_text(json.dumps(spec, indent=2))
    print(f"train_variant: {figures['run']}/{figures['variant']}, preset {trial['name']}, budget "
          f"{trial['budget_seconds']:g}s, data {data['name']}, seed {trial['seed']}", flush=True)

    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(HERE), env.get("PYTHONPATH")) if p)
    token = secrets.token_hex(16)  # the harness writes it into its record: proof the record is its own
    proc = subprocess.Popen([sys.executable, "-m", "eval.trial", str(spec_path)], cwd=HERE, env=env,
                            stdin=subprocess.PIPE, text=True, start_new_session=True)
    proc.stdin.write(token + "\n")
    proc.stdin.close()
    try:
        proc.wait(timeout=hard_limit(trial))
    except (subprocess.TimeoutExpired, KeyboardInterrupt):
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        print("train_variant: the trial was stopped (hard time limit or Ctrl-C)", file=sys.stderr)
        return 1
    if not record_path.exists():
        print(f"train_variant: the trial process exited with code {proc.returncode} without a record",
              file=sys.stderr)
        return 1
    record = json.loads(record_path.read_text())
    if record.pop("token", None) != token:
        print("train_variant: the record was not written by the harness", file=sys.stderr)
        return 1
    record_path.write_text(json.dumps(record, indent=2))
    recorded = figures.get("val_bpb")
    noise = (figures.get("noise") or {}).get("floor")
    if record["status"] == "ok" and recorded is not None:
        gap = record["val_bpb"] - recorded
        floor = f"{noise:.4f}" if noise is not None else "not measured"
        print(f"train_variant: val_bpb {record['val_bpb']:.6f} here, {recorded:.6f} in the search "
              f"(difference {gap:+.6f}; the run's noise floor {floor})")
    print(f"train_variant: record written to {record_path}")
    return 0 if record["status"] == "ok" else 1


if __name__ == "__main__":
    sys.exit(main())
