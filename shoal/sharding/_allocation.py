"""Shard allocation: least-shards placement and rebalancing with limits, as pure functions.

Regions are named by plain strings (a region's node address) and shards by
their numbers; an allocation maps every region to the shards it hosts. No
loop, no clock, no I/O: the coordinator calls these with its state and acts
on the answer. The strategy is Akka's ``LeastShardAllocationStrategy`` (the
one of Akka 2.6.10+): place a new shard on the region with the fewest shards,
and rebalance in rounds toward the optimum, each round bounded by an
absolute and a relative limit, one round at a time.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Set
from dataclasses import dataclass

Allocation = Mapping[str, Set[int]]
"""Region name -> the shards it hosts."""


def allocate(allocation: Allocation) -> str:
    """The region a new shard goes to: the one with the fewest shards (ties: lowest name).

    ``ValueError`` if there is no region.
    """
    if not allocation:
        raise ValueError("no region to allocate a shard to")
    return min(allocation, key=lambda region: (len(allocation[region]), region))


@dataclass(frozen=True, slots=True)
class RebalanceLimits:
    """How many shards one rebalance round may move. Frozen.

    A round moves at most ``min(absolute, max(1, floor(relative * shards)))``
    shards, where ``shards`` is the number of allocated shards: with the
    defaults (20, 0.1) a cluster of 100 shards moves 10 per round, one of
    1,000 moves 20.
    """

    absolute: int = 20
    relative: float = 0.1

    def __post_init__(self) -> None:
        if self.absolute < 1:
            raise ValueError(f"the absolute rebalance limit is >= 1, not {self.absolute}")
        if not 0.0 < self.relative <= 1.0:
            raise ValueError(f"the relative rebalance limit is in (0, 1], not {self.relative}")

    def per_round(self, shards: int) -> int:
        """The most shards one round may move among ``shards`` allocated shards."""
        return min(self.absolute, max(1, math.floor(self.relative * shards)))


def rebalance(
    allocation: Allocation,
    in_progress: Set[int] = frozenset(),
    limits: RebalanceLimits | None = None,
) -> frozenset[int]:
    """The shards to move in this round (an empty set: nothing to do).

    Nothing while a round is still in progress (``in_progress`` not empty).
    Otherwise, first the shards above the optimum ``ceil(shards / regions)``
    of each region; if there are none, one shard from each region at the
    optimum while some region has fewer than ``floor(shards / regions)``
    (a region that just joined). Shards are taken from the most loaded
    regions first (ties: lowest name), the highest shard numbers of each
    region first, up to the limit of :class:`RebalanceLimits`.
    """
    if in_progress or len(allocation) < 2:
        return frozenset()
    limits = limits if limits is not None else RebalanceLimits()
    total = sum(len(shards) for shards in allocation.values())
    if total == 0:
        return frozenset()
    limit = limits.per_round(total)
    most_first = sorted(allocation, key=lambda region: (-len(allocation[region]), region))
    optimum_max = math.ceil(total / len(allocation))
    optimum_min = total // len(allocation)
    chosen: list[int] = []
    for region in most_first:
        excess = len(allocation[region]) - optimum_max
        if excess > 0:
            chosen.extend(_highest(allocation[region], excess))
    if not chosen:
        missing = sum(
            optimum_min - len(shards) for shards in allocation.values() if len(shards) < optimum_min
        )
        donors = [r for r in most_first if len(allocation[r]) > optimum_min]
        for region in donors[:missing]:
            chosen.extend(_highest(allocation[region], 1))
    return frozenset(chosen[:limit])


def _highest(shards: Iterable[int], n: int) -> list[int]:
    return sorted(shards, reverse=True)[:n]
