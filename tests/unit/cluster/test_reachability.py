"""Reachability: per-observer records and versions, merge, pruning."""

from __future__ import annotations

from shoal.cluster._reachability import Reachability, ReachabilityStatus

from ._support import node

A, B, C, D = node(1), node(2), node(3), node(4)
UNREACHABLE, REACHABLE, TERMINATED = (
    ReachabilityStatus.UNREACHABLE,
    ReachabilityStatus.REACHABLE,
    ReachabilityStatus.TERMINATED,
)


def test_unreachable_while_any_observer_says_so() -> None:
    r = Reachability().unreachable(A, C).unreachable(B, C)
    assert r.status(C) is UNREACHABLE
    assert r.observers_of(C) == {A, B}
    r = r.reachable(A, C)
    assert not r.is_reachable(C)
    r = r.reachable(B, C)
    assert r.is_reachable(C)
    assert r.all_unreachable() == frozenset()


def test_each_change_bumps_the_observers_version() -> None:
    r = Reachability().unreachable(A, B)
    assert r.versions == {A: 1}
    r = r.unreachable(A, C)
    assert r.versions == {A: 2}
    assert r.unreachable(A, C) is r  # no change, no new version


def test_an_observer_with_everyone_reachable_keeps_no_rows() -> None:
    r = Reachability().unreachable(A, B).unreachable(A, C).reachable(A, B)
    assert [(x.subject, x.status) for x in r.records] == [(B, REACHABLE), (C, UNREACHABLE)]
    r = r.reachable(A, C)
    assert r.records == ()
    assert r.versions == {A: 4}
    assert r.is_all_reachable


def test_reachable_without_a_record_is_no_change() -> None:
    r = Reachability()
    assert r.reachable(A, B) is r


def test_terminated_is_final() -> None:
    r = Reachability().terminated(A, B)
    assert r.status(B) is TERMINATED
    assert r.reachable(A, B) is r
    assert r.unreachable(C, B).status(B) is TERMINATED


def test_merge_takes_each_observers_newer_rows() -> None:
    base = Reachability().unreachable(A, C)
    newer_a = base.reachable(A, C)  # A: version 2, no rows
    b_view = base.unreachable(B, D)  # A: version 1, B: version 1
    merged = newer_a.merge(b_view, removed=())
    assert merged == b_view.merge(newer_a, removed=())
    assert merged.versions == {A: 2, B: 1}
    assert merged.is_reachable(C)
    assert not merged.is_reachable(D)


def test_merge_and_remove_drop_removed_nodes() -> None:
    r = Reachability().unreachable(A, C).unreachable(C, B).unreachable(B, A)
    assert r.merge(Reachability(), removed={C}).all_unreachable() == {A}
    removed = r.remove({C})
    assert removed.all_unreachable() == {A}
    assert C not in removed.versions


def test_without_observers_ignores_their_records() -> None:
    r = Reachability().unreachable(A, C).unreachable(B, D)
    assert r.without_observers({B}).all_unreachable() == {C}
