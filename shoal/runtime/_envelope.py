"""What sits in a mailbox.

A plain ``tell`` without a sender enqueues the message object itself: the
fast path allocates nothing. Everything else (a sender, an ask's promise, a
runtime signal) is wrapped in an :class:`Envelope`.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from ._ref import ActorRef

K_USER: Final = 0  # a user message with a sender and/or a promise
K_TERMINATED: Final = 1  # message is Terminated; delivered only if still watching
K_TIMER: Final = 2  # message is a TimerFire; delivered only if the timer is current
K_RECEIVE_TIMEOUT: Final = 3  # delivered only if the receive timeout is still set


class Envelope:
    """A message with its sender, its reply promise and its kind (private)."""

    __slots__ = ("kind", "message", "promise", "sender")

    def __init__(
        self,
        message: object,
        sender: ActorRef | None,
        promise: asyncio.Future[Any] | None,
        kind: int = K_USER,
    ) -> None:
        self.message = message
        self.sender = sender
        self.promise = promise
        self.kind = kind


class ClosedMailbox:
    """Stands in for the mailbox of a stopped actor.

    Its length is larger than any capacity, so the enqueue fast path
    (``len(mbox) < capacity``) falls through to the slow path, which sends the
    message to dead letters.
    """

    __slots__ = ()

    def __len__(self) -> int:
        return 1 << 62

    def __bool__(self) -> bool:
        return False


CLOSED: Final = ClosedMailbox()
