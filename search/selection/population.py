"""Selection in the population search: who survives, who breeds, what counts as better (pure).

Members are evaluated variants as selection sees them. Both objectives, `val_bpb` and
`peak_mem_mb`, are minimised; survivors are chosen by NSGA-II environmental selection and parents
by tournaments on (front rank, crowding distance). The single-lineage loop uses `improves` with a
noise floor measured from repeated baseline runs instead.

Only members that are `ok` and have finite figures for every objective are ranked; the rest
(crashes, timeouts, rejected candidates, missing figures) never survive and are never parents.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from search.selection.pareto import crowding_distance, non_dominated_sort

__all__ = [
    "MIN_NOISE_FLOOR",
    "Member",
    "NoiseFloor",
    "Objectives",
    "RankedMember",
    "bpb_and_memory",
    "improves",
    "noise_floor",
    "rank_members",
    "select_parents",
    "select_survivors",
]

MIN_NOISE_FLOOR = 1e-9  # floor when repeated baselines agree exactly: equal is never "better"


@dataclass
class Member:
    """An evaluated variant as selection sees it."""

    name: str  # e.g. "v0007"; unique within a population, the final tie-break
    val_bpb: float | None  # validation bits per byte (None if the trial gave none)
    peak_mem_mb: float | None  # peak memory in MiB (None if the trial gave none)
    ok: bool  # the trial ended `ok`; anything else is never ranked
    generation: int = 0


Objectives = Callable[[Member], Sequence[float | None]]
"""Maps a member to the values selection minimises; None or a non-finite value makes it unranked."""


def bpb_and_memory(member: Member) -> tuple[float | None, float | None]:
    """The default objectives: (val_bpb, peak_mem_mb)."""
    return (member.val_bpb, member.peak_mem_mb)


@dataclass
class RankedMember:
    """A ranked member: its front (0 = Pareto front) and crowding distance within that front."""

    member: Member
    rank: int
    crowding: float


def _objective_values(member: Member, objectives: Objectives) -> tuple[float, ...] | None:
    """The member's objective values, or None if it may not be ranked."""
    if not member.ok:
        return None
    values = tuple(objectives(member))
    if not values or any(v is None or not math.isfinite(v) for v in values):
        return None
    return tuple(float(v) for v in values)


def _selection_key(ranked: RankedMember) -> tuple[int, float, str]:
    return (ranked.rank, -ranked.crowding, ranked.member.name)


def rank_members(members: Sequence[Member], objectives: Objectives = bpb_and_memory) -> list[RankedMember]:
    """Non-dominated sort and crowding distance over the rankable members.

    Args:
        members: the members to rank against each other; unrankable ones are left out.
        objectives: what to minimise (default `bpb_and_memory`).

    Returns:
        The rankable members, best first: by front rank, then larger crowding, then name.

    Raises:
        ValueError: if two members share a name.
    """
    duplicates = sorted(name for name, count in Counter(m.name for m in members).items() if count > 1)
    if duplicates:
        raise ValueError(f"member names must be unique, repeated: {duplicates}")
    rankable: list[tuple[Member, tuple[float, ...]]] = []
    for member in sorted(members, key=lambda m: m.name):
        values = _objective_values(member, objectives)
        if values is not None:
            rankable.append((member, values))
    points = [values for _, values in rankable]
    ranked: list[RankedMember] = []
    for rank, front in enumerate(non_dominated_sort(points)):
        crowding = crowding_distance(points, front)
        ranked.extend(RankedMember(rankable[i][0], rank, crowding[i]) for i in front)
    return sorted(ranked, key=_selection_key)


def select_survivors(
    members: Sequence[Member], size: int, objectives: Objectives = bpb_and_memory
) -> list[Member]:
    """NSGA-II environmental selection of the next population.

    Whole fronts are taken in order while they fit; the front that does not fit is cut, keeping
    its members with the largest crowding distance (ties broken by name). The Pareto front always
    survives whole, even when it alone is larger than `size`: a non-dominated variant is never
    discarded, so the population can grow beyond `size` when the front does. Failed members and
    members without figures never survive, so fewer than `size` may come back.

    Args:
        members: the current population and its offspring, evaluated.
        size: the target population size (at least 1).
        objectives: what to minimise (default `bpb_and_memory`).

    Returns:
        The survivors, best first (front rank, then larger crowding, then name).

    Raises:
        ValueError: if `size` < 1 or two members share a name.
    """
    if size < 1:
        raise ValueError(f"population size must be at least 1, got {size}")
    ranked = rank_members(members, objectives)
    front_size = sum(1 for r in ranked if r.rank == 0)
    # The list is ordered by (rank, crowding desc, name), so a prefix is exactly NSGA-II's choice.
    return [r.member for r in ranked[: max(size, front_size)]]


