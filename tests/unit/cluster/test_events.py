"""Cluster events as a pure diff of two states, and the subscriber's snapshot."""

from __future__ import annotations

from shoal.cluster import (
    CurrentClusterState,
    LeaderChanged,
    MemberDowned,
    MemberExited,
    MemberJoined,
    MemberLeft,
    MemberRemoved,
    MemberStatus,
    MemberUp,
    MemberWeaklyUp,
    ReachableMember,
    UnreachableMember,
)
from shoal.cluster._events import diff, snapshot
from shoal.cluster._reachability import Reachability

from ._support import gossip, member, node

J, W, U, L, E, D, R = (
    MemberStatus.JOINING,
    MemberStatus.WEAKLY_UP,
    MemberStatus.UP,
    MemberStatus.LEAVING,
    MemberStatus.EXITING,
    MemberStatus.DOWN,
    MemberStatus.REMOVED,
)


def test_no_change_no_events() -> None:
    g = gossip(member(1), member(2))
    assert diff(g, g, node(1)) == []


def test_one_event_per_status_in_address_order() -> None:
    old = gossip(member(1), member(2, J), member(3), member(4), member(5), member(6, E))
    new = gossip(
        member(1),
        member(2, W),
        member(3, L),
        member(4, D),
        member(5, E),
        member(7, J),
        member(8, U),
    )
    assert diff(old, new, node(1)) == [
        MemberWeaklyUp(member(2, W)),
        MemberLeft(member(3, L)),
        MemberDowned(member(4, D)),
        MemberExited(member(5, E)),
        MemberRemoved(member(6, R), E),
        MemberJoined(member(7, J)),
        MemberUp(member(8, U)),
    ]


def test_reachability_events_follow_member_events_then_the_leader() -> None:
    old = gossip(
        member(1), member(2), member(3), reachability=Reachability().unreachable(node(2), node(3))
    )
    table = Reachability().unreachable(node(2), node(1)).unreachable(node(3), node(2))
    new = gossip(member(1), member(2), member(3), member(4, J), reachability=table)
    assert diff(old, new, node(2)) == [
        MemberJoined(member(4, J)),
        UnreachableMember(member(1)),  # and none about node 2 itself
        ReachableMember(member(3)),
        LeaderChanged(node(2)),  # node 1 is unreachable now
    ]


def test_leader_changed_when_the_leader_leaves_the_view() -> None:
    old = gossip(member(1), member(2))
    new = old.remove(node(2), [node(1)], now=0.0)
    assert diff(old, new, node(2))[-1] == LeaderChanged(node(2))


def test_snapshot_is_the_current_state() -> None:
    table = Reachability().unreachable(node(1), node(3)).unreachable(node(3), node(1))
    g = gossip(member(1), member(2), member(3), reachability=table)
    assert snapshot(g, node(1)) == CurrentClusterState(g.members, frozenset({member(3)}), node(1))
