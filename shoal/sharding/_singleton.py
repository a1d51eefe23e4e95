"""Cluster singleton: one instance of an actor in the cluster, on the oldest member.

One manager actor per node and singleton name (``/user/singleton-<name>``)
both hosts the singleton, as its child ``singleton``, when this node is the
oldest Up member with the role, and acts as the proxy every user of the
singleton talks to. The rules (Akka's, tightened where Akka is known to
run two instances):

* A node starts the singleton only while it is Up, has the role, and no
  older member with the role is still in its view of the membership —
  except older members that are Leaving or Exiting and told this node they
  have released it (``Released``, sent once their instance is stopped).
* An older member that disappears from the view without having released it
  (a crash: downed, then removed) still blocks for ``removal_margin`` after
  this node noticed the removal: the time the other side of a partition
  needs to down itself, stop its instance and go (Akka's
  ``down-removal-margin``).
* A node that sees itself Leaving, Exiting or Down, or that shuts down,
  stops its instance at once, so the next oldest starts only after it.

The proxy side forwards every user message to the manager of the node that
runs the singleton (which hands it to its child), or to its own child. While
no host is known (starting, handing over) messages are stashed, up to
``buffer_size``, and flushed in arrival order as soon as one is; beyond that
they go to dead letters (reason ``buffer-full``, counted, an ask fails with
:class:`BufferFullError`). Going through the host's manager rather than
straight to the instance means that messages which reach the old host
during a hand-over are buffered there and forwarded to the new one, not
lost (Akka drops them).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from shoal.cluster import (
    Cluster,
    CurrentClusterState,
    LeaderChanged,
    Member,
    MemberDowned,
    MemberExited,
    MemberJoined,
    MemberLeft,
    MemberRemoved,
    MemberStatus,
    MemberUp,
    MemberWeaklyUp,
    ReachableMember,
    UnreachableMember,
)
from shoal.runtime import (
    Actor,
    ActorRef,
    Address,
    StashOverflowError,
    Terminated,
    UniqueAddress,
    message,
)

from ._errors import BufferFullError

if TYPE_CHECKING:
    from ._singleton_api import SingletonMetrics, SingletonSettings

CHILD_NAME: Final = "singleton"

_ELIGIBLE: Final = frozenset({MemberStatus.UP, MemberStatus.LEAVING, MemberStatus.EXITING})


def manager_name(name: str) -> str:
    """The actor name of a singleton's manager under ``/user``."""
    return f"singleton-{name}"


# -- messages between managers (closed family; registered for the wire) -----------------


@message(manifest="shoal.sharding.singleton.HandOverToMe")
@dataclass(frozen=True, slots=True)
class HandOverToMe:
    """A younger node asks an older, leaving one to release the singleton (sender: its manager)."""


@message(manifest="shoal.sharding.singleton.Released")
@dataclass(frozen=True, slots=True)
class Released:
    """The node ``node#uid`` has stopped its instance and will never start it again."""

    node: str
    uid: int


@message(manifest="shoal.sharding.singleton.WhereIs")
@dataclass(frozen=True, slots=True)
class WhereIs:
    """A proxy asks a manager whether it runs the singleton (sender: the asking manager)."""


@message(manifest="shoal.sharding.singleton.RunsAt")
@dataclass(frozen=True, slots=True)
class RunsAt:
    """The singleton runs under the manager ``ref`` (an answer to :class:`WhereIs`, or news)."""

    ref: ActorRef


@message(manifest="shoal.sharding.singleton.Moved")
@dataclass(frozen=True, slots=True)
class Moved:
    """The sending manager no longer runs the singleton: stop sending to it directly."""


@dataclass(frozen=True, slots=True)
class _Tick:
    """Retry hand-over requests and lookups; re-check a removal margin."""


@dataclass(frozen=True, slots=True)
class _Shutdown:
    """The node shuts down: stop the instance now."""


WIRE_MESSAGES: Final = (HandOverToMe, Released, WhereIs, RunsAt, Moved)
_CONTROL: Final = (*WIRE_MESSAGES, _Tick, _Shutdown)
_EVENTS: Final = (
    MemberJoined,
    MemberWeaklyUp,
    MemberUp,
    MemberLeft,
    MemberExited,
    MemberDowned,
    MemberRemoved,
    UnreachableMember,
    ReachableMember,
    LeaderChanged,
)


