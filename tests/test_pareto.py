import math

import numpy as np
import pytest

from search.selection.pareto import crowding_distance, non_dominated_sort, pareto_front

INF = float("inf")


def dominates(a, b):
    """The oracle of the property test: `a` is no worse than `b` everywhere and better somewhere."""
    return all(x <= y for x, y in zip(a, b)) and any(x < y for x, y in zip(a, b))


def test_fronts_of_a_known_set():
    points = [
        (1.0, 5.0),  # 0: front 0
        (2.0, 3.0),  # 1: front 0
        (4.0, 1.0),  # 2: front 0
        (3.0, 4.0),  # 3: dominated by 1 -> front 1
        (5.0, 2.0),  # 4: dominated by 2 -> front 1
        (2.0, 3.0),  # 5: equal to 1 -> front 0 with it
        (5.0, 5.0),  # 6: dominated by 3 and 4 -> front 2
        (6.0, 6.0),  # 7: dominated by 6 -> front 3
    ]
    assert non_dominated_sort(points) == [[0, 1, 2, 5], [3, 4], [6], [7]]
    assert pareto_front(points) == [0, 1, 2, 5]


def test_sort_of_nothing_and_of_one_point():
    assert non_dominated_sort([]) == []
    assert pareto_front([]) == []
    assert non_dominated_sort([(3.0, 4.0)]) == [[0]]


def test_sort_rejects_nan_and_ragged_points():
    with pytest.raises(ValueError, match=r"indices \[1\] have NaN"):
        non_dominated_sort([(1.0, 2.0), (math.nan, 1.0)])
    with pytest.raises(ValueError, match="same number of objectives"):
        non_dominated_sort([(1.0, 2.0), (1.0,)])


def test_crowding_boundaries_are_infinite_and_interior_normalised():
    # On the line x + y = 4, unevenly spaced; both ranges are 4.
    points = [(0.0, 4.0), (1.0, 3.0), (1.5, 2.5), (3.0, 1.0), (4.0, 0.0)]
    d = crowding_distance(points, [0, 1, 2, 3, 4])
    assert d[0] == INF and d[4] == INF
    assert d[1] == pytest.approx((1.5 - 0.0) / 4 + (4.0 - 2.5) / 4)
    assert d[2] == pytest.approx((3.0 - 1.0) / 4 * 2)
    assert d[3] == pytest.approx((4.0 - 1.5) / 4 * 2)


def test_crowding_is_scale_free():
    points = [(0.0, 4.0), (1.0, 3.0), (1.5, 2.5), (3.0, 1.0), (4.0, 0.0)]
    scaled = [(x, 1000.0 * y) for x, y in points]
    assert crowding_distance(points, [0, 1, 2, 3, 4]) == pytest.approx(crowding_distance(scaled, [0, 1, 2, 3, 4]))


def test_crowding_degenerate_range_contributes_nothing():
    points = [(1.0, 5.0), (2.0, 5.0), (3.0, 5.0)]
    d = crowding_distance(points, [0, 1, 2])
    assert d == {0: INF, 1: pytest.approx(1.0), 2: INF}
    same = [(1.0, 1.0)] * 3
    assert crowding_distance(same, [0, 1, 2]) == {0: 0.0, 1: 0.0, 2: 0.0}


def test_crowding_of_a_subset_uses_only_that_front():
    points = [(0.0, 10.0), (5.0, 5.0), (10.0, 0.0), (100.0, 100.0)]
    d = crowding_distance(points, [0, 1, 2])
    assert set(d) == {0, 1, 2}
    assert d[1] == pytest.approx(2.0)  # range 10 per objective, not 100
    assert crowding_distance(points, []) == {}
    with pytest.raises(ValueError, match="out of range"):
        crowding_distance(points, [0, 7])


@pytest.mark.parametrize("seed", range(8))
def test_fronts_property_on_random_points(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 60))
    # Coarse integers so that ties and duplicate points are common.
    points = rng.integers(0, 8, size=(n, 2)).astype(float).tolist()
    fronts = non_dominated_sort(points)

    assert sorted(i for front in fronts for i in front) == list(range(n))
    for i in fronts[0]:
        assert not any(dominates(p, points[i]) for p in points)
    for depth in range(1, len(fronts)):
        for i in fronts[depth]:
            assert any(dominates(points[j], points[i]) for j in fronts[depth - 1])
    for front in fronts:
        assert not any(dominates(points[a], points[b]) for a in front for b in front)


def test_three_objectives():
    points = [(1.0, 2.0, 3.0), (2.0, 1.0, 3.0), (2.0, 2.0, 3.0), (1.0, 1.0, 1.0)]
    assert non_dominated_sort(points) == [[3], [0, 1], [2]]
