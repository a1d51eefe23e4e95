"""A shard: the parent of its entities on one node, with passivation and hand-off.

Entity lifecycle, per id: absent -> active -> passivating -> absent. A
message for an absent entity starts it; for a passivating one it is stashed
and starts the next incarnation once the old one stopped (never dropped).
Passivation (by the entity, idle, or evicted over the region's active-entity
limit) and hand-off stop an entity with a :class:`PoisonPill`, queued
behind what its mailbox holds, so every message sent before is handled.

With ``remember_entities`` the shard records starts and passivations in its
:class:`~._remember.RememberStore` (batched: one journal write per burst of
changes) and restarts the remembered ids once the store recovered. On a
hand-off the store stops last, after every entity, so its writes are done
before the shard reports itself stopped and another node recovers them.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from shoal.runtime import (
    Actor,
    ActorInitializationError,
    ActorRef,
    PoisonPill,
    StashOverflowError,
    Terminated,
)

from ._errors import BufferFullError
from ._inspection import EntitiesQuery
from ._passivation import ActiveEntities, Evict
from ._protocol import Deliver, Passivate, StopShard
from ._remember import (
    Change,
    EntityStarted,
    EntityStopped,
    Remembered,
    RememberStore,
    Update,
    restart_pace,
)
from ._shard_id import entity_actor_name

if TYPE_CHECKING:
    from ._region import RegionMetrics
    from ._routes import ShardRoute
    from ._settings import ShardingSettings

STORE_NAME = "@remember"
"""The remember store's child name: ``@`` is percent-encoded in entity names, so no clash."""


@dataclass(frozen=True, slots=True)
class _IdleCheck:
    """Periodic: passivate the entities idle for ``passivation_idle_timeout``."""


@dataclass(frozen=True, slots=True)
class _Flush:
    """To itself: write the remember changes gathered since the last flush."""


@dataclass(frozen=True, slots=True)
class _RestartBatch:
    """Periodic while remembered entities wait to restart: start the next batch."""


