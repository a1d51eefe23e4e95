"""Convergence, the leader, its actions, and the changes a node makes."""

from __future__ import annotations

from dataclasses import replace

import pytest

from shoal.cluster import MemberDowned, MemberExited, MemberRemoved, MemberStatus, MemberUp
from shoal.cluster._events import diff
from shoal.cluster._gossip import Gossip
from shoal.cluster._leader import blocking_convergence, convergence, leader
from shoal.cluster._membership import (
    Admitted,
    AlreadyMember,
    MembershipState,
    Refused,
    ReplacingIncarnation,
    confirm_exiting,
    down,
    join,
    leader_actions,
    leave,
    observe_reachable,
    observe_unreachable,
    prune_tombstones,
    receive_gossip,
)
from shoal.cluster._reachability import Reachability, ReachabilityStatus
from shoal.cluster._vclock import Ordering

from ._support import SETTINGS, exchange, gossip, member, node, state

J, W, U, L, E, D = (
    MemberStatus.JOINING,
    MemberStatus.WEAKLY_UP,
    MemberStatus.UP,
    MemberStatus.LEAVING,
    MemberStatus.EXITING,
    MemberStatus.DOWN,
)


def unreachable(*pairs: tuple[int, int]) -> Reachability:
    table = Reachability()
    for observer, subject in pairs:
        table = table.unreachable(node(observer), node(subject))
    return table


# -- convergence ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("g", "converged"),
    [
        (gossip(member(1), member(2)), True),
        (gossip(member(1), member(2), seen=[node(1)]), False),  # an Up member has not seen it
        (gossip(member(1), member(2, L), seen=[node(1)]), False),
        (gossip(member(1), member(2, J), seen=[node(1)]), False),  # nor has a joiner
        (gossip(member(1), member(2, E), seen=[node(1)]), False),  # nor an exiting member
        (gossip(member(1), member(2, D), seen=[node(1)]), True),  # Down members need not
        # an unreachable Up member blocks convergence even if it has seen the state
        (gossip(member(1), member(2), reachability=unreachable((1, 2))), False),
        # unreachable members that are Down or Exiting do not
        (gossip(member(1), member(2, D), reachability=unreachable((1, 2))), True),
        (gossip(member(1), member(2, E), reachability=unreachable((1, 2))), True),
        # an unreachable exiting member need not have seen it either (it may have crashed)
        (
            gossip(member(1), member(2, E), seen=[node(1)], reachability=unreachable((1, 2))),
            True,
        ),
        # observations made by a Down member are ignored
        (gossip(member(1), member(2), member(3, D), reachability=unreachable((3, 2))), True),
        # the node itself being observed unreachable does not block its own view
        (gossip(member(1), member(2), reachability=unreachable((2, 1))), True),
    ],
)
def test_convergence(g: Gossip, converged: bool) -> None:
    assert convergence(g, node(1)) is converged


def test_blocking_convergence_names_the_culprits() -> None:
    g = gossip(member(1), member(2), member(3), seen=[node(1), node(2)])
    g = replace(g, reachability=unreachable((1, 2)))
    assert [m.unique_address for m in blocking_convergence(g, node(1))] == [node(2), node(3)]


# -- the leader ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("g", "expected"),
    [
        (gossip(), None),
        (gossip(member(2), member(1), member(3)), 1),
        (gossip(member(1, L), member(2)), 1),  # Leaving members may lead
        (gossip(member(1, J), member(2, W), member(3)), 3),  # Up first, whatever the address
        (gossip(member(1, D), member(2)), 2),  # Down members never lead
        (gossip(member(1), member(2), reachability=unreachable((2, 1))), 2),
        (gossip(member(1, E), member(2, J), member(3, W)), 3),  # then WeaklyUp,
        (gossip(member(1, E), member(3, J), member(2, J)), 2),  # then Joining,
        (gossip(member(1, E), member(2, D)), 1),  # then Exiting
    ],
)
def test_leader_as_seen_by_node_2(g: Gossip, expected: int | None) -> None:
    assert leader(g, node(2)) == (None if expected is None else node(expected))


def test_an_unreachable_node_still_counts_itself() -> None:
    g = gossip(member(1), member(2), reachability=unreachable((2, 1)))
    assert leader(g, node(1)) == node(1)
    assert leader(g, node(2)) == node(2)


# -- leader actions ------------------------------------------------------------


def test_only_the_leader_acts() -> None:
    s = state(2, gossip(member(1), member(2), member(3, J)))
    after, events = leader_actions(s, 0.0, SETTINGS)
    assert after.gossip is s.gossip
    assert events == []
    assert after.joining_since == {node(3): 0.0}


