"""``Sharding``: the user-facing extension, the region handle and entity refs."""

from __future__ import annotations

import asyncio
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Final

from shoal.cluster import Cluster, MemberExited, MemberLeft, MemberStatus, Subscription
from shoal.management import Management, ManagementError
from shoal.remote import Remoting
from shoal.runtime import ActorRef, SerializationError, ShutdownPhase

from ._coordinator import Coordinator
from ._errors import ShardingError
from ._inbound import InboundRoute
from ._inspection import AllocationQuery, ShardingCollector, readiness, shards_view
from ._protocol import WIRE_MESSAGES, Deliver, EntityEnvelope
from ._region import GracefulStop, Region, RegionMetrics
from ._remember import REMEMBER_MESSAGES
from ._routes import Routes
from ._settings import ShardingSettings
from ._singleton_api import ClusterSingleton, SingletonSettings

if TYPE_CHECKING:
    from shoal.runtime import Actor, ActorSystem

_TYPE_RE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


def region_name(type_name: str) -> str:
    """The actor name of a type's region under ``/user``."""
    return f"sharding-{type_name}"


class EntityRef:
    """A handle on one entity, wherever it runs: ``region.entity("alice")``.

    Cheap to create and to keep; holds no state but the id. ``tell`` and
    ``ask`` go through this node's region, like ``ActorRef``'s, or straight
    to the entity's home once the region knows it (see ``_routes``).
    """

    __slots__ = ("_region", "_routes", "entity_id", "shard_id")

    def __init__(self, region: ShardRegion, entity_id: str, routes: Routes) -> None:
        self._region = region
        self._routes = routes
        self.shard_id: Final = routes.shard_of(entity_id)  # checks the id
        self.entity_id: Final = entity_id

    def tell(self, message: object, sender: ActorRef | None = None) -> None:
        """Send ``message`` to the entity; never raises (undeliverable: dead letters)."""
        target, routed = self._target(message)
        target.tell(routed, sender)

    def ask(self, message: object, timeout: float | None = None) -> asyncio.Future[Any]:
        """Send ``message`` and get the entity's answer (``AskTimeout`` after ``timeout``).

        A ``timeout`` that is not positive and finite raises ``ValueError``
        before anything is sent.
        """
        if timeout is not None and not 0 < timeout < math.inf:
            raise ValueError(f"ask timeout must be positive and finite, not {timeout}")
        target, routed = self._target(message)
        return target.ask(routed, timeout)

    def _target(self, message: object) -> tuple[ActorRef, object]:
        """Where ``message`` goes and in which form; counts it where it must wait its turn."""
        routes = self._routes
        shard = self.shard_id
        if shard not in routes.pending:
            local = routes.local.get(shard)
            if local is not None:
                entity = local.entity(self.entity_id)
                if entity is not None:
                    return entity, message
                local.pending += 1
                return local.ref, Deliver(self.entity_id, shard, message)
            home = routes.remote.get(shard)
            if home is not None:
                try:
                    serializer, manifest, payload = routes.serialize(message)
                except SerializationError:
                    pass  # the region fails the ask and dead-letters it, as for any other
                else:
                    envelope = EntityEnvelope(self.entity_id, shard, serializer, manifest, payload)
                    return home, envelope
        routes.queued(shard)
        return self._region.ref, Deliver(self.entity_id, shard, message)

    def __repr__(self) -> str:
        return f"<EntityRef {self._region.type_name}:{self.entity_id} shard={self.shard_id}>"


@dataclass(frozen=True, slots=True)
class ShardRegion:
    """This node's region of one entity type: ``region.entity(id)`` reaches any entity.

    ``hosting`` is ``False`` for a proxy-only region (it routes, never runs
    entities). ``metrics`` are this node's figures for the type; ``coordinator``
    is the proxy of the type's coordinator singleton.
    """

    type_name: str
    ref: ActorRef
    settings: ShardingSettings
    hosting: bool
    metrics: RegionMetrics
    coordinator: ActorRef
    _registered: asyncio.Future[None] = field(repr=False)
    _routes: Routes = field(repr=False)

    def entity(self, entity_id: str) -> EntityRef:
        """The entity ``entity_id`` (:class:`InvalidEntityIdError` for an empty, long or
        non-str id)."""
        return EntityRef(self, entity_id, self._routes)

    async def wait_registered(self) -> None:
        """Wait until the type's coordinator has acknowledged this region (the first time).

        Sending before that is fine (messages are buffered); this is for
        those who want to know, such as readiness checks and benchmarks.
        """
        await asyncio.shield(self._registered)


