"""Vector clocks: increment, merge, compare, prune."""

from __future__ import annotations

import pytest

from shoal.cluster._vclock import Ordering, VectorClock

from ._support import node

A, B, C = node(1), node(2), node(3)


def clock(**counts: int) -> VectorClock:
    names = {"a": A, "b": B, "c": C}
    return VectorClock({names[k]: v for k, v in counts.items()})


@pytest.mark.parametrize(
    ("left", "right", "expected"),
    [
        (clock(), clock(), Ordering.SAME),
        (clock(a=1), clock(a=1), Ordering.SAME),
        (clock(a=1, b=0), clock(a=1), Ordering.SAME),
        (clock(a=1), clock(a=2), Ordering.BEFORE),
        (clock(), clock(b=1), Ordering.BEFORE),
        (clock(a=2, b=1), clock(a=1, b=1), Ordering.AFTER),
        (clock(a=1), clock(), Ordering.AFTER),
        (clock(a=2), clock(b=1), Ordering.CONCURRENT),
        (clock(a=2, b=1), clock(a=1, b=2), Ordering.CONCURRENT),
    ],
)
def test_compare(left: VectorClock, right: VectorClock, expected: Ordering) -> None:
    assert left.compare(right) is expected


def test_increment_and_get() -> None:
    v = clock().increment(A).increment(A).increment(B)
    assert (v.get(A), v.get(B), v.get(C)) == (2, 1, 0)


def test_merge_is_the_pointwise_maximum() -> None:
    merged = clock(a=2, b=1).merge(clock(a=1, b=3, c=1))
    assert merged == clock(a=2, b=3, c=1)
    assert clock(a=2, b=1).compare(merged) is Ordering.BEFORE


def test_prune_drops_entries() -> None:
    assert clock(a=2, b=1).prune([B]) == clock(a=2)
    v = clock(a=1)
    assert v.prune([C]) is v


def test_equal_clocks_hash_alike() -> None:
    assert hash(clock(a=1, b=0)) == hash(clock(a=1))