def test_joiners_become_up_in_address_order_after_the_youngest() -> None:
    g = gossip(member(1, up_number=1), member(2, up_number=5), member(4, J), member(3, W))
    after, events = leader_actions(state(1, g), 0.0, SETTINGS)
    assert [(m.status, m.up_number) for m in after.gossip.members] == [
        (U, 1),
        (U, 5),
        (U, 6),
        (U, 7),
    ]
    assert events == [MemberUp(after.gossip.members[2]), MemberUp(after.gossip.members[3])]
    assert after.gossip.seen == {node(1)}
    assert after.gossip.version.get(node(1)) == 1


def test_leaving_becomes_exiting_then_exiting_is_removed() -> None:
    s = state(1, gossip(member(1), member(2, L)))
    s, events = leader_actions(s, 0.0, SETTINGS)
    assert s.gossip.member(node(2)).status is E  # type: ignore[union-attr]
    assert events == [MemberExited(member(2, E))]
    s, events = leader_actions(s, 1.0, SETTINGS)  # node 2 has not seen Exiting yet
    assert events == []
    s, _ = exchange(s, state(2, s.gossip))
    s, events = leader_actions(s, 2.0, SETTINGS)
    assert events == []  # node 2 has not confirmed that its exit is done
    assert confirm_exiting(s, node(1)) is s  # only a leaving member's word counts
    assert confirm_exiting(s, node(9)) is s  # nor a stranger's
    s = confirm_exiting(s, node(2))
    assert confirm_exiting(s, node(2)) is s
    s, events = leader_actions(s, 3.0, SETTINGS)
    assert events == [MemberRemoved(member(2, MemberStatus.REMOVED), E)]
    assert s.gossip.tombstones == {node(2): 3.0}
    s, _ = leader_actions(s, 4.0, SETTINGS)
    assert s.exiting_confirmed == frozenset()  # forgotten once removed


def test_an_unreachable_exiting_member_is_removed_without_confirming() -> None:
    g = gossip(member(1), member(2, E), reachability=unreachable((1, 2)))
    after, events = leader_actions(state(1, g), 5.0, SETTINGS)
    assert events == [MemberRemoved(member(2, MemberStatus.REMOVED), E)]
    assert after.gossip.tombstones == {node(2): 5.0}


def test_down_members_are_removed_once_unreachable_or_aware() -> None:
    g = gossip(member(1), member(2, D), member(3, D), member(4, D), seen=[node(1), node(3)])
    g = replace(g, reachability=unreachable((1, 4)))
    after, events = leader_actions(state(1, g), 7.0, SETTINGS)
    # 2 is reachable and has not seen that it is Down; 3 has seen it; 4 is unreachable
    assert [m.unique_address for m in after.gossip.members] == [node(1), node(2)]
    assert after.gossip.tombstones == {node(3): 7.0, node(4): 7.0}
    assert [type(e) for e in events] == [MemberRemoved, MemberRemoved]


def test_nothing_happens_without_convergence_but_weakly_up() -> None:
    g = gossip(member(1), member(2), member(3, J), reachability=unreachable((1, 2)))
    s, events = leader_actions(state(1, g), 10.0, SETTINGS)
    assert events == []
    s, events = leader_actions(s, 10.0 + SETTINGS.weakly_up_after - 0.001, SETTINGS)  # type: ignore[operator]
    assert events == []
    s, events = leader_actions(s, 10.0 + SETTINGS.weakly_up_after, SETTINGS)  # type: ignore[operator]
    assert [(type(e).__name__, e.member.status) for e in events] == [("MemberWeaklyUp", W)]  # type: ignore[union-attr]
    # once convergence is back, WeaklyUp becomes Up
    healed = replace(
        s.gossip, reachability=Reachability(), seen=frozenset({node(1), node(2), node(3)})
    )
    s, events = leader_actions(replace(s, gossip=healed), 20.0, SETTINGS)
    assert [e.member.status for e in events] == [U]  # type: ignore[union-attr]


def test_unreachable_joiners_do_not_become_weakly_up() -> None:
    g = gossip(member(1), member(2), member(3, J), reachability=unreachable((1, 2), (1, 3)))
    s, _ = leader_actions(state(1, g), 0.0, SETTINGS)
    s, events = leader_actions(s, 100.0, SETTINGS)
    assert events == []


def test_weakly_up_can_be_disabled() -> None:
    g = gossip(member(1), member(2), member(3, J), reachability=unreachable((1, 2)))
    settings = replace(SETTINGS, weakly_up_after=None)
    s, _ = leader_actions(state(1, g), 0.0, settings)
    assert leader_actions(s, 100.0, settings)[1] == []


# -- join, leave, down, reachability -------------------------------------------


