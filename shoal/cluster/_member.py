"""A cluster member: one node incarnation, its lifecycle status, roles and age."""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass, replace

from shoal.runtime import Address, UniqueAddress

from ._errors import InvalidTransitionError

NOT_UP = 2**31 - 1
"""The ``up_number`` of a member that has never been Up (Akka's ``Int.MaxValue``)."""


class MemberStatus(enum.Enum):
    """Where a member is in its lifecycle.

    ``Joining -> (WeaklyUp) -> Up -> Leaving -> Exiting -> Removed``, and
    ``Down -> Removed`` from any status before Removed (Akka's model). The
    statuses are ranked in that order with ``Down`` just before ``Removed``;
    every allowed transition goes up the rank, which is what lets gossip
    merges keep "the status furthest along" without ever moving a member
    backwards.
    """

    JOINING = "Joining"
    WEAKLY_UP = "WeaklyUp"
    UP = "Up"
    LEAVING = "Leaving"
    EXITING = "Exiting"
    DOWN = "Down"
    REMOVED = "Removed"

    @property
    def rank(self) -> int:
        """Position in the lifecycle; merges keep the higher one."""
        return _RANK[self]

    def can_become(self, other: MemberStatus) -> bool:
        """Whether one step from this status to ``other`` is allowed.

        The table (Akka's ``allowedTransitions``):

        ========  ====================================
        from      to
        ========  ====================================
        Joining   WeaklyUp, Up, Leaving, Down, Removed
        WeaklyUp  Up, Leaving, Down, Removed
        Up        Leaving, Down, Removed
        Leaving   Exiting, Down, Removed
        Exiting   Down, Removed
        Down      Removed
        Removed   (nothing)
        ========  ====================================
        """
        return other in _ALLOWED[self]

    def __str__(self) -> str:
        return self.value


_RANK = {status: rank for rank, status in enumerate(MemberStatus)}

_ALLOWED: dict[MemberStatus, frozenset[MemberStatus]] = {
    MemberStatus.JOINING: frozenset(
        {
            MemberStatus.WEAKLY_UP,
            MemberStatus.UP,
            MemberStatus.LEAVING,
            MemberStatus.DOWN,
            MemberStatus.REMOVED,
        }
    ),
    MemberStatus.WEAKLY_UP: frozenset(
        {MemberStatus.UP, MemberStatus.LEAVING, MemberStatus.DOWN, MemberStatus.REMOVED}
    ),
    MemberStatus.UP: frozenset({MemberStatus.LEAVING, MemberStatus.DOWN, MemberStatus.REMOVED}),
    MemberStatus.LEAVING: frozenset(
        {MemberStatus.EXITING, MemberStatus.DOWN, MemberStatus.REMOVED}
    ),
    MemberStatus.EXITING: frozenset({MemberStatus.DOWN, MemberStatus.REMOVED}),
    MemberStatus.DOWN: frozenset({MemberStatus.REMOVED}),
    MemberStatus.REMOVED: frozenset(),
}


@dataclass(frozen=True, slots=True)
class Member:
    """One incarnation of a node as the cluster sees it. Frozen.

    ``up_number`` orders members by age: the leader gives each member a
    number one higher than the youngest member's when it moves it to Up, so
    a lower number is an older member (``NOT_UP`` until then). Two members
    with the same number (possible after concurrent leaders in a partition)
    are ordered by address, so "the oldest" is always defined (Akka's
    ``isOlderThan``). Members are otherwise ordered by unique address
    (:func:`by_address`), which is the order leader election uses.
    """

    unique_address: UniqueAddress
    status: MemberStatus = MemberStatus.JOINING
    roles: frozenset[str] = frozenset()
    up_number: int = NOT_UP

    @property
    def address(self) -> Address:
        """The node's address (without the incarnation uid)."""
        return self.unique_address.address

    def has_role(self, role: str | None) -> bool:
        """Whether the member has ``role``; every member has the role ``None``."""
        return role is None or role in self.roles

    def with_status(self, status: MemberStatus) -> Member:
        """This member in ``status``; the same member if it already is.

        Raises :class:`InvalidTransitionError` for a transition the state
        machine forbids (see :meth:`MemberStatus.can_become`).
        """
        if status is self.status:
            return self
        if not self.status.can_become(status):
            raise InvalidTransitionError(self.unique_address, self.status, status)
        return replace(self, status=status)

    def with_up(self, up_number: int) -> Member:
        """This member moved to Up with age ``up_number`` (from Joining or WeaklyUp)."""
        return replace(self.with_status(MemberStatus.UP), up_number=up_number)

    def is_older_than(self, other: Member) -> bool:
        """Whether this member became Up before ``other`` (ties: lower address first)."""
        if self.up_number != other.up_number:
            return self.up_number < other.up_number
        return self.address < other.address

    def __str__(self) -> str:
        roles = f", roles={sorted(self.roles)}" if self.roles else ""
        return f"Member({self.unique_address}, {self.status}{roles})"


def by_address(member: Member) -> tuple[str, str, int, int]:
    """Sort key: unique address order, the order of leader election.

    The same order as comparing ``UniqueAddress`` values (system, host,
    port, uid), as a plain tuple: sorting 1,000 members compares in C.
    """
    node = member.unique_address
    address = node.address
    return (address.system, address.host or "", address.port or 0, node.uid)


def by_age(member: Member) -> tuple[int, Address]:
    """Sort key: oldest first (lowest ``up_number``, then lowest address)."""
    return (member.up_number, member.address)


def oldest(members: Iterable[Member]) -> Member | None:
    """The oldest of ``members`` (see :meth:`Member.is_older_than`), or ``None``."""
    return min(members, key=by_age, default=None)


def highest_priority(a: Member, b: Member) -> Member:
    """Which of two records of one incarnation a merge keeps.

    The status furthest along the lifecycle wins (Removed, Down, Exiting,
    Leaving, Up, WeaklyUp, Joining — Akka's ``highestPriorityOf``); with the
    same status the older record wins (lower ``up_number``). This is the
    maximum of a total order, so merging records is commutative,
    associative and idempotent.
    """
    if a.status is not b.status:
        return a if a.status.rank > b.status.rank else b
    if a.up_number != b.up_number:
        return a if a.up_number < b.up_number else b
    # Same incarnation, status and age: only roles could differ, and they are
    # fixed per incarnation; keep a deterministic choice all the same.
    return a if sorted(a.roles) <= sorted(b.roles) else b
