"""`python -m search report ablation`: planning and queueing on a study with made-up figures (fast), and the
real CLI on a small real run with a variant whose changes are known (slow).

The slow test's variant is two steps from the seed: one renames a local variable (no effect at all), the other
drops the LR warmdown (WARMDOWN_RATIO 0.4 -> 0.0: within 4 steps, about 0.06 lower val_bpb, twice the run's noise
floor). Trials stop after 4 steps, so the same code
with the same trial seed gives the same val_bpb: the rename's delta is exactly 0.
"""

from __future__ import annotations

import json
import os
import socket

import pytest

from smoke_run import EDITABLE, build_smoke_run, cli, git
from support import make_repo

RENAME = (("    adam_scale = (width / 768) ** -0.5\n", "    adamw_scale = (width / 768) ** -0.5\n"),
          ('"lr": lr * adam_scale}', '"lr": lr * adamw_scale}'))
NO_WARMDOWN = (("WARMDOWN_RATIO = 0.4  #", "WARMDOWN_RATIO = 0.0  #"),)


def _edit(files: dict[str, str], pairs) -> dict[str, str]:
    text = files["train/train.py"]
    for old, new in pairs:
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    return dict(files, **{"train/train.py": text})


# --------------------------------------------------------------------------- fast: a study with made-up figures

TOY = """LR = 0.04  # learning rate
DEPTH = 4  # blocks


def train(steps):
    total = 0.0
    for step in range(steps):
        total += LR * step
    return total * DEPTH
"""
GPT = "class GPT:\n    pass\n"
MADE_UP = {"v0000": 2.0, "v0001": 2.0, "v0002": 1.9, "v0003": 1.9}  # val_bpb by variant (+0.01 per trial seed)


def _finish_waiting(sched, accept=lambda attrs: True) -> int:
    done = 0
    while (taken := sched.take("test", accept=accept)) is not None:
        val = MADE_UP[taken.attrs["variant"]] + 0.01 * taken.attrs.get("trial_seed", 0)
        sched.finish(taken, "ok", (val, 100.0), {"val_bpb": val, "peak_mem_mb": 100.0, "trained": True})
        done += 1
    return done


@pytest.fixture
def toy_run(tmp_path):
    """A run with the seed (2 repeats), a rename (v0001) and an LR change on top of it (v0002), all trained."""
    from search.operators.guards import content_hash
    from search.lineage.repo import Lineage
    from search.run.scheduler import Scheduler

    repo = make_repo(tmp_path / "repo", {"train/train.py": TOY, "model/gpt.py": GPT})
    run_dir = tmp_path / "outputs" / "toy"
    sched = Scheduler(None, run_dir, "toy")
    with Lineage(repo, "toy", EDITABLE) as lineage:
        seed = lineage.base_commit()
        files = lineage.read_files(seed)
        common = {"parents": [], "parent_names": [], "operator": "seed", "description": "seed", "generation": 0}
        for k in range(2):
            sched.enqueue({"variant": "v0000", "commit": seed, "content_hash": content_hash(files, EDITABLE),
                           "trial_seed": k, **common})
        parent, parent_name = seed, "v0000"
        for k, (old, new) in enumerate((("total", "acc"), ("LR = 0.04", "LR = 0.4")), 1):
            files = dict(files, **{"train/train.py": files["train/train.py"].replace(old, new)})
            commit = lineage.commit_variant(files, [parent], f"v000{k}")
            sched.enqueue({"variant": f"v000{k}", "commit": commit, "parents": [parent], "parent_names": [parent_name],
                           "operator": "mutation", "description": f"{old} -> {new}",
                           "content_hash": content_hash(files, EDITABLE), "generation": k})
            parent, parent_name = commit, f"v000{k}"
    _finish_waiting(sched)
    sched.set_run_attr("base_commit", seed)
    sched.set_run_attr("noise", {"mean": 2.005, "std": 0.007, "n": 2, "floor": 0.014})
    (run_dir / "config.json").write_text(json.dumps({
        "run": {"name": "toy"}, "editable": EDITABLE, "storage": {"url": None}, "population": 2,
        "lineage": {"repo": str(repo), "remote": None}, "search": {"noise_repeats": 2}, "trial": {"seed": 0}}))
    return run_dir, sched