def test_the_first_node_joins_itself_and_is_up_at_once() -> None:
    s, decision = join(MembershipState(node(1), self_roles=frozenset({"a"})), node(1))
    assert decision == Admitted(member(1, J, roles=["a"]))
    s, events = leader_actions(s, 0.0, SETTINGS)
    assert [e.member.status for e in events if isinstance(e, MemberUp)] == [U]


def test_a_joiner_is_added_with_this_node() -> None:
    s, decision = join(MembershipState(node(1)), node(2), frozenset({"r"}))
    assert decision == Admitted(member(2, J, roles=["r"]))
    assert [(m.unique_address, m.status) for m in s.gossip.members] == [(node(1), J), (node(2), J)]


def test_a_repeated_join_is_welcomed_again() -> None:
    s = state(1, gossip(member(1), member(2)))
    assert join(s, node(2)) == (s, AlreadyMember(member(2)))


def test_a_new_incarnation_downs_the_old_one_then_joins() -> None:
    s = state(1, gossip(member(1), member(2)))
    s, decision = join(s, node(2, uid=2))
    assert decision == ReplacingIncarnation(member(2, D))
    assert s.gossip.reachability.status(node(2)) is ReachabilityStatus.TERMINATED
    s2, again = join(s, node(2, uid=2))  # retried before the old one is removed
    assert (s2, again) == (s, ReplacingIncarnation(member(2, D)))
    s, events = leader_actions(s, 1.0, SETTINGS)
    assert events == [MemberRemoved(member(2, MemberStatus.REMOVED), D)]
    s, decision = join(s, node(2, uid=2))
    new = member(2, J, uid=2)
    assert decision == Admitted(new)
    assert s.gossip.member(node(2, uid=2)) == new
    refused = join(s, node(2, uid=1))[1]
    assert isinstance(refused, Refused)
    assert "was removed" in refused.reason


def test_leave_and_down() -> None:
    s = state(1, gossip(member(1), member(2), member(3, E)))
    left = leave(s, node(2).address)
    assert left.gossip.member(node(2)).status is L  # type: ignore[union-attr]
    assert leave(left, node(2)) is left  # already leaving
    assert leave(s, node(3)) is s  # exiting already
    assert leave(s, node(9)) is s  # not a member
    downed = down(s, node(3).address)
    assert downed.gossip.member(node(3)).status is D  # type: ignore[union-attr]
    assert down(downed, node(3)) is downed
    assert down(s, node(9, uid=5)) is s


def test_observations_change_reachability_by_this_node() -> None:
    s = state(1, gossip(member(1), member(2)))
    s = observe_unreachable(s, node(2))
    assert s.gossip.reachability.observers_of(node(2)) == {node(1)}
    assert s.gossip.version.get(node(1)) == 1
    assert observe_unreachable(s, node(2)) is s
    assert observe_unreachable(s, node(1)) is s  # never about itself
    assert observe_unreachable(s, node(7)) is s  # nor about non-members
    s = observe_reachable(s, node(2))
    assert s.gossip.reachability.is_all_reachable


def test_receive_gossip_reports_how_the_versions_related() -> None:
    base = gossip(member(1), member(2), seen=[node(1)])
    mine = state(2, base)
    newer = base.changed(node(1))
    after, ordering = receive_gossip(mine, newer)
    assert ordering is Ordering.BEFORE
    assert after.gossip.seen == {node(1), node(2)}
    assert receive_gossip(after, base)[1] is Ordering.AFTER
    assert receive_gossip(after, after.gossip)[1] is Ordering.SAME
    concurrent, ordering = receive_gossip(state(2, base.changed(node(2))), newer)
    assert ordering is Ordering.CONCURRENT
    assert concurrent.gossip.seen == {node(2)}


def test_a_removed_node_learns_it_from_gossip() -> None:
    s = state(2, gossip(member(1), member(2)))
    removal = gossip(member(1), member(2, D)).remove(node(1), [node(2)], now=1.0)
    after, _ = receive_gossip(s, removal)
    assert after.self_removed
    assert after.self_member is None


def test_prune_tombstones_of_the_state() -> None:
    s = state(1, Gossip.of([member(1)], tombstones={node(2): 1.0}))
    assert prune_tombstones(s, 2.0).gossip.tombstones == {}


def test_downed_event_for_a_downed_member() -> None:
    s = state(1, gossip(member(1), member(2)))
    s, events = leader_actions(down(s, node(2)), 0.0, SETTINGS)
    # node 2 is reachable and has not seen its Down: nothing to remove yet
    assert events == []
    assert diff(state(1, gossip(member(1), member(2))).gossip, s.gossip, node(1)) == [
        MemberDowned(member(2, D))
    ]
