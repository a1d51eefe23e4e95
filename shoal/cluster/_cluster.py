"""The ``Cluster`` extension: a node's handle on its cluster membership.

Protocol messages (``proto/cluster.proto``) travel as bytes on remoting's
control lane (``Remoting.send_control``) to the ``/system/cluster`` actor of
each node, rather than on a gRPC service of their own: the control lane is
written before user traffic and is not bounded by the user outbox, so a
busy application can delay neither a heartbeat (into a false suspicion)
nor a gossip round (into a late decision); and the cluster reuses
remoting's connection, handshake, authentication and quarantine instead of
doubling them. The same code therefore runs over gRPC and over the
in-memory network.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, ClassVar, Final

from shoal.remote import Remoting
from shoal.runtime import Address, ShutdownPhase, UniqueAddress

from ._errors import ClusterError
from ._events import ClusterEvent, CurrentClusterState, snapshot
from ._gossip import Gossip
from ._inbound import Daemon, on_frame
from ._join import SeedJoin
from ._leader import leader
from ._member import Member, MemberStatus, oldest
from ._membership import MembershipState, down, leave
from ._messages import Join
from ._metrics import ClusterCollector, ClusterMetrics
from ._node import DAEMON_NAME, Node
from ._settings import ClusterSettings
from ._subscription import Subscriber, Subscription, Subscriptions

if TYPE_CHECKING:
    from shoal.runtime import ActorSystem

_log: Final = logging.getLogger("shoal.cluster")


class Cluster:
    """One node's cluster membership: start it once per system, after remoting.

    ::

        await Remoting.start(system, RemoteSettings(port=2552))
        cluster = await Cluster.start(system, ClusterSettings(seed_nodes=(...)))
        await cluster.wait_up()
        cluster.subscribe(print)        # a CurrentClusterState, then each event
        await cluster.leave()           # ... and the system shuts down

    A node that finds itself Down (an operator's decision, or the losing
    side of a partition) or removed shuts its actor system down. Everything
    is called on the system's event loop; ``state`` is readable at any
    time without waiting.
    """

    depends_on: ClassVar[tuple[type, ...]] = (Remoting,)
    shutdown_phase: ClassVar[ShutdownPhase] = ShutdownPhase.CLOSE_EXTENSIONS

    def __init__(self, system: ActorSystem) -> None:
        # Created by ``system.extension(Cluster)``; ``start()`` does the rest.
        self.system = system
        self.settings = ClusterSettings()
        self.metrics = ClusterMetrics()
        self._node: Node | None = None
        self._collector: ClusterCollector | None = None
        self._subscriptions = Subscriptions()
        self._up: asyncio.Future[None] = system.loop.create_future()
        self._gone: asyncio.Future[str] = system.loop.create_future()
        self._leaving = False
        self._shutdown_task: asyncio.Task[None] | None = None

    # -- lifecycle ----------------------------------------------------------------------

    @classmethod
    async def start(cls, system: ActorSystem, settings: ClusterSettings | None = None) -> Cluster:
        """Start this node's membership; join ``settings.seed_nodes`` if there are any.

        Remoting must be started on ``system`` first (``RemotingStartError``
        otherwise). Raises :class:`ClusterError` if the cluster already runs
        on this system.
        """
        cluster = system.extension(cls)
        cluster._begin(settings if settings is not None else ClusterSettings())  # noqa: SLF001
        return cluster

    @classmethod
    def get(cls, system: ActorSystem) -> Cluster:
        """The started cluster of ``system``; raises :class:`ClusterError` if none."""
        cluster = system.extension(cls)
        if cluster._node is None:  # noqa: SLF001 (its own class)
            raise ClusterError(f"the cluster is not started on {system.name}")
        return cluster

    def _begin(self, settings: ClusterSettings) -> None:
        if self._node is not None:
            raise ClusterError(f"the cluster already runs on {self.system.address}")
        remoting = Remoting.get(self.system)
        _check_seeds(self.system.name, settings)
        self.settings = settings
        node = Node(self.system, remoting, settings, self.metrics, self._on_events, self._on_self)
        node.daemon = self.system.spawn_system_actor(
            lambda: Daemon(lambda data, sender: on_frame(node, data, sender)), name=DAEMON_NAME
        )
        remoting.accept_control(node.daemon)
        self._node = node
        self._collector = ClusterCollector(
            remoting.address, self.metrics, node.member_counts, node.unreachable_count, node.phis
        )
        self.system.metrics.register(self._collector)
        shutdown = self.system.coordinated_shutdown
        shutdown.add_task(ShutdownPhase.CLUSTER_LEAVE, "cluster-leave", self._leave_on_shutdown)
        shutdown.add_task(
            ShutdownPhase.CLUSTER_EXITING_DONE, "cluster-exiting-done", self._confirm_exit
        )
        node.start_ticks()
        if settings.seed_nodes:
            self.join_seed_nodes()

    async def aclose(self) -> None:
        """Stop the timers and forget the metrics (the system's shutdown calls it)."""
        node = self._node
        if node is None or node.closed:
            return
        node.close()
        if self._collector is not None:
            self.system.metrics.unregister(self._collector)
        if not self._gone.done():
            self._gone.set_result("shutdown")
        self._fail_up("the node shut down before it was Up")

    def _fail_up(self, why: str) -> None:
        if not self._up.done():
            self._up.set_exception(ClusterError(why))
            self._up.exception()  # retrieved: nobody may be waiting

    @property
    def _running(self) -> Node:
        if self._node is None:
            raise ClusterError(f"the cluster is not started on {self.system.name}")
        return self._node

    # -- what users read ----------------------------------------------------------------

    @property
    def self_address(self) -> UniqueAddress:
        """This node's incarnation."""
        return self._running.self_node

    @property
    def self_member(self) -> Member | None:
        """This node's member record (``None`` before it joined or after removal)."""
        return self._running.membership.self_member

    @property
    def gossip(self) -> Gossip:
        """The latest gossip state this node holds (members, reachability, seen set)."""
        return self._running.membership.gossip

    @property
    def state(self) -> CurrentClusterState:
        """A snapshot of the membership as this node sees it; never waits."""
        node = self._running
        return snapshot(node.membership.gossip, node.self_node)

    def oldest(self, role: str | None = None) -> Member | None:
        """The oldest Up or Leaving member (with ``role``), as this node sees it.

        The singleton's home (design §4); ``None`` when there is none.
        """
        return oldest(
            m
            for m in self._running.membership.gossip.members
            if m.status in (MemberStatus.UP, MemberStatus.LEAVING) and m.has_role(role)
        )

    def role_leader(self, role: str | None = None) -> UniqueAddress | None:
        """The leader among the members with ``role`` (the leader when ``role`` is None)."""
        node = self._running
        gossip = node.membership.gossip
        if role is None:
            return leader(gossip, node.self_node)
        with_role = Gossip.of(
            (m for m in gossip.members if m.has_role(role)), reachability=gossip.reachability
        )
        return leader(with_role, node.self_node)

    def unreachable_observers(self) -> dict[UniqueAddress, frozenset[UniqueAddress]]:
        """Each member observed unreachable, with the members observing it so."""
        reachability = self._running.membership.gossip.effective_reachability()
        return {
            subject: reachability.observers_of(subject)
            for subject in sorted(reachability.all_unreachable())
        }

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
        every :class:`ClusterEvent` in the order this node sees them (also
        published on ``system.event_stream``). A callback is called
        synchronously on the loop and must not block; an exception it raises
        is logged and the subscription stays.
        """
        return self._subscriptions.add(subscriber, self.state, _log)

    # -- what users do ------------------------------------------------------------------

    def join_seed_nodes(self, seed_nodes: Sequence[str] | None = None) -> None:
        """Start joining through ``seed_nodes`` (default ``settings.seed_nodes``).

        ``start`` does it when the settings name seeds. Does nothing once
        this node is a member or joining. ``ValueError`` for a seed that
        does not parse.
        """
        node = self._running
        if node.seed_join is not None or node.membership.self_member is not None:
            return
        settings = self.settings
        if seed_nodes is not None:
            settings = replace(settings, seed_nodes=tuple(seed_nodes))
            _check_seeds(self.system.name, settings)
        node.seed_join = SeedJoin(
            node.self_node.address,
            settings,
            self.system.clock,
            self.system.random,
            lambda seed: node.send(UniqueAddress(seed, 0), Join(settings.roles)),
            node.join_self,
        )
        node.seed_join.start()

    def down(self, address: Address | str) -> None:
        """Mark the member at ``address`` Down (an operator's decision); idempotent.

        ``ValueError`` for an address that does not parse; nothing happens
        for an address that is not a member.
        """
        target = Address.parse(address) if isinstance(address, str) else address
        node = self._running
        node.apply(down(node.membership, target), push=True)

    def leave_member(self, address: Address | str) -> None:
        """Start the graceful leave of the member at ``address``; returns at once.

        Any member, this node included (an operator's request, e.g. from the
        management API): it walks Leaving -> Exiting -> Removed. The leaving
        node starts its coordinated shutdown as soon as it sees itself
        Leaving, so it hands its shards off and stops its singletons before
        the cluster removes it (see :meth:`leave`). Idempotent; not a
        member: no-op.
        """
        target = Address.parse(address) if isinstance(address, str) else address
        node = self._running
        if target == node.self_node.address:
            self._start_leave()
        else:
            node.apply(leave(node.membership, target), push=True)

    async def leave(self) -> None:
        """Leave gracefully: Leaving -> Exiting -> Removed, and shut the system down.

        The system's coordinated shutdown (reason ``cluster-leave``) starts
        when this node sees itself Leaving: its sharding regions hand their
        shards off and its singletons stop while it is still a member; then
        it confirms its exit (phase ``cluster-exiting-done``), and only then
        does the leader remove it (Akka's ``ExitingConfirmed``), so nothing
        it hosted is restarted elsewhere before it has stopped here. An
        Exiting member that becomes unreachable is removed without waiting.
        Each step is time-boxed by its shutdown phase. Returns once the
        system has shut down. A node that is not a member just shuts down.
        """
        self._start_leave()
        if self._running.membership.self_member is not None:
            await asyncio.shield(self._gone)
        await self.system.shutdown("cluster-leave")

    def _start_leave(self) -> None:
        node = self._running
        self._leaving = True
        if node.seed_join is not None:
            node.seed_join.stop()
        node.apply(leave(node.membership, node.self_node), push=True)

    async def _leave_on_shutdown(self) -> None:
        # A node shut down without leaving tells the others it is going.
        if self._node is not None and not self._node.closed:
            self._start_leave()

    async def _confirm_exit(self) -> None:
        # The phases before this one handed the shards off and stopped the
        # singletons: the leader may remove this node now. A leave waits for
        # that while some other member can still see it (the phase's time box
        # bounds it); any other shutdown goes on at once, as it did before.
        node = self._node
        if node is None or node.closed or self._gone.done():
            return
        if node.membership.self_member is None:
            return
        node.confirm_exit()
        if (
            self._gone.done()
            or self.system.coordinated_shutdown.reason != "cluster-leave"
            or not self._others_reachable(node)
        ):
            return
        await asyncio.shield(self._gone)

    @staticmethod
    def _others_reachable(node: Node) -> bool:
        gossip = node.membership.gossip
        unreachable = gossip.effective_reachability().all_unreachable()
        return any(
            m.unique_address != node.self_node
            and m.unique_address not in unreachable
            and m.status is not MemberStatus.DOWN
            for m in gossip.members
        )

    # -- following the node's own state -------------------------------------------------

    def _on_events(self, events: list[ClusterEvent]) -> None:
        for event in events:
            self._subscriptions.publish(event, _log)
            self.system.event_stream.publish(event)

    def _on_self(self, state: MembershipState) -> None:
        me = state.self_member
        if me is not None:
            if me.status is MemberStatus.UP and not self._up.done():
                self._up.set_result(None)
            if me.status in (MemberStatus.LEAVING, MemberStatus.EXITING):
                # Leaving, whoever asked (this node, or an operator through
                # another one): the removal that follows is a graceful leave,
                # and the shutdown hands this node's work off before it.
                self._leaving = True
                if self.system.coordinated_shutdown.reason is None:
                    self._shutdown_task = self.system.loop.create_task(
                        self.system.shutdown("cluster-leave")
                    )
            if me.status is MemberStatus.DOWN:
                self._terminate("downed")
        elif state.self_removed:
            self._terminate("removed")

    def _terminate(self, why: str) -> None:
        if self._gone.done():
            return
        self._gone.set_result(why)
        self._fail_up(f"this node was {why} before it was Up")
        node = self._running
        if why == "downed":
            _log.warning("[%s] this node was downed; its actor system shuts down", node.self_node)
            reason = "cluster-downed"
        else:
            _log.info("[%s] this node was removed from the cluster", node.self_node)
            reason = "cluster-leave" if self._leaving else "cluster-removed"
        self._shutdown_task = self.system.loop.create_task(self.system.shutdown(reason))

    def __repr__(self) -> str:
        node = self._node
        if node is None:
            return f"<Cluster {self.system.name} (not started)>"
        return f"<Cluster {node.self_node} members={len(node.membership.gossip.members)}>"


def _check_seeds(system: str, settings: ClusterSettings) -> None:
    for seed in settings.seed_addresses:
        if seed.system != system:
            raise ValueError(
                f"seed_nodes: {seed} is not a node of this cluster (actor system {system!r})"
            )
