"""The scheduler's contract, run over SQLite and the journal file (real Optuna storages, tmp_path)."""

from __future__ import annotations

import math
import multiprocessing

import optuna
import pytest

from search.record.data import live_trials
from search.run.scheduler import REASON_MAX_CHARS, Scheduler, SchedulerError, Tuner, storage_url

STORAGES = ["sqlite", "journal"]


class Clock:
    """Epoch seconds that move only when a test says so."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now



def front_of(sched: Scheduler) -> list[dict]:
    """The study's Pareto front (`study.best_trials`) as trial rows, by number."""
    numbers = sorted(t.number for t in sched.study.best_trials)
    rows = {r["number"]: r for r in sched.trials()}
    return [rows[n] for n in numbers]


def live_hashes(sched: Scheduler) -> set[str]:
    """The content hashes the guards treat as taken: every trial's but the re-queued attempts'."""
    return {t["content_hash"] for t in live_trials(sched.trials()) if t.get("content_hash")}

def candidate(i: int, **over) -> dict:
    attrs = {
        "commit": f"{i:040x}",
        "parents": [f"{i - 1:040x}"] if i else [],
        "operator": "mutate",
        "description": f"candidate {i}",
        "content_hash": f"hash{i}",
        "variant": f"v{i:04d}",
    }
    attrs.update(over)
    return attrs


@pytest.fixture(params=STORAGES)
def open_scheduler(request, tmp_path):
    """A function opening (or re-opening) the same study, as a new process would."""
    url = None if request.param == "sqlite" else "journal:study.journal"

    def open_(clock=None):
        return Scheduler(url, tmp_path / "run", "run-1", clock=clock or Clock())

    return open_


def by_number(sched: Scheduler) -> dict[int, dict]:
    return {row["number"]: row for row in sched.trials()}


# --- storage_url

def test_storage_url_default_is_sqlite_in_the_run_dir(tmp_path):
    assert storage_url(None, tmp_path) == f"sqlite:///{tmp_path.resolve()}/study.db"


def test_storage_url_journal_relative_to_run_dir_and_databases_pass_through(tmp_path):
    assert storage_url("journal:j.log", tmp_path) == f"journal:{tmp_path.resolve()}/j.log"
    assert storage_url("journal:/abs/j.log", tmp_path) == "journal:/abs/j.log"
    pg = "postgresql://me@db.example/search"
    assert storage_url(pg, tmp_path) == pg


@pytest.mark.parametrize("bad", ["journal:", "study.db"])
def test_storage_url_rejects_what_it_cannot_open(tmp_path, bad):
    with pytest.raises(ValueError, match="journal"):
        storage_url(bad, tmp_path)


def test_default_storage_writes_the_sqlite_file(tmp_path):
    Scheduler(None, tmp_path / "run", "run-1")
    assert (tmp_path / "run" / "study.db").is_file()


# --- queue and outcomes

def test_enqueue_take_finish_ok_is_recorded(open_scheduler):
    clock = Clock()
    sched = open_scheduler(clock)
    sched.enqueue(candidate(0))
    sched.enqueue(candidate(1))
    assert [a["variant"] for a in sched.waiting()] == ["v0000", "v0001"]
    assert sched.waiting()[0] == candidate(0)

    taken = sched.take("gpu0")
    assert taken.number == 0
    assert taken.attrs == {**candidate(0), "worker": "gpu0", "started_at": clock.now}
    assert [a["variant"] for a in sched.waiting()] == ["v0001"]

    clock.now += 300
    sched.finish(taken, "ok", (1.25, 2048.0), {"test_bpb": 1.3, "training_seconds": 299.5,
                                               "reason": ""})
    row = by_number(sched)[0]
    assert row["state"] == "COMPLETE"
    assert row["values"] == [1.25, 2048.0]
    assert row["status"] == "ok"
    assert row["finished_at"] == clock.now
    assert row["started_at"] == clock.now - 300
    assert row["test_bpb"] == 1.3 and row["training_seconds"] == 299.5
    assert row["commit"] == candidate(0)["commit"] and row["parents"] == []
    assert row["datetime_start"] is not None and row["datetime_complete"] is not None
    assert by_number(sched)[1]["state"] == "WAITING"
    assert [b["number"] for b in front_of(sched)] == [0]
    assert sched.study.metric_names == ["val_bpb", "peak_mem_mb"]


