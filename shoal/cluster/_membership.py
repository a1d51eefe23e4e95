"""One node's view of the membership, and every change a node can make to it.

All functions are pure: they take a :class:`MembershipState` (and the time,
where it matters) and return a new one. The gossip service applies them to
what it receives and publishes :func:`diff` of the old and new states.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from shoal.runtime import Address, UniqueAddress

from ._events import ClusterEvent, diff
from ._gossip import Gossip, merge
from ._leader import convergence, leader
from ._member import NOT_UP, Member, MemberStatus
from ._vclock import Ordering

if TYPE_CHECKING:
    from ._settings import ClusterSettings


@dataclass(frozen=True, slots=True)
class MembershipState:
    """What one node knows: its own incarnation, the latest gossip, and local bookkeeping.

    ``self_roles`` are the roles this node joins with. ``joining_since`` is
    local, never gossiped (clocks of different nodes are not comparable):
    for each member this node has seen Joining, the time (on this node's
    clock) of the first :func:`leader_actions` call that saw it so. The
    leader uses it to move joiners to WeaklyUp when convergence is blocked. It must not be mutated.
    ``exiting_confirmed`` is local too: the leaving members that told this
    node they have finished their exit (their shards handed off, their
    singletons stopped; :func:`confirm_exiting`). A leader removes an
    Exiting member only once it is in this set, or unreachable.
    """

    self_node: UniqueAddress
    gossip: Gossip = field(default_factory=Gossip)
    self_roles: frozenset[str] = frozenset()
    joining_since: Mapping[UniqueAddress, float] = field(default_factory=dict)
    exiting_confirmed: frozenset[UniqueAddress] = frozenset()

    @property
    def self_member(self) -> Member | None:
        """This node's own member record, if it is a member."""
        return self.gossip.member(self.self_node)

    @property
    def self_removed(self) -> bool:
        """Whether this incarnation was removed from the cluster (it must stop)."""
        return self.gossip.is_tombstoned(self.self_node)

    @property
    def leader(self) -> UniqueAddress | None:
        """The leader as this node sees it (see :func:`leader`)."""
        return leader(self.gossip, self.self_node)

    @property
    def is_leader(self) -> bool:
        """Whether this node is the leader of its view."""
        return self.leader == self.self_node

    @property
    def convergence(self) -> bool:
        """Whether the latest gossip has converged, as this node sees it."""
        return convergence(self.gossip, self.self_node)

    def with_gossip(self, gossip: Gossip) -> MembershipState:
        """This state with ``gossip`` (itself if the gossip is unchanged)."""
        return self if gossip is self.gossip else replace(self, gossip=gossip)


@dataclass(frozen=True, slots=True)
class Admitted:
    """The joiner was added as Joining; answer it with the state (a welcome)."""

    member: Member


@dataclass(frozen=True, slots=True)
class AlreadyMember:
    """The joiner is already a member (its welcome was probably lost); welcome it again."""

    member: Member


@dataclass(frozen=True, slots=True)
class ReplacingIncarnation:
    """The joiner is a new incarnation at the address of ``old``.

    ``old`` is now Down (and observed Terminated by this node), so the
    leader removes it without an operator; remoting should quarantine it.
    The joiner is not admitted yet: it retries and is admitted once ``old``
    is removed.
    """

    old: Member


@dataclass(frozen=True, slots=True)
class Refused:
    """The joiner cannot join: ``reason`` says why (e.g. a removed incarnation)."""

    reason: str


JoinDecision = Admitted | AlreadyMember | ReplacingIncarnation | Refused


