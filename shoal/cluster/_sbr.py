"""The split-brain resolver's decision: which side of a partition survives. Pure.

Each side of a partition runs :func:`decide` on its own view, once the set
of unreachable members has been stable for ``sbr_stable_after``
(:class:`Stability`). The strategies are chosen so that, for every split
of the members into two sides each seeing the other as unreachable, at
most one side keeps itself (table-tested over every split of up to six
members): the other side downs itself and its nodes stop.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass

from shoal.runtime import UniqueAddress

from ._gossip import Gossip
from ._member import Member, MemberStatus, by_age
from ._reachability import Record
from ._settings import ClusterSettings


@dataclass(frozen=True, slots=True)
class KeepMajority:
    """Keep the side with more members; at an exact half, the side holding the lowest address.

    The default. Only Up and Leaving members (with ``role``, if set) are
    counted: joiners may not be known on the other side.
    """

    role: str | None = None
    name = "keep-majority"


@dataclass(frozen=True, slots=True)
class KeepOldest:
    """Keep the side holding the oldest member (lowest ``up_number``).

    With ``down_if_alone``, if the oldest is alone on its side (and the
    cluster has other members), that side is downed and the other kept, so
    a single crashed or isolated oldest node cannot take the cluster down.
    """

    down_if_alone: bool = True
    role: str | None = None
    name = "keep-oldest"


@dataclass(frozen=True, slots=True)
class StaticQuorum:
    """Keep a side with at least ``quorum_size`` members; down a side with fewer.

    If the cluster has more than ``2 * quorum_size - 1`` members, two sides
    could both reach the quorum, so every member is downed instead.
    """

    quorum_size: int
    role: str | None = None
    name = "static-quorum"

    def __post_init__(self) -> None:
        if self.quorum_size < 1:
            raise ValueError(f"quorum_size must be >= 1, got {self.quorum_size}")


@dataclass(frozen=True, slots=True)
class DownAll:
    """Down every member when there is a partition; an operator restarts the cluster."""

    role: str | None = None
    name = "down-all"


Strategy = KeepMajority | KeepOldest | StaticQuorum | DownAll


def strategy_from_settings(settings: ClusterSettings) -> Strategy:
    """The strategy ``settings.sbr_strategy`` names, with its parameters."""
    role = settings.sbr_role
    match settings.sbr_strategy:
        case "keep-majority":
            return KeepMajority(role)
        case "keep-oldest":
            return KeepOldest(settings.sbr_down_if_alone, role)
        case "static-quorum":
            assert settings.sbr_quorum_size is not None  # checked by ClusterSettings
            return StaticQuorum(settings.sbr_quorum_size, role)
        case "down-all":
            return DownAll(role)
        case other:
            raise ValueError(f"sbr_strategy {other!r} is unknown")


class DecisionKind(enum.Enum):
    """What a side decided."""

    DOWN_UNREACHABLE = "down the other side"
    DOWN_REACHABLE = "down this side"
    DOWN_ALL = "down all members"
    DOWN_INDIRECTLY_CONNECTED = "down the indirectly connected members"


@dataclass(frozen=True, slots=True)
class Decision:
    """One side's decision: ``to_down`` are the members it marks Down.

    ``this_side`` and ``other_side`` are the live members this node sees as
    reachable and unreachable, after setting aside the
    ``indirectly_connected`` ones (which are always downed).
    """

    strategy: str
    kind: DecisionKind
    self_node: UniqueAddress
    to_down: frozenset[UniqueAddress]
    this_side: frozenset[UniqueAddress]
    other_side: frozenset[UniqueAddress]
    indirectly_connected: frozenset[UniqueAddress]

    @property
    def downs_self(self) -> bool:
        """Whether this node is on the losing side (it must down itself and stop)."""
        return self.self_node in self.to_down

    def describe(self) -> str:
        """One log line naming the decision and the members on each side."""
        indirect = (
            f"; indirectly connected: {_names(self.indirectly_connected)}"
            if self.indirectly_connected
            else ""
        )
        return (
            f"split-brain resolver ({self.strategy}) decided to {self.kind.value}: "
            f"this side {_names(self.this_side)}, other side {_names(self.other_side)}"
            f"{indirect}; downing {_names(self.to_down)}"
        )


def _names(nodes: Iterable[UniqueAddress]) -> str:
    return "[" + ", ".join(str(n) for n in sorted(nodes)) + "]"


_GONE = frozenset({MemberStatus.DOWN, MemberStatus.EXITING, MemberStatus.REMOVED})
_UNCOUNTED = frozenset({MemberStatus.JOINING, MemberStatus.WEAKLY_UP})


@dataclass(frozen=True, slots=True)
class SbrView:
    """What one node knows when it decides.

    ``members`` every member it knows of; ``unreachable`` those it (or
    members of its side) observes as unreachable; ``records`` the
    unreachability observations and ``seen`` the seen set of the latest
    gossip, used to find indirectly connected members.
    """

    self_node: UniqueAddress
    members: tuple[Member, ...]
    unreachable: frozenset[UniqueAddress]
    records: tuple[Record, ...] = ()
    seen: frozenset[UniqueAddress] = frozenset()

    @classmethod
    def of(cls, gossip: Gossip, self_node: UniqueAddress) -> SbrView:
        """The view of ``self_node`` holding ``gossip`` (Down observers' records excluded)."""
        reachability = gossip.effective_reachability()
        return cls(
            self_node,
            gossip.members,
            reachability.all_unreachable(),
            tuple(reachability.unreachable_records()),
            gossip.seen,
        )

    def indirectly_connected(self) -> frozenset[UniqueAddress]:
        """Live members whose unreachability is not a clean partition (Akka's rule).

        A member that observes some member as unreachable while itself
        observed unreachable by another, and both ends of an observation
        whose subject has seen the latest gossip (it is reachable after
        all, through someone): A reaches B, B reaches C, A cannot reach C.
        """
        live = {m.unique_address for m in self.members if m.status not in _GONE}
        records = [r for r in self.records if r.observer in live and r.subject in live]
        observers = {r.observer for r in records}
        subjects = {r.subject for r in records}
        result = observers & subjects
        for r in records:
            if r.subject in self.seen:
                result |= {r.observer, r.subject}
        return frozenset(result)


def decide(strategy: Strategy, view: SbrView) -> Decision | None:
    """This side's decision, or ``None`` when no live member is unreachable.

    The indirectly connected members are set aside and downed; the
    strategy then decides between the remaining clean sides — the live
    members this node reaches (``this_side``, with this node) and those it
    does not (``other_side``). When only indirectly connected members were
    unreachable, just they are downed.
    """
    live = [m for m in view.members if m.status not in _GONE]
    indirect = view.indirectly_connected()
    this_side = [
        m
        for m in live
        if m.unique_address not in view.unreachable and m.unique_address not in indirect
    ]
    other_side = [
        m for m in live if m.unique_address in view.unreachable and m.unique_address not in indirect
    ]
    if not other_side and not indirect:
        return None
    if not other_side:
        kind = DecisionKind.DOWN_INDIRECTLY_CONNECTED
    else:
        kind = _choose(strategy, this_side, other_side)
    here = frozenset(m.unique_address for m in this_side)
    there = frozenset(m.unique_address for m in other_side)
    match kind:
        case DecisionKind.DOWN_UNREACHABLE:
            to_down = there | indirect
        case DecisionKind.DOWN_REACHABLE:
            to_down = here | indirect
        case DecisionKind.DOWN_ALL:
            to_down = frozenset(m.unique_address for m in live)
        case DecisionKind.DOWN_INDIRECTLY_CONNECTED:
            to_down = indirect
    return Decision(strategy.name, kind, view.self_node, to_down, here, there, indirect)


def _counted(
    role: str | None, this_side: list[Member], other_side: list[Member]
) -> tuple[list[Member], list[Member]]:
    """The members a strategy counts on each side: Up/Leaving with the role.

    Falls back to every member with the role, then to every member, when
    no member qualifies (e.g. a cluster of joiners only), so every
    strategy always has something to weigh.
    """
    for uncounted in (_UNCOUNTED, frozenset[MemberStatus]()):
        here = [m for m in this_side if m.has_role(role) and m.status not in uncounted]
        there = [m for m in other_side if m.has_role(role) and m.status not in uncounted]
        if here or there:
            return here, there
    return this_side, other_side


def _choose(strategy: Strategy, this_side: list[Member], other_side: list[Member]) -> DecisionKind:
    here, there = _counted(strategy.role, this_side, other_side)
    keep, drop = DecisionKind.DOWN_UNREACHABLE, DecisionKind.DOWN_REACHABLE
    match strategy:
        case KeepMajority():
            if len(here) != len(there):
                return keep if len(here) > len(there) else drop
            lowest = min(m.unique_address for m in here + there)
            return keep if any(m.unique_address == lowest for m in here) else drop
        case KeepOldest(down_if_alone=down_if_alone):
            oldest = min(here + there, key=by_age)
            oldest_here = oldest in here
            alone = len(here) + len(there) > 1 and len(here if oldest_here else there) == 1
            if oldest_here:
                return drop if down_if_alone and alone else keep
            return keep if down_if_alone and alone else drop
        case StaticQuorum(quorum_size=quorum):
            if len(here) + len(there) > 2 * quorum - 1:
                return DecisionKind.DOWN_ALL
            return keep if len(here) >= quorum else drop
        case DownAll():
            return DecisionKind.DOWN_ALL


@dataclass(frozen=True, slots=True)
class Stability:
    """Since when the unreachable set (and the live membership) has been unchanged. Frozen.

    Feed it every observation; the resolver decides once
    :meth:`is_stable` — nothing changed for ``sbr_stable_after`` while
    something is unreachable.
    """

    unreachable: frozenset[UniqueAddress] = frozenset()
    members: frozenset[UniqueAddress] = frozenset()
    since: float = 0.0

    def observe(
        self,
        unreachable: frozenset[UniqueAddress],
        now: float,
        members: frozenset[UniqueAddress] | None = None,
    ) -> Stability:
        """The tracker after observing ``unreachable`` (and ``members``) at ``now``."""
        members = self.members if members is None else members
        if unreachable == self.unreachable and members == self.members:
            return self
        return Stability(unreachable, members, now)

    def stable_for(self, now: float) -> float:
        """How long the observation has been unchanged at ``now``."""
        return now - self.since

    def is_stable(self, now: float, stable_after: float) -> bool:
        """Whether something is unreachable and nothing changed for ``stable_after``."""
        return bool(self.unreachable) and now - self.since >= stable_after
