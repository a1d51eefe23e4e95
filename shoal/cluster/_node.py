"""One node's running membership: its state, what it sends, its ticks and its decisions.

The pure core (:mod:`._membership`, :mod:`._pushpull`, :mod:`._sbr`)
decides; a :class:`Node` applies those decisions to its state, sends
protocol messages, runs the gossip and heartbeat ticks and the
split-brain resolver, and tells remoting about members that are gone.
Frames from peers are handled in :mod:`._inbound`; the user-facing
``Cluster`` (:mod:`._cluster`) owns one ``Node``.

Every method runs on the system's event loop and never blocks.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Final

from shoal.runtime import ActorRef, Address, Cancellable, RateLimitedLog, UniqueAddress

from ._codec import NodeCache, encode, seen_digest
from ._downing import Downing
from ._events import ClusterEvent, LeaderChanged, MemberDowned, MemberRemoved, diff
from ._gossip import Gossip
from ._heartbeat import HeartbeatState
from ._member import MemberStatus
from ._membership import (
    MembershipState,
    confirm_exiting,
    down,
    join,
    leader_actions,
    observe_reachable,
    observe_unreachable,
    prune_tombstones,
)
from ._messages import (
    Body,
    Envelope,
    ExitingConfirmed,
    GossipState,
    GossipStatus,
    Heartbeat,
    Welcome,
)
from ._metrics import ClusterMetrics
from ._pushpull import select_peer, self_unreachable, unseen_peers

if TYPE_CHECKING:
    from shoal.remote import Remoting
    from shoal.runtime import ActorSystem

    from ._join import SeedJoin
    from ._settings import ClusterSettings

_log: Final = logging.getLogger("shoal.cluster")
DAEMON_NAME: Final = "cluster"
"""The name of the system actor (``/system/cluster``) protocol messages go to."""
EAGER_PUSH: Final = 3
"""Peers that have not seen it a node pushes its own change to at once (besides gossip)."""


class Node:
    """The running membership of one node (see the module docstring).

    ``on_events(events)`` is called with the events of every change of the
    state, in order; ``on_self(state)`` after every change, to follow this
    node's own status. Both are called synchronously and must not block.
    """

    def __init__(
        self,
        system: ActorSystem,
        remoting: Remoting,
        settings: ClusterSettings,
        metrics: ClusterMetrics,
        on_events: Callable[[list[ClusterEvent]], None],
        on_self: Callable[[MembershipState], None],
    ) -> None:
        self.system = system
        self.remoting = remoting
        self.settings = settings
        self.metrics = metrics
        self.self_node = remoting.unique_address
        self.membership = MembershipState(self.self_node, self_roles=settings.roles)
        self.heartbeat = HeartbeatState(self.self_node, settings)
        self.downing = Downing(settings)
        self.bad_log = RateLimitedLog(_log, system.clock, 5, 10.0)
        self.info_log = RateLimitedLog(_log, system.clock, 5, 10.0, level=logging.INFO)
        self.node_cache = NodeCache(system.name)
        self.daemon: ActorRef | None = None
        self.seed_join: SeedJoin | None = None
        self.closed = False
        self.was_member = False
        self.exit_confirmed = False
        self._on_events = on_events
        self._on_self = on_self
        self._refs: dict[Address, ActorRef] = {}
        self._timers: list[Cancellable] = []
        self._hb_seq = 0
        self._decision_due: float | None = None
        self._decision_timer: Cancellable | None = None
        self._reap_at: float | None = None
        self._reap_timer: Cancellable | None = None
        self._digest: tuple[Gossip | None, int] = (None, 0)

    # -- timers -------------------------------------------------------------------------

    def start_ticks(self) -> None:
        """Start the gossip and heartbeat ticks."""
        self._every(self.settings.gossip_interval, self.gossip_tick)
        self._every(self.settings.heartbeat_interval, self.heartbeat_tick)

    def _every(self, interval: float, tick: Callable[[], None]) -> None:
        clock = self.system.clock
        slot = len(self._timers)

        def fire() -> None:
            if self.closed:
                return
            self._timers[slot] = clock.call_later(interval, fire)
            tick()

        self._timers.append(clock.call_later(interval, fire))

    def close(self) -> None:
        """Stop every timer; the node sends nothing more."""
        self.closed = True
        for timer in self._timers:
            timer.cancel()
        for pending in (self._decision_timer, self._reap_timer):
            if pending is not None:
                pending.cancel()
        if self.seed_join is not None:
            self.seed_join.stop()

    # -- sending ------------------------------------------------------------------------

    def _ref(self, address: Address) -> ActorRef:
        ref = self._refs.get(address)
        if ref is None:
            self.remoting.reach(str(address))
            ref = self._refs[address] = self.system.resolve(
                f"shoal://{address}/system/{DAEMON_NAME}"
            )
        return ref

    def send(self, to: UniqueAddress, body: Body) -> None:
        """Send ``body`` to incarnation ``to`` (uid 0: whichever runs there) on the control lane."""
        if to.address == self.self_node.address or self.closed:
            return
        data = encode(Envelope(self.system.name, self.self_node, to, body))
        self.remoting.send_control(self._ref(to.address), data, self.daemon)
        self.metrics.messages_sent += 1
        self.metrics.bytes_sent += len(data)
        if isinstance(body, GossipState | Welcome):
            self.metrics.states_sent += 1

    def send_state(self, to: UniqueAddress) -> None:
        """Send this node's full state to ``to``."""
        self.send(to, GossipState(self.membership.gossip))

    def send_status(self, to: UniqueAddress) -> None:
        """Send this node's digest (version and seen-set hash) to ``to``."""
        gossip = self.membership.gossip
        self.send(to, GossipStatus(gossip.version, self.seen_digest(gossip)))

    def seen_digest(self, gossip: Gossip) -> int:
        """The seen-set hash of ``gossip`` (cached for the latest state)."""
        cached, digest = self._digest
        if cached is not gossip:
            digest = seen_digest(gossip.seen)
            self._digest = (gossip, digest)
        return digest

    # -- ticks --------------------------------------------------------------------------

    def gossip_tick(self) -> None:
        """One gossip round: leader actions, the resolver, then one peer gets state or digest."""
        if self.membership.self_member is None:
            return
        now = self.system.clock.now()
        if self.exit_confirmed:
            self._repeat_exit_confirmation()
        self.leader_step()
        self.check_downing(now)
        pruned = prune_tombstones(self.membership, now - self.settings.prune_tombstones_after)
        self.apply(pruned, push=False)
        gossip = self.membership.gossip
        peer = select_peer(gossip, self.self_node, self.system.random)
        if peer is None:
            return
        self.metrics.gossip_rounds += 1
        if gossip.seen_by(peer):
            self.send_status(peer)
        else:
            self.send_state(peer)

    def confirm_exit(self) -> None:
        """This node, leaving, has finished its exit: record it and tell the leader.

        The leader removes an Exiting member only once it has confirmed
        (or is unreachable). The confirmation goes to the leader only (when
        a whole cluster shuts down, one message per member to every member
        would be quadratic), and again on every gossip round until this
        node is removed, in case it was lost or the leader changed.
        """
        self.exit_confirmed = True
        self.apply(confirm_exiting(self.membership, self.self_node), push=False)
        self._repeat_exit_confirmation()
        self.leader_step()

    def _repeat_exit_confirmation(self) -> None:
        me = self.membership.self_member
        if me is None or me.status not in (MemberStatus.LEAVING, MemberStatus.EXITING):
            return
        leader = self.membership.leader
        if leader is not None:
            self.send(leader, ExitingConfirmed())

    def leader_step(self) -> None:
        """The leader's actions, if this node leads and they change anything."""
        now = self.system.clock.now()
        state, _ = leader_actions(self.membership, now, self.settings)
        self.apply(state, push=True)

    def heartbeat_tick(self) -> None:
        """Probe the ring neighbours, then :meth:`reap`."""
        if self.membership.self_member is None:
            return
        self._hb_seq += 1
        for node in sorted(self.heartbeat.receivers):  # sorted: simulations replay alike
            self.send(node, Heartbeat(self._hb_seq))
        self.reap()

    def reap(self) -> None:
        """Record who crossed the phi threshold, either way; run the resolver.

        Runs on every heartbeat tick, and also exactly when the next
        receiver would cross the threshold (a reply meanwhile only makes
        that check find everyone available): detection does not wait for a
        tick, which the removal bound has no room for.
        """
        if self.membership.self_member is None or self.closed:
            return
        now = self.system.clock.now()
        available, unavailable = self.heartbeat.check(now)
        mine = self_unreachable(self.membership.gossip, self.self_node)
        state = self.membership
        for node in sorted(unavailable - mine):
            state = observe_unreachable(state, node)
        # A node this node no longer monitors (the ring moved) is no longer
        # its to judge: withdraw the observation, as Akka's reaper does; its
        # new monitors decide.
        for node in sorted((available | (mine - self.heartbeat.receivers)) & mine):
            state = observe_reachable(state, node)
        self.apply(state, push=True)
        self.check_downing(now)
        at = self.heartbeat.next_suspicion(now)
        if at is not None and at != self._reap_at:
            if self._reap_timer is not None:
                self._reap_timer.cancel()
            self._reap_at = at
            # A microsecond later: at the crossing itself phi may round just below.
            self._reap_timer = self.system.clock.call_later(at - now + 1e-6, self._reap_tick)

    def _reap_tick(self) -> None:
        self._reap_timer = self._reap_at = None
        self.reap()

    def check_downing(self, now: float) -> None:
        """Feed the resolver this node's view; apply its decision when one is due."""
        decision = self.downing.observe(self.membership.gossip, self.self_node, now)
        if decision is None:
            due = self.downing.decision_due
            if due is not None and due > now and due != self._decision_due:
                # Decide exactly when the view has been stable long enough,
                # not up to a tick later: the removal bound has no room for it.
                if self._decision_timer is not None:
                    self._decision_timer.cancel()
                self._decision_due = due
                self._decision_timer = self.system.clock.call_later(due - now, self._decision_tick)
            return
        self.metrics.count_decision(decision.strategy, decision.kind.name.lower())
        losing = "; this node is on the losing side and stops" if decision.downs_self else ""
        _log.warning("[%s] %s%s", self.self_node, decision.describe(), losing)
        state = self.membership
        for node in sorted(decision.to_down):
            state = down(state, node)
        self.apply(state, push=True)

    def _decision_tick(self) -> None:
        self._decision_timer = None
        if not self.closed and self.membership.self_member is not None:
            self.check_downing(self.system.clock.now())

    def join_self(self) -> None:
        """Form a cluster of this node alone (the first seed, when no other seed answers)."""
        if self.membership.self_member is not None:
            return
        state, _ = join(self.membership, self.self_node, self.settings.roles)
        self.apply(state, push=False)
        self.leader_step()

    # -- applying a new state -----------------------------------------------------------

    def apply(self, new: MembershipState, *, push: bool) -> None:
        """Make ``new`` this node's state: events, remoting hooks, ring, and, if ``push``
        and the version changed, the new state to a few peers that have not seen it."""
        old = self.membership
        if new is old:
            return
        self.membership = new
        if new.gossip is old.gossip:
            return
        events = diff(old.gossip, new.gossip, self.self_node)
        for event in events:
            self._hook(event)
        self._on_events(events)
        gossip = new.gossip
        # Down members stay on the ring: one that stops before it has seen the
        # state the leader removes it in must still be found unreachable.
        ring = [m.unique_address for m in gossip.members]
        unreachable = gossip.effective_reachability().all_unreachable()
        self.heartbeat.update(ring, unreachable, self.system.clock.now())
        if new.self_member is not None:
            self.was_member = True
        self._on_self(new)
        if push and gossip.version != old.gossip.version:
            peers = unseen_peers(gossip, self.self_node)
            if len(peers) > EAGER_PUSH:
                peers = self.system.random.sample(peers, EAGER_PUSH)
            for peer in peers:
                self.send_state(peer)

    def _hook(self, event: ClusterEvent) -> None:
        """Tell remoting about members that are gone (remote death watch fires)."""
        remoting = self.remoting
        match event:
            case LeaderChanged():
                self.metrics.leader_changes += 1
            case MemberDowned(member=m) if m.unique_address != self.self_node:
                address = str(m.address)
                peer = remoting.peers.get(address)
                if peer is None or peer.uid in (None, m.unique_address.uid):
                    remoting.node_gone(address)
            case MemberRemoved(member=m, previous_status=previous) if (
                m.unique_address != self.self_node
            ):
                address, uid = str(m.address), m.unique_address.uid
                if previous is MemberStatus.EXITING:
                    # It learns it was removed, and stops; quarantine only once
                    # that last state had time to leave (quarantine drops the outbox).
                    self.send_state(m.unique_address)
                    self.system.clock.call_later(
                        2 * self.settings.gossip_interval, remoting.quarantine, address, uid
                    )
                else:
                    remoting.quarantine(address, uid)
                self._refs.pop(m.address, None)
            case _:
                pass

    # -- gauges -------------------------------------------------------------------------

    def member_counts(self) -> dict[str, int]:
        """Members by status (every status but Removed, zeros included)."""
        counts = {str(status): 0 for status in MemberStatus if status is not MemberStatus.REMOVED}
        for m in self.membership.gossip.members:
            counts[str(m.status)] += 1
        return counts

    def unreachable_count(self) -> int:
        """Members some member observes as unreachable."""
        return len(self.membership.gossip.unreachable_members())

    def phis(self) -> dict[str, float]:
        """Phi of each monitored member, by address."""
        now = self.system.clock.now()
        return {str(n): self.heartbeat.phi(n, now) for n in self.heartbeat.receivers}
