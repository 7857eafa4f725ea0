"""The producer's decisions (search/run/producer.py) and the trial executor's verdict and record
(search/run/executor.py), on a real study (SQLite in tmp_path) and a real lineage (git in tmp_path),
with a scripted LLM and a scripted runner: no trial process starts."""

from __future__ import annotations

import json

import pytest

from eval.record import Status, TrialRecord
from scripted_llm import ScriptedClient
from search.config import Config, load_config
from search.record.attrs import CandidateAttrs
from search.run.executor import RESULT_FILE, TrialExecutor, keep_verdict
from search.run.producer import MAX_CONSECUTIVE_REFUSALS, Producer
from search.run.scheduler import Scheduler, Tuner
from search.run.store import RunStore
from search.lineage.repo import Lineage
from search.selection.population import NoiseFloor
from support import git, make_repo

TRAIN = "LR = 0.04  # learning rate\nSTEPS = 10  # steps\n\n\ndef train(ctx):\n    return None\n"
MODEL = "class GPT:\n    pass\n"
EDITABLE = ["train/train.py", "model/gpt.py"]


def conf(**search) -> Config:
    return load_config({"run": {"name": "unit"}, "editable": EDITABLE, "population": search.pop("population", None),
                        "search": {"rates": {"mutation": 1.0, "crossover": 0.0, "merge": 0.0, "tune": 0.0},
                                   "noise_repeats": 2, **search}})


@pytest.fixture
def store(tmp_path):
    repo = make_repo(tmp_path / "repo", {"train/train.py": TRAIN, "model/gpt.py": MODEL})
    run_dir = tmp_path / "outputs" / "unit"
    s = RunStore(Scheduler(None, run_dir, "unit"), Lineage(repo, "unit", EDITABLE), run_dir, EDITABLE, None, 2.0)
    yield s
    s.close()


def seed_trials(store: RunStore, values: list[float]) -> str:
    """The seed queued once per value and finished ok with that val_bpb; returns its commit."""
    seed = store.lineage.base_commit()
    for k, _ in enumerate(values):
        store.enqueue(CandidateAttrs(operator="seed", parents=[], parent_names=[], description="seed", variant="v0000",
                                     commit=seed, content_hash=f"seed-{k}", generation=0, trial_seed=k, repeat=k))
    for value in values:
        store.finish(store.take("w"), Status.OK, (value, 100.0),
                     {"val_bpb": value, "peak_mem_mb": 100.0, "trained": True})
    return seed


def child(store: RunStore, name_hint: str, parent: str, value: float | None, kept: bool | None, lr: str) -> str:
    """A committed child of `parent` (a variant name), finished with val_bpb `value` (None: crash)."""
    variants = store.variants()
    files = dict(store.read_files(variants[parent]["commit"]), **{"train/train.py": TRAIN.replace("0.04", lr)})
    cand = store.commit_and_enqueue(CandidateAttrs(
        operator="mutation", parents=[variants[parent]["commit"]], parent_names=[parent], description=name_hint,
        content_hash=f"h-{lr}", generation=variants[parent]["generation"] + 1), files)
    extra = {"val_bpb": value, "peak_mem_mb": 100.0, "trained": True} | ({} if kept is None else {"kept": kept})
    taken = store.take("w")
    store.finish(taken, Status.OK if value is not None else Status.CRASH, (value, 100.0) if value is not None else None,
                 extra)
    return cand.variant


def producer(store: RunStore, c: Config, answers=None) -> Producer:
    llm = ScriptedClient(answers) if answers is not None else None
    return Producer(c, store, llm, Tuner(store.scheduler), "make it better", say=lambda line: None)


def edit(old: str, new: str, description: str = "higher LR") -> str:
    return (f"DESCRIPTION: {description}\n\nFILE: train/train.py\n<<<<<<< SEARCH\n{old}\n=======\n{new}\n"
            ">>>>>>> REPLACE\n")


# --- the producer


def test_single_lineage_parent_is_the_best_kept_variant_not_the_lowest(store):
    seed_trials(store, [3.00, 3.02])
    kept = child(store, "kept", "v0000", 2.90, True, "0.05")
    child(store, "lower but discarded", "v0000", 2.80, False, "0.06")
    child(store, "crashed", kept, None, False, "0.07")
    assert producer(store, conf()).choose_parents(store.variants(), 1) == [kept]


