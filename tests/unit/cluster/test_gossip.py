"""The gossip state: merge rules, tombstones, seen sets, the address table."""

from __future__ import annotations

from shoal.cluster import MemberStatus
from shoal.cluster._gossip import Gossip, forbidden_claims, merge
from shoal.cluster._reachability import Reachability
from shoal.cluster._vclock import VectorClock

from ._support import gossip, member, node

J, U, L, E, D = (
    MemberStatus.JOINING,
    MemberStatus.UP,
    MemberStatus.LEAVING,
    MemberStatus.EXITING,
    MemberStatus.DOWN,
)


def test_members_are_sorted_and_looked_up() -> None:
    g = gossip(member(3), member(1), member(2))
    assert [m.unique_address for m in g.members] == [node(1), node(2), node(3)]
    assert g.member(node(2)) == member(2)
    assert g.member(node(2, uid=9)) is None
    assert g.member_at(node(3).address) == member(3)


def test_changed_bumps_the_version_and_resets_seen() -> None:
    g = gossip(member(1), member(2))
    changed = g.changed(node(1))
    assert changed.version.get(node(1)) == 1
    assert changed.seen == {node(1)}


def test_with_seen_ignores_non_members() -> None:
    g = gossip(member(1), seen=[])
    assert g.with_seen(node(9)) is g
    assert g.with_seen(node(1)).seen == {node(1)}


def test_merge_unions_members_and_keeps_the_status_furthest_along() -> None:
    base = gossip(member(1), member(2))
    a = base.with_members(node(1), [member(2, L), member(3, J)])
    b = base.with_members(node(2), [member(1, D), member(4, J)])
    merged = merge(a, b)
    assert [(m.unique_address.address.port, m.status) for m in merged.members] == [
        (1, D),
        (2, L),
        (3, J),
        (4, J),
    ]
    assert merged == merge(b, a)


def test_merge_never_brings_back_a_tombstoned_incarnation() -> None:
    base = gossip(member(1), member(2), member(3, E))
    removed = base.remove(node(1), [node(3)], now=5.0)
    stale = base.with_members(node(2), [member(3, D)])
    merged = merge(stale, removed)
    assert merged.member(node(3)) is None
    assert merged.tombstones == {node(3): 5.0}
    assert merge(merged, base).member(node(3)) is None


def test_merge_keeps_the_later_removal_time() -> None:
    a = Gossip.of([member(1)], tombstones={node(5): 1.0})
    b = Gossip.of([member(1)], tombstones={node(5): 4.0, node(6): 2.0})
    assert merge(a, b).tombstones == {node(5): 4.0, node(6): 2.0}
    assert merge(b, a).tombstones == {node(5): 4.0, node(6): 2.0}


def test_merge_with_an_older_state_keeps_the_newer_and_its_seen_set() -> None:
    old = gossip(member(1), member(2), member(3))
    new = old.with_members(node(1), [member(2, L)]).with_seen(node(3))
    assert merge(old, new) == new
    assert merge(new, old) == new
    assert merge(new, old).seen == {node(1), node(3)}


def test_merge_of_the_same_version_unions_seen_sets() -> None:
    g = gossip(member(1), member(2), member(3), seen=[])
    merged = merge(g.with_seen(node(1)), g.with_seen(node(2)))
    assert merged.seen == {node(1), node(2)}
    assert merged.version == g.version


def test_merge_of_concurrent_states_is_seen_by_nobody_yet() -> None:
    g = gossip(member(1), member(2))
    merged = merge(g.changed(node(1)), g.changed(node(2)))
    assert merged.seen == frozenset()
    assert merged.version == VectorClock({node(1): 1, node(2): 1})


def test_merge_drops_reachability_records_of_removed_members() -> None:
    g = gossip(member(1), member(2), member(3, D))
    observed = g.changed(node(1), reachability=Reachability().unreachable(node(1), node(3)))
    removed = g.remove(node(2), [node(3)], now=1.0)
    merged = merge(observed, removed)
    assert merged.reachability.records == ()


def test_remove_drops_members_seen_and_records() -> None:
    g = gossip(member(1), member(2, D))
    g = g.changed(node(1), reachability=g.reachability.unreachable(node(1), node(2)))
    removed = g.remove(node(1), [node(2)], now=3.0)
    assert [m.unique_address for m in removed.members] == [node(1)]
    assert removed.reachability.records == ()
    assert removed.is_tombstoned(node(2))
    assert removed.seen == {node(1)}


def test_prune_tombstones_forgets_old_removals_and_their_clock_entries() -> None:
    g = gossip(member(1), member(2, D)).changed(node(2)).remove(node(1), [node(2)], now=10.0)
    assert g.version.get(node(2)) == 1
    assert g.prune_tombstones(10.0) is g
    pruned = g.prune_tombstones(10.5)
    assert pruned.tombstones == {}
    assert pruned.version.get(node(2)) == 0
    assert pruned.version.get(node(1)) == g.version.get(node(1))


def test_address_table_lists_members_then_tombstones() -> None:
    g = Gossip.of([member(2), member(1)], tombstones={node(9): 1.0, node(7): 1.0})
    assert g.address_table() == (node(1), node(2), node(7), node(9))


def test_unreachable_members_ignore_down_observers() -> None:
    table = Reachability().unreachable(node(1), node(3)).unreachable(node(2), node(4))
    g = gossip(member(1), member(2, D), member(3), member(4), reachability=table)
    assert [m.unique_address for m in g.unreachable_members()] == [node(3)]


def test_forbidden_claims_of_a_newer_state_are_reported_and_never_applied() -> None:
    local = gossip(member(1), member(2, L), member(3, D)).remove(node(1), [node(3)], now=1.0)
    # a state claiming to include every local change, yet with 2 back to Up and 3 back
    forged = Gossip.of(
        [member(1), member(2, U), member(3, U)], version=local.version.increment(node(2))
    )
    claims = forbidden_claims(local, forged)
    assert [(known.status, claimed.status) for known, claimed in claims] == [
        (L, U),
        (MemberStatus.REMOVED, U),
    ]
    merged = merge(local, forged)
    assert merged.member(node(2)).status is L  # type: ignore[union-attr]
    assert merged.member(node(3)) is None


def test_stale_gossip_is_not_a_forbidden_claim() -> None:
    old = gossip(member(1), member(2))
    new = old.with_members(node(1), [member(2, L)])
    assert forbidden_claims(new, old) == []
