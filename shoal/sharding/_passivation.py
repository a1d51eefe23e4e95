"""The active-entity limit of a region: least-recently-used order across its shards."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from shoal.runtime import ActorRef


@dataclass(frozen=True, slots=True)
class Evict:
    """Local, to a shard: passivate ``entity_id`` (the region is over its entity limit)."""

    entity_id: str


class ActiveEntities:
    """The running, not passivating entities of one region, least recently used first.

    Shared by a region and its shards, all actors of one node on one event
    loop, each calling it from its own handler (no await in between): no
    call blocks, none re-enters. A shard :meth:`touch`-es an entity on each
    message and :meth:`add`-s one it starts, which answers the entities to
    evict (oldest first) to get back under ``limit``; it :meth:`remove`-s
    one that passivates or stops.
    """

    __slots__ = ("_order", "limit")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._order: OrderedDict[tuple[ActorRef, str], None] = OrderedDict()

    def __len__(self) -> int:
        return len(self._order)

    def touch(self, shard: ActorRef, entity_id: str) -> None:
        """``entity_id`` of ``shard`` got a message: it is now the most recently used."""
        key = (shard, entity_id)
        if key in self._order:
            self._order.move_to_end(key)

    def add(self, shard: ActorRef, entity_id: str) -> list[tuple[ActorRef, str]]:
        """``entity_id`` of ``shard`` started; returns those to passivate (no longer counted)."""
        self._order[(shard, entity_id)] = None
        evict: list[tuple[ActorRef, str]] = []
        while len(self._order) > self.limit:
            evict.append(self._order.popitem(last=False)[0])
        return evict

    def remove(self, shard: ActorRef, entity_id: str) -> None:
        """``entity_id`` of ``shard`` passivates or stopped: no longer counted."""
        self._order.pop((shard, entity_id), None)