def older_blockers(
    members: tuple[Member, ...] | list[Member],
    me: UniqueAddress,
    role: str | None,
    released: set[UniqueAddress],
) -> list[Member]:
    """Members with ``role`` older than ``me`` that keep ``me`` from running the singleton.

    Pure: every older member still in the view counts, whatever its status
    (a Down member blocks until it is removed), unless it is Leaving or
    Exiting and has released the singleton to this node.
    """
    mine = next((m for m in members if m.unique_address == me), None)
    if mine is None:
        return []
    return [
        m
        for m in members
        if m.unique_address != me
        and m.has_role(role)
        and m.is_older_than(mine)
        and m.status is not MemberStatus.REMOVED
        and not (
            m.status in (MemberStatus.LEAVING, MemberStatus.EXITING)
            and m.unique_address in released
        )
    ]


class SingletonManager(Actor):
    """Hosts the singleton when this node is the oldest, and proxies to it from everywhere.

    Concurrency: an actor like any other; cluster events arrive as messages
    (it subscribes itself), timers are messages to self.
    """

    def __init__(
        self,
        name: str,
        factory: Callable[[], Actor],
        settings: SingletonSettings,
        metrics: SingletonMetrics,
        hosting: bool,
    ) -> None:
        self._name = name
        self._factory = factory
        self._settings = settings
        self._metrics = metrics
        self._hosting = hosting
        system = self.ctx.system
        self._cluster = Cluster.get(system)
        self._me = self._cluster.self_address
        margin = settings.removal_margin
        self._margin = self._cluster.settings.sbr_stable_after if margin is None else margin
        self._child: ActorRef | None = None
        self._target: ActorRef | None = None
        self._released: set[UniqueAddress] = set()
        self._older_seen: set[UniqueAddress] = set()
        self._removed_at: dict[UniqueAddress, float] = {}
        self._release_waiters: list[ActorRef] = []
        self._done = False  # once it stopped its instance for good it never starts again
        self._was_member = False
        self._buffered = 0
        self._subscription = self._cluster.subscribe(self.ctx.ref)

    def started(self) -> None:
        self.ctx.timers.start_periodic("tick", _Tick(), self._settings.retry_interval)

    def stopped(self) -> None:
        self._subscription.cancel()

    # -- messages -----------------------------------------------------------------------

    def receive(self, msg: object) -> None:
        if isinstance(msg, _CONTROL):
            self._control(msg)
        elif isinstance(msg, (CurrentClusterState, *_EVENTS)):
            self._reconsider()
        elif isinstance(msg, Terminated):
            self._terminated(msg.ref)
        else:
            self._deliver(msg)

    def _control(self, msg: object) -> None:
        match msg:
            case _Tick():
                self._reconsider()
                if self._target is None:
                    self._look_up()
            case HandOverToMe():
                sender = self.ctx.sender
                if sender is not None:
                    self._release_waiters.append(sender)
                self._reconsider()
                self._answer_release()
            case Released(node, uid):
                try:
                    released = UniqueAddress(Address.parse(node), uid)
                except ValueError:
                    return
                self._released.add(released)
                self._reconsider()
            case WhereIs():
                sender = self.ctx.sender
                if sender is not None and self._child is not None:
                    sender.tell(RunsAt(self.ctx.ref), self.ctx.ref)
            case RunsAt(ref):
                if self._child is None and ref != self.ctx.ref:
                    self._found(ref)
            case Moved():
                target = self._target
                if target is not None and target == self.ctx.sender:
                    self.ctx.unwatch(target)
                    self._target = None
            case _Shutdown():
                self._done = True
                self._stop_instance()

    def _deliver(self, msg: object) -> None:
        target = self._target
        if target is not None:
            self.ctx.forward(target, msg)
            return
        if self._buffered < self._settings.buffer_size:
            try:
                self.ctx.stash()
            except StashOverflowError:
                pass
            else:
                self._buffered += 1
                self._metrics.buffered += 1
                return
        self._metrics.dropped += 1
        self.ctx.reply_later().fail(
            BufferFullError(f"singleton {self._name!r}: buffer of {self._buffered} is full")
        )
        self.ctx.system.dead_letter(msg, self.ctx.sender, self.ctx.ref, "buffer-full")

    def _found(self, ref: ActorRef) -> None:
        if self._target == ref:
            return
        if self._target is not None:
            self.ctx.unwatch(self._target)
        self._target = ref
        self.ctx.watch(ref)
        if self._buffered:
            self._metrics.buffered -= self._buffered
            self._buffered = 0
            self.ctx.unstash_all()

    def _terminated(self, ref: ActorRef) -> None:
        if ref == self._target:
            self._target = None
        if ref == self._child:
            self._child = None
            self._metrics.running = 0
            self._broadcast(Moved())
            self._answer_release()
            self._reconsider()

    # -- hosting ------------------------------------------------------------------------

    def _reconsider(self) -> None:
        if not self._hosting or not self.ctx.system.is_running:
            return
        members = self._cluster.gossip.members
        mine = next((m for m in members if m.unique_address == self._me), None)
        role = self._settings.role
        if mine is not None:
            self._was_member = True
            # Remember who was older, to notice (and time) their removal.
            now = self.ctx.clock.now()
            present = {m.unique_address for m in members}
            for node in self._older_seen - present:
                self._removed_at.setdefault(node, now)
            self._older_seen = {
                m.unique_address
                for m in members
                if m.unique_address != self._me and m.has_role(role) and m.is_older_than(mine)
            }
        if mine is None or mine.status is not MemberStatus.UP:
            # Past Up, or removed after having been a member (not: not joined
            # yet): never again on this incarnation.
            if (mine is None and self._was_member) or (
                mine is not None
                and mine.status not in (MemberStatus.JOINING, MemberStatus.WEAKLY_UP)
            ):
                self._done = True
            self._stop_instance()
            return
        if not mine.has_role(role):
            return
        now = self.ctx.clock.now()
        blockers = older_blockers(members, self._me, role, self._released)
        for member in blockers:
            if member.status in (MemberStatus.LEAVING, MemberStatus.EXITING):
                self._manager_at(member.address).tell(HandOverToMe(), self.ctx.ref)
        waiting = [
            node
            for node, at in self._removed_at.items()
            if node not in self._released and now < at + self._margin
        ]
        if blockers or waiting:
            self._stop_instance()
        elif self._child is None and not self._done:
            self._start_instance()

    def _start_instance(self) -> None:
        child = self.ctx.spawn(self._factory, name=CHILD_NAME)
        self._child = child
        self._metrics.starts += 1
        self._metrics.running = 1
        self.ctx.watch(child)
        if self._target is not None:
            self.ctx.unwatch(self._target)
            self._target = None
        self._found(child)
        self._broadcast(RunsAt(self.ctx.ref))

    def _broadcast(self, news: object) -> None:
        for member in self._cluster.gossip.members:
            if member.unique_address != self._me and member.status in _ELIGIBLE:
                self._manager_at(member.address).tell(news, self.ctx.ref)

    def _stop_instance(self) -> None:
        child = self._child
        if child is not None and self.ctx.child(CHILD_NAME) is child:
            self.ctx.stop(child)

    def _answer_release(self) -> None:
        if self._child is not None or not self._release_waiters:
            return
        mine = self._cluster.self_member
        if mine is not None and mine.status is MemberStatus.UP:
            return  # not leaving: the requester will see that it is not the oldest
        news = Released(str(self._me.address), self._me.uid)
        for waiter in self._release_waiters:
            waiter.tell(news, self.ctx.ref)
        self._release_waiters.clear()

    # -- proxy --------------------------------------------------------------------------

    def _look_up(self) -> None:
        candidates = sorted(
            (
                m
                for m in self._cluster.gossip.members
                if m.status in _ELIGIBLE and m.has_role(self._settings.role)
            ),
            key=lambda m: (m.up_number, m.address),
        )
        for member in candidates[:2]:
            self._manager_at(member.address).tell(WhereIs(), self.ctx.ref)

    def _manager_at(self, node: Address) -> ActorRef:
        return self.ctx.system.resolve(f"shoal://{node}/user/{manager_name(self._name)}")
