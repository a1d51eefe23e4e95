"""Least-shards allocation and rebalancing with limits, as table tests (no loop, no clock)."""

from __future__ import annotations

import pytest

from shoal.sharding._allocation import RebalanceLimits, allocate, rebalance


def alloc(**sizes: int) -> dict[str, frozenset[int]]:
    """Regions named by keyword, each with consecutive shard numbers."""
    out: dict[str, frozenset[int]] = {}
    start = 0
    for region, n in sizes.items():
        out[region] = frozenset(range(start, start + n))
        start += n
    return out


@pytest.mark.parametrize(
    ("allocation", "expected"),
    [
        (alloc(a=0), "a"),
        (alloc(a=3, b=1, c=2), "b"),
        (alloc(a=1, b=1), "a"),  # ties: the lowest name
        (alloc(c=2, b=2, a=5), "b"),
        (alloc(a=0, b=0, c=0), "a"),
    ],
)
def test_allocate_picks_the_region_with_the_fewest_shards(
    allocation: dict[str, frozenset[int]], expected: str
) -> None:
    assert allocate(allocation) == expected


def test_allocate_needs_a_region() -> None:
    with pytest.raises(ValueError, match="no region"):
        allocate({})


@pytest.mark.parametrize(
    ("allocation", "in_progress", "limits", "expected"),
    [
        # balanced or trivial: nothing to do
        (alloc(a=5, b=5), (), RebalanceLimits(), set()),
        (alloc(a=3, b=2), (), RebalanceLimits(), set()),
        (alloc(a=10), (), RebalanceLimits(), set()),
        (alloc(a=0, b=0), (), RebalanceLimits(), set()),
        (alloc(a=4, b=4, c=3), (), RebalanceLimits(), set()),
        # one round at a time
        (alloc(a=10, b=0), {3}, RebalanceLimits(), set()),
        # above the optimum (ceil 10/2 = 5): the excess, highest shards first, within the limit
        (alloc(a=10, b=0), (), RebalanceLimits(), {9}),  # relative 0.1 * 10 = 1
        (alloc(a=10, b=0), (), RebalanceLimits(relative=0.5), {5, 6, 7, 8, 9}),
        (alloc(a=10, b=0), (), RebalanceLimits(absolute=2, relative=1.0), {8, 9}),
        # a new, empty region: the excess of the most loaded first (ceil 8/3 = 3)
        (alloc(a=4, b=4, c=0), (), RebalanceLimits(relative=1.0), {3, 7}),
        # nobody above ceil(9/4) = 3 but d below floor = 2: one from each of two donors
        (alloc(a=3, b=3, c=3, d=0), (), RebalanceLimits(relative=1.0), {2, 5}),
        (alloc(a=3, b=3, c=3, d=0), (), RebalanceLimits(relative=0.1), {2}),
        # the most loaded region gives first, whatever its name
        (alloc(a=3, z=12, m=3), (), RebalanceLimits(relative=1.0), {9, 10, 11, 12, 13, 14}),
    ],
)
def test_rebalance_moves_toward_the_optimum_within_limits(
    allocation: dict[str, frozenset[int]],
    in_progress: set[int] | tuple[()],
    limits: RebalanceLimits,
    expected: set[int],
) -> None:
    assert rebalance(allocation, frozenset(in_progress), limits) == expected


def test_repeated_rounds_converge_to_a_balanced_allocation() -> None:
    allocation = {k: set(v) for k, v in alloc(a=100, b=0, c=0).items()}
    rounds = 0
    while moved := rebalance(allocation, frozenset(), RebalanceLimits()):
        rounds += 1
        for region, shards in allocation.items():
            allocation[region] = shards - moved
        for shard in sorted(moved):
            allocation[allocate(allocation)].add(shard)
        assert rounds < 100
    assert sorted(len(s) for s in allocation.values()) == [33, 33, 34]
    assert rounds == 7  # 10 shards per round (0.1 * 100), 67 to move


@pytest.mark.parametrize(
    ("limits", "shards", "per_round"),
    [
        (RebalanceLimits(), 100, 10),
        (RebalanceLimits(), 1000, 20),
        (RebalanceLimits(), 3, 1),
        (RebalanceLimits(absolute=5, relative=1.0), 3, 3),
    ],
)
def test_the_per_round_limit(limits: RebalanceLimits, shards: int, per_round: int) -> None:
    assert limits.per_round(shards) == per_round


@pytest.mark.parametrize(("absolute", "relative"), [(0, 0.1), (1, 0.0), (1, 1.5)])
def test_bad_limits_are_refused(absolute: int, relative: float) -> None:
    with pytest.raises(ValueError, match="rebalance limit"):
        RebalanceLimits(absolute, relative)
