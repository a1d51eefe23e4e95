"""Cluster state as Akka Management's JSON: pure functions of the gossip."""

from __future__ import annotations

from typing import Any, Final

from shoal.cluster import Member, MemberStatus
from shoal.runtime import Address, UniqueAddress

_SCHEME: Final = "shoal://"

_LEADER_STATUSES: Final = frozenset({MemberStatus.UP, MemberStatus.LEAVING})
_OLDEST_STATUSES: Final = frozenset({MemberStatus.UP, MemberStatus.LEAVING, MemberStatus.EXITING})


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


def _leader_of(
    members: tuple[Member, ...], unreachable: frozenset[UniqueAddress], self_node: UniqueAddress
) -> Member | None:
    """The leader among ``members`` (address order) as Akka's ``roleLeader`` picks it."""
    candidates = [
        m
        for m in members
        if m.status is not MemberStatus.DOWN
        and (m.unique_address not in unreachable or m.unique_address == self_node)
    ]
    for m in candidates:
        if m.status in _LEADER_STATUSES:
            return m
    return candidates[0] if candidates else None


def _oldest_of(members: tuple[Member, ...]) -> Member | None:
    eligible = [m for m in members if m.status in _OLDEST_STATUSES]
    return min(eligible, key=lambda m: (m.up_number, m.address), default=None)


def members_json(
    members: tuple[Member, ...],
    observers: dict[UniqueAddress, frozenset[UniqueAddress]],
    leader: UniqueAddress | None,
    self_node: UniqueAddress,
) -> dict[str, Any]:
    """The body of ``GET /cluster/members``.

    ``members`` in address order; ``observers`` maps each unreachable member
    to the members observing it as unreachable.
    """
    unreachable = frozenset(observers)
    oldest = _oldest_of(members)
    roles = sorted({role for m in members for role in m.roles})
    oldest_per_role: dict[str, str | None] = {}
    leader_per_role: dict[str, str | None] = {}
    for role in roles:
        with_role = tuple(m for m in members if role in m.roles)
        o = _oldest_of(with_role)
        lead = _leader_of(with_role, unreachable, self_node)
        oldest_per_role[role] = node_name(o.unique_address) if o else None
        leader_per_role[role] = node_name(lead.unique_address) if lead else None
    return {
        "selfNode": node_name(self_node),
        "leader": node_name(leader) if leader is not None else None,
        "oldest": node_name(oldest.unique_address) if oldest is not None else None,
        "members": [member_json(m) for m in members],
        "unreachable": [
            {"node": node_name(node), "observedBy": sorted(node_name(o) for o in by)}
            for node, by in sorted(observers.items())
        ],
        "oldestPerRole": oldest_per_role,
        "leaderPerRole": leader_per_role,
    }