@dataclass(slots=True)
class _Type:
    region: ShardRegion
    factory: Callable[[str], Actor] | None


class Sharding:
    """Cluster sharding of one node: ``await Sharding.get(system).start(...)``.

    ::

        accounts = await Sharding.get(system).start("account", Account)
        await accounts.entity("alice").ask(Deposit(10))

    ``Account`` is called with the entity id (``Account("alice")``) when the
    entity starts, on whichever node hosts its shard. Start the type on every
    node that hosts it, with the same settings; nodes that only send to it
    call :meth:`start_proxy`. An entity passivates itself with
    :func:`passivate`.
    """

    depends_on: ClassVar[tuple[type, ...]] = (ClusterSingleton,)
    shutdown_phase: ClassVar[ShutdownPhase] = ShutdownPhase.CLOSE_EXTENSIONS

    def __init__(self, system: ActorSystem) -> None:
        self.system = system
        self._types: dict[str, _Type] = {}
        self._collector: ShardingCollector | None = None
        self._ready_registered = False
        system.serialization.register(*WIRE_MESSAGES, *REMEMBER_MESSAGES, AllocationQuery)
        self._shutdown_task = system.coordinated_shutdown.add_task(
            ShutdownPhase.CLUSTER_SHARDING_SHUTDOWN_REGION, "sharding-hand-off", self._hand_off_all
        )
        self._leaving = False
        self._subscription: Subscription | None = None
        self._remoting: Remoting | None = None  # once a type started

    @classmethod
    def get(cls, system: ActorSystem) -> Sharding:
        """This system's sharding; the cluster must be started (``ClusterError`` otherwise)."""
        Cluster.get(system)
        return system.extension(cls)

    async def start(
        self,
        type_name: str,
        entity: Callable[[str], Actor],
        settings: ShardingSettings | None = None,
    ) -> ShardRegion:
        """Host entities of ``type_name`` on this node; returns its region.

        ``entity(entity_id)`` creates an entity. Starting a started type again
        with the same factory and settings returns its region; otherwise
        :class:`ShardingError`. A node without the settings' role gets a
        proxy-only region.
        """
        settings = settings if settings is not None else ShardingSettings()
        roles = Cluster.get(self.system).settings.roles
        hosting = settings.role is None or settings.role in roles
        return self._start(type_name, entity if hosting else None, settings, entity)

    async def start_proxy(
        self, type_name: str, settings: ShardingSettings | None = None
    ) -> ShardRegion:
        """Route to entities of ``type_name`` hosted on other nodes; run none here."""
        settings = settings if settings is not None else ShardingSettings()
        return self._start(type_name, None, settings, None)

    def region(self, type_name: str) -> ShardRegion:
        """The region of a started type (:class:`ShardingError` for an unknown one)."""
        known = self._types.get(type_name)
        if known is None:
            raise ShardingError(f"sharding of {type_name!r} is not started on this node")
        return known.region

    @property
    def type_names(self) -> list[str]:
        """The entity types started on this node."""
        return sorted(self._types)

    def _start(
        self,
        type_name: str,
        factory: Callable[[str], Actor] | None,
        settings: ShardingSettings,
        declared: Callable[[str], Actor] | None,
    ) -> ShardRegion:
        if not isinstance(type_name, str) or not _TYPE_RE.fullmatch(type_name):
            raise ShardingError(f"invalid entity type name {type_name!r}")
        known = self._types.get(type_name)
        if known is not None:
            if known.region.settings != settings or known.factory is not declared:
                raise ShardingError(f"{type_name!r} is already started with other settings")
            return known.region
        metrics = RegionMetrics()
        registered: asyncio.Future[None] = self.system.loop.create_future()
        coordinator = ClusterSingleton.get(self.system).init(
            f"sharding-{type_name}-coordinator",
            lambda: Coordinator(type_name, settings, metrics),
            SingletonSettings(
                role=settings.role,
                buffer_size=settings.buffer_size,
                retry_interval=settings.retry_interval,
            ),
        )
        routes = Routes(self.system.serialization.serialize, settings.number_of_shards)
        ref = self.system.spawn(
            lambda: Region(type_name, factory, settings, coordinator, metrics, registered, routes),
            name=region_name(type_name),
        )
        # Before any peer can know the region (it registers on its first turn):
        # every envelope from the network passes its inbound route (see _inbound).
        self._remoting = Remoting.get(self.system)
        self._remoting.redirect_inbound(
            ref, InboundRoute(ref, routes, self.system.serialization.deserialize)
        )
        region = ShardRegion(
            type_name, ref, settings, factory is not None, metrics, coordinator, registered, routes
        )
        self._types[type_name] = _Type(region, declared)
        self._expose(region)
        return region

    def _follow_self(self, event: object) -> None:
        # A leave started through the cluster (Cluster.leave, an operator):
        # hand the shards off now, while this node is still a member; the
        # shutdown that follows its removal would be too late to reach anyone.
        if self._leaving or not isinstance(event, MemberLeft | MemberExited):
            return
        if event.member.unique_address != Cluster.get(self.system).self_address:
            return
        self._leaving = True
        for known in self._types.values():
            if known.region.hosting:
                known.region.ref.tell(GracefulStop(self.system.loop.create_future(), True))

    def _expose(self, region: ShardRegion) -> None:
        """Metrics, ``GET /cluster/shards/{type}`` and ``/health/ready`` for ``region``."""
        node = f"shoal://{Cluster.get(self.system).self_address.address}"
        if self._subscription is None:
            self._subscription = Cluster.get(self.system).subscribe(self._follow_self)
        if self._collector is None:
            self._collector = ShardingCollector(
                node, lambda: {name: t.region.metrics for name, t in self._types.items()}
            )
            self.system.metrics.register(self._collector)
        try:
            management = Management.get(self.system)
        except ManagementError:
            return  # no management server on this node: nothing to register with
        management.register_shards(region.type_name, lambda: shards_view(region, node))
        if not self._ready_registered:
            self._ready_registered = True
            management.add_readiness_check(
                "sharding",
                readiness(
                    lambda: [t.region for t in self._types.values()],
                    self.system.clock.now,
                    self.system.clock.now(),
                ),
            )

    async def aclose(self) -> None:
        """Forget the metrics and inbound routes (the system's shutdown calls it)."""
        if self._remoting is not None:
            for known in self._types.values():
                self._remoting.redirect_inbound(known.region.ref, None)
        if self._collector is not None:
            self.system.metrics.unregister(self._collector)
            self._collector = None
        if self._subscription is not None:
            self._subscription.cancel()
            self._subscription = None

    async def hand_off(self) -> None:
        """Move every shard hosted on this node to the other nodes; returns once done.

        Messages sent meanwhile are buffered and delivered on the new nodes,
        none lost. A leave does not need it: the coordinated shutdown a
        leave runs calls it (time-boxed by its phase) before the node
        confirms its exit, and the cluster removes the node only after
        that.
        """
        cluster = Cluster.get(self.system)
        me = cluster.self_address
        if not any(
            m.status is MemberStatus.UP and m.unique_address != me for m in cluster.state.members
        ):
            return  # no other node to take the shards: they stop with the system
        await self._hand_off_all()

    async def _hand_off_all(self) -> None:
        # The node is going away: every hosting region moves its shards off
        # first, while remoting still runs (the phase is time-boxed). A node
        # that was downed or removed stops its entities at once instead: the
        # others place its shards anew after their removal margin, so they
        # must be gone by then, coordinator or not.
        me = Cluster.get(self.system).self_member
        hand_off = me is not None and me.status not in (MemberStatus.DOWN, MemberStatus.REMOVED)
        waits = []
        for known in self._types.values():
            if known.region.hosting:
                done: asyncio.Future[None] = self.system.loop.create_future()
                known.region.ref.tell(GracefulStop(done, hand_off))
                waits.append(done)
        if waits:
            await asyncio.gather(*waits)
