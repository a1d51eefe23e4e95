"""The ``/system/pubsub`` actor: subscriptions, death watch, and frames from peers.

Local subscribe/unsubscribe/register calls arrive as the private commands
below (an ask: the caller's ``await`` returns once the registry has the
change); ``Terminated`` of a watched subscriber removes its subscriptions;
``DeadLetter`` events (it subscribes to them) count subscribers' overflow;
``bytes`` are frames from peers' mediators (registry traffic on the control
lane, deliveries on the user lane), handed to the owner's ``on_frame``.
The commands are not message types (no manifest): no peer can send them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from shoal.runtime import Actor, ActorRef, DeadLetter, Terminated


@dataclass(frozen=True, slots=True)
class Subscribe:
    topic: str
    group: str
    ref: ActorRef


@dataclass(frozen=True, slots=True)
class Unsubscribe:
    topic: str
    group: str
    ref: ActorRef


@dataclass(frozen=True, slots=True)
class Register:
    path: str
    ref: ActorRef


@dataclass(frozen=True, slots=True)
class Unregister:
    path: str


Command = Subscribe | Unsubscribe | Register | Unregister


class Owner(Protocol):
    """What the mediator actor calls; every call is synchronous and must not block."""

    def on_command(
        self, command: Command
    ) -> tuple[ActorRef | None, ActorRef | None, Exception | None]:
        """Apply ``command``; returns the ref to watch, the ref to stop watching, and the
        error that refused it (the answer to the caller's ask, raised on its side)."""
        ...

    def on_terminated(self, ref: ActorRef) -> None: ...

    def on_frame(self, data: bytes, sender: ActorRef | None) -> None: ...

    def on_dead_letter(self, letter: DeadLetter) -> None: ...

    def on_other(self, message: object, sender: ActorRef | None) -> None: ...


class Mediator(Actor):
    """One per node at ``/system/pubsub``; the registry itself lives in its owner."""

    def __init__(self, owner: Callable[[], Owner]) -> None:
        self._owner = owner

    def receive(self, message: object) -> Exception | None:
        owner = self._owner()
        if type(message) is bytes:
            owner.on_frame(message, self.ctx.sender)
        elif isinstance(message, Subscribe | Unsubscribe | Register | Unregister):
            watch, unwatch, error = owner.on_command(message)
            if watch is not None:
                self.ctx.watch(watch)
            if unwatch is not None:
                self.ctx.unwatch(unwatch)
            return error
        elif isinstance(message, Terminated):
            owner.on_terminated(message.ref)
        elif isinstance(message, DeadLetter):
            owner.on_dead_letter(message)
        else:
            owner.on_other(message, self.ctx.sender)
        return None
