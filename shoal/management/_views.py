"""Cluster state as Akka Management's JSON: pure functions of the gossip."""

from __future__ import annotations

from typing import Any, Final

from shoal.cluster import Cluster, Member
from shoal.runtime import Address, UniqueAddress

_SCHEME: Final = "shoal://"


def node_name(address: Address | UniqueAddress) -> str:
    """``shoal://system@host:port``."""
    plain = address.address if isinstance(address, UniqueAddress) else address
    return f"{_SCHEME}{plain}"


def parse_node(text: str) -> Address:
    """Parse a member address as the API takes it.

    Accepts ``shoal://system@host:port`` or ``system@host:port``; raises
    ``ValueError`` with the reason otherwise.
    """
    if len(text) > 512:
        raise ValueError("address longer than 512 characters")
    plain = text.removeprefix(_SCHEME)
    if "://" in plain:
        raise ValueError(f"unknown scheme in {text!r} (expected shoal://)")
    address = Address.parse(plain)
    if not address.has_host:
        raise ValueError(f"{text!r} has no host and port (expected shoal://system@host:port)")
    return address


def member_json(member: Member) -> dict[str, Any]:
    return {
        "node": node_name(member.unique_address),
        "nodeUid": str(member.unique_address.uid),
        "status": member.status.value,
        "roles": sorted(member.roles),
    }


def members_json(cluster: Cluster) -> dict[str, Any]:
    """The body of ``GET /cluster/members``, from the cluster's current state (no waiting)."""
    members = cluster.gossip.members
    observers = cluster.unreachable_observers()
    roles = sorted({role for m in members for role in m.roles})
    oldest_per_role: dict[str, str | None] = {}
    leader_per_role: dict[str, str | None] = {}
    for role in roles:
        o = cluster.oldest(role)
        lead = cluster.role_leader(role)
        oldest_per_role[role] = node_name(o.unique_address) if o else None
        leader_per_role[role] = node_name(lead) if lead else None
    leader = cluster.role_leader()
    oldest = cluster.oldest()
    return {
        "selfNode": node_name(cluster.self_address),
        "leader": node_name(leader) if leader is not None else None,
        "oldest": node_name(oldest.unique_address) if oldest is not None else None,
        "members": [member_json(m) for m in members],
        "unreachable": [
            {"node": node_name(node), "observedBy": sorted(node_name(o) for o in by)}
            for node, by in observers.items()
        ],
        "oldestPerRole": oldest_per_role,
        "leaderPerRole": leader_per_role,
    }
