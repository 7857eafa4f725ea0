"""Several machines: one producer and two workers share a PostgreSQL study and a git remote.

Real processes of the real CLI: `python -m search run ... scheduler.workers=0` produces, two
`python -m search worker` processes (each with its own clone of the remote) train; one worker is
killed in the middle of a trial, and its trial is trained again by the other. The server is a real
PostgreSQL on 127.0.0.1 (tests/pgserver.py).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading

import pytest

from pgserver import start_postgres
from support import ROOT, SHAKESPEARE, git, processes_in, wait_until
from search.run.liveness import worker_process
from search.record.data import SEED
from search.run.scheduler import Scheduler

pytestmark = pytest.mark.slow

MAX_TRIALS = 5
NOISE_REPEATS = 2


@pytest.fixture(scope="module")
def postgres():
    server = start_postgres()
    yield server
    server.stop()


class Proc:
    """A CLI process whose output is collected line by line as it comes."""

    def __init__(self, args: list[str], name: str):
        env = dict(os.environ, EVORESEARCH_NO_GPU_DEFAULT="1", OPENAI_API_KEY="", PYTHONUNBUFFERED="1")
        self.name = name
        self.lines: list[str] = []
        self.proc = subprocess.Popen([sys.executable, "-m", "search", *args], cwd=ROOT, env=env, text=True,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line)

    def wait_for(self, text: str, timeout: float) -> None:
        """Until a line of the output holds `text`; fails at the deadline, or as soon as the process
        has closed its output (ended) without printing one."""
        def printed() -> bool:
            return any(text in line for line in self.lines) or not self.reader.is_alive()

        try:
            wait_until(printed, timeout, interval=0.1)
        except AssertionError:
            pass
        if not any(text in line for line in self.lines):
            raise AssertionError(f"{self.name} never printed {text!r}:\n{self.output()[-4000:]}")

    def output(self) -> str:
        return "".join(self.lines)

    def kill(self) -> None:
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)


def test_a_producer_and_two_workers_lose_nothing_when_a_worker_dies(postgres, tmp_path, seed_repo):
    if not SHAKESPEARE.exists():
        pytest.skip(f"{SHAKESPEARE} is missing")
    seed = seed_repo
    remote = tmp_path / "remote.git"
    git(tmp_path, "clone", "-q", "--bare", str(seed), str(remote))
    clones = []
    for w in ("w1", "w2"):
        git(tmp_path, "clone", "-q", str(remote), str(tmp_path / w))
        clones.append(tmp_path / w)
    shared = ["run.name=dist", f"storage.url={postgres.url}", f"lineage.remote={remote}",
              "scheduler.heartbeat_seconds=1", "scheduler.stale_after_seconds=30"]
    data = [f"data.path={SHAKESPEARE}", f"data.cache_dir={tmp_path / 'cache'}"]
    producer = Proc(["run", *shared, *data, "experiment=cpu_smoke", "llm=none", "scheduler.workers=0",
                     f"search.max_trials={MAX_TRIALS}", f"search.noise_repeats={NOISE_REPEATS}",
                     "trial.budget_seconds=30", "trial.max_steps=4", "search.preflight=false", f"lineage.repo={seed}",
                     f"hydra.run.dir={tmp_path / 'out-producer'}"], "producer")
    workers = []
    try:
        producer.wait_for("[search] run dist:", timeout=300)
        for i, clone in enumerate(clones):
            workers.append(Proc(["worker", *shared, *data, f"lineage.repo={clone}",
                                 f"hydra.run.dir={tmp_path / f'out-w{i + 1}'}"], f"worker {i + 1}"))
        doomed = workers[0]
        doomed.wait_for("[search] training", timeout=300)
        # Killed inside its trial process: the process runs in the worker's trial directory.
        wait_until(lambda: any(processes_in(d) for d in (tmp_path / "out-w1" / "trials").glob("*/trial")),
                   timeout=120, what="worker 1's trial process starting")
        doomed.kill()
        survivor = workers[1]
        assert producer.proc.wait(timeout=300) == 0, producer.output()[-4000:]
        assert survivor.proc.wait(timeout=120) == 0, survivor.output()[-4000:]
    except BaseException:
        for p in [producer, *workers]:
            print(f"===== {p.name} =====\n{p.output()[-6000:]}")
        raise
    finally:
        for p in [producer, *workers]:
            if p.proc.poll() is None:
                p.kill()

    rows = Scheduler(postgres.url, tmp_path, "dist", create=False).trials()
    assert not [r for r in rows if r["state"] in ("WAITING", "RUNNING")]
    pid = {doomed.proc.pid: "doomed", survivor.proc.pid: "survivor"}
    who = {r["number"]: pid.get((worker_process(r.get("worker")) or ("", 0))[1]) for r in rows}
    # The trial the killed worker was training was re-queued and trained by the survivor.
    lost = [r for r in rows if r.get("status") == "requeued"]
    assert lost and all(who[r["number"]] == "doomed" for r in lost), rows
    for r in lost:
        again = [t for t in rows if t.get("requeued_from") == r["number"]]
        assert len(again) == 1 and again[0].get("trained") and who[again[0]["number"]] == "survivor", again
    # Every variant trained exactly once (the seed once per noise repeat); none lost, none twice.
    trained = [r for r in rows if r.get("trained") and r.get("status") != "requeued"]
    assert len(trained) == MAX_TRIALS, [(r["number"], r.get("variant"), r.get("status")) for r in rows]
    per_variant: dict[str, int] = {}
    for r in trained:
        per_variant[r["variant"]] = per_variant.get(r["variant"], 0) + 1
    assert per_variant.pop(SEED) == NOISE_REPEATS
    assert set(per_variant.values()) == {1}
    assert {who[r["number"]] for r in trained} <= {"doomed", "survivor"}
    assert "survivor" in {who[r["number"]] for r in trained}
    # Each trained variant's tag reached the shared remote, at the commit the study names.
    listed = git(tmp_path, "ls-remote", str(remote), "refs/tags/search/dist/*")
    tagged = {line.split("/")[-1].removesuffix("^{}") for line in listed.splitlines()}
    names = {r["variant"] for r in trained}
    assert names <= tagged, (names, tagged)
    # The producer said it produced only, and each worker said what it trained.
    assert "producing only" in producer.output()
    assert "[worker] run dist is over" in survivor.output()
