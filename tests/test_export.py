"""`python -m search export`: a variant out of a real run, trained again on its own, or as a branch."""

import json
import os
import subprocess
import sys

import pytest

from smoke_run import build_smoke_run, cli
from support import git

pytestmark = pytest.mark.slow
EXPORTED = ("train/train.py", "model/gpt.py", "eval/trial.py", "eval/data/prepare.py", "eval/metric.py",
            "figures.json", "LINEAGE.md", "seed.diff", "README.md", "train_variant.py", "run_config.json")
TOLERANCE = 0.1  # bits per byte; the trials are step-capped, so a faithful export lands far closer


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return build_smoke_run(tmp_path_factory.mktemp("export"), "exp")


@pytest.fixture(scope="module")
def variants(run):
    from search.record.data import aggregate_variants
    from search.run.scheduler import Scheduler

    return aggregate_variants(Scheduler(None, run.run_dir, run.name, create=False).trials())


@pytest.fixture(scope="module")
def exported(run, tmp_path_factory):
    out = tmp_path_factory.mktemp("exported") / "best"
    done = cli("export", *run.where(), "pick=best", f"out={out}")
    assert done.returncode == 0, done.stdout + done.stderr
    return out, done.stdout


def test_export_writes_a_standalone_directory(run, variants, exported):
    out, stdout = exported
    best = min((v for v in variants.values() if v["status"] == "ok"), key=lambda v: v["val_bpb"])
    assert f"export: {best['name']}" in stdout and str(out) in stdout
    for rel in EXPORTED:
        assert (out / rel).is_file(), rel
    for rel in ("train/train.py", "model/gpt.py"):
        assert (out / rel).read_text() == git(run.repo, "show", f"{best['commit']}:{rel}")
    figures = json.loads((out / "figures.json").read_text())
    assert figures["variant"] == best["name"] and figures["commit"] == best["commit"]
    assert figures["val_bpb"] == pytest.approx(best["val_bpb"]) and figures["noise"]["n"] == 2
    seed_commit = variants["v0000"]["commit"]
    assert (out / "seed.diff").read_text() == git(run.repo, "diff", seed_commit, best["commit"], "--",
                                                  "train/train.py", "model/gpt.py")
    readme = (out / "README.md").read_text()
    assert "python train_variant.py" in readme and f"{best['val_bpb']:.6f}" in readme
    lineage = (out / "LINEAGE.md").read_text()
    assert "v0000" in lineage and best["name"] in lineage and best["description"] in lineage


def test_exported_variant_trains_on_its_own_and_reproduces_its_val_bpb(run, variants, exported, tmp_path):
    out, _ = exported
    figures = json.loads((out / "figures.json").read_text())
    entry = out / "eval" / "trial.py"  # a mark showing which harness the trial process runs
    main = 'if __name__ == "__main__":'
    entry.write_text(entry.read_text().replace(main, f'print("harness: the exported copy", flush=True)\n{main}'))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run([sys.executable, str(out / "train_variant.py")], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "val_bpb:" in done.stdout and "in the search" in done.stdout
    record = json.loads((out / "trial" / "record.json").read_text())
    assert record["status"] == "ok"
    noise = figures["noise"]["floor"]
    gap = abs(record["val_bpb"] - figures["val_bpb"])
    print(f"exported {figures['variant']}: val_bpb {record['val_bpb']:.6f} vs recorded {figures['val_bpb']:.6f} "
          f"(gap {gap:.6f}, the run's noise floor {noise:.4f})")
    assert gap < TOLERANCE
    assert "harness: the exported copy" in done.stdout


def test_pick_a_variant_by_name_and_by_memory(run, variants, tmp_path):
    out = tmp_path / "seed"
    done = cli("export", *run.where(), "pick=v0000", f"out={out}")
    assert done.returncode == 0, done.stderr
    assert (out / "seed.diff").read_text() == "" and json.loads((out / "figures.json").read_text())["runs"] == 2
    ok = [v for v in variants.values() if v["status"] == "ok"]
    limit = min(v["peak_mem_mb"] for v in ok)
    expected = min((v for v in ok if v["peak_mem_mb"] <= limit), key=lambda v: v["val_bpb"])["name"]
    done = cli("export", *run.where(), f"pick=pareto:{limit + 1e-6:.6f}", f"out={tmp_path / 'small'}")
    assert done.returncode == 0, done.stderr
    assert json.loads((tmp_path / "small" / "figures.json").read_text())["variant"] == expected


def test_branch_at_the_variant_commit(run, variants):
    head = git(run.repo, "rev-parse", "HEAD")
    done = cli("export", *run.where(), "pick=best", "branch=evo-best")
    assert done.returncode == 0, done.stderr
    best = min((v for v in variants.values() if v["status"] == "ok"), key=lambda v: v["val_bpb"])
    assert git(run.repo, "rev-parse", "evo-best").strip() == best["commit"]
    assert git(run.repo, "rev-parse", "HEAD") == head and git(run.repo, "status", "--porcelain") == ""
    again = cli("export", *run.where(), "pick=v0000", "branch=evo-best")
    assert again.returncode == 2 and "already exists" in again.stderr
    assert git(run.repo, "rev-parse", "evo-best").strip() == best["commit"]  # not moved


@pytest.mark.parametrize("args, message", [
    (["pick=v0999"], "no variant v0999"),
    (["pick=pareto:1"], "no ok variant has peak_mem_mb <= 1"),
    (["pick=fastest"], "pick=fastest is not understood"),
    ([], "export needs out=<dir>"),
])
def test_errors_are_one_line_and_exit_2(run, tmp_path, args, message):
    extra = [] if not args else [f"out={tmp_path / 'x'}"]
    done = cli("export", *run.where(), *args, *extra)
    assert done.returncode == 2 and message in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and not (tmp_path / "x").exists()


def test_unknown_run_and_an_occupied_out_dir(run, tmp_path):
    done = cli("export", "run.name=ghost", f"hydra.run.dir={run.outputs / 'ghost'}", f"out={tmp_path / 'g'}")
    assert done.returncode == 2 and "no run 'ghost'" in done.stderr and run.name in done.stderr
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("mine")
    done = cli("export", *run.where(), f"out={tmp_path / 'full'}")
    assert done.returncode == 2 and "not an empty directory" in done.stderr
    assert (tmp_path / "full" / "keep.txt").read_text() == "mine"
