"""Pareto ranking of points whose objectives are all minimised (pure: numpy only).

The building blocks of NSGA-II selection (Deb et al. 2002, https://doi.org/10.1109/4235.996017):
the fast non-dominated sort into fronts, and the crowding distance within a front.
Points are sequences of floats of one length (one entry per objective), indexed by position.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def _as_matrix(points: Sequence[Sequence[float]]) -> np.ndarray:
    """Points as an (n, m) float array; ragged or NaN input is an error."""
    if len(points) == 0:
        return np.zeros((0, 0), dtype=float)
    try:
        matrix = np.asarray(points, dtype=float)
    except ValueError as exc:
        raise ValueError(f"points must all have the same number of objectives: {exc}") from None
    if matrix.ndim != 2 or matrix.shape[1] == 0:
        raise ValueError(f"points must be a list of objective vectors, got an array of shape {matrix.shape}")
    bad = np.flatnonzero(np.isnan(matrix).any(axis=1))
    if bad.size:
        raise ValueError(f"points at indices {bad.tolist()} have NaN objectives; leave them out before ranking")
    return matrix


def _dominance_matrix(matrix: np.ndarray) -> np.ndarray:
    """`out[i, j]` is True when point i dominates point j."""
    left = matrix[:, None, :]
    right = matrix[None, :, :]
    return (left <= right).all(axis=2) & (left < right).any(axis=2)


def non_dominated_sort(points: Sequence[Sequence[float]]) -> list[list[int]]:
    """Split points into fronts: front 0 is the Pareto front, front i+1 the Pareto front of the rest.

    The fast non-dominated sort of NSGA-II. Equal points never dominate each other, so they land
    in the same front. Indices within a front are in ascending order.

    Args:
        points: objective vectors, all of one length, all minimised.

    Returns:
        The fronts as lists of indices into `points`; every index appears exactly once.

    Raises:
        ValueError: if the points are ragged or hold NaN.
    """
    matrix = _as_matrix(points)
    if matrix.shape[0] == 0:
        return []
    dominated_by = _dominance_matrix(matrix)
    # How many not-yet-assigned points dominate each point; a front is those at zero.
    count = dominated_by.sum(axis=0)
    remaining = np.ones(matrix.shape[0], dtype=bool)
    fronts: list[list[int]] = []
    while remaining.any():
        current = np.flatnonzero(remaining & (count == 0))
        fronts.append(current.tolist())
        remaining[current] = False
        count = count - dominated_by[current].sum(axis=0)
    return fronts


def crowding_distance(points: Sequence[Sequence[float]], front: list[int]) -> dict[int, float]:
    """NSGA-II crowding distance of each point of one front: larger is lonelier, so more worth keeping.

    For each objective the front is sorted (ties broken by index); the two extreme points get
    infinity, and every other point adds the gap between its neighbours divided by the objective's
    range over the front. An objective whose range over the front is zero contributes nothing, not
    even infinities, so a front of identical points has distance 0 everywhere.

    Args:
        points: all objective vectors (the front indexes into them).
        front: indices of the points that form the front.

    Returns:
        {index: distance} for every index in `front`.

    Raises:
        ValueError: if the points are ragged or hold NaN, or an index is out of range.
    """
    if not front:
        return {}
    matrix = _as_matrix(points)
    out_of_range = [i for i in front if not 0 <= i < matrix.shape[0]]
    if out_of_range:
        raise ValueError(f"front indices {out_of_range} are out of range for {matrix.shape[0]} points")
    distance = {i: 0.0 for i in front}
    for objective in range(matrix.shape[1]):
        values = matrix[:, objective]
        order = sorted(front, key=lambda i: (values[i], i))
        span = values[order[-1]] - values[order[0]]
        if not span > 0 or not np.isfinite(span):
            continue
        distance[order[0]] = distance[order[-1]] = float("inf")
        for prev, here, nxt in zip(order, order[1:], order[2:]):
            distance[here] += float((values[nxt] - values[prev]) / span)
    return distance


def pareto_front(points: Sequence[Sequence[float]]) -> list[int]:
    """Indices of the non-dominated points, ascending (empty for no points)."""
    fronts = non_dominated_sort(points)
    return fronts[0] if fronts else []
