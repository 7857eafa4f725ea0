"""Kill the search again and again, at every point where a crash could lose or duplicate work.

The real CLI (`python -m search run +population=3 experiment=cpu_smoke llm=none`) is SIGKILLed,
whole process group at once, first at each named failpoint (search/run/failpoints.py: after a
commit, after a queue write, before a trial starts, after a trial trained but before the study
heard, after the study heard but before the tag, in the middle of rewriting results.tsv, ...), then
at seeded random moments; each time the same command is run again (the run killed while refusing a
candidate alone has a scripted LLM, see REFUSING_LLM). At the end every trained variant
has exactly one result, one tag at its commit and one row in results.tsv; none is lost, none was
trained twice (one harness record per variant), and nothing waits or runs.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from openai_server import ScriptedOpenAIServer, answer
from search.record.data import SEED
from search.run.failpoints import POINTS
from search.run.scheduler import Scheduler
from support import ROOT, SHAKESPEARE, git

pytestmark = pytest.mark.slow

MAX_TRIALS = 9
NOISE_REPEATS = 2
# (failpoint, which pass of it in that process): each run is killed there, then resumed.
FAILPOINT_KILLS = [
    ("baseline-queued", 1),  # the first start, one seed repeat queued of two
    ("refusing", 1),  # a refused candidate, not yet recorded (this run alone has an LLM: REFUSING_LLM)
    ("training", 1),  # a trial taken, its process not started
    ("finishing", 1),  # trained, result not in the study: recovered from the trial directory
    ("finished", 1),  # result in the study, no tag yet
    ("proposed", 1),  # a candidate passed the guards, nothing of it stored
    ("committed", 1),  # a candidate's commit, no trial
    ("queued", 2),  # candidates waiting in the queue
    ("tagged", 1),  # tagged, results.tsv stale
    ("results-written", 1),  # the new results.tsv beside the old
]
RANDOM_KILLS = 2
# The run killed at `refusing` has an LLM (a resume may change the LLM, not the operator rates, which
# are part of the run's identity) whose every answer holds no edit: each candidate of the LLM's
# operators (mutation and crossover, 0.75 of the rates) is refused. That run comes second, with all
# seven children still to make, so that it draws none of them has a chance below 0.25 ** 7. (The
# other runs have no LLM; tuning and git merges make a refused candidate, a duplicate, only now and then.)
NO_EDIT = "I would lower the learning rate, but I will not write an edit."
REFUSING_LLM = ["llm=local", "llm.model=scripted", "llm.patch_retries=0"]


def _command(tmp_path: Path, repo: Path, max_trials: int = MAX_TRIALS) -> list[str]:
    return [sys.executable, "-m", "search", "run", "+population=3", "experiment=cpu_smoke", "llm=none",
            f"data.path={SHAKESPEARE}", f"data.cache_dir={tmp_path / 'cache'}", f"lineage.repo={repo}",
            "run.name=kills", f"hydra.run.dir={tmp_path / 'out'}", f"search.max_trials={max_trials}",
            f"search.noise_repeats={NOISE_REPEATS}", "search.preflight=false", "trial.budget_seconds=30",
            "trial.max_steps=3", "search.queue_size=2"]


def _run(cmd: list[str], failpoint: str | None = None, kill_after: float | None = None) -> tuple[int, str]:
    env = dict(os.environ, EVORESEARCH_NO_GPU_DEFAULT="1", OPENAI_API_KEY="")
    env.pop("EVORESEARCH_FAILPOINT", None)
    if failpoint:
        env["EVORESEARCH_FAILPOINT"] = failpoint
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=kill_after if kill_after is not None else 600)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the whole group, git children included
        out, _ = proc.communicate()
        return -signal.SIGKILL, out
    return proc.returncode, out


@pytest.fixture
def refusing_llm():
    """A scripted OpenAI-compatible server whose every answer holds no edit."""
    with ScriptedOpenAIServer(default=answer(NO_EDIT)) as server:
        yield server


def test_killed_at_every_point_and_at_random_it_resumes_and_loses_nothing(tmp_path, seed_repo, refusing_llm):
    if not SHAKESPEARE.exists():
        pytest.skip(f"{SHAKESPEARE} is missing")
    repo = seed_repo
    cmd = _command(tmp_path, repo)
    refusing = [a for a in cmd if a != "llm=none"] + REFUSING_LLM + [f"llm.base_url={refusing_llm.base_url}"]
    assert set(POINTS) == {point for point, _ in FAILPOINT_KILLS}, "a failpoint this test does not kill at"
    logs: list[str] = []  # each run's output, for the failure messages
    said: list[str] = []  # each run's whole output
    kills = 0
    for point, nth in FAILPOINT_KILLS:
        code, out = _run(refusing if point == "refusing" else cmd, failpoint=f"{point}:{nth}")
        logs.append(f"--- failpoint {point}:{nth} -> {code}\n{out[-3000:]}")
        said.append(out)
        assert code == -signal.SIGKILL and f"[failpoint] {point}" in out, "\n".join(logs[-2:])
        kills += 1
    rng = random.Random(7)
    for _ in range(RANDOM_KILLS):
        code, out = _run(cmd, kill_after=rng.uniform(4.0, 12.0))
        logs.append(f"--- random kill -> {code}\n{out[-3000:]}")
        said.append(out)
        kills += code == -signal.SIGKILL
    code, out = _run(cmd)
    logs.append(f"--- final run -> {code}\n{out[-3000:]}")
    assert code == 0, "\n".join(logs[-3:])
    assert kills >= len(FAILPOINT_KILLS) + 1
    assert "recovered the result of" in "\n".join(said + [out]), "the kill after training should be recovered, not retrained"

    rows = Scheduler(None, tmp_path / "out", "kills", create=False).trials()
    assert not [r for r in rows if r["state"] in ("WAITING", "RUNNING")], "\n".join(logs[-2:])
    trained = [r for r in rows if r.get("trained") and r.get("status") != "requeued"]
    assert len(trained) == MAX_TRIALS, [(r["number"], r.get("variant"), r.get("status")) for r in rows]
    per_variant: dict[str, list[dict]] = {}
    for r in trained:
        per_variant.setdefault(r["variant"], []).append(r)
    assert len(per_variant.pop(SEED)) == NOISE_REPEATS
    assert all(len(v) == 1 for v in per_variant.values()), {k: len(v) for k, v in per_variant.items()}

    # One tag per trained variant, at the commit the study names.
    tags = {}
    for line in git(repo, "for-each-ref", "--format=%(refname:short) %(*objectname)", "refs/tags/search/kills").split("\n"):
        if line:
            name, sha = line.split()
            tags[name.rsplit("/", 1)[1]] = sha
    assert set(tags) == {r["variant"] for r in trained}
    assert all(tags[r["variant"]] == r["commit"] for r in trained)

    # One results.tsv row per trained trial.
    lines = (tmp_path / "out" / "results.tsv").read_text().splitlines()
    header = lines[0].split("\t")
    described = [dict(zip(header, line.split("\t"))) for line in lines[1:]]
    assert sorted(d["commit"] for d in described if d["commit"]) == sorted(r["commit"][:7] for r in trained)

    # None trained twice: one completed harness record per trained variant over all trial directories.
    # The only excuse for a second is a random kill that fell between the harness writing its record
    # and the search reading it (the one-time token that proves a record died with the search): the
    # killed trial is then `requeued` and its directory holds no result.json.
    status = {r["number"]: r.get("status") for r in rows}
    records: dict[str, int] = {}
    for record in (tmp_path / "out" / "trials").glob("*/trial/record.json"):
        number, variant = record.parent.parent.name.split("-", 1)
        lost_in_flight = status.get(int(number)) == "requeued" and not (record.parent.parent / "result.json").exists()
        if not lost_in_flight:
            records[variant] = records.get(variant, 0) + 1
    assert records.pop(SEED) == NOISE_REPEATS
    assert all(n == 1 for n in records.values()), records
    assert not list((tmp_path / "out").glob("*.tmp"))
    print(json.dumps({"kills": kills, "trained": len(trained), "variants": len(per_variant) + 1}))


def test_a_full_disk_stops_the_run_with_a_clear_error_and_the_same_command_resumes_it(tmp_path, seed_repo):
    if not SHAKESPEARE.exists():
        pytest.skip(f"{SHAKESPEARE} is missing")
    cmd = _command(tmp_path, seed_repo, max_trials=3)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    full = out_dir / "results.tsv.tmp"
    full.symlink_to("/dev/full")  # every write there fails with ENOSPC, as on a full disk
    code, out = _run(cmd)
    assert code == 2, out[-3000:]
    assert "error: the run's files could not be written" in out and "No space left on device" in out
    assert "run the same command again" in out and "Traceback" not in out
    kept = [r for r in Scheduler(None, out_dir, "kills", create=False).trials() if r.get("trained")]
    assert kept, "the trial trained before the disk filled keeps its result"
    full.unlink()
    code, out = _run(cmd)
    assert code == 0 and "resuming run kills" in out, out[-3000:]
    rows = Scheduler(None, out_dir, "kills", create=False).trials()
    trained = [r for r in rows if r.get("trained") and r.get("status") != "requeued"]
    assert len(trained) == 3 and not [r for r in rows if r["state"] in ("WAITING", "RUNNING")]
    assert {r["number"] for r in kept} <= {r["number"] for r in trained}  # nothing trained before was redone
    assert len((out_dir / "results.tsv").read_text().splitlines()) == 1 + len(trained)


def _make_unwritable(path: Path) -> bool:
    if os.geteuid() != 0:
        path.chmod(0o500)
        return True
    return subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode == 0


def test_an_unwritable_output_directory_is_one_clear_line(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    if not _make_unwritable(locked):
        pytest.skip("cannot make a directory unwritable here (chattr +i refused)")
    try:
        env = dict(os.environ, EVORESEARCH_NO_GPU_DEFAULT="1", OPENAI_API_KEY="")
        done = subprocess.run([sys.executable, "-m", "search", "run", "experiment=cpu_smoke", "llm=none",
                               "run.name=x", f"hydra.run.dir={locked / 'x'}"], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=120)
    finally:
        if os.geteuid() == 0:
            subprocess.run(["chattr", "-i", str(locked)], capture_output=True)
        locked.chmod(0o700)
    assert done.returncode == 2
    assert done.stderr.startswith(f"error: the run directory {locked / 'x'} cannot be written")
    assert "Traceback" not in done.stderr and not (locked / "x").exists()
