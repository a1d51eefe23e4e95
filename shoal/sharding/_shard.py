"""A shard: the parent of its entities on one node, with passivation and hand-off.

Entity lifecycle, per id: absent -> active -> passivating -> absent. A
message for an absent entity starts it; for a passivating one it is stashed
and starts the next incarnation once the old one stopped (never dropped).
Passivation and hand-off stop an entity with a :class:`PoisonPill`, queued
behind what its mailbox holds, so every message sent before is handled.
"""

from __future__ import annotations

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
from ._protocol import Deliver, Passivate, StopShard
from ._shard_id import entity_actor_name

if TYPE_CHECKING:
    from ._region import RegionMetrics


@dataclass(frozen=True, slots=True)
class _IdleCheck:
    """Periodic: passivate the entities idle for ``passivation_idle_timeout``."""


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
        idle_timeout: float | None = None,
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
        self._idle_timeout = idle_timeout
        self._last_seen: dict[str, float] = {}

    def started(self) -> None:
        if self._idle_timeout is not None:
            # Checked at a quarter of the timeout: an idle entity stops between
            # idle_timeout and 1.25 * idle_timeout after its last message.
            self.ctx.timers.start_periodic("idle", _IdleCheck(), self._idle_timeout / 4)

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
            case StopShard():
                self._stopping = True
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
                self.ctx.reply_later().fail(
                    BufferFullError(f"entity {entity_id!r} is passivating and its buffer is full")
                )
                self.ctx.system.dead_letter(payload, self.ctx.sender, self.ctx.ref, "buffer-full")
            else:
                self._stashed += 1
            return
        entity = self._entities.get(entity_id)
        if entity is None:
            entity = self._start(entity_id)
            if entity is None:
                return
        if self._idle_timeout is not None:
            self._last_seen[entity_id] = self.ctx.clock.now()
        self.ctx.forward(entity, payload)

    def _passivate(self, entity_id: str) -> None:
        if entity_id in self._passivating or self._stopping:
            return
        self._passivating.add(entity_id)
        self._metrics.passivations += 1
        self._entities[entity_id].tell(PoisonPill())

    def _passivate_idle(self) -> None:
        timeout = self._idle_timeout
        if timeout is None:
            return
        now = self.ctx.clock.now()
        for entity_id, seen in list(self._last_seen.items()):
            if now - seen >= timeout:
                self._passivate(entity_id)

    def _start(self, entity_id: str) -> ActorRef | None:
        factory = self._factory
        try:
            entity = self.ctx.spawn(lambda: factory(entity_id), name=entity_actor_name(entity_id))
        except ActorInitializationError as exc:
            self.ctx.reply_later().fail(exc)
            self.ctx.log.warning(
                "entity %r of %s could not start: %s", entity_id, self._type_name, exc
            )
            return None
        self.ctx.watch(entity)
        self._entities[entity_id] = entity
        self._ids[entity] = entity_id
        self._metrics.entities += 1
        self._metrics.activations += 1
        return entity

    def _terminated(self, ref: ActorRef) -> None:
        entity_id = self._ids.pop(ref, None)
        if entity_id is None:
            return
        del self._entities[entity_id]
        self._last_seen.pop(entity_id, None)
        self._metrics.entities -= 1
        self._passivating.discard(entity_id)
        if self._stashed:
            self._stashed = 0
            self.ctx.unstash_all()  # those for a still passivating entity stash again
        self._stop_if_done()

    def _stop_if_done(self) -> None:
        if self._stopping and not self._entities:
            self.ctx.stop()