def test_unsuccessful_outcomes_have_their_states(open_scheduler):
    outcomes = {"crash": "FAIL", "timeout": "FAIL", "diverged": "FAIL", "rejected": "FAIL",
                "stopped": "PRUNED"}
    sched = open_scheduler()
    for i in range(len(outcomes)):
        sched.enqueue(candidate(i))
    for status in outcomes:
        sched.finish(sched.take("w"), status, None, {"reason": "x" * 4999 + "!",
                                                     "val_bpb": math.nan, "losses": [1.0, math.inf]})
    rows = sched.trials()
    assert [(r["state"], r["status"]) for r in rows] == list(zip(outcomes.values(), outcomes))
    for row in rows:
        assert row["values"] is None
        assert len(row["reason"]) == REASON_MAX_CHARS and row["reason"].endswith("x!")
        assert row["val_bpb"] is None
        assert row["losses"] == [1.0, None]
    assert front_of(sched) == []


def test_take_on_an_empty_queue_creates_no_trial(open_scheduler):
    sched = open_scheduler()
    assert sched.take("w") is None
    assert sched.trials() == [] and len(sched.study.trials) == 0

    sched.enqueue(candidate(0))
    sched.finish(sched.take("w"), "crash", None, {})
    assert sched.take("w") is None
    assert len(sched.study.trials) == 1


def test_take_only_what_the_worker_accepts(open_scheduler):
    sched = open_scheduler()
    sched.enqueue(candidate(0))
    sched.enqueue(candidate(1, operator="ablation"))
    taken = sched.take("w", accept=lambda attrs: attrs["operator"] == "ablation")
    assert taken is not None and taken.number == 1
    assert sched.take("w", accept=lambda attrs: attrs["operator"] == "ablation") is None
    assert sched.take("w").number == 0  # the one left waiting, for any worker


def test_two_workers_on_one_study_take_distinct_trials(open_scheduler):
    producer, a, b = open_scheduler(), open_scheduler(), open_scheduler()
    for i in range(3):
        producer.enqueue(candidate(i))
    taken_a, taken_b = a.take("a"), b.take("b")
    assert {taken_a.number, taken_b.number} == {0, 1}
    taken_a2 = a.take("a")
    assert taken_a2.number == 2
    assert b.take("b") is None

    b.finish(taken_b, "ok", (1.0, 10.0), {})
    a.finish(taken_a, "crash", None, {"reason": "boom"})
    a.finish(taken_a2, "stopped", None, {})
    rows = by_number(producer)
    assert rows[taken_b.number]["worker"] == "b"
    assert rows[taken_a.number]["worker"] == "a"
    assert rows[taken_b.number]["state"] == "COMPLETE"
    assert rows[taken_a.number]["state"] == "FAIL" and rows[taken_a.number]["reason"] == "boom"
    assert rows[2]["state"] == "PRUNED"
    assert len(producer.study.trials) == 3


def test_requeue_after_a_killed_worker(open_scheduler):
    clock = Clock()
    worker = open_scheduler(clock)
    worker.enqueue(candidate(0))
    worker.enqueue(candidate(1))
    worker.take("gpu0")
    del worker  # SIGKILL mid-trial: nothing finished, nothing closed

    clock.now += 3600
    resumed = open_scheduler(clock)
    assert [r["state"] for r in resumed.trials()] == ["RUNNING", "WAITING"]
    assert resumed.requeue_stale(lambda row: False) == []

    seen = []

    def stale(row):
        seen.append(row)
        return clock.now - row["started_at"] > 600

    assert resumed.requeue_stale(stale) == [0]
    assert [r["number"] for r in seen] == [0] and seen[0]["worker"] == "gpu0"
    rows = by_number(resumed)
    assert rows[0]["state"] == "FAIL" and rows[0]["status"] == "requeued"
    assert resumed.waiting() == [candidate(1), {**candidate(0), "requeued_from": 0}]
    assert resumed.requeue_stale(lambda row: True) == []  # nothing RUNNING any more
    assert len(resumed.trials()) == 3

    taken = resumed.take("gpu1")
    assert taken.number == 1
    assert taken.attrs["worker"] == "gpu1"


