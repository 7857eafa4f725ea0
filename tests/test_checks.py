"""Mistakes caught before anything is written: unknown settings and options (with a suggestion),
run names, values out of range, a resume with other settings, a seed with uncommitted edits."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace

import pytest

from search.cli import command_problem
from search.config import OPERATOR_NAMES, UserError, check_run_name, check_values, load_config, run_identity
from search.operators import OPERATORS
from search.run.loop import IDENTITY_FILE, SearchRun
from support import EDITABLE, ROOT, SHAKESPEARE, git, make_repo

BAD_COMMANDS = [
    (["+trial.budget_secnds=5"], "unknown setting 'trial.budget_secnds' (did you mean trial.budget_seconds?)"),
    (["trial.budget_secnds=5"], "did you mean trial.budget_seconds?"),
    (["trial=cpux"], "there is no trial option 'cpux' (did you mean trial=cpu?)"),
    (["llm=nonee"], "did you mean llm=none?"),
    (["search.rates.mutate=1"], "there is no operator 'mutate' (did you mean search.rates.mutation?)"),
    (["trial.budget_seconds=-1"], "trial.budget_seconds=-1.0 must be positive"),
    (["trial.budget_seconds=abc"], "could not be converted to Float"),
    (["population=0"], "population=0 must be a positive integer"),
    (["data.val_fraction=0.99"], "must each be in [0, 1) and leave a training share"),
    (["search.noise_repeats=0"], "search.noise_repeats=0 must be at least 1"),
    (["run.name=../escape"], "holds a path separator"),
    (["run.name=a/b"], "holds a path separator"),
    (["run.name="], "is empty"),
    (["run.name=my run"], "holds whitespace"),
]


@pytest.mark.parametrize("overrides,message", BAD_COMMANDS, ids=[o[0] for o, _ in BAD_COMMANDS])
def test_a_bad_command_is_named_before_anything_is_written(overrides, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    problem = command_problem(overrides)
    assert problem is not None and message in problem, problem
    assert list(tmp_path.iterdir()) == []


def test_a_sweep_or_a_printed_config_is_checked_too(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert "(did you mean trial=smoke?)" in command_problem(["-m", "trial=cpu,smok"])
    assert "did you mean trial.budget_seconds?" in command_problem(["--cfg", "job", "trial.budget_secnds=3"])
    assert command_problem(["-m", "trial=cpu,smoke", "search.seed=0,1"]) is None


def test_good_commands_pass_the_checks(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert command_problem(["experiment=cpu_smoke", "run.name=fine", "+population=4", "search.rates.tune=0.5"]) is None
    assert command_problem(["--help"]) is None  # Hydra's own


def test_the_cli_exits_2_with_one_line_and_writes_nothing(tmp_path):
    env = dict(os.environ, EVORESEARCH_NO_GPU_DEFAULT="1", PYTHONPATH=str(ROOT))
    for args in (["run", "+trial.budget_secnds=5"], ["trial", "run.name=../escape2"]):
        out = subprocess.run([sys.executable, "-m", "search", *args], cwd=tmp_path, env=env, capture_output=True,
                             text=True, timeout=120)
        assert out.returncode == 2, out.stderr
        assert out.stderr.startswith("error: ") and len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert list(tmp_path.iterdir()) == [] and not (tmp_path.parent / "escape2").exists()


def test_run_names_that_are_plain_directory_names_pass():
    for name in ("my-run", "2026-12-02_10-00-00", "a.b_c"):
        check_run_name(name)
    with pytest.raises(UserError, match="starts with a dot"):
        check_run_name(".hidden")


def test_the_schema_knows_every_operator():
    assert set(OPERATOR_NAMES) == set(OPERATORS)
    check_values(load_config({"run": {"name": "x"}}))


def _conf(repo, run_dir, **over):
    values = {"run": {"name": run_dir.name}, "editable": EDITABLE, "lineage": {"repo": str(repo)},
              "search": {"max_trials": 2}} | over
    return load_config(values)


def test_a_resume_with_other_settings_is_refused_naming_them(tmp_path):
    repo = make_repo(tmp_path / "repo")
    run_dir = tmp_path / "outputs" / "r"
    run_dir.mkdir(parents=True)
    first = _conf(repo, run_dir)
    (run_dir / "config.json").write_text(json.dumps({"run": {"name": "r"}, "editable": EDITABLE,
                                                     "lineage": {"repo": str(repo)}}))
    (run_dir / IDENTITY_FILE).write_text(json.dumps(run_identity(first, (ROOT / "conf/program.md").read_text())))
    before = {p.name: p.read_text() for p in run_dir.iterdir()}
    other = replace(first, population=8, trial=replace(first.trial, budget_seconds=3.0))
    with pytest.raises(UserError) as err:
        SearchRun.open(other, run_dir, out=open(os.devnull, "w"))
    assert "population: None -> 8" in str(err.value) and "trial.budget_seconds: 60.0 -> 3.0" in str(err.value)
    assert "another run.name" in str(err.value)
    assert {p.name: p.read_text() for p in run_dir.iterdir()} == before  # nothing written


def test_a_run_made_before_identities_were_saved_is_checked_against_its_config(tmp_path):
    repo = make_repo(tmp_path / "repo")
    run_dir = tmp_path / "outputs" / "old"
    run_dir.mkdir(parents=True)
    old = _conf(repo, run_dir, data={"path": "/data/a.txt", "source": "shakespeare"})
    (run_dir / "config.json").write_text(json.dumps({"run": {"name": "old"}, "editable": EDITABLE,
                                                     "lineage": {"repo": str(repo)},
                                                     "data": {"path": "/data/a.txt", "source": "shakespeare"}}))
    moved = replace(old, data=replace(old.data, path="/data/b.txt"))
    with pytest.raises(UserError, match=r"data.path: '/data/a.txt' -> '/data/b.txt'"):
        SearchRun.open(moved, run_dir, out=open(os.devnull, "w"))
    assert not (run_dir / IDENTITY_FILE).exists()


def test_a_seed_with_uncommitted_edits_is_refused_unless_allowed(tmp_path):
    repo = make_repo(tmp_path / "repo")
    (repo / "train" / "train.py").write_text((repo / "train" / "train.py").read_text() + "\n# an edit\n")
    run_dir = tmp_path / "outputs" / "dirty"
    seed = git(repo, "rev-parse", "HEAD").strip()
    with pytest.raises(UserError, match=rf"the seed is HEAD \({seed[:12]}\).*train/train.py has uncommitted edits"
                                        r".*lineage.allow_dirty=true"):
        SearchRun.open(_conf(repo, run_dir), run_dir, out=open(os.devnull, "w"))
    assert not run_dir.exists()


def test_a_failed_command_leaves_no_run_directory_and_no_cache_entry(tmp_path):
    env = dict(os.environ, EVORESEARCH_NO_GPU_DEFAULT="1", PYTHONPATH=str(ROOT))
    cache = tmp_path / "cache"
    out = subprocess.run([sys.executable, "-m", "search", "trial", "experiment=cpu_smoke", "run.name=missing",
                          f"data.path={tmp_path / 'no-such.txt'}", f"data.cache_dir={cache}"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "does not exist" in out.stderr, out.stderr
    assert not (tmp_path / "outputs" / "missing").exists()
    assert list((cache / "prepared").iterdir()) == []
    repo = make_repo(tmp_path / "repo")
    out = subprocess.run([sys.executable, "-m", "search", "run", "experiment=cpu_smoke", "llm=none", "run.name=gone",
                          f"lineage.repo={repo}", f"data.path={tmp_path / 'no-such.txt'}", f"data.cache_dir={cache}"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "does not exist" in out.stderr, out.stderr
    assert not (tmp_path / "outputs" / "gone").exists()  # no config.json, identity or study to resume


def test_a_commands_help_says_what_the_command_does_then_lists_the_groups(tmp_path):
    env = dict(os.environ, EVORESEARCH_NO_GPU_DEFAULT="1", PYTHONPATH=str(ROOT))
    out = subprocess.run([sys.executable, "-m", "search", "trial", "--help"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    first, rest = out.stdout.split("\n", 1)
    assert first.startswith("python -m search trial: train one variant") and "fixed budget" in first
    assert "trial: cpu, gpu, smoke" in rest and list(tmp_path.iterdir()) == []


def test_hydras_refusal_of_its_own_flags_is_one_line_and_exit_2(tmp_path):
    env = dict(os.environ, EVORESEARCH_NO_GPU_DEFAULT="1", PYTHONPATH=str(ROOT))
    out = subprocess.run([sys.executable, "-m", "search", "run", "-m", "search.seed=0,1", "--cfg", "job"], cwd=tmp_path,
                         env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and out.stderr.strip().splitlines() == [
        "error: Only one of --run, --multirun, --cfg, --info and --shell_completion can be specified"], out.stderr


@pytest.mark.slow
def test_the_runs_log_file_holds_its_lines_and_the_console_no_library_logs(tmp_path):
    repo = make_repo(tmp_path / "repo")
    env = dict(os.environ, EVORESEARCH_NO_GPU_DEFAULT="1", PYTHONPATH=str(ROOT), OPENAI_API_KEY="")
    out = subprocess.run([sys.executable, "-m", "search", "run", "experiment=cpu_smoke", "llm=none", "run.name=logged",
                          f"lineage.repo={repo}", f"data.path={SHAKESPEARE}", f"data.cache_dir={tmp_path / 'cache'}",
                          "search.max_trials=1", "search.noise_repeats=1", "trial.max_steps=1"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    log = (tmp_path / "outputs" / "logged" / "run.log").read_text()
    for line in ("[search] run logged: single lineage", "[search] v0000 ok: val_bpb", "=== run logged ==="):
        assert line in out.stdout and line in log
    assert "[INFO]" not in out.stdout  # the console has the run's lines only


def test_report_and_export_check_their_overrides_too():
    from search.cli import compose_run_config

    with pytest.raises(UserError, match=r"unknown setting 'pik' \(did you mean pick\?\)"):
        compose_run_config(["run.name=r", "pik=best"])
