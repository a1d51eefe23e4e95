"""Answering a message later, and the ``ctx.sender`` of an ask."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from ._ref import ActorlessRef, ActorRef

if TYPE_CHECKING:
    from ._path import ActorPath


class Reply:
    """A handle to answer the current message later (see :meth:`Context.reply_later`).

    Answering twice, or after the asker gave up, is ignored.
    """

    __slots__ = ("_promise", "_self", "_sender")

    def __init__(
        self, promise: asyncio.Future[Any] | None, sender: ActorRef | None, me: ActorRef
    ) -> None:
        self._promise = promise
        self._sender = sender
        self._self = me

    def send(self, value: object) -> None:
        """Answer with ``value`` (to the asker, or told to the sender)."""
        if self._promise is not None:
            if not self._promise.done():
                self._promise.set_result(value)
        elif self._sender is not None:
            self._sender.tell(value, self._self)

    def fail(self, error: Exception) -> None:
        """Fail the ask with ``error`` (a plain sender gets nothing)."""
        if self._promise is not None and not self._promise.done():
            self._promise.set_exception(error)


class PromiseRef(ActorlessRef):
    """``ctx.sender`` of an ask: telling it answers the ask."""

    __slots__ = ("_promise", "_target")

    def __init__(self, promise: asyncio.Future[Any], target: ActorRef) -> None:
        self._promise = promise
        self._target = target

    @property
    def path(self) -> ActorPath:
        return self._target.path.child("$ask")

    def tell(self, message: object, sender: ActorRef | None = None) -> None:
        if not self._promise.done():
            self._promise.set_result(message)

    def deliver(
        self, message: object, sender: ActorRef | None, promise: asyncio.Future[Any] | None
    ) -> None:
        self.tell(message, sender)
        if promise is not None and not promise.done():
            promise.set_result(None)

    def _loop(self) -> asyncio.AbstractEventLoop:
        return self._promise.get_loop()
