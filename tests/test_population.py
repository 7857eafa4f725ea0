import random
from collections import Counter

import pytest

from search.selection.population import (
    MIN_NOISE_FLOOR,
    Member,
    improves,
    noise_floor,
    rank_members,
    select_parents,
    select_survivors,
)


def _m(name, bpb, mem, ok=True):
    return Member(name=name, val_bpb=bpb, peak_mem_mb=mem, ok=ok)


def _names(members):
    return [m.name for m in members]


def bpb_only(member):
    """Objectives that ignore memory: selection on val_bpb alone."""
    return (member.val_bpb,)


def tournament(members, rng, k=2):
    """One k-way tournament: the single parent `select_parents` picks."""
    return select_parents(members, rng, 1, k=k)[0]


# A trade-off front of four, and a dominated second front of five unevenly spread on
# bpb + mem/1000 = 6 (bpb range 4, memory range 4000), each of its points dominated by one of the first.
FRONT0 = [_m("a0", 0.5, 4500.0), _m("a1", 1.5, 3000.0), _m("a2", 3.5, 1500.0), _m("a3", 4.5, 500.0)]
FRONT1 = [
    _m("b0", 1.0, 5000.0),
    _m("b1", 2.0, 4000.0),
    _m("b2", 2.5, 3500.0),
    _m("b3", 4.0, 2000.0),
    _m("b4", 5.0, 1000.0),
]
A = {"a0", "a1", "a2", "a3"}


def test_survivors_take_whole_fronts_then_the_most_spread_of_the_cut_front():
    members = FRONT1 + FRONT0
    assert set(_names(select_survivors(members, 4))) == A
    # Front 0 (4) + 2 of front 1: its two boundaries.
    assert set(_names(select_survivors(members, 6))) == A | {"b0", "b4"}
    # One more: b3 is the loneliest interior point of front 1 (crowding 1.25 vs b2 1.0, b1 0.75).
    assert set(_names(select_survivors(members, 7))) == A | {"b0", "b4", "b3"}
    assert set(_names(select_survivors(members, 8))) == A | {"b0", "b4", "b3", "b2"}
    assert len(select_survivors(members, 9)) == len(select_survivors(members, 50)) == 9


def test_survivors_come_back_best_first():
    got = select_survivors(FRONT1 + FRONT0, 7)
    # Front 0: boundaries (inf) by name, then a1 (1.5) before a2 (1.375); then the cut front.
    assert _names(got) == ["a0", "a3", "a1", "a2", "b0", "b4", "b3"]


def test_front_members_always_survive_even_beyond_size():
    front = [_m(f"v{i}", 1.0 + i, 100.0 - i) for i in range(6)]
    dominated = [_m("worse", 10.0, 1000.0)]
    got = select_survivors(dominated + front, 2)
    assert sorted(_names(got)) == sorted(_names(front))


def test_failed_members_never_survive():
    members = [
        _m("good", 1.2, 500.0),
        _m("crashed", 0.5, 100.0, ok=False),  # would dominate everything if it counted
        _m("no_bpb", None, 100.0),
        _m("no_mem", 0.9, None),
        _m("nan", float("nan"), 100.0),
    ]
    assert _names(select_survivors(members, 100)) == ["good"]
    assert select_survivors([_m("crashed", 0.5, 100.0, ok=False)], 4) == []


def test_survivors_do_not_depend_on_input_order():
    members = FRONT0 + FRONT1
    expected = _names(select_survivors(members, 6))
    for seed in range(5):
        shuffled = list(members)
        random.Random(seed).shuffle(shuffled)
        assert _names(select_survivors(shuffled, 6)) == expected


def test_crowding_ties_in_the_cut_front_break_by_name():
    # Two identical dominated points compete for one place: the smaller name wins.
    members = [_m("top", 1.0, 100.0), _m("z", 2.0, 200.0), _m("y", 2.0, 200.0)]
    assert _names(select_survivors(members, 2)) == ["top", "y"]


def test_survivors_reject_bad_arguments():
    with pytest.raises(ValueError, match="at least 1"):
        select_survivors(FRONT0, 0)
    with pytest.raises(ValueError, match="unique"):
        select_survivors([_m("v1", 1.0, 1.0), _m("v1", 2.0, 2.0)], 3)


def test_objectives_hook_ignores_memory():
    members = [_m("lean", 1.1, 100.0), _m("best", 1.0, 9000.0), _m("unknown_mem", 1.05, None)]
    assert _names(select_survivors(members, 1)) == ["best", "lean"]  # both on the 2-objective front
    assert _names(select_survivors(members, 1, objectives=bpb_only)) == ["best"]
    assert _names(select_survivors(members, 3, objectives=bpb_only)) == ["best", "unknown_mem", "lean"]


def test_rank_members_reports_rank_and_crowding():
    ranked = {r.member.name: r for r in rank_members(FRONT0 + FRONT1)}
    assert {n for n, r in ranked.items() if r.rank == 0} == A
    assert {n for n, r in ranked.items() if r.rank == 1} == {"b0", "b1", "b2", "b3", "b4"}
    assert ranked["a0"].crowding == float("inf") and ranked["b4"].crowding == float("inf")
    assert ranked["a1"].crowding == pytest.approx((3.5 - 0.5) / 4 + (4500 - 1500) / 4000)
    assert ranked["b2"].crowding == pytest.approx((4.0 - 2.0) / 4 + (4000 - 2000) / 4000)