def join(
    state: MembershipState, joiner: UniqueAddress, roles: frozenset[str] = frozenset()
) -> tuple[MembershipState, JoinDecision]:
    """Handle a join request from ``joiner`` (which may be this node itself).

    A new incarnation is added as Joining with ``roles`` (this node with
    its own ``self_roles``), together with this node if it is not a member
    yet (so the first seed forms the cluster by joining itself). A removed
    incarnation is refused. A new incarnation at the
    address of a current member is the restart case: the old one is
    downed (see :class:`ReplacingIncarnation`).
    """
    g, me = state.gossip, state.self_node
    if g.is_tombstoned(joiner):
        return state, Refused(f"incarnation {joiner} was removed from the cluster")
    existing = g.member_at(joiner.address)
    if existing is not None and existing.unique_address == joiner:
        return state, AlreadyMember(existing)
    if existing is not None:
        if existing.status is MemberStatus.DOWN:
            return state, ReplacingIncarnation(existing)
        reachability = g.reachability.terminated(me, existing.unique_address)
        downed = existing.with_status(MemberStatus.DOWN)
        g = g.changed(me, reachability=reachability).with_members(me, [downed])
        return state.with_gossip(g), ReplacingIncarnation(downed)
    added = [Member(joiner, roles=state.self_roles if joiner == me else roles)]
    if not g.has_member(me) and joiner != me:
        if g.is_tombstoned(me):
            return state, Refused(f"this node ({me}) was removed from the cluster")
        added.append(Member(me, roles=state.self_roles))
    member = added[0]
    return state.with_gossip(g.with_members(me, added)), Admitted(member)


def _find(gossip: Gossip, node: Address | UniqueAddress) -> Member | None:
    if isinstance(node, UniqueAddress):
        return gossip.member(node)
    return gossip.member_at(node)


def leave(state: MembershipState, node: Address | UniqueAddress) -> MembershipState:
    """Start the graceful leave of ``node``: Joining, WeaklyUp or Up become Leaving.

    A member already Leaving or further along, or not a member, is left as
    it is (the same state is returned).
    """
    member = _find(state.gossip, node)
    if member is None or member.status not in (
        MemberStatus.JOINING,
        MemberStatus.WEAKLY_UP,
        MemberStatus.UP,
    ):
        return state
    left = member.with_status(MemberStatus.LEAVING)
    return state.with_gossip(state.gossip.with_members(state.self_node, [left]))


def down(state: MembershipState, node: Address | UniqueAddress) -> MembershipState:
    """Mark ``node`` Down (an operator's or the split-brain resolver's decision).

    The leader removes it at the next convergence. A member already Down,
    or not a member, is left as it is (the same state is returned).
    """
    member = _find(state.gossip, node)
    if member is None or member.status is MemberStatus.DOWN:
        return state
    downed = member.with_status(MemberStatus.DOWN)
    return state.with_gossip(state.gossip.with_members(state.self_node, [downed]))


def observe_unreachable(state: MembershipState, subject: UniqueAddress) -> MembershipState:
    """This node's failure detector finds ``subject`` unreachable (members only)."""
    return _observe(state, subject, reachable=False)


def observe_reachable(state: MembershipState, subject: UniqueAddress) -> MembershipState:
    """This node's failure detector finds ``subject`` reachable again."""
    return _observe(state, subject, reachable=True)


def _observe(state: MembershipState, subject: UniqueAddress, *, reachable: bool) -> MembershipState:
    g, me = state.gossip, state.self_node
    if subject == me or not g.has_member(subject) or not g.has_member(me):
        return state
    table = g.reachability
    new = table.reachable(me, subject) if reachable else table.unreachable(me, subject)
    if new is table:
        return state
    return state.with_gossip(g.changed(me, reachability=new))


def receive_gossip(state: MembershipState, remote: Gossip) -> tuple[MembershipState, Ordering]:
    """Merge ``remote`` into this node's state and mark the result seen by this node.

    Returns the new state and how the local version related to the remote
    one before the merge: ``BEFORE`` means the remote was newer (no need to
    answer), ``AFTER`` or ``CONCURRENT`` that the sender lacks something
    (answer with the new state), ``SAME`` that only seen sets were combined.
    The caller refuses gossip from other clusters and unknown or
    quarantined senders before calling this; a state that removed this
    node shows in :attr:`MembershipState.self_removed`.
    """
    ordering = state.gossip.version.compare(remote.version)
    merged = merge(state.gossip, remote).with_seen(state.self_node)
    return state.with_gossip(merged), ordering


