"""Report data (pure): variants from trials, picks, paths from the seed, tree layout, progress, tables."""

import pytest

from search.record.data import (
    REASON_WIDTH, PickError, aggregate_variants, best_variant, front_names, markdown_table, operator_stats, path_from_seed,
    pick_variant, progress_points, seed_noise, status_by_operator, time_use, trial_rows, tree_layout,
)
from search.record.summary import result_row


def trial(number, variant, operator="mutation", parents=(), status="ok", val=None, mem=100.0, generation=1,
          **extra):
    row = {"number": number, "state": "COMPLETE" if status == "ok" else "FAIL", "variant": variant,
           "commit": f"c{variant}", "parent_names": list(parents), "parents": [f"c{p}" for p in parents],
           "operator": operator, "description": f"{variant} change", "generation": generation, "status": status,
           "trained": True, "val_bpb": val if status == "ok" else None, "peak_mem_mb": mem, "test_bpb":
           (val + 0.01) if status == "ok" and val is not None else None, "finished_at": 1000.0 + 10 * number,
           "device_seconds": 8.0}
    row.update(extra)
    return row


def population_run():
    """seed x2 (noise), v0001 better, v0002 crash, v0003 a crossover of v0001 and the seed: best, more memory,
    a refused candidate, a re-queued trial superseded by its re-run."""
    return [
        trial(0, "v0000", "seed", status="ok", val=3.0, generation=0, repeat=0),
        trial(1, "v0000", "seed", status="ok", val=3.1, generation=0, repeat=1),
        trial(2, "v0001", parents=["v0000"], val=2.8),
        {"number": 3, "state": "FAIL", "status": "requeued", "variant": "v0002", "commit": "cv0002",
         "parent_names": ["v0001"], "parents": ["cv0001"], "operator": "mutation", "description": "x",
         "generation": 2},
        trial(4, "v0002", parents=["v0001"], status="crash", generation=2, reason="boom"),
        {"number": 5, "state": "FAIL", "status": "rejected", "operator": "mutation", "description": "bad",
         "parent_names": ["v0001"], "parents": ["cv0001"], "reason": "syntax: nope", "refusal": "syntax"},
        trial(6, "v0003", "crossover", parents=["v0001", "v0000"], val=2.5, mem=150.0, generation=2),
    ]


def test_aggregate_averages_the_seed_repeats_and_skips_requeued_trials():
    variants = aggregate_variants(population_run())
    assert sorted(variants) == ["v0000", "v0001", "v0002", "v0003"]
    assert variants["v0000"]["val_bpb"] == pytest.approx(3.05) and len(variants["v0000"]["runs"]) == 2
    assert variants["v0002"]["status"] == "crash" and variants["v0002"]["reason"] == "boom"
    assert len(variants["v0002"]["runs"]) == 1  # the re-queued attempt is gone
    assert variants["v0003"]["parents"] == ["v0001", "v0000"]


def test_the_seed_counts_as_kept_whatever_trial_comes_last():
    """Whether the seed is kept must not depend on which trial the study lists last."""
    trials = population_run()[:3] + [{"number": 7, "state": "WAITING", "variant": "v0009", "commit": "c9",
                                      "operator": "mutation", "description": "queued", "parent_names": ["v0001"]}]
    assert aggregate_variants(trials)["v0000"]["kept"] is True
    single = [trial(0, "v0000", "seed", val=3.0, generation=0), trial(1, "v0001", parents=["v0000"], val=3.2,
                                                                         kept=False)]
    assert best_variant(aggregate_variants(single), None)["name"] == "v0000"


def test_front_best_and_noise():
    variants = aggregate_variants(population_run())
    assert sorted(front_names(variants)) == ["v0001", "v0003"]  # v0003 better, v0001 lighter
    assert best_variant(variants, 4)["name"] == "v0003"
    noise = seed_noise(variants, 2.0)
    assert noise.n == 2 and noise.mean == pytest.approx(3.05) and noise.floor > 0


def test_pick_variant():
    variants = aggregate_variants(population_run())
    assert pick_variant(variants, "best") == "v0003"
    assert pick_variant(variants, "pareto:120") == "v0001"
    assert pick_variant(variants, "pareto:150") == "v0003"
    assert pick_variant(variants, "v0002") == "v0002"
    with pytest.raises(PickError, match=r"no variant v0042.*v0000, v0001"):
        pick_variant(variants, "v0042")
    with pytest.raises(PickError, match=r"peak_mem_mb <= 50 \(the smallest is v0\d+ at 100.0 MB\)"):
        pick_variant(variants, "pareto:50")
    with pytest.raises(PickError, match="must be a number"):
        pick_variant(variants, "pareto:lots")
    with pytest.raises(PickError, match="not understood"):
        pick_variant(variants, "fastest")
    with pytest.raises(PickError, match="no variant of this run has ended ok"):
        pick_variant({}, "best")