def test_population_parents_come_from_the_ok_variants(store):
    seed_trials(store, [3.00, 3.02])
    ok = child(store, "ok", "v0000", 2.90, None, "0.05")
    crashed = child(store, "crashed", "v0000", None, None, "0.06")
    store.population = 2
    chosen = {n for _ in range(20) for n in producer(store, conf(population=2)).choose_parents(store.variants(), 2)}
    assert chosen <= {"v0000", ok} and crashed not in chosen


def test_operators_that_cannot_work_are_never_drawn(store):
    seed_trials(store, [3.00])
    rates = {"mutation": 0.5, "crossover": 0.5, "merge": 0.5, "tune": 0.5}
    no_llm = producer(store, conf(rates=rates))
    assert {no_llm.choose_operator(store.variants()) for _ in range(30)} == {None}  # nothing to tune, merge or ask
    with_llm = producer(store, conf(rates=rates, population=4), answers=[])
    drawn = {with_llm.choose_operator(store.variants()).name for _ in range(30)}
    assert drawn == {"mutation"}  # one evaluated variant: no crossover or merge yet; no tune_ranges


def test_an_unknown_operator_in_the_rates_is_a_user_error_naming_it(store):
    with pytest.raises(ValueError, match="unknown operator 'mutate'"):
        producer(store, conf(rates={"mutate": 1.0}))


def test_a_proposal_is_guarded_committed_and_queued_with_its_attributes(store):
    seed = seed_trials(store, [3.00, 3.02])
    p = producer(store, conf(), answers=[edit("LR = 0.04  # learning rate", "LR = 0.08  # learning rate")])
    name = p.produce_one()
    assert name == "v0001"
    (queued,) = store.waiting()
    assert {k: queued[k] for k in ("variant", "parents", "parent_names", "operator", "description", "generation")} == {
        "variant": "v0001", "parents": [seed], "parent_names": ["v0000"], "operator": "mutation",
        "description": "higher LR", "generation": 1}
    files = store.read_files(queued["commit"])
    assert "LR = 0.08" in files["train/train.py"] and files["model/gpt.py"] == MODEL
    message = git(store.lineage.root, "log", "-1", "--format=%B", queued["commit"])
    assert message.startswith("v0001: higher LR") and "operator: mutation" in message and "parents: v0000" in message
    assert store.run_attrs()["llm_usage"]["calls"] == 1


def test_a_refused_candidate_is_recorded_and_enough_refusals_close_production(store):
    seed_trials(store, [3.00, 3.02])
    same = edit("LR = 0.04  # learning rate", "LR = 0.04  # learning rate", "nothing")  # a no-op edit
    p = producer(store, conf(), answers=[same] * MAX_CONSECUTIVE_REFUSALS)
    assert p.produce_one() is None
    refused = [t for t in store.trials() if t.get("status") == Status.REJECTED]
    assert len(refused) == 1 and refused[0]["refusal"] and not refused[0].get("variant")
    assert refused[0]["parent_names"] == ["v0000"] and refused[0]["reason"].startswith(refused[0]["refusal"])
    assert not store.waiting() and not p.closed
    for _ in range(MAX_CONSECUTIVE_REFUSALS - 1):
        p.produce_one()
    assert p.closed and p.done()


def test_max_trials_counts_the_searchs_trials_only(store):
    seed_trials(store, [3.00, 3.02])
    p = producer(store, conf(max_trials=3))
    assert not p.done()
    store.record_refused(CandidateAttrs(operator="mutation", parents=[], parent_names=["v0000"], description="x",
                                        refusal="noop"), "noop: nothing changed")
    assert not p.done()  # a refusal that never trained does not count
    child(store, "one more", "v0000", 2.95, None, "0.05")
    assert p.done()


# --- the verdict and the executor


def test_keep_verdict_needs_a_gain_beyond_the_noise_floor():
    noise = NoiseFloor(mean=3.0, std=0.01, n=2, floor=0.02)
    ok = lambda v: TrialRecord(status="ok", val_bpb=v)  # noqa: E731
    best = {"val_bpb": 3.0}
    assert keep_verdict(ok(2.97), best, noise)
    assert not keep_verdict(ok(2.99), best, noise)  # within the noise floor
    assert not keep_verdict(ok(3.10), best, noise)
    assert keep_verdict(ok(2.999), best, None)  # no floor measured yet: any gain
    assert keep_verdict(ok(5.0), None, noise)  # nothing kept yet
    assert not keep_verdict(TrialRecord(status="crash", reason="boom"), None, noise)


