"""The search end to end: the real CLI on CPU against a scripted OpenAI-compatible server."""

import itertools
import json
import os
import subprocess
import sys

import pytest

from openai_server import ScriptedOpenAIServer, answer
from support import ROOT, SHAKESPEARE, git

pytestmark = pytest.mark.slow
SECRET = "sk-test-SECRET-0123456789abcdef"

# Edits that apply to the seed: each changes one constant to a value no other edit uses.
CONSTANT_EDITS = [("WARMDOWN_RATIO = 0.4", "WARMDOWN_RATIO = 0.5"), ("MATRIX_LR = 0.04", "MATRIX_LR = 0.05"),
                  ("EMBED_LR = 0.3", "EMBED_LR = 0.4"), ("UNEMBED_LR = 0.004", "UNEMBED_LR = 0.006"),
                  ("WEIGHT_DECAY = 0.1", "WEIGHT_DECAY = 0.05"), ("SOFTCAP = 15.0", "SOFTCAP = 20.0"),
                  ("FINAL_LR_FRAC = 0.0", "FINAL_LR_FRAC = 0.1"), ("ADAM_BETA1 = 0.8", "ADAM_BETA1 = 0.85")]


def edit(path, search, replace, description):
    """A SEARCH/REPLACE answer that swaps `search` for `replace` within the seed line holding it."""
    seed = (ROOT / path).read_text() if (ROOT / path).exists() else search + "\n"
    line = next(line for line in seed.splitlines() if search in line)
    return (f"DESCRIPTION: {description}\n\nThe idea in one line.\n\n{path}\n<<<<<<< SEARCH\n{line}\n=======\n"
            f"{line.replace(search, replace)}\n>>>>>>> REPLACE\n")


def scripted_answers():
    """Valid edits, with bad answers given twice in a row (one patch retry, then the refusal):
    a malformed answer, an edit outside the surface, and (once) a look-ahead model."""
    valid = itertools.cycle(CONSTANT_EDITS)
    malformed = "I think the learning rate could be higher, but I will not write an edit."
    outside = edit("eval/metric.py", "import math", "import math  # harmless?", "touch the harness")
    lookahead = edit("model/gpt.py", "is_causal=True)", "is_causal=False)", "bidirectional attention")
    pattern = ["V", "M", "M", "V", "O", "O", "V", "L"]
    for i in itertools.count():
        kind = pattern[i] if i < len(pattern) else "V"
        if kind == "V":
            search, replace = next(valid)
            yield edit("train/train.py", search, replace, f"set {replace}")
        else:
            yield {"M": malformed, "O": outside, "L": lookahead}[kind]


def search_cmd(tmp_path, repo, name, *extra):
    if not SHAKESPEARE.exists():
        pytest.skip("no shared data")
    return [sys.executable, "-m", "search", "run", "experiment=cpu_smoke", f"data.path={SHAKESPEARE}",
            f"data.cache_dir={tmp_path / 'cache'}", f"lineage.repo={repo}", f"run.name={name}",
            f"hydra.run.dir={tmp_path / 'outputs' / name}", "trial.budget_seconds=1", "search.noise_repeats=2",
            *extra]


def run_search(tmp_path, repo, name, *extra, timeout=600, api_key=""):
    env = dict(os.environ, EVORESEARCH_NO_GPU_DEFAULT="1", OPENAI_API_KEY=api_key)
    out = subprocess.run(search_cmd(tmp_path, repo, name, *extra), capture_output=True, text=True, timeout=timeout,
                         env=env, cwd=ROOT)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-4000:]
    return out.stdout


def read_results(tmp_path, name):
    lines = (tmp_path / "outputs" / name / "results.tsv").read_text().splitlines()
    header = lines[0].split("\t")
    assert header[:5] == ["commit", "val_bpb", "memory_gb", "status", "description"]
    return [dict(zip(header, line.split("\t"))) for line in lines[1:]]


def study_trials(tmp_path, name):
    import optuna

    study = optuna.load_study(study_name=name, storage=f"sqlite:///{tmp_path / 'outputs' / name / 'study.db'}")
    return study