def _ablate(run_dir, variant="v0002", **settings):
    from search.ablation.run import run_ablation
    from search.config import AblationConfig
    from search.record.runs import load_run

    return run_ablation(load_run(run_dir, "toy"), AblationConfig(**{"work": False, **settings}), variant,
                        out=open(os.devnull, "w"))


def test_ablation_queues_what_is_missing_once_and_reuses_variants_with_the_same_files(toy_run):
    run_dir, sched = toy_run
    first = _ablate(run_dir)
    assert [c.id for c in first.changes] == ["v0001", "v0002"]
    # v0002 without the LR change is v0001 (and so is the seed with the rename); only seed + LR is new
    assert first.assignment == {("v0001", "leave_one_out"): "v0003", ("v0001", "add_one"): "v0001",
                                ("v0002", "leave_one_out"): "v0001", ("v0002", "add_one"): "v0003"}
    assert first.new_variants == ["v0003"] and first.queued == 4  # v0002 and v0001 on trial seed 1, v0003 on 0 and 1
    waiting = sched.waiting()
    assert {(w["variant"], w["trial_seed"]) for w in waiting} == {("v0002", 1), ("v0001", 1), ("v0003", 0), ("v0003", 1)}
    assert all(w["operator"] == "ablation" and w["ablation"]["target"] == "v0002" for w in waiting)
    new = next(w for w in waiting if w["variant"] == "v0003")
    assert new["parent_names"] == ["v0002"] and new["description"].startswith("ablation of v0002: without v0001")
    assert all("waiting or running" in e.note for e in first.effects)
    assert _ablate(run_dir).queued == 0  # queued already: nothing twice


def test_ablation_measures_paired_deltas_against_the_noise_floor(toy_run):
    run_dir, sched = toy_run
    _ablate(run_dir)
    assert _finish_waiting(sched) == 4
    done = _ablate(run_dir)
    assert done.queued == 0
    effects = {(e.change, e.kind): e for e in done.effects}
    for kind in ("leave_one_out", "add_one"):
        assert effects[("v0001", kind)].delta_bpb == pytest.approx(0.0) and effects[("v0001", kind)].n == 2
        assert effects[("v0001", kind)].beyond_noise is False
        assert effects[("v0002", kind)].delta_bpb == pytest.approx(0.1) and effects[("v0002", kind)].beyond_noise
    assert done.noise["floor"] == 0.014


def test_ablation_with_more_repeats_adds_only_the_new_trial_seeds(toy_run):
    run_dir, sched = toy_run
    _ablate(run_dir)
    _finish_waiting(sched)
    more = _ablate(run_dir, repeats=3)
    assert more.queued == 4 and {w["trial_seed"] for w in sched.waiting()} == {2}  # v0000, v0001, v0002, v0003


def test_the_target_must_be_a_trained_variant_other_than_the_seed(toy_run):
    from search.ablation.run import AblationError, choose_target
    from search.record.data import PickError, aggregate_variants

    run_dir, sched = toy_run
    variants = aggregate_variants(sched.trials())
    assert choose_target(variants, None, 2) == "v0002"  # the best
    with pytest.raises(AblationError, match="v0000 is the seed"):
        choose_target(variants, "v0000", 2)
    with pytest.raises(PickError, match="no variant v0042"):
        choose_target(variants, "v0042", 2)
    _ablate(run_dir)
    _finish_waiting(sched)
    variants = aggregate_variants(sched.trials())
    assert variants["v0003"]["operator"] == "ablation"
    assert choose_target(variants, None, 2) == "v0002"  # an ablation variant is never the default target
    variants["v0002"]["status"] = "crash"
    with pytest.raises(AblationError, match="has not ended ok"):
        choose_target(variants, "v0002", 2)