def test_path_from_seed_follows_first_parents_with_deltas():
    variants = aggregate_variants(population_run())
    steps = path_from_seed(variants, "v0003")
    assert [s.name for s in steps] == ["v0000", "v0001", "v0003"]
    assert steps[0].parent is None and steps[0].delta_bpb is None
    assert steps[1].delta_bpb == pytest.approx(2.8 - 3.05)
    assert steps[2].parent == "v0001" and steps[2].other_parents == ["v0000"]
    assert steps[2].delta_bpb == pytest.approx(-0.3) and steps[2].delta_mem_mb == pytest.approx(50.0)
    assert steps[2].parent_commit == "cv0001"


def test_tree_layout_layers_by_generation_and_keeps_both_parents():
    nodes = tree_layout(aggregate_variants(population_run()))
    assert {n: nodes[n].layer for n in nodes} == {"v0000": 0, "v0001": 1, "v0002": 2, "v0003": 2}
    assert nodes["v0003"].parents == ["v0001", "v0000"]
    assert sorted(nodes[n].x for n in ("v0002", "v0003")) == [-0.5, 0.5]  # each layer centred


def test_progress_running_best_and_improvements():
    trials = population_run()
    points = progress_points(trials, aggregate_variants(trials), 4, started_at=1000.0)
    assert [p.number for p in points] == [0, 1, 2, 4, 6]  # trained trials only
    assert [p.improvement for p in points] == [True, False, True, False, True]
    assert [p.best_so_far for p in points] == [3.0, 3.0, 2.8, 2.8, 2.5]
    assert points[3].val_bpb is None and points[3].status == "crash"
    assert [p.highlighted for p in points] == [False, False, True, False, True]  # on the front
    assert points[-1].elapsed_seconds == pytest.approx(60.0)
    lucky_repeat = [dict(trials[0]), dict(trials[1], val_bpb=2.9)]  # the seed again, by chance lower
    points = progress_points(lucky_repeat, aggregate_variants(lucky_repeat), 4, started_at=None)
    assert [p.improvement for p in points] == [True, False] and points[1].best_so_far == 3.0


def test_progress_in_single_lineage_counts_only_kept_trials():
    trials = [trial(0, "v0000", "seed", val=3.0, generation=0), trial(1, "v0001", parents=["v0000"], val=2.9,
                                                                       kept=False),
              trial(2, "v0002", parents=["v0000"], val=2.5, kept=True)]
    points = progress_points(trials, aggregate_variants(trials), None, started_at=None)
    assert [p.improvement for p in points] == [True, False, True]
    assert [p.highlighted for p in points] == [True, False, True]
    assert points[0].elapsed_seconds is None


def test_tables():
    trials = population_run()
    variants = aggregate_variants(trials)
    stats = {s.operator: s for s in operator_stats(trials, variants)}
    assert (stats["mutation"].proposed, stats["mutation"].refused, stats["mutation"].trained,
            stats["mutation"].ok, stats["mutation"].on_front) == (3, 1, 2, 1, 1)
    assert stats["mutation"].success_rate == pytest.approx(1 / 3) and stats["seed"].success_rate == 1.0
    assert status_by_operator(trials)["mutation"] == {"ok": 1, "crash": 1, "rejected": 1}
    use = time_use(trials, started_at=990.0)
    assert use.wall_seconds == pytest.approx(70.0) and use.device_seconds == pytest.approx(40.0)
    assert use.device_share == pytest.approx(40 / 70)
    rows = trial_rows(trials)
    assert [r["trial"] for r in rows] == [0, 1, 2, 4, 5, 6] and rows[4]["variant"] == ""


def test_results_tsv_and_the_report_cut_a_reason_alike():
    reason = "Traceback:\n" + "x " * 400
    t = trial(7, "v0004", status="crash", reason=reason)
    cut = trial_rows([t])[0]["reason"]
    assert cut == result_row(t)["reason"] and len(cut) == REASON_WIDTH and cut.endswith("...")
    assert cut.startswith("Traceback: x x")


def test_markdown_table_escapes_pipes_and_formats_figures():
    text = markdown_table([{"a": 1.23456789, "b": "x|y", "c": None}], ["a", "b", "c"])
    assert text.splitlines() == ["| a | b | c |", "|---|---|---|", "| 1.2346 | x\\|y | - |"]
