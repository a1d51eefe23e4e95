"""Direct routes: where a message for an entity may go without a hop through its region.

A message for an entity normally passes this node's region and, when the
shard runs here, its shard: an actor turn each. Once a region knows a
shard's home, and nothing sent before on this node still waits in the
region or the shard, a message may skip them, as in Akka and Proto.Actor:
an :class:`~._sharding.EntityRef` sends straight to the home region of
another node (already serialized, as the region would) or, for a shard of
this node, straight to the running entity; a region receiving a message for
a running entity hands it to the entity rather than to its shard.

Per-sender order holds because a message skips an actor only while that
actor holds nothing for the same shard: the region counts the
:class:`~._protocol.Deliver` it was sent for each shard, and the envelopes
from peers that its :class:`~._inbound.InboundRoute` passed on to it, until
it routed them on (``Routes.pending``, stashed ones included), and a shard counts
those it was sent until it handed them to an entity (``ShardRoute.pending``,
also stashed ones). Every skip goes to the same ref the skipped actor
would have forwarded to, whose mailbox (or the peer's ordered stream) keeps
the order. A shard in hand-off, a home being located, an entity passivating:
none has a direct route (the region and the shard take those messages).

Concurrency: shared by a region, its shards and its handles, all on the
system's event loop; every read and write happens inside one handler or
one ``tell``/``ask`` call, with no await in between.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Final

from ._shard_id import shard_id

if TYPE_CHECKING:
    from shoal.runtime import ActorRef

    from ._passivation import ActiveEntities


_SHARD_OF_MAX: Final = 100_000  # entity ids whose shard a region remembers


class ShardRoute:
    """A shard running on this node: its ref and the entities that take messages directly.

    ``entities`` holds the running entities that are not passivating (the
    shard keeps it); ``pending`` counts the messages sent to the shard and
    not yet handed to an entity (or dropped). ``ref`` is set once the shard
    is spawned, before anyone reads it.
    """

    __slots__ = ("_active", "_now", "_routes", "entities", "last_seen", "pending", "ref", "shard")

    ref: ActorRef

    def __init__(
        self,
        routes: Routes,
        shard: int,
        now: Callable[[], float],
        idle_timeout: float | None,
        active: ActiveEntities | None,
    ) -> None:
        self.shard = shard
        self.entities: dict[str, ActorRef] = {}
        self.pending = 0
        self.last_seen: dict[str, float] = {}
        """When each entity last got a message (kept only with an idle timeout)."""
        self._routes = routes
        self._now = now if idle_timeout is not None else None
        self._active = active

    def entity(self, entity_id: str) -> ActorRef | None:
        """The entity to send to directly, or ``None`` (then send to :attr:`ref`).

        A direct message counts as one the shard handed on: it refreshes the
        entity's idle clock and its place in the region's active-entity order.
        """
        if self.pending:
            return None
        entity = self.entities.get(entity_id)
        if entity is not None:
            if self._now is not None:
                self.last_seen[entity_id] = self._now()
            if self._active is not None:
                self._active.touch(self.ref, entity_id)
        return entity

    def handed_on(self) -> None:
        """The shard handed a message it was sent to an entity (or dropped it)."""
        self.pending -= 1

    def bounced(self) -> None:
        """The shard, handing off, sent a message it was sent back to its region."""
        self.pending -= 1
        self._routes.queued(self.shard)


class Routes:
    """One region's direct routes, by shard (see the module docstring).

    ``remote``: homes on other nodes; ``local``: shards running here.
    ``pending``: per shard, the messages sent to the region and not yet
    routed on (:class:`~._protocol.Deliver`, and envelopes from peers passed
    on by the region's inbound route); a shard with any has no direct route.
    """

    __slots__ = ("_number_of_shards", "_shard_of", "local", "pending", "remote", "serialize")

    def __init__(
        self, serialize: Callable[[object], tuple[int, str, bytes]], number_of_shards: int
    ) -> None:
        self.serialize = serialize
        """The system's serializer (what the region would serialize with)."""
        self.remote: dict[int, ActorRef] = {}
        self.local: dict[int, ShardRoute] = {}
        self.pending: dict[int, int] = {}
        self._number_of_shards = number_of_shards
        self._shard_of: dict[str, int] = {}

    def shard_of(self, entity_id: str) -> int:
        """The shard of ``entity_id`` (:func:`~._shard_id.shard_id`), remembered for the
        ids seen lately: hashing costs more than the rest of a message's routing.

        Raises :class:`~._errors.InvalidEntityIdError` for an id that cannot
        address an entity (those are never remembered).
        """
        shard = self._shard_of.get(entity_id) if type(entity_id) is str else None
        if shard is None:
            shard = shard_id(entity_id, self._number_of_shards)
            if len(self._shard_of) >= _SHARD_OF_MAX:
                self._shard_of.clear()
            self._shard_of[entity_id] = shard
        return shard

    def queued(self, shard: int) -> None:
        """A message for ``shard`` was sent to the region (it calls :meth:`routed` once)."""
        self.pending[shard] = self.pending.get(shard, 0) + 1

    def routed(self, shard: int) -> None:
        """The region routed on (or dropped, or refused) a message for ``shard``."""
        left = self.pending.get(shard, 0) - 1
        if left > 0:
            self.pending[shard] = left
        else:
            self.pending.pop(shard, None)

    def clear(self) -> None:
        """No direct route any more (the region restarts or stops); counts stay."""
        self.remote.clear()
        self.local.clear()
