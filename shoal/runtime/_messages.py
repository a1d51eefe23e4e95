"""Messages the runtime itself delivers to actors and subscribers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ._serialization import message

if TYPE_CHECKING:
    from ._ref import ActorRef


@dataclass(frozen=True, slots=True)
class Terminated:
    """Delivered exactly once to each watcher after ``ref`` stopped.

    Also delivered for every watched actor of a remote node once that node is
    declared gone (``existence_confirmed`` is then ``False``).
    """

    ref: ActorRef
    existence_confirmed: bool = True


@dataclass(frozen=True, slots=True)
class ReceiveTimeout:
    """Delivered when an actor with a receive timeout has been idle that long."""


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A message that could not be delivered, as published on the event stream.

    ``reason`` is one of ``"stopped"``, ``"mailbox-full"``, ``"no-such-actor"``,
    ``"other-system: ..."`` (a path of another actor system name),
    ``"no-remoting: ..."`` (a path of another node, resolved before remoting
    started), or a transport-specific string.
    """

    message: object
    sender: ActorRef | None
    recipient: ActorRef | None
    reason: str


@message
@dataclass(frozen=True, slots=True)
class PoisonPill:
    """Stops the actor that handles it, after every message queued before it.

    Unlike ``ref.stop()`` (which stops after the *current* message), it is
    queued like any message, so what was sent before it is handled first
    (Akka's ``PoisonPill``). It never reaches ``receive``. Messages behind it
    become dead letters and asks behind it fail with
    :class:`ActorStoppedError`; an ask of the pill itself answers ``None``
    once the stop has begun.
    """
