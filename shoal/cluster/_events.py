"""Cluster events: what changed between two versions of the membership, as typed values."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

from shoal.runtime import UniqueAddress

from ._gossip import Gossip
from ._leader import leader
from ._member import Member, MemberStatus


@dataclass(frozen=True, slots=True)
class MemberJoined:
    """A new member is Joining."""

    member: Member


@dataclass(frozen=True, slots=True)
class MemberWeaklyUp:
    """A joining member was moved to WeaklyUp while convergence was blocked."""

    member: Member


@dataclass(frozen=True, slots=True)
class MemberUp:
    """A member is Up (it has its ``up_number``)."""

    member: Member


@dataclass(frozen=True, slots=True)
class MemberLeft:
    """A member is Leaving (a graceful leave began)."""

    member: Member


@dataclass(frozen=True, slots=True)
class MemberExited:
    """A leaving member is Exiting (it will be removed next)."""

    member: Member


@dataclass(frozen=True, slots=True)
class MemberDowned:
    """A member was marked Down (by an operator, the resolver, or a new incarnation)."""

    member: Member


@dataclass(frozen=True, slots=True)
class MemberRemoved:
    """A member was removed; ``member.status`` is Removed, ``previous_status`` what it was."""

    member: Member
    previous_status: MemberStatus


@dataclass(frozen=True, slots=True)
class UnreachableMember:
    """Some member's failure detector now finds ``member`` unreachable."""

    member: Member


@dataclass(frozen=True, slots=True)
class ReachableMember:
    """Every observer finds ``member`` reachable again."""

    member: Member


@dataclass(frozen=True, slots=True)
class LeaderChanged:
    """This node now sees ``leader`` as the leader (``None``: no leader)."""

    leader: UniqueAddress | None


@dataclass(frozen=True, slots=True)
class CurrentClusterState:
    """A snapshot a subscriber receives first, before any change event.

    ``members`` in address order, ``unreachable`` the members some member
    observes as unreachable, ``leader`` as this node sees it.
    """

    members: tuple[Member, ...]
    unreachable: frozenset[Member]
    leader: UniqueAddress | None


MemberEvent = (
    MemberJoined
    | MemberWeaklyUp
    | MemberUp
    | MemberLeft
    | MemberExited
    | MemberDowned
    | MemberRemoved
)
ReachabilityEvent = UnreachableMember | ReachableMember
ClusterEvent = MemberEvent | ReachabilityEvent | LeaderChanged

_STATUS_EVENT: dict[MemberStatus, Callable[[Member], MemberEvent]] = {
    MemberStatus.JOINING: MemberJoined,
    MemberStatus.WEAKLY_UP: MemberWeaklyUp,
    MemberStatus.UP: MemberUp,
    MemberStatus.LEAVING: MemberLeft,
    MemberStatus.EXITING: MemberExited,
    MemberStatus.DOWN: MemberDowned,
}


def snapshot(gossip: Gossip, self_node: UniqueAddress) -> CurrentClusterState:
    """The state a new subscriber is given first."""
    return CurrentClusterState(
        gossip.members,
        frozenset(m for m in gossip.unreachable_members() if m.unique_address != self_node),
        leader(gossip, self_node),
    )


def diff(old: Gossip, new: Gossip, self_node: UniqueAddress) -> list[ClusterEvent]:
    """The events that turn ``old`` into ``new``, as ``self_node`` sees them, in order.

    Member events first, in address order: removals (``MemberRemoved``),
    then one event per new or changed member naming its *current* status
    (a member first heard of as Up yields ``MemberUp`` only, as in Akka);
    then ``UnreachableMember`` and ``ReachableMember`` (never about
    ``self_node``); then ``LeaderChanged``. A member whose ``up_number``
    alone changed (a merge picked an older record) yields its status event
    again.
    """
    events: list[ClusterEvent] = []
    if old.members != new.members:
        member_events: list[tuple[UniqueAddress, ClusterEvent]] = []
        for m in old.members:
            if not new.has_member(m.unique_address):
                removed = replace(m, status=MemberStatus.REMOVED)
                member_events.append((m.unique_address, MemberRemoved(removed, m.status)))
        for m in new.members:
            before = old.member(m.unique_address)
            if before is None or before.status is not m.status or before.up_number != m.up_number:
                member_events.append((m.unique_address, _STATUS_EVENT[m.status](m)))
        member_events.sort(key=lambda pair: pair[0])
        events.extend(event for _, event in member_events)
    old_unreachable = old.effective_reachability().all_unreachable()
    new_unreachable = new.effective_reachability().all_unreachable()
    if old_unreachable != new_unreachable:
        for m in new.members:
            node = m.unique_address
            if node == self_node:
                continue
            if node in new_unreachable and node not in old_unreachable:
                events.append(UnreachableMember(m))
        for m in new.members:
            node = m.unique_address
            if node != self_node and node in old_unreachable and node not in new_unreachable:
                events.append(ReachableMember(m))
    old_leader, new_leader = leader(old, self_node), leader(new, self_node)
    if old_leader != new_leader:
        events.append(LeaderChanged(new_leader))
    return events
