"""The ablation's effects (pure): paired deltas, what is missing, verdicts."""

from __future__ import annotations

import pytest

from search.ablation.effects import change_effect, measure_effects, ok_runs, verdict
from search.ablation.plan import ADD_ONE, LEAVE_ONE_OUT, build_candidates, decompose
from test_ablation_plan import LR_TEN, RENAMED, SEED, files, steps_of


def test_effect_signs_pairing_spread_and_noise():
    variant = {0: (1.50, 100.0), 1: (1.52, 100.0)}
    ablated = {0: (1.60, 90.0), 1: (1.64, 90.0), 2: (9.9, 1.0)}  # seed 2 has no partner: left out
    e = change_effect(LEAVE_ONE_OUT, ablated, variant, floor=0.05)
    assert e["n"] == 2 and e["delta_bpb"] == pytest.approx(0.11) and e["delta_bpb_std"] == pytest.approx(0.02 ** 0.5 * 0.1)
    assert e["delta_mem_mb"] == pytest.approx(-10.0) and e["beyond_noise"] is True
    seed = {0: (1.70, 100.0)}
    added = {0: (1.69, 120.0)}
    e = change_effect(ADD_ONE, added, seed, floor=0.05)
    assert e["delta_bpb"] == pytest.approx(0.01) and e["delta_bpb_std"] is None and e["delta_mem_mb"] == pytest.approx(-20.0)
    assert e["beyond_noise"] is False
    assert change_effect(ADD_ONE, added, seed, floor=None)["beyond_noise"] is None
    assert change_effect(ADD_ONE, {}, seed, floor=0.1) == {"n": 0, "delta_bpb": None, "delta_bpb_std": None,
                                                             "delta_mem_mb": None, "beyond_noise": None}
    with pytest.raises(ValueError, match="unknown ablation kind"):
        change_effect("both", added, seed, floor=None)


def test_ok_runs_take_the_first_ok_trial_per_seed_and_the_default_seed():
    trials = [
        {"number": 0, "variant": "v0003", "status": "ok", "val_bpb": 1.5, "peak_mem_mb": 10.0},
        {"number": 1, "variant": "v0003", "status": "ok", "val_bpb": 1.4, "peak_mem_mb": 11.0, "trial_seed": 1},
        {"number": 2, "variant": "v0003", "status": "crash", "trial_seed": 2},
        {"number": 3, "variant": "v0003", "status": "ok", "val_bpb": 1.3, "peak_mem_mb": 12.0, "trial_seed": 1},
        {"number": 4, "variant": "v0004", "status": "ok", "val_bpb": 1.0, "peak_mem_mb": 12.0},
    ]
    assert ok_runs(trials, "v0003", default_seed=5) == {5: (1.5, 10.0), 1: (1.4, 11.0)}


def test_measure_effects_pairs_each_candidate_with_its_reference_and_says_what_is_missing():
    plan = decompose(steps_of(("v0001", "rename", RENAMED), ("v0002", "lr", LR_TEN)))
    cands = build_candidates(files(SEED), files(LR_TEN), plan.changes)
    assignment = {("v0001", LEAVE_ONE_OUT): "v0003", ("v0002", LEAVE_ONE_OUT): "v0001",
                  ("v0001", ADD_ONE): "v0001", ("v0002", ADD_ONE): "v0003"}

    def run(number, variant, seed, bpb, status="ok", reason=""):
        return {"number": number, "variant": variant, "trial_seed": seed, "status": status,
                "val_bpb": bpb if status == "ok" else None, "peak_mem_mb": 50.0, "reason": reason}

    trials = [run(0, "v0000", 0, 2.0), run(1, "v0000", 1, 2.1), run(2, "v0002", 0, 1.5), run(3, "v0002", 1, 1.6),
              run(4, "v0001", 0, 2.0), run(5, "v0001", 1, 2.1),  # the rename: exactly the seed
              run(6, "v0003", 0, 1.5), run(7, "v0003", 1, None, "crash", "Traceback\nRuntimeError: boom"),
              {"number": 8, "variant": "v0003", "trial_seed": 2, "status": None}]
    effects = {(e.change, e.kind): e for e in measure_effects(plan.changes, cands, assignment, trials, "v0002",
                                                              "v0000", 0, floor=0.05)}
    rename_loo = effects[("v0001", LEAVE_ONE_OUT)]  # v0003 (seed + lr) against v0002 on seed 0 only
    assert (rename_loo.n, rename_loo.delta_bpb, rename_loo.beyond_noise) == (1, 0.0, False)
    assert "1 run(s) failed (crash: Traceback)" in rename_loo.note and "1 run(s) waiting" in rename_loo.note
    lr_loo = effects[("v0002", LEAVE_ONE_OUT)]  # v0001 against v0002: removing the LR change costs 0.5
    assert lr_loo.n == 2 and lr_loo.delta_bpb == pytest.approx(0.5) and lr_loo.beyond_noise is True
    assert verdict(lr_loo) == "helps" and verdict(rename_loo) == "within noise"
    assert effects[("v0001", ADD_ONE)].delta_bpb == pytest.approx(0.0)
    assert effects[("v0002", ADD_ONE)].delta_bpb == pytest.approx(0.5) and effects[("v0002", ADD_ONE)].n == 1
    missing = measure_effects(plan.changes, cands, {}, trials, "v0002", "v0000", 0, floor=None)
    assert all(e.note == "not queued" and verdict(e) == "-" for e in missing)