def test_running_ablation_trials_of_a_dead_process_here_are_requeued():
    from search.ablation.run import _dead_here

    host = socket.gethostname()
    dead = 2 ** 22 + 12345
    while True:
        try:
            os.kill(dead, 0)
        except ProcessLookupError:
            break
        dead += 1
    assert _dead_here({"operator": "ablation", "worker": f"{host}-{dead}-ablation"})
    assert not _dead_here({"operator": "ablation", "worker": f"{host}-{os.getpid()}-ablation"})
    assert not _dead_here({"operator": "ablation", "worker": f"elsewhere-{dead}-ablation"})
    assert not _dead_here({"operator": "mutation", "worker": f"{host}-{dead}-w0"})


# --------------------------------------------------------------------------- slow: the real CLI on a real run

@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return build_smoke_run(tmp_path_factory.mktemp("ablation"), "abl")


@pytest.fixture(scope="module")
def known(run):
    """Commit, queue and train (through the search's own worker) the rename and then the warmdown change."""
    from eval.data.prepare import prepare_data
    from search.operators.guards import content_hash
    from search.lineage.repo import Lineage
    from dataclasses import asdict

    from search.config import load_config
    from search.record.attrs import variant_name, variant_number
    from search.record.data import aggregate_variants
    from search.run.loop import build_workers
    from search.run.scheduler import Scheduler
    from search.run.store import RunStore

    conf = load_config(json.loads((run.run_dir / "config.json").read_text()))
    sched = Scheduler(None, run.run_dir, run.name)
    lineage = Lineage(run.repo, run.name, EDITABLE)
    variants = aggregate_variants(sched.trials())
    number = 1 + max(variant_number(n) for n in variants)
    parent, made = variants["v0000"], []
    files = lineage.read_files(parent["commit"])
    for k, (pairs, description) in enumerate(((RENAME, "rename adam_scale to adamw_scale"),
                                              (NO_WARMDOWN, "no LR warmdown: WARMDOWN_RATIO 0.4 -> 0.0"))):
        name = variant_name(number + k)
        files = _edit(files, pairs)
        commit = lineage.commit_variant(files, [parent["commit"]], f"{name}: {description}")
        sched.enqueue({"variant": name, "commit": commit, "parents": [parent["commit"]],
                       "parent_names": [parent["name"]], "operator": "mutation", "description": description,
                       "content_hash": content_hash(files, EDITABLE), "generation": parent["generation"] + 1})
        parent = {"name": name, "commit": commit, "generation": parent["generation"] + 1}
        made.append(name)
    store = RunStore(sched, lineage, run.run_dir, EDITABLE, conf.population, conf.search.noise_k)
    prepared = prepare_data(asdict(conf.data), conf.trial.vocab_size, log=lambda m: None)
    build_workers(conf, store, prepared.spec(), lambda m: None, production_over=lambda: True).work("test-worker")
    store.close()
    trained = aggregate_variants(sched.trials())
    assert all(trained[n]["status"] == "ok" for n in made), [trained[n]["reason"] for n in made]
    return {"rename": made[0], "target": made[1]}


@pytest.fixture(scope="module")
def ablation(run, known):
    """The report, then the same command again: (first CompletedProcess, second, trials before the rerun)."""
    from search.run.scheduler import Scheduler

    args = ("report", "ablation", *run.where(), f"variant={known['target']}", "ablation.repeats=2")
    first = cli(*args)
    before = len(Scheduler(None, run.run_dir, run.name, create=False).trials())
    second = cli(*args)
    return first, second, before


def _record(run, known) -> dict:
    return json.loads((run.run_dir / "report" / f"ablation-{known['target']}.json").read_text())