class ScriptedRunner:
    """Stands in for the runner: records each spec and answers with the next record."""

    def __init__(self, *records: TrialRecord):
        self.records = list(records)
        self.calls: list[tuple[dict, str]] = []

    def __call__(self, spec, trial_dir, env=None):
        self.calls.append((spec, trial_dir.name))
        return self.records.pop(0)


def executor(store: RunStore, c: Config, runner: ScriptedRunner) -> TrialExecutor:
    return TrialExecutor(c, store, {"paths": {}}, runner, Tuner(store.scheduler), say=lambda line: None)


def test_the_seed_trains_without_preflight_and_a_child_gets_one_then_its_verdict(store):
    seed = store.lineage.base_commit()
    for k in range(2):
        store.enqueue(CandidateAttrs(operator="seed", parents=[], parent_names=[], description="seed", variant="v0000",
                                     commit=seed, content_hash="s", generation=0, trial_seed=k, repeat=k))
    c = conf()
    runner = ScriptedRunner(TrialRecord(status="ok", val_bpb=3.00, peak_mem_mb=100.0, total_seconds=1.0),
                            TrialRecord(status="ok", val_bpb=3.02, peak_mem_mb=100.0, total_seconds=1.0))
    ex = executor(store, c, runner)
    ex.train(store.take("w"))
    ex.train(store.take("w"))
    assert [d for _, d in runner.calls] == ["trial", "trial"]
    assert [spec["trial"]["seed"] for spec, _ in runner.calls] == [0, 1]
    assert store.run_attrs()["noise"]["n"] == 2

    files = dict(store.read_files(seed), **{"train/train.py": TRAIN.replace("0.04", "0.05")})
    for lr, value in (("0.05", 2.95), ("0.06", 2.90)):
        files = dict(files, **{"train/train.py": TRAIN.replace("0.04", lr)})
        store.commit_and_enqueue(CandidateAttrs(operator="mutation", parents=[seed], parent_names=["v0000"],
                                                description=lr, content_hash=lr, generation=1), files)
    runner.records += [TrialRecord(status="ok", total_seconds=0.5),  # the preflight
                       TrialRecord(status="ok", val_bpb=2.95, peak_mem_mb=90.0, total_seconds=1.0),
                       TrialRecord(status="ok", total_seconds=0.5),
                       TrialRecord(status="ok", val_bpb=2.94, peak_mem_mb=90.0, total_seconds=1.0)]
    taken = store.take("w")
    record = ex.train(taken)
    assert [d for _, d in runner.calls[2:]] == ["preflight", "trial"]
    assert runner.calls[2][0]["trial"]["max_steps"] == c.search.preflight_steps
    saved = json.loads((ex.trial_dir(taken.number, "v0001") / RESULT_FILE).read_text())
    assert saved["record"]["val_bpb"] == record.val_bpb == 2.95
    ex.train(store.take("w"))
    rows = {t.get("variant"): t for t in store.trials() if t.get("operator") == "mutation"}
    floor = store.run_attrs()["noise"]["floor"]
    assert floor < 3.01 - 2.95 and rows["v0001"]["kept"] is True  # beyond the floor of the seed's mean
    assert floor > 2.95 - 2.94 and rows["v0002"]["kept"] is False  # better than v0001, within the floor
    assert 1 in store.lineage.refs.tags() and 2 in store.lineage.refs.tags()


def test_a_failed_preflight_is_the_trials_result_and_nothing_else_runs(store):
    seed = seed_trials(store, [3.00, 3.02])
    files = dict(store.read_files(seed), **{"train/train.py": TRAIN.replace("0.04", "0.05")})
    store.commit_and_enqueue(CandidateAttrs(operator="mutation", parents=[seed], parent_names=["v0000"],
                                            description="x", content_hash="x", generation=1), files)
    runner = ScriptedRunner(TrialRecord(status="crash", reason="NameError: name 'lr' is not defined"))
    record = executor(store, conf(), runner).train(store.take("w"))
    assert [d for _, d in runner.calls] == ["preflight"]
    assert record.status == "crash" and record.reason.startswith("preflight: NameError")
    (row,) = [t for t in store.trials() if t.get("variant") == "v0001"]
    assert row["status"] == "crash" and row["kept"] is False
