"""Builders shared by the cluster core's tests."""

from __future__ import annotations

from collections.abc import Iterable

from shoal.cluster import ClusterSettings, Member, MemberStatus
from shoal.cluster._gossip import Gossip, merge
from shoal.cluster._membership import MembershipState
from shoal.cluster._reachability import Reachability
from shoal.runtime import Address, UniqueAddress

SETTINGS = ClusterSettings.testing()


def node(port: int, uid: int = 1, host: str = "10.0.0.1") -> UniqueAddress:
    """The incarnation ``uid`` of the node at ``host:port`` (system ``app``)."""
    return UniqueAddress(Address("app", host, port), uid)


def member(
    port: int,
    status: MemberStatus = MemberStatus.UP,
    up_number: int | None = None,
    uid: int = 1,
    roles: Iterable[str] = (),
) -> Member:
    """A member at port ``port``; an Up member's age defaults to its port."""
    if up_number is None:
        up_number = (
            port if status not in (MemberStatus.JOINING, MemberStatus.WEAKLY_UP) else 2**31 - 1
        )
    return Member(node(port, uid), status, frozenset(roles), up_number)


def gossip(
    *members: Member,
    seen: Iterable[UniqueAddress] | None = None,
    reachability: Reachability | None = None,
) -> Gossip:
    """A state of ``members``, seen by all of them unless ``seen`` says otherwise."""
    nodes = [m.unique_address for m in members]
    return Gossip.of(
        members,
        seen=nodes if seen is None else seen,
        reachability=reachability,
    )


def state(self_port: int, g: Gossip) -> MembershipState:
    """The membership state of the node at ``self_port`` holding ``g``."""
    return MembershipState(node(self_port), g)


def exchange(*states: MembershipState) -> list[MembershipState]:
    """Every state after a full round of gossip: all end with the merge, seen by all."""
    merged = states[0].gossip
    for s in states[1:]:
        merged = merge(merged, s.gossip)
    for s in states:
        merged = merged.with_seen(s.self_node)
    return [MembershipState(s.self_node, merged, s.self_roles, s.joining_since) for s in states]
