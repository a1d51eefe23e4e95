"""Messages between regions, shards and the coordinator (a closed family).

Those that cross nodes are registered for the wire (``WIRE_MESSAGES``);
refs travel as paths. User messages to entities cross nodes inside
:class:`EntityEnvelope`, already serialized by the system's registry, so a
region forwards them without knowing their class.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import msgspec

from shoal.runtime import Actor, ActorRef, message


@message(manifest="shoal.sharding.Register")
@dataclass(frozen=True, slots=True)
class Register:
    """A region introduces itself (again) to the coordinator, with the shards it hosts."""

    region: ActorRef
    hosting: bool
    shards: list[int]


@message(manifest="shoal.sharding.RegisterAck")
@dataclass(frozen=True, slots=True)
class RegisterAck:
    """The coordinator (this instance: watch it) knows the region."""

    coordinator: ActorRef


@message(manifest="shoal.sharding.GetShardHome")
@dataclass(frozen=True, slots=True)
class GetShardHome:
    """Where does ``shard`` live? Allocates it if nobody hosts it."""

    shard: int
    region: ActorRef


@message(manifest="shoal.sharding.ShardHome")
@dataclass(frozen=True, slots=True)
class ShardHome:
    """``shard`` lives in ``region`` (which starts it when that is itself)."""

    shard: int
    region: ActorRef


@message(manifest="shoal.sharding.BeginHandOff")
@dataclass(frozen=True, slots=True)
class BeginHandOff:
    """Forget ``shard``'s home and buffer its messages until told the new one."""

    shard: int


@message(manifest="shoal.sharding.BeginHandOffAck")
@dataclass(frozen=True, slots=True)
class BeginHandOffAck:
    """``region`` buffers ``shard`` now."""

    shard: int
    region: ActorRef


@message(manifest="shoal.sharding.HandOff")
@dataclass(frozen=True, slots=True)
class HandOff:
    """The owner stops ``shard``: its entities drain their mailboxes and stop."""

    shard: int


@message(manifest="shoal.sharding.ShardStopped")
@dataclass(frozen=True, slots=True)
class ShardStopped:
    """``region`` no longer runs ``shard`` (every entity of it has stopped)."""

    shard: int
    region: ActorRef


@message(manifest="shoal.sharding.GracefulLeave")
@dataclass(frozen=True, slots=True)
class GracefulLeave:
    """``region`` is going away: hand all its shards off and allocate none to it."""

    region: ActorRef


# A msgspec Struct encoded as an array, not a frozen dataclass: one is built,
# encoded and decoded per message that crosses a node, and a dataclass's
# frozen __init__ and field-named map cost several times as much.
@message(manifest="shoal.sharding.EntityEnvelope")
class EntityEnvelope(msgspec.Struct, frozen=True, array_like=True, gc=False):
    """A user message for entity ``entity_id`` of ``shard``, serialized, between regions."""

    entity_id: str
    shard: int
    serializer: int
    manifest: str
    payload: bytes


WIRE_MESSAGES: Final = (
    Register,
    RegisterAck,
    GetShardHome,
    ShardHome,
    BeginHandOff,
    BeginHandOffAck,
    HandOff,
    ShardStopped,
    GracefulLeave,
    EntityEnvelope,
)


# -- local only (never cross a node) ----------------------------------------------------


@dataclass(frozen=True, slots=True)
class Deliver:
    """A user message for entity ``entity_id`` of ``shard``, within one node."""

    entity_id: str
    shard: int
    message: object


@dataclass(frozen=True, slots=True)
class Passivate:
    """What :func:`passivate` tells an entity's shard (with the entity as sender)."""


def passivate(entity: Actor) -> None:
    """Stop ``entity`` (a sharded entity, from within its handlers) once its mailbox drained.

    Its shard queues a :class:`~shoal.runtime.PoisonPill` behind what the
    entity's mailbox holds; messages that reach the shard meanwhile are kept
    and start a new incarnation once it stopped: none is dropped. Does
    nothing for an actor that is not a sharded entity's.
    """
    parent = entity.ctx.parent
    if parent is not None:
        parent.tell(Passivate(), entity.ref)


@dataclass(frozen=True, slots=True)
class StopShard:
    """The region tells its shard to stop all entities and then itself (a hand-off)."""


@dataclass(frozen=True, slots=True)
class Tick:
    """A periodic timer of a region or the coordinator."""
