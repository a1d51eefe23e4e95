"""The ``Cluster`` extension: one node's membership, driven by gossip, heartbeats and timers.

The pure core (:mod:`._membership`, :mod:`._pushpull`, :mod:`._sbr`) decides;
this module wires it to the clock, to remoting's control lane and to the
node's users (events, ``wait_up``, ``leave``, ``down``). Protocol messages
travel as ``proto/cluster.proto`` bytes on the control lane
(``Remoting.send_control``) to the ``/system/cluster`` actor of each node:
that lane is written before user traffic and is not bounded by the user
outbox, so a busy application cannot delay a heartbeat into a false
failure suspicion, nor a gossip round into a late decision.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, ClassVar, Final

from shoal.remote import Remoting
from shoal.runtime import (
    Actor,
    ActorRef,
    Address,
    Cancellable,
    RateLimitedLog,
    ShutdownPhase,
    UniqueAddress,
)

from ._codec import decode, encode, seen_digest
from ._downing import Downing
from ._errors import ClusterError, ProtocolError
from ._events import (
    ClusterEvent,
    CurrentClusterState,
    LeaderChanged,
    MemberDowned,
    MemberRemoved,
    diff,
    snapshot,
)
from ._gossip import Gossip, forbidden_claims
from ._heartbeat import HeartbeatState
from ._join import SeedJoin
from ._member import Member, MemberStatus
from ._membership import (
    Admitted,
    AlreadyMember,
    MembershipState,
    ReplacingIncarnation,
    down,
    join,
    leader_actions,
    leave,
    observe_reachable,
    observe_unreachable,
    prune_tombstones,
    receive_gossip,
)
from ._messages import (
    Body,
    Down,
    Envelope,
    GossipState,
    GossipStatus,
    Heartbeat,
    HeartbeatReply,
    Join,
    Leave,
    Welcome,
)
from ._metrics import ClusterCollector, ClusterMetrics
from ._pushpull import (
    Answer,
    answer_state,
    answer_status,
    select_peer,
    self_unreachable,
    unseen_peers,
)
from ._settings import ClusterSettings
from ._subscription import Subscriber, Subscription, Subscriptions
from ._vclock import VectorClock

if TYPE_CHECKING:
    from shoal.runtime import ActorSystem

_log: Final = logging.getLogger("shoal.cluster")
_EAGER_PUSH: Final = 3  # peers a node's own change is pushed to at once
_ADMITTING = frozenset({MemberStatus.JOINING, MemberStatus.WEAKLY_UP, MemberStatus.UP})
DAEMON_NAME: Final = "cluster"


class _Daemon(Actor):
    """The ``/system/cluster`` actor: hands each frame peers send to the cluster."""

    def __init__(self, on_frame: Callable[[object, ActorRef | None], None]) -> None:
        self._on_frame = on_frame

    def receive(self, message: object) -> None:
        self._on_frame(message, self.ctx.sender)


class Cluster:
    """One node's cluster membership: start it once per system, after remoting.

    ::

        await Remoting.start(system, RemoteSettings(port=2552))
        cluster = await Cluster.start(system, ClusterSettings(seed_nodes=(...)))
        await cluster.wait_up()
        cluster.subscribe(print)        # a CurrentClusterState, then each event
        await cluster.leave()           # ... and the system shuts down

    Everything is called on the system's event loop. ``state`` is readable
    at any time without waiting.
    """

    depends_on: ClassVar[tuple[type, ...]] = (Remoting,)
    shutdown_phase: ClassVar[ShutdownPhase] = ShutdownPhase.CLOSE_EXTENSIONS

    def __init__(self, system: ActorSystem) -> None:
        # Created by ``system.extension(Cluster)``; ``start()`` does the rest.
        self.system = system
        self.settings = ClusterSettings()
        self.metrics = ClusterMetrics()
        self._started = False
        self._closed = False
        self._remoting: Remoting | None = None
        self._self = UniqueAddress(Address(system.name), 0)
        self._membership = MembershipState(self._self)
        self._refs: dict[Address, ActorRef] = {}
        self._subscriptions = Subscriptions()
        self._timers: list[Cancellable] = []
        self._seed_join: SeedJoin | None = None
        self._up: asyncio.Future[None] = system.loop.create_future()
        self._gone: asyncio.Future[str] = system.loop.create_future()
        self._was_member = False
        self._leaving = False
        self._shutdown_task: asyncio.Task[None] | None = None
        self._hb_seq = 0
        self._decision_due: float | None = None
        self._decision_timer: Cancellable | None = None
        self._digest: tuple[Gossip | None, int] = (None, 0)
        self._bad_log = RateLimitedLog(_log, system.clock, 5, 10.0)
        self._heartbeat = HeartbeatState(self._self, self.settings)
        self._downing = Downing(self.settings)

    # -- lifecycle ----------------------------------------------------------------------

    @classmethod
    async def start(cls, system: ActorSystem, settings: ClusterSettings | None = None) -> Cluster:
        """Start this node's membership; join ``settings.seed_nodes`` if there are any.

        Remoting must be started on ``system`` first. Raises
        :class:`ClusterError` if the cluster already runs on this system.
        """
        cluster = system.extension(cls)
        cluster._begin(settings if settings is not None else ClusterSettings())  # noqa: SLF001
        return cluster

    @classmethod
    def get(cls, system: ActorSystem) -> Cluster:
        """The started cluster of ``system``; raises :class:`ClusterError` if none."""
        cluster = system.extension(cls)
        if not cluster._started:  # noqa: SLF001 (its own class)
            raise ClusterError(f"the cluster is not started on {system.name}")
        return cluster

    def _begin(self, settings: ClusterSettings) -> None:
        if self._started:
            raise ClusterError(f"the cluster already runs on {self.system.address}")
        remoting = Remoting.get(self.system)
        self._remoting = remoting
        self.settings = settings
        self._self = remoting.unique_address
        self._membership = MembershipState(self._self, self_roles=settings.roles)
        self._heartbeat = HeartbeatState(self._self, settings)
        self._downing = Downing(settings)
        clock = self.system.clock
        self._bad_log = RateLimitedLog(_log, clock, 5, 10.0)
        daemon = self.system.spawn_system_actor(lambda: _Daemon(self._on_frame), name=DAEMON_NAME)
        remoting.accept_control(daemon)
        self._daemon = daemon
        self._collector = ClusterCollector(
            remoting.address, self.metrics, self._member_counts, self._unreachable_count, self._phis
        )
        self.system.metrics.register(self._collector)
        self.system.coordinated_shutdown.add_task(
            ShutdownPhase.CLUSTER_LEAVE, "cluster-leave", self._leave_on_shutdown
        )
        self._started = True
        self._every(settings.gossip_interval, self._gossip_tick)
        self._every(settings.heartbeat_interval, self._heartbeat_tick)
        if settings.seed_nodes:
            self.join_seed_nodes()

    def _every(self, interval: float, tick: Callable[[], None]) -> None:
        clock = self.system.clock
        slot = len(self._timers)

        def fire() -> None:
            if self._closed:
                return
            self._timers[slot] = clock.call_later(interval, fire)
            tick()

        self._timers.append(clock.call_later(interval, fire))

    async def aclose(self) -> None:
        """Stop the timers and forget the metrics (the system's shutdown calls it)."""
        if self._closed or not self._started:
            return
        self._closed = True
        for timer in self._timers:
            timer.cancel()
        if self._decision_timer is not None:
            self._decision_timer.cancel()
        if self._seed_join is not None:
            self._seed_join.stop()
        self.system.metrics.unregister(self._collector)
        if not self._gone.done():
            self._gone.set_result("shutdown")
        if not self._up.done():
            self._up.set_exception(ClusterError("the node shut down before it was Up"))
            self._up.exception()  # retrieved: nobody may be waiting

    # -- the public face ----------------------------------------------------------------

    @property
    def self_address(self) -> UniqueAddress:
        """This node's incarnation."""
        return self._self

    @property
    def self_member(self) -> Member | None:
        """This node's member record (``None`` before it joined or after removal)."""
        return self._membership.self_member

    @property
    def gossip(self) -> Gossip:
        """The latest gossip state this node holds."""
        return self._membership.gossip

    @property
    def state(self) -> CurrentClusterState:
        """A snapshot of the membership as this node sees it; never waits."""
        return snapshot(self._membership.gossip, self._self)

    @property
    def is_up(self) -> bool:
        """Whether this node has been Up (``wait_up`` returns at once)."""
        return self._up.done() and self._up.exception() is None

    async def wait_up(self) -> None:
        """Wait until this node is Up; :class:`ClusterError` if it is removed or shut down first."""
        await asyncio.shield(self._up)

    def subscribe(self, subscriber: Subscriber) -> Subscription:
        """Give ``subscriber`` (an actor ref or a callback) the current state, then each event.

        The first thing delivered is a :class:`CurrentClusterState`; then
        every :class:`ClusterEvent` in the order this node sees them. A
        callback is called synchronously on the loop and must not block;
        an exception it raises is logged and the subscription stays.
        """
        return self._subscriptions.add(subscriber, self.state, _log)

    def join_seed_nodes(self, seed_nodes: Sequence[str] | None = None) -> None:
        """Start joining through ``seed_nodes`` (default: ``settings.seed_nodes``).

        ``start`` does it when the settings name seeds; discovery calls it
        with the seeds it found (this node's own address first, to form a
        new cluster). Does nothing once joining has begun.
        """
        if self._seed_join is not None or self._membership.self_member is not None:
            return
        if seed_nodes is not None:
            self.settings = replace(self.settings, seed_nodes=tuple(seed_nodes))
        self._seed_join = SeedJoin(
            self._self.address,
            self.settings,
            self.system.clock,
            self.system.random,
            lambda seed: self._send(UniqueAddress(seed, 0), Join(self.settings.roles)),
            self._join_self,
        )
        self._seed_join.start()

    def down(self, address: Address | str) -> None:
        """Mark the member at ``address`` Down (an operator's decision); idempotent."""
        target = Address.parse(address) if isinstance(address, str) else address
        self._set(down(self._membership, target), push=True)

    def leave_member(self, address: Address | str) -> None:
        """Start the graceful leave of the member at ``address``; returns at once.

        Any member, this node included (an operator's request, e.g. from the
        management API): it walks Leaving -> Exiting -> Removed, and the node
        shuts down once it sees itself removed. Idempotent; not a member: no-op.
        """
        target = Address.parse(address) if isinstance(address, str) else address
        if target == self._self.address:
            self._start_leave()
        else:
            self._set(leave(self._membership, target), push=True)

    async def leave(self) -> None:
        """Leave gracefully: Leaving -> Exiting -> Removed, then shut the system down.

        Returns once the system has shut down. A node that is not a member
        just shuts down.
        """
        self._start_leave()
        if self._membership.self_member is not None:
            await asyncio.shield(self._gone)
        await self.system.shutdown("cluster-leave")

    def _start_leave(self) -> None:
        self._leaving = True
        if self._seed_join is not None:
            self._seed_join.stop()
        self._set(leave(self._membership, self._self), push=True)

    async def _leave_on_shutdown(self) -> None:
        # A node shut down without leaving tells the others it is going; it
        # does not wait for the removal (the phase's time box would).
        self._start_leave()

    # -- sending ------------------------------------------------------------------------

    def _ref(self, address: Address) -> ActorRef:
        ref = self._refs.get(address)
        if ref is None:
            remoting = self._remoting
            assert remoting is not None
            remoting.reach(str(address))
            ref = self._refs[address] = self.system.resolve(
                f"shoal://{address}/system/{DAEMON_NAME}"
            )
        return ref

    def _send(self, to: UniqueAddress, body: Body) -> None:
        if to.address == self._self.address or self._closed:
            return
        data = encode(Envelope(self.system.name, self._self, to, body))
        remoting = self._remoting
        assert remoting is not None
        remoting.send_control(self._ref(to.address), data, self._daemon)
        self.metrics.messages_sent += 1
        self.metrics.bytes_sent += len(data)
        if isinstance(body, GossipState | Welcome):
            self.metrics.states_sent += 1

    def _send_state(self, to: UniqueAddress) -> None:
        self._send(to, GossipState(self._membership.gossip))

    def _send_status(self, to: UniqueAddress) -> None:
        gossip = self._membership.gossip
        self._send(to, GossipStatus(gossip.version, self._seen_digest(gossip)))

    def _seen_digest(self, gossip: Gossip) -> int:
        cached, digest = self._digest
        if cached is not gossip:
            digest = seen_digest(gossip.seen)
            self._digest = (gossip, digest)
        return digest

    # -- receiving ----------------------------------------------------------------------

    def _refuse(self, kind: str, detail: str) -> None:
        self.metrics.count_bad(kind)
        self._bad_log.report(
            f"cluster-{kind}", "[%s] refused a cluster frame (%s): %s", self._self, kind, detail
        )

    def _on_frame(self, data: object, sender: ActorRef | None) -> None:
        if self._closed:
            return
        if not isinstance(data, bytes):
            self._refuse("not-bytes", f"a {type(data).__name__}")
            return
        self.metrics.messages_received += 1
        self.metrics.bytes_received += len(data)
        try:
            envelope = decode(data)
        except ProtocolError as error:
            self._refuse("undecodable", str(error))
            return
        frm = envelope.sender
        if envelope.cluster != self.system.name:
            self._refuse("other-cluster", f"from cluster {envelope.cluster!r} ({frm})")
            return
        to = envelope.recipient
        if to.address != self._self.address or to.uid not in (0, self._self.uid):
            self._refuse("wrong-incarnation", f"{frm} wrote to {to}, this node is {self._self}")
            return
        if sender is not None and sender.path.node != frm.address:
            self._refuse("spoofed-sender", f"{frm} sent through {sender.path.node}")
            return
        remoting = self._remoting
        assert remoting is not None
        if self._membership.gossip.is_tombstoned(frm) or remoting.is_quarantined(
            str(frm.address), frm.uid
        ):
            self._refuse("quarantined", f"from removed incarnation {frm}")
            return
        if to.uid == 0 and not isinstance(envelope.body, Join):
            self._refuse("wrong-incarnation", f"{frm} sent {type(envelope.body).__name__} to uid 0")
            return
        self._dispatch(frm, envelope.body)

    def _dispatch(self, frm: UniqueAddress, body: Body) -> None:
        match body:
            case Heartbeat(sequence=seq):
                self._send(frm, HeartbeatReply(seq))
            case HeartbeatReply():
                self._heartbeat.reply(frm, self.system.clock.now())
            case GossipStatus(version=version, seen_digest=digest):
                self._on_status(frm, version, digest)
            case GossipState(gossip=gossip):
                self._on_state(frm, gossip)
            case Join(roles=roles):
                self._on_join(frm, roles)
            case Welcome(gossip=gossip):
                self._on_welcome(frm, gossip)
            case Leave(address=address):
                if self._is_member(frm):
                    self._set(leave(self._membership, address), push=True)
            case Down(address=address):
                if self._is_member(frm):
                    self._set(down(self._membership, address), push=True)

    def _is_member(self, node: UniqueAddress) -> bool:
        if self._membership.gossip.has_member(node):
            return True
        self._refuse("unknown-sender", f"{node} is not a member")
        return False

    def _on_status(self, frm: UniqueAddress, version: VectorClock, digest: int) -> None:
        if self._membership.self_member is None or not self._is_member(frm):
            return
        gossip = self._membership.gossip
        answer = answer_status(gossip, version, digest, self._seen_digest(gossip))
        if answer is Answer.STATE:
            self._send_state(frm)
        elif answer is Answer.STATUS:
            self._send_status(frm)

    def _on_state(self, frm: UniqueAddress, remote: Gossip) -> None:
        me = self._membership
        if me.self_member is None:
            if not self._was_member and remote.has_member(self._self):
                self._on_welcome(frm, remote)  # the welcome was lost; this says the same
            return
        if not me.gossip.has_member(frm) and not remote.has_member(frm):
            self._refuse("unknown-sender", f"gossip from {frm}, not a member")
            return
        for known, claimed in forbidden_claims(me.gossip, remote):
            self.metrics.forbidden_claims += 1
            self._bad_log.report(
                "cluster-forbidden-claim",
                "[%s] ignored %s's claim that %s is %s (it is %s)",
                self._self,
                frm,
                known.unique_address,
                claimed.status,
                known.status,
            )
        merged, _ = receive_gossip(me, remote)
        self._set(merged, push=False)
        self._leader_step()
        if answer_state(remote, self._membership.gossip) is Answer.STATE:
            self._send_state(frm)

    def _on_join(self, frm: UniqueAddress, roles: frozenset[str]) -> None:
        me = self._membership.self_member
        if me is None or me.status not in _ADMITTING or frm.address == self._self.address:
            return  # not in a cluster yet: the joiner asks the other seeds
        state, decision = join(self._membership, frm, roles)
        self._set(state, push=True)
        match decision:
            case Admitted() | AlreadyMember():
                self._send(frm, Welcome(self._membership.gossip))
            case ReplacingIncarnation(old=old):
                remoting = self._remoting
                assert remoting is not None
                remoting.quarantine(str(old.address), old.unique_address.uid)
                # Not admitted yet; the answer tells it a cluster exists (retry).
                self._send(frm, Welcome(self._membership.gossip))
                self._leader_step()
            case _:
                self._bad_log.report(
                    "cluster-join-refused", "[%s] refused the join of %s", self._self, frm
                )

    def _on_welcome(self, frm: UniqueAddress, gossip: Gossip) -> None:
        if self._membership.self_member is not None or self._was_member:
            return
        if self._seed_join is not None:
            self._seed_join.answered = True
        if not gossip.has_member(self._self) or not gossip.has_member(frm):
            return  # a cluster exists but does not admit this node yet: keep trying
        if self._seed_join is not None:
            self._seed_join.stop()
        merged, _ = receive_gossip(self._membership, gossip)
        self._set(merged, push=False)
        self._send_state(frm)  # it learns this node has seen the state

    def _join_self(self) -> None:
        if self._membership.self_member is not None:
            return
        state, _ = join(self._membership, self._self, self.settings.roles)
        self._set(state, push=False)
        self._leader_step()

    # -- ticks --------------------------------------------------------------------------

    def _gossip_tick(self) -> None:
        me = self._membership
        if me.self_member is None:
            return
        now = self.system.clock.now()
        self._leader_step()
        self._check_downing(now)
        pruned = prune_tombstones(self._membership, now - self.settings.prune_tombstones_after)
        self._set(pruned, push=False)
        gossip = self._membership.gossip
        peer = select_peer(gossip, self._self, self.system.random)
        if peer is None:
            return
        self.metrics.gossip_rounds += 1
        if gossip.seen_by(peer):
            self._send_status(peer)
        else:
            self._send_state(peer)

    def _leader_step(self) -> None:
        now = self.system.clock.now()
        state, _ = leader_actions(self._membership, now, self.settings)
        self._set(state, push=True)

    def _heartbeat_tick(self) -> None:
        if self._membership.self_member is None:
            return
        now = self.system.clock.now()
        self._hb_seq += 1
        for node in self._heartbeat.receivers:
            self._send(node, Heartbeat(self._hb_seq))
        available, unavailable = self._heartbeat.check(now)
        mine = self_unreachable(self._membership.gossip, self._self)
        state = self._membership
        for node in unavailable - mine:
            state = observe_unreachable(state, node)
        for node in available & mine:
            state = observe_reachable(state, node)
        self._set(state, push=True)
        self._check_downing(now)

    def _check_downing(self, now: float) -> None:
        decision = self._downing.observe(self._membership.gossip, self._self, now)
        if decision is None:
            due = self._downing.decision_due
            if due is not None and due > now and due != self._decision_due:
                # Decide exactly when the view has been stable long enough,
                # not up to a tick later: the removal bound has no room for it.
                if self._decision_timer is not None:
                    self._decision_timer.cancel()
                self._decision_due = due
                self._decision_timer = self.system.clock.call_later(due - now, self._decision_tick)
            return
        self.metrics.count_decision(decision.strategy, decision.kind.name.lower())
        _log.warning("[%s] %s", self._self, decision.describe())
        if decision.downs_self:
            _log.warning("[%s] this node is on the losing side and stops", self._self)
        state = self._membership
        for node in sorted(decision.to_down):
            state = down(state, node)
        self._set(state, push=True)

    def _decision_tick(self) -> None:
        self._decision_timer = None
        if not self._closed and self._membership.self_member is not None:
            self._check_downing(self.system.clock.now())

    # -- applying a new state -----------------------------------------------------------

    def _set(self, new: MembershipState, *, push: bool) -> None:
        old = self._membership
        if new is old:
            return
        self._membership = new
        if new.gossip is old.gossip:
            return
        events = diff(old.gossip, new.gossip, self._self)
        for event in events:
            self._on_event(event)
            self._subscriptions.publish(event, _log)
            self.system.event_stream.publish(event)
        gossip = new.gossip
        now = self.system.clock.now()
        ring_nodes = [m.unique_address for m in gossip.members if m.status is not MemberStatus.DOWN]
        self._heartbeat.update(ring_nodes, gossip.effective_reachability().all_unreachable(), now)
        self._check_self(new)
        if push and gossip.version != old.gossip.version:
            self._push(gossip)

    def _push(self, gossip: Gossip) -> None:
        peers = unseen_peers(gossip, self._self)
        if len(peers) > _EAGER_PUSH:
            peers = self.system.random.sample(peers, _EAGER_PUSH)
        for peer in peers:
            self._send_state(peer)

    def _on_event(self, event: ClusterEvent) -> None:
        remoting = self._remoting
        assert remoting is not None
        match event:
            case LeaderChanged():
                self.metrics.leader_changes += 1
            case MemberDowned(member=m) if m.unique_address != self._self:
                address = str(m.address)
                peer = remoting.peers.get(address)
                if peer is None or peer.uid in (None, m.unique_address.uid):
                    remoting.node_gone(address)
            case MemberRemoved(member=m, previous_status=previous) if (
                m.unique_address != self._self
            ):
                address, uid = str(m.address), m.unique_address.uid
                if previous is MemberStatus.EXITING:
                    # It learns it was removed, and stops; quarantine only once
                    # that last state had time to leave (quarantine drops the outbox).
                    self._send_state(m.unique_address)
                    self.system.clock.call_later(
                        2 * self.settings.gossip_interval, remoting.quarantine, address, uid
                    )
                else:
                    remoting.quarantine(address, uid)
                    self._refs.pop(m.address, None)
            case _:
                pass

    def _check_self(self, state: MembershipState) -> None:
        me = state.self_member
        if me is not None:
            self._was_member = True
            if me.status is MemberStatus.UP and not self._up.done():
                self._up.set_result(None)
            if me.status in (MemberStatus.LEAVING, MemberStatus.EXITING):
                # Leaving, whoever asked (this node, or an operator through
                # another one): the removal that follows is a graceful leave.
                self._leaving = True
            if me.status is MemberStatus.DOWN:
                self._terminate("downed")
        elif self._was_member and state.self_removed:
            self._terminate("removed")

    def _terminate(self, why: str) -> None:
        if self._gone.done():
            return
        self._gone.set_result(why)
        if not self._up.done():
            self._up.set_exception(ClusterError(f"this node was {why} before it was Up"))
            self._up.exception()
        if why == "downed":
            _log.warning("[%s] this node was downed; its actor system shuts down", self._self)
            reason = "cluster-downed"
        else:
            _log.info("[%s] this node was removed from the cluster", self._self)
            reason = "cluster-leave" if self._leaving else "cluster-removed"
        self._shutdown_task = self.system.loop.create_task(self.system.shutdown(reason))

    # -- metrics ------------------------------------------------------------------------

    def _member_counts(self) -> dict[str, int]:
        counts = {str(status): 0 for status in MemberStatus if status is not MemberStatus.REMOVED}
        for m in self._membership.gossip.members:
            counts[str(m.status)] += 1
        return counts

    def _unreachable_count(self) -> int:
        return len(self._membership.gossip.unreachable_members())

    def _phis(self) -> dict[str, float]:
        now = self.system.clock.now()
        return {str(n): self._heartbeat.phi(n, now) for n in self._heartbeat.receivers}

    def __repr__(self) -> str:
        return f"<Cluster {self._self} members={len(self._membership.gossip.members)}>"
