"""The shard region: one per entity type and node, routing every message to its shard's home.

A region learns shard homes from the coordinator and caches them. A message
for a shard whose home is known goes there (its own child :class:`Shard`,
or another node's region, serialized in an :class:`EntityEnvelope`); for a
shard being located or handed off it is stashed (bounded by
``buffer_size``) and the region asks the coordinator, again every
``retry_interval`` until answered. Every new home flushes the stash in
arrival order, so per-sender order holds for what one region buffered.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from shoal.runtime import (
    Actor,
    ActorRef,
    SerializationError,
    StashOverflowError,
    Terminated,
)

from ._errors import BufferFullError, InvalidEntityIdError
from ._inspection import ShardsQuery
from ._passivation import ActiveEntities
from ._protocol import (
    BeginHandOff,
    BeginHandOffAck,
    Deliver,
    EntityEnvelope,
    GetShardHome,
    GracefulLeave,
    HandOff,
    Register,
    RegisterAck,
    ShardHome,
    ShardStopped,
    StopShard,
    Tick,
)
from ._routes import ShardRoute
from ._shard import Shard

if TYPE_CHECKING:
    from ._routes import Routes
    from ._settings import ShardingSettings


_UNDECODABLE: Final = object()  # what _local answers for a payload it refused


@dataclass(slots=True)
class RegionMetrics:
    """One region's figures on this node; only the region and its shards write them.

    Gauges: ``shards`` hosted here, ``entities`` running here, ``buffered``
    messages waiting for a shard home. Counters: ``activations`` of
    entities, ``passivations``, ``hand_offs`` (shards this region stopped for
    a move), ``dropped`` (buffer overflow to dead letters), ``rebalances``
    (rounds started by the coordinator while it ran on this node).
    ``refused``: envelopes from other nodes that named no valid entity or
    carried a message this node cannot decode (dead letters, asks failed).
    ``registered``: whether the coordinator acknowledged this region.
    """

    shards: int = 0
    entities: int = 0
    buffered: int = 0
    activations: int = 0
    passivations: int = 0
    hand_offs: int = 0
    dropped: int = 0
    refused: int = 0
    rebalances: int = 0
    registered: bool = False


@dataclass(frozen=True, slots=True)
class _LeftCheck:
    """To itself while leaving: done once no shard runs here and nothing is buffered."""


@dataclass(frozen=True, slots=True)
class GracefulStop:
    """Local: the node is going away; move every shard off, then complete ``done``.

    ``done`` completes once no shard runs here and every message buffered
    here has been sent on to its shard's new home.

    Without ``hand_off`` (the node was downed or removed: the others may
    already place its shards anew) every shard stops at once instead.
    """

    done: asyncio.Future[None]
    hand_off: bool = True


class Region(Actor):
    """Routes messages of one entity type; hosts shards unless it is a proxy.

    Concurrency: an actor; the :class:`ShardRegion` handle sends it
    :class:`Deliver` (from any task on the loop), the coordinator and other
    regions send it protocol messages.
    """

    def __init__(
        self,
        type_name: str,
        factory: Callable[[str], Actor] | None,
        settings: ShardingSettings,
        coordinator_proxy: ActorRef,
        metrics: RegionMetrics,
        registered: asyncio.Future[None],
        routes: Routes,
    ) -> None:
        self._type_name = type_name
        self._factory = factory
        self._settings = settings
        self._proxy = coordinator_proxy
        self._metrics = metrics
        self._registered = registered
        self._coordinator: ActorRef | None = None
        self._homes: dict[int, ActorRef] = {}
        self._shards: dict[int, ActorRef] = {}
        self._shard_ids: dict[ActorRef, int] = {}
        self._handing_off: set[int] = set()
        self._waiting: dict[int, int] = {}  # shard -> messages stashed for it
        self._serialization = self.ctx.system.serialization
        self._leaving: asyncio.Future[None] | None = None
        self._leaving_hands_off = True
        limit = settings.active_entity_limit
        self._active = ActiveEntities(limit) if limit is not None else None
        # Direct routes around this actor and its shards (see _routes): kept in
        # step with _homes, _handing_off and _shards by _sync.
        self._routes = routes
        self._shard_routes: dict[int, ShardRoute] = {}
        routes.clear()  # a restarted region knows no home yet

    @property
    def hosting(self) -> bool:
        """Whether this region runs entities (``False``: a proxy)."""
        return self._factory is not None

    def started(self) -> None:
        self._register()
        self.ctx.timers.start_periodic("tick", Tick(), self._settings.retry_interval)

    def stopped(self) -> None:
        self._routes.clear()

    # -- inspection ----------------------------------------------------------------------

    def shard_actors(self) -> dict[int, ActorRef]:
        """The shards running here (for inspection)."""
        return dict(self._shards)

    # -- messages ------------------------------------------------------------------------

    def receive(self, msg: object) -> dict[int, ActorRef] | None:
        match msg:
            case Deliver():
                self._route(msg.shard, msg)
            case EntityEnvelope():
                if self._valid(msg):
                    self._route(msg.shard, msg)
                else:
                    self._routes.routed(msg.shard)
            case ShardHome(shard, region):
                self._home(shard, region)
                self._check_left()
            case _LeftCheck():
                self._left_check()
            case RegisterAck(coordinator):
                if self._coordinator != coordinator:
                    if self._coordinator is not None:
                        self.ctx.unwatch(self._coordinator)
                    self._coordinator = coordinator
                    self.ctx.watch(coordinator)
                self._metrics.registered = True
                if not self._registered.done():
                    self._registered.set_result(None)
                self._request_homes()
            case BeginHandOff(shard):
                self._begin_hand_off(shard)
            case BeginHandOffAck():
                self._to_coordinator(msg)  # relayed for a region that sent us messages
            case HandOff(shard):
                self._hand_off(shard)
            case Terminated(ref):
                self._terminated(ref)
            case Tick():
                if self._coordinator is None:
                    self._register()
                self._request_homes()
            case ShardsQuery():
                return dict(self._shards)
            case GracefulStop(done, hand_off):
                self._leaving = done
                self._leaving_hands_off = hand_off
                if hand_off:
                    self._to_coordinator(GracefulLeave(self.ctx.ref))
                else:
                    for shard in list(self._shards):
                        self._hand_off(shard, report=False)
                self._check_left()
            case _:
                self.ctx.log.warning("region %s got an unexpected %r", self._type_name, type(msg))
        return None

    def _route(self, shard: int, msg: Deliver | EntityEnvelope) -> None:
        home = self._homes.get(shard)
        if home is None or shard in self._handing_off:
            self._buffer(shard, msg)
            return
        self._routes.routed(shard)
        if home == self.ctx.ref:
            payload = self._local(msg)
            if payload is _UNDECODABLE:
                return
            local = self._shard_routes.get(shard)
            if local is None:
                local = self._start_shard(shard)
            entity = local.entity(msg.entity_id)
            if entity is not None:
                self.ctx.forward(entity, payload)
            else:
                local.pending += 1
                deliver = msg if type(msg) is Deliver else Deliver(msg.entity_id, shard, payload)
                self.ctx.forward(local.ref, deliver)
        else:
            envelope = self._remote(msg)
            if envelope is not None:
                self.ctx.forward(home, envelope)

    def _valid(self, msg: EntityEnvelope) -> bool:
        """Whether an envelope from another node names a real entity and its own shard.

        A peer's bug must not make this region buffer for a shard that does
        not exist, nor run an entity in the wrong shard: refused envelopes
        go to dead letters (``bad-envelope``) and fail their ask.
        """
        try:
            shard = self._routes.shard_of(msg.entity_id)
        except (InvalidEntityIdError, TypeError):
            shard = -1
        valid = msg.shard == shard
        if not valid:
            self._refuse(msg, InvalidEntityIdError(f"bad envelope for {self._type_name}"))
        return valid

    def _refuse(self, msg: object, error: Exception) -> None:
        self._metrics.refused += 1
        self.ctx.reply_later().fail(error)
        self.ctx.system.dead_letter(msg, self.ctx.sender, self.ctx.ref, "bad-envelope")

    def _local(self, msg: Deliver | EntityEnvelope) -> object:
        """The user message of ``msg`` (``_UNDECODABLE``: refused)."""
        if isinstance(msg, Deliver):
            return msg.message
        try:
            return self._serialization.deserialize(msg.serializer, msg.manifest, msg.payload)
        except SerializationError as exc:  # an unknown manifest, bytes that do not decode
            self._refuse(msg, exc)
            return _UNDECODABLE

    def _remote(self, msg: Deliver | EntityEnvelope) -> EntityEnvelope | None:
        if isinstance(msg, EntityEnvelope):
            return msg
        try:
            data = self._serialization.serialize(msg.message)
        except SerializationError as exc:
            self.ctx.reply_later().fail(exc)
            self.ctx.system.dead_letter(
                msg.message, self.ctx.sender, self.ctx.ref, "unserializable"
            )
            return None
        return EntityEnvelope(msg.entity_id, msg.shard, data[0], data[1], data[2])

    def _buffer(self, shard: int, msg: Deliver | EntityEnvelope) -> None:
        if self._metrics.buffered < self._settings.buffer_size:
            try:
                self.ctx.stash()
            except StashOverflowError:
                pass
            else:
                first = shard not in self._waiting
                self._waiting[shard] = self._waiting.get(shard, 0) + 1
                self._metrics.buffered += 1
                if first and shard not in self._handing_off:
                    self._to_coordinator(GetShardHome(shard, self.ctx.ref))
                return
        self._metrics.dropped += 1
        self._routes.routed(shard)
        self.ctx.reply_later().fail(
            BufferFullError(f"{self._type_name}: the buffer of shard {shard} is full")
        )
        payload = msg.message if isinstance(msg, Deliver) else msg
        self.ctx.system.dead_letter(payload, self.ctx.sender, self.ctx.ref, "buffer-full")

    def _flush(self) -> None:
        if self._waiting:
            self._waiting.clear()
            self._metrics.buffered = 0
            self.ctx.unstash_all()  # in arrival order; those still homeless stash again

    def _home(self, shard: int, region: ActorRef) -> None:
        if region == self.ctx.ref:
            if not self.hosting:
                self.ctx.log.warning("proxy region was told to host shard %s", shard)
                return
            self._homes[shard] = region
            if shard not in self._shards and shard not in self._handing_off:
                self._start_shard(shard)
        else:
            self._homes[shard] = region
            self.ctx.watch(region)
        self._sync(shard)
        if shard in self._waiting:
            self._flush()

    def _start_shard(self, shard: int) -> ShardRoute:
        factory = self._factory
        assert factory is not None
        route = ShardRoute(
            self._routes,
            shard,
            self.ctx.clock.now,
            self._settings.passivation_idle_timeout,
            self._active,
        )
        ref = self.ctx.spawn(
            lambda: Shard(
                self._type_name,
                shard,
                factory,
                self._metrics,
                self._settings,
                self._active,
                route,
            ),
            name=str(shard),
        )
        route.ref = ref
        self.ctx.watch(ref)
        self._shards[shard] = ref
        self._shard_routes[shard] = route
        self._shard_ids[ref] = shard
        self._metrics.shards += 1
        self._sync(shard)
        return route

    def _sync(self, shard: int) -> None:
        """Give ``shard`` the direct route its home allows now, or none (see _routes)."""
        routes = self._routes
        routes.remote.pop(shard, None)
        routes.local.pop(shard, None)
        home = self._homes.get(shard)
        if home is None or shard in self._handing_off:
            return
        if home != self.ctx.ref:
            routes.remote[shard] = home
            return
        local = self._shard_routes.get(shard)
        if local is not None:
            routes.local[shard] = local

    def _begin_hand_off(self, shard: int) -> None:
        """Buffer ``shard``'s messages from now on, and acknowledge through its owner.

        The owner keeps delivering to its shard until ``HandOff`` (its entities
        drain what they got). Another region sends its acknowledgement to the
        owner, which relays it to the coordinator: it arrives after every
        message this region sent the owner before, so by the time all are in
        and the coordinator says ``HandOff``, the owner's shard has been given
        every message sent to it; none reaches the owner after it stopped.
        """
        ack = BeginHandOffAck(shard, self.ctx.ref)
        owner = self._homes.get(shard)
        if owner == self.ctx.ref:
            self._to_coordinator(ack)
            return
        self._homes.pop(shard, None)
        self._sync(shard)
        if owner is None:
            self._to_coordinator(ack)
        else:
            owner.tell(ack, self.ctx.ref)

    def _hand_off(self, shard: int, *, report: bool = True) -> None:
        self._homes.pop(shard, None)
        local = self._shards.get(shard)
        if local is None:
            self._sync(shard)
            if report:
                self._to_coordinator(ShardStopped(shard, self.ctx.ref))
            return
        if shard not in self._handing_off:
            self._handing_off.add(shard)
            self._metrics.hand_offs += 1
            local.tell(StopShard())
        self._sync(shard)

    def _terminated(self, ref: ActorRef) -> None:
        shard = self._shard_ids.pop(ref, None)
        if shard is not None:
            del self._shards[shard]
            del self._shard_routes[shard]
            self._metrics.shards -= 1
            self._handing_off.discard(shard)
            if self._homes.get(shard) == self.ctx.ref:
                del self._homes[shard]
            self._sync(shard)
            self._to_coordinator(ShardStopped(shard, self.ctx.ref))
            if shard in self._waiting:
                self._to_coordinator(GetShardHome(shard, self.ctx.ref))
            self._check_left()
            return
        if ref == self._coordinator:
            self._coordinator = None
            self._metrics.registered = False
            self._register()
            return
        for shard_no, home in list(self._homes.items()):
            if home == ref:
                del self._homes[shard_no]
                self._sync(shard_no)

    def _check_left(self) -> None:
        # Checked behind what the mailbox holds: messages just unstashed for a new
        # home are forwarded (or stashed again) before the region may call it done.
        if self._leaving is not None and not self._shards and not self._leaving.done():
            self.ctx.ref.tell(_LeftCheck())

    def _left_check(self) -> None:
        leaving = self._leaving
        if leaving is None or leaving.done() or self._shards:
            return
        if self._waiting and self._leaving_hands_off:
            return  # buffered messages wait for their shards' new homes (time-boxed phase)
        leaving.set_result(None)

    # -- talking to the coordinator -----------------------------------------------------

    def _register(self) -> None:
        self._proxy.tell(Register(self.ctx.ref, self.hosting, sorted(self._shards)), self.ctx.ref)

    def _request_homes(self) -> None:
        for shard in self._waiting:
            if shard not in self._handing_off:
                self._to_coordinator(GetShardHome(shard, self.ctx.ref))

    def _to_coordinator(self, msg: object) -> None:
        target = self._coordinator if self._coordinator is not None else self._proxy
        target.tell(msg, self.ctx.ref)