def test_requeued_trial_cannot_be_finished_by_its_old_worker(open_scheduler):
    worker = open_scheduler()
    worker.enqueue(candidate(0))
    taken = worker.take("gpu0")
    coordinator = open_scheduler()
    assert coordinator.requeue_stale(lambda row: True) == [0]
    with pytest.raises(SchedulerError, match="trial 0 was already finished"):
        worker.finish(taken, "ok", (1.0, 1.0), {})
    assert by_number(coordinator)[0]["status"] == "requeued"
    assert len(coordinator.waiting()) == 1


def test_live_hashes_cover_every_live_or_finished_trial(open_scheduler):
    sched = open_scheduler()
    for i in range(5):
        sched.enqueue(candidate(i))
    sched.finish(sched.take("w"), "ok", (1.0, 1.0), {})
    sched.finish(sched.take("w"), "crash", None, {})
    sched.finish(sched.take("w"), "stopped", None, {})
    sched.take("w")  # hash3 running, hash4 waiting
    assert live_hashes(sched) == {f"hash{i}" for i in range(5)}


def test_a_requeued_trial_counts_through_its_copy_only(open_scheduler):
    sched = open_scheduler()
    sched.enqueue(candidate(0))
    sched.take("w")
    sched.requeue_stale(lambda row: True)
    copy = sched.take("w")
    assert copy.attrs["requeued_from"] == 0
    sched.finish(copy, "crash", None, {})
    assert live_hashes(sched) == {"hash0"}
    states = [(r["state"], r["status"]) for r in sched.trials()]
    assert states == [("FAIL", "requeued"), ("FAIL", "crash")]


# --- validation

def test_non_json_attribute_is_refused_by_name(open_scheduler):
    sched = open_scheduler()
    with pytest.raises(ValueError, match="'description'"):
        sched.enqueue(candidate(0, description=object()))
    with pytest.raises(ValueError, match="'parents'"):
        sched.enqueue(candidate(0, parents={"a", "b"}))
    with pytest.raises(ValueError, match="content_hash"):
        sched.enqueue({k: v for k, v in candidate(0).items() if k != "content_hash"})
    with pytest.raises(ValueError, match="worker"):
        sched.enqueue(candidate(0, worker="w"))
    assert sched.trials() == []


def test_bad_finish_writes_nothing(open_scheduler):
    sched = open_scheduler()
    sched.enqueue(candidate(0))
    taken = sched.take("w")
    with pytest.raises(ValueError, match="'blob'"):
        sched.finish(taken, "crash", None, {"blob": b"bytes"})
    with pytest.raises(ValueError, match="unknown trial status"):
        sched.finish(taken, "OK", (1.0, 1.0), {})
    with pytest.raises(ValueError, match="finite"):
        sched.finish(taken, "ok", (math.nan, 1.0), {})
    with pytest.raises(ValueError, match="needs values"):
        sched.finish(taken, "ok", None, {})
    with pytest.raises(ValueError, match="takes no values"):
        sched.finish(taken, "crash", (1.0, 1.0), {})
    with pytest.raises(ValueError, match="commit"):
        sched.finish(taken, "crash", None, {"commit": "other"})
    row = sched.trials()[0]
    assert row["state"] == "RUNNING" and "status" not in row and "blob" not in row
    sched.finish(taken, "ok", (1.0, 1.0), {})
    assert sched.trials()[0]["state"] == "COMPLETE"


# --- the front and resuming

def test_pareto_front_of_three(open_scheduler):
    sched = open_scheduler()
    results = {0: (1.00, 100.0), 1: (0.90, 200.0), 2: (1.10, 150.0)}  # 2 is dominated by 0
    for i in results:
        sched.enqueue(candidate(i))
    for _ in results:
        taken = sched.take("w")
        sched.finish(taken, "ok", results[taken.number], {})
    front = front_of(sched)
    assert [(b["number"], tuple(b["values"])) for b in front] == [(0, results[0]), (1, results[1])]
    assert [b["variant"] for b in front] == ["v0000", "v0001"]


