"""Which neighbours a node sends heartbeats to: a ring over the sorted member addresses."""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Collection, Iterable
from dataclasses import dataclass

from shoal.runtime import UniqueAddress


@dataclass(frozen=True, slots=True)
class HeartbeatRing:
    """The members in address order, closed into a ring. Frozen.

    Each node monitors (sends heartbeats to) the next ``n`` nodes after it
    on the ring, so each node is monitored by the ``n`` before it and the
    cost per node does not grow with the cluster. Sorting by address keeps
    the ring stable: a node joining or leaving changes the receivers of
    only the ``n`` nodes before it. Unreachable nodes met on the way are
    kept as receivers without counting towards ``n`` (their detector must
    keep running to see them come back, and the leader must be able to
    remove them), up to ``n`` of them (Akka's ``HeartbeatNodeRing``).
    """

    nodes: tuple[UniqueAddress, ...]
    n: int = 5
    unreachable: frozenset[UniqueAddress] = frozenset()

    @classmethod
    def of(
        cls,
        nodes: Iterable[UniqueAddress],
        n: int = 5,
        unreachable: Collection[UniqueAddress] = (),
    ) -> HeartbeatRing:
        """A ring over ``nodes`` (any order, duplicates ignored)."""
        if n < 1:
            raise ValueError(f"a node monitors at least one neighbour, got n={n}")
        return cls(tuple(sorted(set(nodes))), n, frozenset(unreachable))

    def receivers(self, node: UniqueAddress) -> frozenset[UniqueAddress]:
        """The nodes ``node`` sends heartbeats to (``node`` need not be on the ring)."""
        nodes = self.nodes
        if len(nodes) - (node in nodes) <= self.n:
            return frozenset(nodes) - {node}
        start = bisect_right(nodes, node) % len(nodes)
        chosen: set[UniqueAddress] = set()
        wanted = self.n
        for i in range(len(nodes)):
            other = nodes[(start + i) % len(nodes)]
            if other == node:
                continue
            if other in self.unreachable:
                if len(chosen) < self.n:
                    chosen.add(other)
                continue
            chosen.add(other)
            wanted -= 1
            if wanted == 0:
                break
        return frozenset(chosen)

    def monitored_by(self, node: UniqueAddress) -> frozenset[UniqueAddress]:
        """The nodes that send heartbeats to ``node``."""
        return frozenset(other for other in self.nodes if node in self.receivers(other))