def _tournament(pool: Sequence[RankedMember], rng: random.Random, k: int) -> RankedMember:
    """k distinct contestants drawn at random; the best (rank, then crowding, then name) wins."""
    contestants = rng.sample(list(pool), min(k, len(pool)))
    return min(contestants, key=_selection_key)


def _check_tournament(ranked: Sequence[RankedMember], k: int) -> None:
    if k < 1:
        raise ValueError(f"tournament size k must be at least 1, got {k}")
    if not ranked:
        raise ValueError("no member to select from: none is ok with a value for every objective")


def select_parents(
    members: Sequence[Member],
    rng: random.Random,
    n: int,
    k: int = 2,
    distinct: bool = True,
    objectives: Objectives = bpb_and_memory,
) -> list[Member]:
    """`n` parents by repeated k-way tournaments (ranks computed once over `members`).

    Args:
        members: the population to breed from.
        rng: the source of randomness.
        n: how many parents (2 for a crossover).
        k: contestants per tournament.
        distinct: when True, a member already chosen does not enter later tournaments until every
            rankable member has been chosen once; so parents are distinct whenever there are
            enough rankable members, and repeat only beyond that.
        objectives: what to minimise (default `bpb_and_memory`).

    Returns:
        The parents in the order they were chosen.

    Raises:
        ValueError: if n < 0, k < 1, or n > 0 and no member is rankable.
    """
    if n < 0:
        raise ValueError(f"number of parents must be non-negative, got {n}")
    if n == 0:
        return []
    ranked = rank_members(members, objectives)
    _check_tournament(ranked, k)
    chosen: list[Member] = []
    pool = list(ranked)
    for _ in range(n):
        winner = _tournament(pool, rng, k)
        chosen.append(winner.member)
        if distinct:
            pool = [r for r in pool if r is not winner] or list(ranked)
    return chosen


def improves(candidate_bpb: float, best_bpb: float, noise_floor: float) -> bool:
    """The single-lineage keep rule: better than the best by more than the noise floor.

    True when `candidate_bpb < best_bpb - noise_floor` (strictly); a NaN candidate never improves.

    Raises:
        ValueError: if `noise_floor` is negative or NaN.
    """
    if not noise_floor >= 0:
        raise ValueError(f"noise floor must be non-negative, got {noise_floor}")
    return candidate_bpb < best_bpb - noise_floor


@dataclass
class NoiseFloor:
    """Spread of val_bpb over repeated runs of one variant, and the improvement it takes to beat it."""

    mean: float  # mean val_bpb
    std: float  # sample standard deviation (ddof=1); 0 for a single run
    n: int  # number of runs
    floor: float  # max(k * std, MIN_NOISE_FLOOR) when n >= 2, else 0 (nothing measured)


def noise_floor(values: Sequence[float], k: float = 2.0) -> NoiseFloor:
    """The noise floor of val_bpb from repeated runs of the same code (e.g. the seed with other seeds).

    Args:
        values: val_bpb of each repeat; failed repeats must be left out by the caller.
        k: how many standard deviations an improvement must exceed.

    Raises:
        ValueError: if `values` is empty or holds a non-finite value, or k is negative.
    """
    if not k >= 0:
        raise ValueError(f"k must be non-negative, got {k}")
    if len(values) == 0:
        raise ValueError("noise floor needs at least one val_bpb value")
    array = np.asarray(values, dtype=float)
    if not np.isfinite(array).all():
        raise ValueError(f"noise floor values must be finite, got {list(values)}")
    n = int(array.size)
    mean = float(array.mean())
    if n < 2:
        return NoiseFloor(mean=mean, std=0.0, n=n, floor=0.0)
    std = float(array.std(ddof=1))
    return NoiseFloor(mean=mean, std=std, n=n, floor=max(k * std, MIN_NOISE_FLOOR))