def test_resume_sees_everything(open_scheduler):
    sched = open_scheduler()
    sched.set_run_attr("noise_floor", 0.004)
    sched.set_run_attr("base_commit", "abc123")
    sched.set_run_attr("unmeasured", math.nan)
    for i in range(3):
        sched.enqueue(candidate(i))
    sched.finish(sched.take("w"), "ok", (1.0, 50.0), {"test_bpb": 1.02})
    sched.finish(sched.take("w"), "timeout", None, {"reason": "still running after 400 s"})
    before = sched.trials()
    del sched

    again = open_scheduler()
    assert again.trials() == before
    assert again.run_attrs() == {"noise_floor": 0.004, "base_commit": "abc123", "unmeasured": None}
    assert [b["number"] for b in front_of(again)] == [0]
    assert again.waiting() == [candidate(2)]
    assert live_hashes(again) == {"hash0", "hash1", "hash2"}
    assert again.study.metric_names == ["val_bpb", "peak_mem_mb"]
    assert again.take("w").number == 2


def test_run_attr_must_be_json(open_scheduler):
    sched = open_scheduler()
    with pytest.raises(ValueError, match="'config'"):
        sched.set_run_attr("config", {1, 2})


def test_a_study_with_other_objectives_is_refused(tmp_path):
    url = storage_url(None, tmp_path)
    tmp_path.mkdir(exist_ok=True)
    optuna.create_study(storage=url, study_name="run-1", direction="maximize")
    with pytest.raises(SchedulerError, match="another name"):
        Scheduler(None, tmp_path, "run-1")


# --- several processes

def _drain(url, run_dir, name, out):
    """A worker process: take and finish until the queue is empty; send back what it took."""
    sched = Scheduler(url, run_dir, "run-1")
    numbers = []
    while (taken := sched.take(name)) is not None:
        numbers.append(taken.number)
        sched.finish(taken, "ok", (1.0 + taken.number, 10.0), {})
    out.put(numbers)