def test_population_search_with_a_scripted_llm(tmp_path, seed_repo):
    head = git(seed_repo, "rev-parse", "HEAD")
    answers = scripted_answers()
    with ScriptedOpenAIServer(lambda body: answer(next(answers))) as server:
        out = run_search(tmp_path, seed_repo, "pop", "+population=4", f"llm.base_url={server.base_url}",
                         "llm.model=scripted", "llm.patch_retries=1", "search.max_trials=7", "search.rates.merge=0",
                         "search.rates.tune=0", api_key=SECRET)
        retried = [r for r in server.chat_requests() if any(m["role"] == "assistant" for m in r.json["messages"])]
    assert "LLM: scripted" in out
    rows = read_results(tmp_path, "pop")
    statuses = [r["status"] for r in rows]
    assert sum(1 for r in rows if r["variant"]) == 7  # the trial budget, baseline repeats included
    assert statuses.count("ok") >= 4
    reasons = " ".join(r["reason"] for r in rows)
    assert "outside_surface" in reasons and "eval/metric.py" in reasons  # the harness edit, refused
    assert "no_edit" in reasons  # the answer without an edit, refused after its retry
    assert "looks ahead" in reasons  # the bidirectional model, rejected by the probe
    assert retried and "eval/metric.py" in retried[-1].json["messages"][-1]["content"]  # the error went back
    study = study_trials(tmp_path, "pop")
    assert study.best_trials and all(t.values[0] > 0 for t in study.best_trials)
    tags = git(seed_repo, "tag", "-l", "search/pop/*").split()
    trained = {r["variant"] for r in rows if r["variant"]}
    assert {t.rsplit("/", 1)[1] for t in tags} == trained
    figures = json.loads(git(seed_repo, "tag", "-l", "--format=%(contents)", "search/pop/v0000").strip())
    assert figures["status"] == "ok" and figures["runs"] == 2 and figures["val_bpb"] > 0
    # the user's branch, HEAD and working tree are untouched
    assert git(seed_repo, "rev-parse", "HEAD") == head and git(seed_repo, "status", "--porcelain") == ""
    assert "=== run pop ===" in out and "front (" in out
    assert len(list((tmp_path / "outputs" / "pop" / "llm").glob("*.json"))) >= 4
    # The API key reached the server and nothing else: no output file, study, commit, tag or log holds it.
    assert server.chat_requests()[0].headers["authorization"] == f"Bearer {SECRET}"
    assert SECRET not in out
    for path in (tmp_path / "outputs").rglob("*"):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path
    assert SECRET not in git(seed_repo, "log", "--all", "-p") + git(seed_repo, "tag", "-l", "-n99")


def test_single_lineage_keeps_only_improvements(tmp_path, seed_repo):
    from search.record.runs import load_run

    answers = scripted_answers()
    with ScriptedOpenAIServer(lambda body: answer(next(answers))) as server:
        # Without overlap each candidate is made once every trial before it has ended: the best kept
        # variant when it was made is the best kept among the trials numbered before it.
        run_search(tmp_path, seed_repo, "single", f"llm.base_url={server.base_url}", "llm.model=scripted",
                   "search.max_trials=5", "search.preflight=false", "search.overlap=false")
    rows = read_results(tmp_path, "single")
    decided = [r for r in rows if r["kept"]]
    assert decided and all(r["kept"] in ("keep", "discard") for r in decided)
    assert all(r["operator"] in ("seed", "mutation", "tune") for r in rows)
    verdict = {r["trial"]: r["kept"] for r in rows}

    run = load_run(tmp_path / "outputs" / "single", "single")
    floor = run.attrs["noise"]["floor"]
    assert floor > 0
    trials = sorted((t for t in run.trials if t.get("status")), key=lambda t: t["number"])
    seed_runs = [t for t in trials if t["operator"] == "seed"]
    assert trials[:2] == seed_runs and all(t["status"] == "ok" for t in seed_runs)
    best, best_bpb = "v0000", sum(t["val_bpb"] for t in seed_runs) / len(seed_runs)  # the seed is kept
    children = 0
    for t in trials[2:]:  # children, and refused candidates, in the order they were made
        assert t["parent_names"] == [best], (t["number"], t["parent_names"], best)  # one lineage: from the best
        if not t.get("variant"):
            continue  # refused: never trained, never decided
        children += 1
        beats = t["status"] == "ok" and t["val_bpb"] < best_bpb - floor
        assert t["kept"] is beats, (t["variant"], t["status"], t.get("val_bpb"), best, best_bpb, floor)
        assert verdict[str(t["number"])] == ("keep" if beats else "discard")
        if beats:
            best, best_bpb = t["variant"], t["val_bpb"]
    assert children == 3  # the trial budget less the seed's two repeats


def test_no_llm_uses_tuning_and_still_runs(tmp_path, seed_repo):
    out = run_search(tmp_path, seed_repo, "nollm", "+population=3", "search.max_trials=4", "search.preflight=false")
    assert "no LLM" in out
    rows = read_results(tmp_path, "nollm")
    ops = {r["operator"] for r in rows if r["variant"]}
    assert ops <= {"seed", "tune", "merge"} and "tune" in ops
    assert sum(1 for r in rows if r["variant"]) == 4
