"""What peers send a region, handed straight to the running entity when nothing waits.

An :class:`~._protocol.EntityEnvelope` from another node is addressed to
this node's region, which would decode its message and forward it to the
entity: an actor turn per message. Installed with
``Remoting.redirect_inbound``, an :class:`InboundRoute` takes the region's
messages from the network first and gives an envelope's message to its
entity at once, under the conditions of a direct route (see ``_routes``):
its shard runs here with a route (not being handed off), nothing for the
shard waits in the region (``Routes.pending``) or the shard
(``ShardRoute.pending``), and the entity runs and is not passivating. An
entity found in its shard's route was started there by the region, so the
envelope's id and shard agree without hashing the id again.

Everything else, protocol messages and envelopes that cannot skip (or whose
message does not decode: the region refuses those), goes on to the region
in arrival order; such an envelope counts in ``Routes.pending`` until the
region routed it, so none sent later from the same peer overtakes it.

Concurrency: called by remoting's inbound delivery on the system's loop,
one envelope at a time, never re-entered; never blocks or raises.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from shoal.runtime import ActorRef, SerializationError

from ._protocol import EntityEnvelope

if TYPE_CHECKING:
    from shoal.runtime import ActorPath

    from ._routes import Routes


class InboundRoute(ActorRef):
    """Stands in for a region's ref in remoting's inbound delivery (see the module docstring)."""

    __slots__ = ("_deserialize", "_region", "_routes")

    def __init__(
        self,
        region: ActorRef,
        routes: Routes,
        deserialize: Callable[[int, str, bytes], object],
    ) -> None:
        self._region = region
        self._routes = routes
        self._deserialize = deserialize

    @property
    def path(self) -> ActorPath:
        return self._region.path

    def tell(self, message: object, sender: ActorRef | None = None) -> None:
        if type(message) is EntityEnvelope:
            target, message = self._target(message)
            target.tell(message, sender)
        else:
            self._region.tell(message, sender)

    def deliver(
        self, message: object, sender: ActorRef | None, promise: asyncio.Future[Any] | None
    ) -> None:
        if type(message) is EntityEnvelope:
            target, message = self._target(message)
            target.deliver(message, sender, promise)
        else:
            self._region.deliver(message, sender, promise)

    def _target(self, envelope: EntityEnvelope) -> tuple[ActorRef, object]:
        routes = self._routes
        shard = envelope.shard
        if shard not in routes.pending:
            local = routes.local.get(shard)
            if local is not None:
                entity = local.entity(envelope.entity_id)
                if entity is not None:
                    try:
                        message = self._deserialize(
                            envelope.serializer, envelope.manifest, envelope.payload
                        )
                    except SerializationError:
                        pass  # the region refuses it: dead letters, the ask fails
                    else:
                        return entity, message
        routes.queued(shard)
        return self._region, envelope

    def ask(self, message: object, timeout: float | None = None) -> asyncio.Future[Any]:
        return self._region.ask(message, timeout)

    def stop(self) -> asyncio.Future[None]:
        return self._region.stop()

    def add_watcher(self, watcher: ActorRef) -> None:
        self._region.add_watcher(watcher)

    def remove_watcher(self, watcher: ActorRef) -> None:
        self._region.remove_watcher(watcher)

    def notify_terminated(self, ref: ActorRef, existence_confirmed: bool = True) -> None:
        self._region.notify_terminated(ref, existence_confirmed)
