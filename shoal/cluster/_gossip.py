"""The gossip state every member holds and spreads, and how two of them merge."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field

from shoal.runtime import Address, UniqueAddress

from ._member import Member, MemberStatus, by_address, highest_priority
from ._reachability import Reachability
from ._vclock import Ordering, VectorClock


@dataclass(frozen=True, slots=True)
class Gossip:
    """One version of the cluster's membership. Frozen; every change makes a new one.

    - ``members``: the current incarnations, sorted by unique address, none
      tombstoned;
    - ``version``: the vector clock of the changes this state includes;
    - ``seen``: the members known to have seen exactly this ``version``;
    - ``reachability``: who observes whom as unreachable;
    - ``tombstones``: removed incarnations and when (the remover's clock,
      seconds) they were removed. A tombstoned incarnation never comes back;
      tombstones are dropped only by :meth:`prune_tombstones`, long after.

    Every node that changes the state bumps its own entry of ``version``
    and resets ``seen`` to itself (:meth:`changed`); states are combined
    only by :func:`merge`. For the wire, :meth:`address_table` lists every
    incarnation the state mentions once, so the seen set, the vector clock
    and the reachability records can refer to them by index.

    ``tombstones`` must not be mutated.
    """

    members: tuple[Member, ...] = ()
    version: VectorClock = field(default_factory=VectorClock)
    seen: frozenset[UniqueAddress] = frozenset()
    reachability: Reachability = field(default_factory=Reachability)
    tombstones: Mapping[UniqueAddress, float] = field(default_factory=dict)
    _by_node: dict[UniqueAddress, Member] = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_node", {m.unique_address: m for m in self.members})

    @classmethod
    def of(
        cls,
        members: Iterable[Member],
        *,
        version: VectorClock | None = None,
        seen: Iterable[UniqueAddress] = (),
        reachability: Reachability | None = None,
        tombstones: Mapping[UniqueAddress, float] | None = None,
    ) -> Gossip:
        """A state with ``members`` in any order (sorted here, tombstoned ones left out);
        ``seen`` is limited to the members (only a member can have seen a state)."""
        tombs = dict(tombstones or {})
        kept = tuple(sorted((m for m in members if m.unique_address not in tombs), key=by_address))
        nodes = {m.unique_address for m in kept}
        return cls(
            kept,
            version or VectorClock(),
            frozenset(n for n in seen if n in nodes),
            reachability or Reachability(),
            tombs,
        )

    def member(self, node: UniqueAddress) -> Member | None:
        """The member that is incarnation ``node``, if it is one."""
        return self._by_node.get(node)

    def member_at(self, address: Address) -> Member | None:
        """The (unique) current member at ``address``, if any."""
        return next((m for m in self.members if m.address == address), None)

    def has_member(self, node: UniqueAddress) -> bool:
        """Whether ``node`` is a current member."""
        return node in self._by_node

    def is_tombstoned(self, node: UniqueAddress) -> bool:
        """Whether incarnation ``node`` was removed from the cluster."""
        return node in self.tombstones

    def seen_by(self, node: UniqueAddress) -> bool:
        """Whether ``node`` has seen this version."""
        return node in self.seen

    def with_seen(self, node: UniqueAddress) -> Gossip:
        """This version, also seen by ``node`` (a current member; others are ignored)."""
        if node in self.seen or node not in self._by_node:
            return self
        return self._copy(seen=self.seen | {node})

    def changed(
        self,
        by: UniqueAddress,
        *,
        members: tuple[Member, ...] | None = None,
        reachability: Reachability | None = None,
        tombstones: Mapping[UniqueAddress, float] | None = None,
    ) -> Gossip:
        """A new version made by ``by``: its clock entry bumped, seen by it alone."""
        new = self._copy(
            members=self.members if members is None else members,
            version=self.version.increment(by),
            seen=frozenset(),
            reachability=self.reachability if reachability is None else reachability,
            tombstones=self.tombstones if tombstones is None else tombstones,
        )
        return new.with_seen(by)

    def with_members(self, by: UniqueAddress, updated: Iterable[Member]) -> Gossip:
        """A new version by ``by`` in which ``updated`` replace or join the members."""
        merged = dict(self._by_node)
        for m in updated:
            if m.unique_address not in self.tombstones:
                merged[m.unique_address] = m
        return self.changed(by, members=tuple(sorted(merged.values(), key=by_address)))

    def remove(self, by: UniqueAddress, nodes: Collection[UniqueAddress], now: float) -> Gossip:
        """A new version by ``by`` without ``nodes``: tombstoned at ``now``, records dropped."""
        tombstones = {**self.tombstones, **dict.fromkeys(nodes, now)}
        return self.changed(
            by,
            members=tuple(m for m in self.members if m.unique_address not in tombstones),
            reachability=self.reachability.remove(nodes),
            tombstones=tombstones,
        )

    def prune_tombstones(self, removed_before: float) -> Gossip:
        """This state without tombstones (and their clock entries) older than ``removed_before``.

        Not a change of the membership, so the version is not bumped; every
        node prunes on its own schedule (Akka's ``prune-gossip-tombstones-after``).
        """
        old = [node for node, at in self.tombstones.items() if at < removed_before]
        if not old:
            return self
        return self._copy(
            version=self.version.prune(old),
            tombstones={n: at for n, at in self.tombstones.items() if n not in old},
        )

    def members_with_status(self, *statuses: MemberStatus) -> tuple[Member, ...]:
        """The members in any of ``statuses``, in address order."""
        return tuple(m for m in self.members if m.status in statuses)

    def effective_reachability(self) -> Reachability:
        """Reachability without the observations of members that are Down.

        A downed member's view no longer counts (Akka's
        ``reachabilityExcludingDownedObservers``): leader election,
        convergence and events all use this view.
        """
        down = {m.unique_address for m in self.members if m.status is MemberStatus.DOWN}
        return self.reachability.without_observers(down)

    def unreachable_members(self) -> tuple[Member, ...]:
        """The members some non-Down member observes as unreachable, in address order."""
        nodes = self.effective_reachability().all_unreachable()
        return tuple(m for m in self.members if m.unique_address in nodes)

    def address_table(self) -> tuple[UniqueAddress, ...]:
        """Every incarnation the state mentions: members, then tombstones, each sorted.

        The seen set, the vector clock and the reachability table only
        mention these, so a compact encoding writes each address once and
        refers to it by its index here.
        """
        return tuple(m.unique_address for m in self.members) + tuple(sorted(self.tombstones))

    def _copy(self, **changes: object) -> Gossip:
        fields = {
            "members": self.members,
            "version": self.version,
            "seen": self.seen,
            "reachability": self.reachability,
            "tombstones": self.tombstones,
        }
        fields.update(changes)
        return Gossip(**fields)  # type: ignore[arg-type]


def merge(a: Gossip, b: Gossip) -> Gossip:
    """The state that includes every change of ``a`` and of ``b``.

    - tombstones: union (the later removal time when both have one);
    - members: union by incarnation, minus tombstones; an incarnation on
      both sides keeps its record furthest along the lifecycle
      (:func:`highest_priority`, Akka's rule: Removed > Down > Exiting >
      Leaving > Up > WeaklyUp > Joining), so no status goes backwards;
    - version: pointwise maximum;
    - reachability: per observer the rows of the higher version, minus
      tombstoned observers and subjects;
    - seen: the union of the seen sets of the sides whose version *is*
      the merged version (so merging with an older state keeps the newer
      one's seen set, and merging concurrent states starts it empty).

    Each part is a join over a lattice and the tombstones only filter, so
    ``merge`` is commutative, associative and idempotent (property-tested),
    and merging a state with one it descends from returns the newer.
    """
    if a is b:
        return a
    if a.members == b.members and a.tombstones == b.tombstones:
        # The common case once a change has spread: the same members (usually
        # the very same records, so the comparison is by identity) and only
        # the clock, seen set or reachability differ. The general path below
        # would rebuild the same members.
        version = a.version.merge(b.version)
        return Gossip(
            a.members,
            version,
            _merged_seen(a, b, version),
            a.reachability.merge(b.reachability, a.tombstones.keys()),
            a.tombstones,
        )
    tombstones = dict(a.tombstones)
    for node, at in b.tombstones.items():
        if at > tombstones.get(node, at - 1):
            tombstones[node] = at
    by_node: dict[UniqueAddress, Member] = {}
    for m in a.members:
        if m.unique_address not in tombstones:
            by_node[m.unique_address] = m
    for m in b.members:
        node = m.unique_address
        if node in tombstones:
            continue
        mine = by_node.get(node)
        by_node[node] = m if mine is None else highest_priority(mine, m)
    version = a.version.merge(b.version)
    members = tuple(sorted(by_node.values(), key=by_address))
    return Gossip(
        members,
        version,
        _merged_seen(a, b, version, by_node),
        a.reachability.merge(b.reachability, tombstones.keys()),
        tombstones,
    )


def _merged_seen(
    a: Gossip, b: Gossip, version: VectorClock, members: Collection[UniqueAddress] | None = None
) -> frozenset[UniqueAddress]:
    """The seen sets of the sides whose version is ``version``, members only."""
    seen: frozenset[UniqueAddress] = frozenset()
    for side in (a, b):
        if side.version.compare(version) is Ordering.SAME:
            seen |= side.seen
    if members is None:
        # Both sides hold the same members, and a state's seen set only ever
        # holds its members (with_seen, merge and the codec keep it so).
        return seen
    return frozenset(n for n in seen if n in members)


def forbidden_claims(local: Gossip, remote: Gossip) -> list[tuple[Member, Member]]:
    """Members a *newer* ``remote`` state moves backwards from ``local``: ``(local, claimed)``.

    Stale gossip naturally shows older statuses; a state whose version
    includes every change of ``local`` cannot, unless its sender is broken
    or hostile. :func:`merge` never applies such a claim; the gossip
    service logs these (rate-limited). A member ``local`` removed that
    ``remote`` still lists counts as claiming to be back (``local`` side
    given as Removed).
    """
    if local.version.compare(remote.version) not in (Ordering.BEFORE, Ordering.SAME):
        return []
    claims: list[tuple[Member, Member]] = []
    for claimed in remote.members:
        node = claimed.unique_address
        known = local.member(node)
        if known is not None and claimed.status.rank < known.status.rank:
            claims.append((known, claimed))
        elif known is None and node in local.tombstones:
            claims.append((Member(node, MemberStatus.REMOVED, claimed.roles), claimed))
    return claims
