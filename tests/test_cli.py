"""The real command line, as a user types it."""

import json
import os
import subprocess
import sys

import pytest

from search.cli import default_preset_overrides
from support import ROOT, SHAKESPEARE, VARIANTS, git, make_repo


def cli(*args, cwd=ROOT, timeout=300):
    env = dict(os.environ, EVORESEARCH_NO_GPU_DEFAULT="1")
    return subprocess.run([sys.executable, "-m", "search", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


def test_top_level_help_lists_commands():
    out = cli("--help")
    assert out.returncode == 0 and "trial" in out.stdout and "usage: python -m search" in out.stdout


def test_unknown_command_is_an_error_naming_the_commands():
    out = cli("bogus")
    assert out.returncode == 2 and "unknown command 'bogus'" in out.stderr and "trial" in out.stderr


def test_command_help_lists_groups_and_options():
    out = cli("trial", "--help")
    assert out.returncode == 0
    for word in ("data:", "shakespeare", "climbmix", "pydocs", "trial:", "smoke", "gpu", "cpu_smoke"):
        assert word in out.stdout


def test_cfg_job_shows_the_composed_experiment():
    out = cli("trial", "--cfg", "job", "experiment=cpu_smoke", "trial.budget_seconds=7")
    assert out.returncode == 0
    assert "name: smoke" in out.stdout and "budget_seconds: 7" in out.stdout and "source: shakespeare" in out.stdout


def test_misspelt_override_is_an_error_naming_the_key():
    out = cli("trial", "trial.budget_secs=7")
    assert out.returncode != 0 and "budget_secs" in out.stderr


def test_wrong_type_is_an_error():
    out = cli("trial", "trial.budget_seconds=soon")
    assert out.returncode != 0 and "budget_seconds" in out.stderr


def test_bad_tune_count_is_one_line_before_anything_runs(tmp_path):
    out = cli("run", "experiment=cpu_smoke", f"data.path={SHAKESPEARE}", "llm=none", "search.tune_count=0",
              f"hydra.run.dir={tmp_path / 'run'}", "run.name=bad")
    assert out.returncode == 2 and "search.tune_count=0" in out.stderr and "Traceback" not in out.stderr
    assert not (tmp_path / "run" / "study.db").exists()


def test_data_too_small_for_the_evaluation_is_one_line_before_anything_trains(tmp_path):
    """Caught after the data is prepared and before a trial starts: not after a whole budget of training
    (on the gpu preset, 5 minutes per trial, for every trial of a search)."""
    out = cli("trial", "experiment=cpu_smoke", f"data.path={SHAKESPEARE}", "trial.eval_tokens=50000000",
              f"hydra.run.dir={tmp_path / 'trial'}")
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
    assert "data shakespeare is too small for the smoke preset's evaluation: the val split has" in out.stderr
    assert "trial.eval_tokens=50,000,000 needs 781,250 rows. Lower trial.eval_tokens, raise data.val_fraction" in out.stderr
    assert not (tmp_path / "trial" / "trial").exists()  # no trial process was started
    out = cli("run", "experiment=cpu_smoke", f"data.path={SHAKESPEARE}", "llm=none", "trial.test_tokens=50000000",
              f"hydra.run.dir={tmp_path / 'run'}", "run.name=small")
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
    assert "the test split has" in out.stderr and "Lower trial.test_tokens, raise data.test_fraction" in out.stderr
    assert not (tmp_path / "run" / "study.db").exists()


def test_gpu_default_only_without_a_chosen_preset(monkeypatch):
    monkeypatch.delenv("EVORESEARCH_NO_GPU_DEFAULT", raising=False)
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert default_preset_overrides(["data=shakespeare"]) == ["data=shakespeare", "trial=gpu"]
    assert default_preset_overrides(["trial=cpu"]) == ["trial=cpu"]
    assert default_preset_overrides(["experiment=cpu_smoke"]) == ["experiment=cpu_smoke"]
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert default_preset_overrides([]) == []


@pytest.mark.slow
def test_trial_command_end_to_end_on_the_seed(tmp_path):
    if not SHAKESPEARE.exists():
        pytest.skip("no shared data")
    run_dir = tmp_path / "run"
    # 40 steps within a budget they never reach: what the seed learns does not depend on the machine's load.
    out = cli("trial", "experiment=cpu_smoke", f"data.path={SHAKESPEARE}", f"data.cache_dir={tmp_path / 'cache'}",
              f"hydra.run.dir={run_dir}", "trial.max_steps=40", "trial.budget_seconds=120")
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    summary = out.stdout[out.stdout.rindex("---"):]
    for key in ("val_bpb:", "test_bpb:", "peak_mem_mb:", "training_seconds:", "total_seconds:", "num_steps:",
                "num_params_M:", "tokens_M:"):
        assert key in summary
    record = json.loads((run_dir / "trial" / "record.json").read_text())
    assert record["status"] == "ok" and record["probe"]["passed"]
    assert record["val_bpb"] < 0.75 * record["uniform_bpb"] and record["num_steps"] == 40  # the seed learned
    assert "token" not in record


@pytest.mark.slow
def test_trial_of_a_commit(tmp_path):
    """trial.variant=<commit> trains the files of that commit, whatever the working tree holds."""
    if not SHAKESPEARE.exists():
        pytest.skip("no shared data")
    # the smoke preset's constants, so the preset applies to this variant too
    constants = "DEPTH = 1\nASPECT_RATIO = 64\nHEAD_DIM = 32\nTOTAL_BATCH_TOKENS = 1024\nDEVICE_BATCH_SIZE = 16\n"
    repo = make_repo(tmp_path / "repo", {"train/train.py": constants + (VARIANTS / "crash.py").read_text(),
                                         "model/gpt.py": (VARIANTS / "tiny_model.py").read_text()})
    sha = git(repo, "rev-parse", "HEAD").strip()
    (repo / "train" / "train.py").write_text("this working-tree file is not the commit's")
    run_dir = tmp_path / "run"
    out = cli("trial", "experiment=cpu_smoke", f"data.path={SHAKESPEARE}", f"data.cache_dir={tmp_path / 'cache'}",
              f"hydra.run.dir={run_dir}", f"trial.variant={sha}", cwd=repo)
    assert out.returncode == 1
    record = json.loads((run_dir / "trial" / "record.json").read_text())
    assert record["status"] == "crash" and "boom" in record["reason"]
    bad = cli("trial", "experiment=cpu_smoke", f"data.path={SHAKESPEARE}", f"data.cache_dir={tmp_path / 'cache'}",
              f"hydra.run.dir={run_dir}", "trial.variant=nosuchthing", cwd=repo)
    assert bad.returncode != 0 and "nosuchthing" in bad.stderr