@pytest.mark.parametrize("url", [None, "journal:study.journal"], ids=STORAGES)
def test_worker_processes_never_take_a_trial_twice(tmp_path, url):
    n = 24
    ctx = multiprocessing.get_context("fork")
    producer = Scheduler(url, tmp_path, "run-1")
    for i in range(n):
        producer.enqueue(candidate(i))
    out = ctx.Queue()
    procs = [ctx.Process(target=_drain, args=(url, tmp_path, f"w{k}", out)) for k in range(4)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(timeout=60)
        assert proc.exitcode == 0
    taken = [out.get(timeout=5) for _ in procs]
    assert sorted(n for numbers in taken for n in numbers) == list(range(n))
    assert [r["state"] for r in producer.trials()] == ["COMPLETE"] * n


def test_record_refused_is_a_finished_rejected_trial_outside_the_queue(tmp_path):
    from search.run.scheduler import Scheduler

    s = Scheduler(None, tmp_path, "refused")
    s.enqueue({"commit": "c", "parents": [], "operator": "seed", "description": "seed", "content_hash": "h",
               "variant": "v0000"})
    number = s.record_refused({"operator": "mutation", "description": "bad", "content_hash": "h2"},
                              "outside_surface: eval/metric.py")
    rows = {t["number"]: t for t in s.trials()}
    assert rows[number]["status"] == "rejected" and rows[number]["state"] == "FAIL"
    assert "eval/metric.py" in rows[number]["reason"]
    assert [w["variant"] for w in s.waiting()] == ["v0000"]  # the queue is as it was
    assert "h2" in live_hashes(s)


def test_tuner_suggests_within_ranges_and_learns_from_reports(tmp_path):
    from search.run.scheduler import Scheduler, Tuner

    s = Scheduler(None, tmp_path, "tune")
    tuner = Tuner(s, seed=1)
    seen = []
    for _ in range(6):
        number, values = tuner.suggest({"LR": [0.001, 0.1, True], "WD": [0.0, 0.3]})
        assert 0.001 <= values["LR"] <= 0.1 and 0.0 <= values["WD"] <= 0.3
        tuner.report(number, abs(values["LR"] - 0.01))
        seen.append(number)
    tuner.report(seen[0], 1.0)  # a second report is ignored
    assert len(tuner.study.trials) == 6 and all(t.state.name == "COMPLETE" for t in tuner.study.trials)
    import pytest

    with pytest.raises(ValueError, match="LR"):
        tuner.suggest({"LR": [0.1, 0.01]})
    assert len(Tuner(s).study.trials) == 6  # the same study on resume; bad ranges asked for nothing


def test_random_tuner_draws_within_ranges_reproducibly_by_seed(tmp_path):
    from search.run.scheduler import Scheduler, Tuner

    ranges = {"LR": [0.001, 0.1, True], "WD": [0.0, 0.3]}

    def draws(run: str, seed: int) -> list[dict[str, float]]:
        tuner = Tuner(Scheduler(None, tmp_path / run, run), seed=seed, sampler="random")
        assert isinstance(tuner.study.sampler, optuna.samplers.RandomSampler)
        out = []
        for _ in range(4):
            number, values = tuner.suggest(ranges)
            tuner.report(number, values["LR"])
            out.append(values)
        return out

    first = draws("a", seed=3)
    assert all(0.001 <= v["LR"] <= 0.1 and 0.0 <= v["WD"] <= 0.3 for v in first)
    assert len({v["LR"] for v in first}) == 4
    assert draws("b", seed=3) == first  # the same seed, the same draws
    assert draws("c", seed=4) != first


def test_unknown_tune_sampler_is_refused_by_its_setting(tmp_path):
    from search.run.scheduler import Scheduler, Tuner

    with pytest.raises(ValueError, match=r"search\.tune_sampler='grid'"):
        Tuner(Scheduler(None, tmp_path, "tune"), sampler="grid")


# --- opening an existing study only (reports)

@pytest.mark.parametrize("url", [None, "journal:study.journal"])
def test_open_existing_reads_without_creating(tmp_path, url):
    with pytest.raises(SchedulerError, match="no study at"):
        Scheduler(url, tmp_path / "none", "run-1", create=False)
    assert not (tmp_path / "none").exists()  # no directory, file or study was made
    writer = Scheduler(url, tmp_path / "run", "run-1")
    writer.enqueue(candidate(0))
    writer.set_run_attr("base_commit", "abc")
    reader = Scheduler(url, tmp_path / "run", "run-1", create=False)
    assert [t["variant"] for t in reader.trials()] == ["v0000"] and reader.run_attrs()["base_commit"] == "abc"
    with pytest.raises(SchedulerError, match="no study named 'other'"):
        Scheduler(url, tmp_path / "run", "other", create=False)


def test_heartbeats_mark_a_running_trial_and_stop_at_its_end(open_scheduler):
    clock = Clock(100.0)
    sched = open_scheduler(clock)
    sched.enqueue(candidate(0))
    taken = sched.take("w")
    clock.now = 130.0
    assert sched.heartbeat(taken)
    assert sched.running()[0]["heartbeat"] == 130.0
    sched.finish(taken, "crash", None, {"reason": "boom"})
    assert not sched.heartbeat(taken)  # finished: nothing to mark, no error
    assert sched.running() == []


def test_a_dead_workers_trained_trial_can_be_finished_from_its_left_result(open_scheduler):
    sched = open_scheduler()
    sched.enqueue(candidate(0))
    sched.take("host-123-w0")
    again = open_scheduler().resume_taken(0)  # another process, after the worker died
    assert again.attrs["variant"] == "v0000" and again.attrs["worker"] == "host-123-w0"
    open_scheduler().finish(again, "ok", (1.5, 100.0), {"reason": ""})
    assert by_number(sched)[0]["state"] == "COMPLETE"
    with pytest.raises(SchedulerError, match="not RUNNING"):
        sched.resume_taken(0)


def test_tpe_learns_after_its_startup_trials(tmp_path):
    """Before `startup_trials` results TPE draws what the random sampler of the same seed draws;
    after them it proposes near the best value told so far."""
    ranges = {"LR": [0.0, 1.0]}
    tpe = Tuner(Scheduler(None, tmp_path / "a", "a"), seed=3, sampler="tpe", startup_trials=3)
    rnd = Tuner(Scheduler(None, tmp_path / "b", "b"), seed=3, sampler="random")
    for _ in range(3):
        (n1, v1), (n2, v2) = tpe.suggest(ranges), rnd.suggest(ranges)
        assert v1 == v2
        tpe.report(n1, abs(v1["LR"] - 0.8))
        rnd.report(n2, abs(v2["LR"] - 0.8))
    learned = []
    for _ in range(8):
        n, v = tpe.suggest(ranges)
        tpe.report(n, abs(v["LR"] - 0.8))
        learned.append(abs(v["LR"] - 0.8))
    assert sorted(learned)[len(learned) // 2] < 0.25  # most proposals land near the optimum 0.8
    with pytest.raises(ValueError, match="tune_startup_trials"):
        Tuner(Scheduler(None, tmp_path / "c", "c"), startup_trials=0)