class Shard(Actor):
    """Runs the entities of one shard; stops them all, then itself, on :class:`StopShard`.

    Concurrency: an actor; its region is its parent and the only sender of
    :class:`Deliver` and :class:`StopShard`.
    """

    def __init__(
        self,
        type_name: str,
        shard: int,
        factory: Callable[[str], Actor],
        metrics: RegionMetrics,
        settings: ShardingSettings,
        active: ActiveEntities | None,
        route: ShardRoute,
    ) -> None:
        self._type_name = type_name
        self._shard = shard
        self._factory = factory
        self._metrics = metrics
        self._entities: dict[str, ActorRef] = {}
        self._ids: dict[ActorRef, str] = {}
        self._passivating: set[str] = set()
        self._stashed = 0
        self._stopping = False
        self._idle_timeout = settings.passivation_idle_timeout
        self._active = active
        self._route = route  # shared with the region and its handles (see _routes)
        route.entities.clear()  # a restarted shard has no running entity yet
        self._last_seen = route.last_seen
        self._remember = settings.remember_entities
        self._restart_rate = settings.remembered_restarts_per_s
        self._store: ActorRef | None = None
        self._changes: list[Change] = []
        self._to_restart: deque[str] = deque()
        self._store_stopping = False

    def started(self) -> None:
        if self._idle_timeout is not None:
            # Checked at a quarter of the timeout: an idle entity stops between
            # idle_timeout and 1.25 * idle_timeout after its last message.
            self.ctx.timers.start_periodic("idle", _IdleCheck(), self._idle_timeout / 4)
        if self._remember:
            type_name, shard = self._type_name, self._shard
            self._store = self.ctx.spawn(lambda: RememberStore(type_name, shard), name=STORE_NAME)
            self.ctx.watch(self._store)

    @property
    def entity_ids(self) -> list[str]:
        """The ids of the entities running now (for inspection)."""
        return sorted(self._entities)

    def receive(self, msg: object) -> list[str] | None:
        match msg:
            case Deliver(entity_id, _, payload):
                if self._stopping:
                    # Handing off: back to the region, which buffers it for the new owner.
                    parent = self.ctx.parent
                    if parent is not None:
                        self._route.bounced()
                        self.ctx.forward(parent, msg)
                else:
                    self._deliver(entity_id, payload)
            case Passivate():
                sender = self.ctx.sender
                passivating = self._ids.get(sender) if sender is not None else None
                if passivating is not None:
                    self._passivate(passivating)
            case _IdleCheck():
                self._passivate_idle()
            case Evict(entity_id):
                if entity_id in self._entities:
                    self._passivate(entity_id)
            case Remembered(ids):
                self._remembered(ids)
            case _RestartBatch():
                self._restart_batch()
            case _Flush():
                self._flush()
            case StopShard():
                self._stopping = True
                self._route.entities.clear()
                self._to_restart.clear()
                self.ctx.timers.cancel("restart")
                for entity in self._entities.values():
                    entity.tell(PoisonPill())
                self._stop_if_done()
            case Terminated(ref):
                self._terminated(ref)
            case EntitiesQuery():
                return self.entity_ids
            case _:
                self.ctx.log.warning("shard %s got an unexpected %r", self._shard, type(msg))
        return None

    def _deliver(self, entity_id: str, payload: object) -> None:
        if entity_id in self._passivating:
            try:
                self.ctx.stash()
            except StashOverflowError:
                self._route.handed_on()
                self.ctx.reply_later().fail(
                    BufferFullError(f"entity {entity_id!r} is passivating and its buffer is full")
                )
                self.ctx.system.dead_letter(payload, self.ctx.sender, self.ctx.ref, "buffer-full")
            else:
                self._stashed += 1
            return
        self._route.handed_on()
        entity = self._entities.get(entity_id)
        if entity is None:
            entity = self._start(entity_id)
            if entity is None:
                return
        if self._idle_timeout is not None:
            self._last_seen[entity_id] = self.ctx.clock.now()
        if self._active is not None:
            self._active.touch(self.ctx.ref, entity_id)
        self.ctx.forward(entity, payload)

    def _passivate(self, entity_id: str) -> None:
        if entity_id in self._passivating or self._stopping:
            return
        self._passivating.add(entity_id)
        self._route.entities.pop(entity_id, None)  # later messages: through this shard
        self._metrics.passivations += 1
        if self._active is not None:
            self._active.remove(self.ctx.ref, entity_id)
        self._entities[entity_id].tell(PoisonPill())

    def _passivate_idle(self) -> None:
        timeout = self._idle_timeout
        if timeout is None:
            return
        now = self.ctx.clock.now()
        for entity_id, seen in list(self._last_seen.items()):
            if now - seen >= timeout:
                self._passivate(entity_id)

    def _start(self, entity_id: str, *, asked: bool = True) -> ActorRef | None:
        factory = self._factory
        try:
            entity = self.ctx.spawn(lambda: factory(entity_id), name=entity_actor_name(entity_id))
        except ActorInitializationError as exc:
            if asked:
                self.ctx.reply_later().fail(exc)
            self.ctx.log.warning(
                "entity %r of %s could not start: %s", entity_id, self._type_name, exc
            )
            return None
        self.ctx.watch(entity)
        self._entities[entity_id] = entity
        self._route.entities[entity_id] = entity
        self._ids[entity] = entity_id
        self._metrics.entities += 1
        self._metrics.activations += 1
        if self._idle_timeout is not None:
            self._last_seen[entity_id] = self.ctx.clock.now()
        if self._store is not None:
            self._record(EntityStarted(entity_id))
        if self._active is not None:
            me = self.ctx.ref
            for shard, victim in self._active.add(me, entity_id):
                if shard == me:
                    self._passivate(victim)
                else:
                    shard.tell(Evict(victim), me)
        return entity

    # -- remember entities ----------------------------------------------------------------

    def _record(self, change: Change) -> None:
        if not self._changes:
            self.ctx.ref.tell(_Flush())  # behind what the mailbox holds: one write per burst
        self._changes.append(change)

    def _flush(self) -> None:
        if self._changes and self._store is not None:
            self._store.tell(Update(tuple(self._changes)), self.ctx.ref)
        self._changes.clear()

    def _remembered(self, ids: tuple[str, ...]) -> None:
        if self._stopping:
            return
        self._to_restart.extend(i for i in ids if i not in self._entities)
        if self._to_restart:
            batch, interval = restart_pace(self._restart_rate)
            self._restart_batch()
            if self._to_restart:
                self.ctx.timers.start_periodic("restart", _RestartBatch(), interval)
            self.ctx.log.debug(
                "shard %s of %s restarts %d remembered entities, %d every %.3f s",
                self._shard,
                self._type_name,
                len(ids),
                batch,
                interval,
            )

    def _restart_batch(self) -> None:
        batch, _ = restart_pace(self._restart_rate)
        while self._to_restart and batch > 0:
            entity_id = self._to_restart.popleft()
            if entity_id not in self._entities and entity_id not in self._passivating:
                self._start(entity_id, asked=False)
                batch -= 1
        if not self._to_restart:
            self.ctx.timers.cancel("restart")

    def _terminated(self, ref: ActorRef) -> None:
        entity_id = self._ids.pop(ref, None)
        if entity_id is None:
            if ref == self._store:
                self._store = None
                self._changes.clear()
                if not self._stopping:
                    self.ctx.log.warning(
                        "the remember store of shard %s of %s stopped (see the log above); "
                        "its entities are no longer remembered",
                        self._shard,
                        self._type_name,
                    )
                self._stop_if_done()
            return
        del self._entities[entity_id]
        self._route.entities.pop(entity_id, None)
        self._last_seen.pop(entity_id, None)
        self._metrics.entities -= 1
        if self._active is not None:
            self._active.remove(self.ctx.ref, entity_id)
        self._passivating.discard(entity_id)
        if self._store is not None and not self._stopping:
            # Passivated, or stopped on its own: forget it. A hand-off keeps it.
            self._record(EntityStopped(entity_id))
        if self._stashed:
            self._stashed = 0
            self.ctx.unstash_all()  # those for a still passivating entity stash again
        self._stop_if_done()

    def _stop_if_done(self) -> None:
        if not self._stopping or self._entities:
            return
        if self._store is not None:
            if self._store_stopping:
                return
            self._store_stopping = True
            # The store stops last, once it wrote what it was told: then nothing
            # of this incarnation is still writing when another node recovers it.
            self._flush()
            self._store.tell(PoisonPill())
            return
        self.ctx.stop()
