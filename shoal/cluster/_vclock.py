"""Vector clocks: which changes of the gossip state a version includes."""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from shoal.runtime import UniqueAddress


class Ordering(enum.Enum):
    """How two versions relate."""

    SAME = "same"
    BEFORE = "before"
    """The left version is older: every change it has, the right one has too."""
    AFTER = "after"
    """The left version is newer."""
    CONCURRENT = "concurrent"
    """Each has changes the other lacks: the states must be merged."""


@dataclass(frozen=True, slots=True)
class VectorClock:
    """A version of the gossip state: per node, how many changes it made. Frozen.

    Only a member changes its own entry (:meth:`increment`); merging takes
    the maximum per node, so the merged version is newer than or equal to
    both. Entries of removed incarnations stay until their tombstones are
    pruned (:meth:`prune`), so the keys are always members or tombstones
    of the state the clock belongs to, and a wire encoding can reference
    them by index into that state's address table.

    ``counters`` must not be mutated; absent nodes count 0.
    """

    counters: Mapping[UniqueAddress, int] = field(default_factory=dict)

    def get(self, node: UniqueAddress) -> int:
        """The number of changes ``node`` made (0 when it made none)."""
        return self.counters.get(node, 0)

    def increment(self, node: UniqueAddress) -> VectorClock:
        """This version plus one change by ``node``."""
        counters = dict(self.counters)
        counters[node] = counters.get(node, 0) + 1
        return VectorClock(counters)

    def merge(self, other: VectorClock) -> VectorClock:
        """The smallest version that includes both (pointwise maximum)."""
        if not other.counters or other.counters == self.counters:
            return self
        if not self.counters:
            return other
        counters = dict(self.counters)
        for node, count in other.counters.items():
            if count > counters.get(node, 0):
                counters[node] = count
        return VectorClock(counters)

    def prune(self, nodes: Iterable[UniqueAddress]) -> VectorClock:
        """This version without the entries of ``nodes``."""
        gone = set(nodes) & self.counters.keys()
        if not gone:
            return self
        return VectorClock({n: c for n, c in self.counters.items() if n not in gone})

    def compare(self, other: VectorClock) -> Ordering:
        """How this version relates to ``other`` (``BEFORE``: this one is older)."""
        mine, theirs = self.counters, other.counters
        less = more = False
        for node, count in mine.items():
            other_count = theirs.get(node, 0)
            if count > other_count:
                more = True
            elif count < other_count:
                less = True
        for node, count in theirs.items():
            if node not in mine and count > 0:
                less = True
        if less and more:
            return Ordering.CONCURRENT
        if less:
            return Ordering.BEFORE
        if more:
            return Ordering.AFTER
        return Ordering.SAME

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, VectorClock):
            return NotImplemented
        return self.compare(other) is Ordering.SAME

    def __hash__(self) -> int:
        return hash(frozenset((n, c) for n, c in self.counters.items() if c))

    def __str__(self) -> str:
        entries = ", ".join(f"{n}: {c}" for n, c in sorted(self.counters.items()))
        return f"VectorClock({entries})"