def test_tournament_prefers_lower_rank():
    best, worse = _m("best", 1.0, 100.0), _m("worse", 2.0, 200.0)
    # Two members, k=2: both always compete, so the better always wins.
    assert all(tournament([worse, best], random.Random(seed)).name == "best" for seed in range(50))
    # With a third member the worst never wins a binary tournament; the best wins about 2/3.
    third = _m("mid", 1.5, 150.0)
    wins = Counter(tournament([worse, third, best], random.Random(seed)).name for seed in range(600))
    assert wins["worse"] == 0
    assert 340 < wins["best"] < 460


def test_tournament_prefers_larger_crowding_at_equal_rank():
    # One front of three: the middle point has finite crowding, the ends infinite.
    front = [_m("end_a", 1.0, 300.0), _m("middle", 2.0, 200.0), _m("end_b", 3.0, 100.0)]
    wins = Counter(tournament(front, random.Random(seed)).name for seed in range(600))
    assert wins["middle"] == 0
    assert wins["end_a"] > 200 and wins["end_b"] > 200


def test_tournament_ranks_only_the_given_members():
    # Among all three, p1 is dominated by p0; between p1 and p2 alone both are front-0 boundaries,
    # so the name decides and p1 wins. Were ranks global, p2 (rank 0) would beat p1 (rank 1).
    p0, p1, p2 = _m("p0", 1.0, 100.0), _m("p1", 2.0, 150.0), _m("p2", 3.0, 50.0)
    assert all(tournament([p1, p2], random.Random(s)).name == "p1" for s in range(20))
    assert all(tournament([p0, p1], random.Random(s)).name == "p0" for s in range(20))
    assert all(tournament([p0, p1, p2], random.Random(s), k=3).name == "p0" for s in range(20))


def test_tournament_skips_failed_members_and_needs_someone():
    failed = _m("crashed", 0.1, 1.0, ok=False)
    good = _m("good", 2.0, 200.0)
    assert all(tournament([failed, good], random.Random(s)).name == "good" for s in range(20))
    with pytest.raises(ValueError, match="no member to select from"):
        tournament([failed], random.Random(0))
    with pytest.raises(ValueError, match="at least 1"):
        tournament([good], random.Random(0), k=0)


def test_tournament_is_reproducible_with_a_seed():
    members = FRONT0 + FRONT1
    first = [tournament(members, random.Random(7), k=3).name for _ in range(5)]
    assert len(set(first)) == 1
    rng_a, rng_b = random.Random(11), random.Random(11)
    assert _names(select_parents(members, rng_a, 6)) == _names(select_parents(members, rng_b, 6))


def test_select_parents_are_distinct_when_possible():
    best, worse = _m("best", 1.0, 100.0), _m("worse", 2.0, 200.0)
    assert _names(select_parents([best, worse], random.Random(0), 2)) == ["best", "worse"]
    # Without distinctness the same winner comes back.
    assert _names(select_parents([best, worse], random.Random(0), 2, distinct=False)) == ["best", "best"]
    members = FRONT0 + FRONT1
    for seed in range(50):
        assert len(set(_names(select_parents(members, random.Random(seed), 4)))) == 4


def test_select_parents_repeat_only_once_everyone_is_chosen():
    members = FRONT0
    got = _names(select_parents(members, random.Random(1), 6))
    assert set(got[:4]) == A
    assert len(got) == 6 and set(got[4:]) <= A
    assert select_parents(members, random.Random(1), 0) == []
    with pytest.raises(ValueError, match="non-negative"):
        select_parents(members, random.Random(1), -1)


def test_improves_needs_more_than_the_noise_floor():
    assert improves(0.95, 1.0, 0.04)
    assert not improves(0.96, 1.0, 0.04)  # exactly at the floor is not an improvement
    assert not improves(0.97, 1.0, 0.04)
    assert improves(0.999, 1.0, 0.0)
    assert not improves(1.0, 1.0, 0.0)
    assert not improves(float("nan"), 1.0, 0.0)
    with pytest.raises(ValueError, match="non-negative"):
        improves(0.5, 1.0, -0.01)


def test_noise_floor_of_three_repeats():
    nf = noise_floor([1.0, 1.02, 0.98])
    assert nf.n == 3
    assert nf.mean == pytest.approx(1.0)
    assert nf.std == pytest.approx(0.02)  # sample std: sqrt((0.02^2 + 0.02^2) / 2)
    assert nf.floor == pytest.approx(0.04)
    assert noise_floor([1.0, 1.02, 0.98], k=3.0).floor == pytest.approx(0.06)
    assert improves(0.95, nf.mean, nf.floor) and not improves(0.965, nf.mean, nf.floor)


def test_noise_floor_edge_cases():
    single = noise_floor([1.3])
    assert (single.mean, single.std, single.n, single.floor) == (1.3, 0.0, 1, 0.0)
    identical = noise_floor([1.1, 1.1, 1.1])
    assert identical.std == 0.0 and identical.floor == MIN_NOISE_FLOOR
    assert not improves(1.1, identical.mean, identical.floor)
    with pytest.raises(ValueError, match="at least one"):
        noise_floor([])
    with pytest.raises(ValueError, match="finite"):
        noise_floor([1.0, float("nan")])
