"""Who leads, and when the cluster has converged: the rules the leader's actions wait on."""

from __future__ import annotations

from shoal.runtime import UniqueAddress

from ._gossip import Gossip
from ._member import Member, MemberStatus

_LEADER_STATUSES = frozenset({MemberStatus.UP, MemberStatus.LEAVING})

# When no member is Up or Leaving, the leader is picked by status in this
# order, then by address (Akka's ``leaderStatusOrdering``).
_FALLBACK_ORDER = {
    MemberStatus.WEAKLY_UP: 0,
    MemberStatus.JOINING: 1,
    MemberStatus.EXITING: 2,
}

# Members that must have seen a version for it to have converged. Down
# members are excluded: they may be dead, and the leader removes them
# without their acknowledgement once they are unreachable.
_MUST_SEE = frozenset(
    {
        MemberStatus.JOINING,
        MemberStatus.WEAKLY_UP,
        MemberStatus.UP,
        MemberStatus.LEAVING,
        MemberStatus.EXITING,
    }
)

# Unreachable members in these statuses do not hold up convergence.
_MAY_BE_UNREACHABLE = frozenset({MemberStatus.DOWN, MemberStatus.EXITING})


def leader(gossip: Gossip, self_node: UniqueAddress) -> UniqueAddress | None:
    """The leader as ``self_node`` sees ``gossip``; ``None`` when there is no candidate.

    The rule (Akka's ``leaderOf``): among the members that are not Down and
    are reachable — ``self_node`` always counts as reachable to itself —
    the first by address order whose status is Up or Leaving; when there
    is none, the first by (WeaklyUp, Joining, Exiting) then address. Every
    member that has seen the same converged state therefore agrees on the
    leader; on either side of a partition each side picks its own.
    """
    reachability = gossip.effective_reachability()
    unreachable = reachability.all_unreachable()
    candidates = [
        m
        for m in gossip.members
        if m.status is not MemberStatus.DOWN
        and (m.unique_address not in unreachable or m.unique_address == self_node)
    ]
    for m in candidates:  # members are in address order
        if m.status in _LEADER_STATUSES:
            return m.unique_address
    if not candidates:
        return None
    return min(
        candidates, key=lambda m: (_FALLBACK_ORDER[m.status], m.unique_address)
    ).unique_address


def convergence(gossip: Gossip, self_node: UniqueAddress) -> bool:
    """Whether ``gossip`` has converged, as ``self_node`` sees it.

    Converged when (1) every member some non-Down member observes as
    unreachable — other than ``self_node`` — is Down or Exiting, and
    (2) every member in Joining, WeaklyUp, Up, Leaving or Exiting has seen
    this version — except an Exiting member that is unreachable (it may
    have crashed before its exit was done, and can see nothing more).
    Unlike Akka, which asks only Up and Leaving members, a joiner must have
    seen the state that admits it and an exiting member the state that
    lets it exit before the leader acts on them, so both know where they
    stand; an unreachable joiner blocks convergence (that is what WeaklyUp
    is for).
    """
    unreachable = gossip.effective_reachability().all_unreachable()
    for node in unreachable:
        member = gossip.member(node)
        if node != self_node and member is not None and member.status not in _MAY_BE_UNREACHABLE:
            return False
    return all(_has_seen(gossip, m, unreachable) for m in gossip.members)


def _has_seen(gossip: Gossip, m: Member, unreachable: frozenset[UniqueAddress]) -> bool:
    """Whether ``m`` does not hold up convergence by not having seen the latest state."""
    if m.status not in _MUST_SEE or m.unique_address in gossip.seen:
        return True
    return m.status is MemberStatus.EXITING and m.unique_address in unreachable


def blocking_convergence(gossip: Gossip, self_node: UniqueAddress) -> tuple[Member, ...]:
    """The members holding up convergence (unreachable, or not yet having seen), for logs."""
    unreachable = gossip.effective_reachability().all_unreachable()
    return tuple(
        m
        for m in gossip.members
        if (
            m.unique_address in unreachable
            and m.unique_address != self_node
            and m.status not in _MAY_BE_UNREACHABLE
        )
        or not _has_seen(gossip, m, unreachable)
    )