def confirm_exiting(state: MembershipState, node: UniqueAddress) -> MembershipState:
    """``node`` says it has finished its exit: record it if it is Leaving or Exiting.

    Anything else (not a member, or a member that is not leaving) is
    ignored: only a leaving member's own word counts, and a late or
    repeated confirmation changes nothing.
    """
    member = state.gossip.member(node)
    if (
        member is None
        or member.status not in (MemberStatus.LEAVING, MemberStatus.EXITING)
        or node in state.exiting_confirmed
    ):
        return state
    return replace(state, exiting_confirmed=state.exiting_confirmed | {node})


def leader_actions(
    state: MembershipState, now: float, settings: ClusterSettings
) -> tuple[MembershipState, list[ClusterEvent]]:
    """One leader tick, called every gossip interval on every node; pure.

    On every node it updates ``joining_since`` and forgets confirmations of
    members that are gone. On the leader (only):

    - at convergence: Joining and WeaklyUp members become Up, each with the
      next ``up_number`` after the youngest member's, in address order;
      Leaving becomes Exiting; Exiting members that confirmed their exit
      (:func:`confirm_exiting`) or are unreachable, and Down members that
      are unreachable or have seen that they are Down, are removed (left as
      tombstones stamped ``now``). An Exiting member that has not confirmed
      is still handing its work off (Akka's ``ExitingConfirmed``);
    - without convergence, when ``settings.weakly_up_after`` is set:
      reachable members that have been Joining (on this node's clock) for
      at least that long become WeaklyUp.

    Returns the new state and the events of the change (:func:`diff`).
    """
    g, me = state.gossip, state.self_node
    joining = {
        m.unique_address: state.joining_since.get(m.unique_address, now)
        for m in g.members
        if m.status is MemberStatus.JOINING
    }
    if joining != state.joining_since:
        state = replace(state, joining_since=joining)
    confirmed = state.exiting_confirmed
    if confirmed:
        kept = frozenset(n for n in confirmed if g.has_member(n))
        if kept != confirmed:
            state = replace(state, exiting_confirmed=kept)
            confirmed = kept
    if leader(g, me) != me:
        return state, []
    if convergence(g, me):
        new = _on_convergence(g, me, now, confirmed)
    elif settings.weakly_up_after is not None:
        new = _weakly_up(g, me, now, settings.weakly_up_after, joining)
    else:
        new = g
    if new is g:
        return state, []
    return state.with_gossip(new), diff(g, new, me)


def _on_convergence(
    g: Gossip, me: UniqueAddress, now: float, confirmed: frozenset[UniqueAddress]
) -> Gossip:
    unreachable = g.effective_reachability().all_unreachable()
    youngest = max((m.up_number for m in g.members if m.up_number != NOT_UP), default=0)
    changed: list[Member] = []
    removed: list[UniqueAddress] = []
    for m in g.members:
        node = m.unique_address
        if m.status in (MemberStatus.JOINING, MemberStatus.WEAKLY_UP):
            youngest += 1
            changed.append(m.with_up(youngest))
        elif m.status is MemberStatus.LEAVING:
            changed.append(m.with_status(MemberStatus.EXITING))
        elif (m.status is MemberStatus.EXITING and (node in confirmed or node in unreachable)) or (
            m.status is MemberStatus.DOWN and (node in unreachable or node in g.seen)
        ):
            removed.append(node)
    if not changed and not removed:
        return g
    new = g.with_members(me, changed) if changed else g
    return new.remove(me, removed, now) if removed else new


def _weakly_up(
    g: Gossip, me: UniqueAddress, now: float, after: float, joining: Mapping[UniqueAddress, float]
) -> Gossip:
    unreachable = g.effective_reachability().all_unreachable()
    promoted = [
        m.with_status(MemberStatus.WEAKLY_UP)
        for m in g.members
        if m.status is MemberStatus.JOINING
        and m.unique_address not in unreachable
        and now - joining[m.unique_address] >= after
    ]
    return g.with_members(me, promoted) if promoted else g


def prune_tombstones(state: MembershipState, removed_before: float) -> MembershipState:
    """Forget incarnations removed before ``removed_before`` (:meth:`Gossip.prune_tombstones`)."""
    return state.with_gossip(state.gossip.prune_tombstones(removed_before))