@pytest.mark.slow
def test_ablation_writes_the_report_and_prints_the_table(run, known, ablation):
    first, _, _ = ablation
    assert first.returncode == 0, first.stdout[-4000:] + first.stderr[-4000:]
    report = run.run_dir / "report"
    for suffix in ("md", "html", "png", "json"):
        path = report / f"ablation-{known['target']}.{suffix}"
        assert path.is_file() and str(path) in first.stdout.split()
    assert (report / f"ablation-{known['target']}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| change | kind | delta val_bpb |" in first.stdout
    page = (report / f"ablation-{known['target']}.html").read_text()
    assert 'src="data:image/png;base64,' in page and "<script" not in page
    assert "adamw_scale" in page and "WARMDOWN_RATIO = 0.0" in page  # each change's diff


@pytest.mark.slow
def test_the_rename_has_no_effect_and_the_warmdown_change_helps_beyond_noise(run, known, ablation):
    record = _record(run, known)
    floor = record["noise"]["floor"]
    assert floor > 0
    changes = {c["id"]: c for c in record["changes"]}
    assert set(changes) == {known["rename"], known["target"]}  # the rename's two hunks do not apply alone
    effects = {(e["change"], e["kind"]): e for e in record["effects"]}
    for kind in ("leave_one_out", "add_one"):
        rename, warmdown = effects[(known["rename"], kind)], effects[(known["target"], kind)]
        assert rename["n"] == 2 and warmdown["n"] == 2, (rename, warmdown)
        assert rename["delta_bpb"] == 0.0 and rename["beyond_noise"] is False  # 4 steps: deterministic
        assert warmdown["delta_bpb"] > floor and warmdown["beyond_noise"] is True  # positive: the change helps
    print(f"\nablation figures: floor {floor:.4f}; " + "; ".join(
        f"{c} {k}: {e['delta_bpb']:+.4f} ± {e['delta_bpb_std'] or 0:.4f}" for (c, k), e in effects.items()))


@pytest.mark.slow
def test_trials_land_in_the_study_and_results_with_their_ablation_keys(run, known, ablation):
    from search.record.data import aggregate_variants
    from search.run.scheduler import Scheduler

    trials = Scheduler(None, run.run_dir, run.name, create=False).trials()
    ours = [t for t in trials if t.get("operator") == "ablation"]
    # the target and the rename step once more (trial seed 1), seed + warmdown change (new) twice: the others
    # reuse them (the target without the warmdown change is the rename step, the seed with the rename is too)
    assert len(ours) == 4 and all(t["status"] == "ok" for t in ours)
    assert {t["trial_seed"] for t in ours} == {0, 1}
    assert all(t["ablation"]["target"] == known["target"] for t in ours)
    new = {t["variant"] for t in ours} - {known["target"], known["rename"]}
    assert len(new) == 1
    variants = aggregate_variants(trials)
    (name,) = new
    assert variants[name]["operator"] == "ablation" and variants[name]["parents"] == [known["target"]]
    assert variants[known["target"]]["operator"] == "mutation"  # a variant keeps what made it
    tsv = (run.run_dir / "results.tsv").read_text()
    assert tsv.count("\tablation\t") == 4
    assert f"search/{run.name}/{name}" in git(run.repo, "tag", "--list")


@pytest.mark.slow
def test_a_rerun_trains_nothing_new(run, known, ablation):
    from search.run.scheduler import Scheduler

    _, second, before = ablation
    assert second.returncode == 0, second.stderr[-3000:]
    assert "queued 0 trial(s)" in second.stdout and "[search] training" not in second.stdout
    assert len(Scheduler(None, run.run_dir, run.name, create=False).trials()) == before


@pytest.mark.slow
def test_the_seed_or_an_unknown_variant_is_a_one_line_error(run, known):
    out = cli("report", "ablation", *run.where(), "variant=v0000")
    assert out.returncode == 2 and "v0000 is the seed" in out.stderr and "Traceback" not in out.stderr
    out = cli("report", "ablation", *run.where(), "variant=v0999")
    assert out.returncode == 2 and "no variant v0999" in out.stderr
