"""Remember entities: each shard's running entity ids, kept in the system's journal.

A shard with ``remember_entities`` runs a :class:`RememberStore` child, a
persistent actor whose persistence id is ``sharding/<type>/<shard>`` and
whose events are :class:`EntityStarted` and :class:`EntityStopped` (a
:class:`RememberedEntities` snapshot every ``REMEMBER_SNAPSHOT_EVERY``
events keeps recovery short). Once recovered it tells its shard which ids
to restart (:class:`Remembered`); the shard restarts them at a bounded rate
(:func:`restart_pace`).

One store per shard incarnation and one shard incarnation per cluster (the
hand-off protocol), so the store has one writer; a stale one is refused by
the journal's fencing and stops (its shard then carries on without
remembering, and says so in the log).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar, Final

from shoal.persistence import PersistentActor
from shoal.runtime import message

REMEMBER_SNAPSHOT_EVERY: Final = 500
"""A remember store snapshots its ids each time this many more events were written."""

RESTART_BATCHES_PER_S: Final = 10
"""Remembered entities restart in this many batches per second (at most)."""


def remember_persistence_id(type_name: str, shard: int) -> str:
    """The persistence id of the remembered entities of ``type_name``'s ``shard``."""
    return f"sharding/{type_name}/{shard}"


def restart_pace(rate: float) -> tuple[int, float]:
    """``(batch, interval)``: restart ``batch`` entities every ``interval`` s, ``rate`` per s.

    ``batch = ceil(rate / RESTART_BATCHES_PER_S)`` and ``interval = batch / rate``: at most
    ``RESTART_BATCHES_PER_S`` batches a second, and exactly ``rate`` entities a second.
    """
    batch = max(1, math.ceil(rate / RESTART_BATCHES_PER_S))
    return batch, batch / rate


@message(manifest="shoal.sharding.EntityStarted")
@dataclass(frozen=True, slots=True)
class EntityStarted:
    """Journal event: ``entity_id`` runs in this shard (restart it wherever the shard goes)."""

    entity_id: str


@message(manifest="shoal.sharding.EntityStopped")
@dataclass(frozen=True, slots=True)
class EntityStopped:
    """Journal event: ``entity_id`` was passivated (forget it)."""

    entity_id: str


@message(manifest="shoal.sharding.RememberedEntities")
@dataclass(frozen=True, slots=True)
class RememberedEntities:
    """Snapshot: the remembered ids of one shard, sorted."""

    ids: tuple[str, ...]


REMEMBER_MESSAGES: Final = (EntityStarted, EntityStopped, RememberedEntities)

Change = EntityStarted | EntityStopped


@dataclass(frozen=True, slots=True)
class Update:
    """Local, shard -> store: record these changes, in this order."""

    changes: tuple[Change, ...]


@dataclass(frozen=True, slots=True)
class Remembered:
    """Local, store -> shard, once recovered: the ids to restart."""

    ids: tuple[str, ...]


def effective(ids: set[str], changes: Sequence[Change]) -> list[Change]:
    """The changes of ``changes`` that change ``ids`` (applied in order); ``ids`` is untouched."""
    current = set(ids)
    out: list[Change] = []
    for change in changes:
        match change:
            case EntityStarted(entity_id):
                if entity_id not in current:
                    current.add(entity_id)
                    out.append(change)
            case EntityStopped(entity_id):
                if entity_id in current:
                    current.discard(entity_id)
                    out.append(change)
    return out


class RememberStore(PersistentActor):
    """The remembered ids of one shard (see the module doc).

    Concurrency: a persistent actor, child of its shard, the only sender of
    :class:`Update`; it answers nothing, and tells the shard
    :class:`Remembered` once, after recovery.
    """

    snapshot_every: ClassVar[int | None] = REMEMBER_SNAPSHOT_EVERY

    def __init__(self, type_name: str, shard: int) -> None:
        self._store_pid = remember_persistence_id(type_name, shard)
        self._ids: set[str] = set()

    @property
    def persistence_id(self) -> str:
        return self._store_pid

    async def on_command(self, command: Update) -> None:
        changes = effective(self._ids, command.changes)
        if changes:
            await self.persist_all(changes)

    def on_event(self, event: Change) -> None:
        match event:
            case EntityStarted(entity_id):
                self._ids.add(entity_id)
            case EntityStopped(entity_id):
                self._ids.discard(entity_id)

    def snapshot_state(self) -> RememberedEntities:
        return RememberedEntities(tuple(sorted(self._ids)))

    def apply_snapshot(self, state: RememberedEntities) -> None:
        self._ids = set(state.ids)

    def recovery_completed(self) -> None:
        parent = self.ctx.parent
        if parent is not None:
            parent.tell(Remembered(tuple(sorted(self._ids))), self.ctx.ref)
