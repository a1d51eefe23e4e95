"""Refs to actors of other nodes."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from shoal.runtime import ActorRef

if TYPE_CHECKING:
    from shoal.runtime import ActorPath

    from ._association import Association
    from ._remoting import Remoting


class RemoteActorRef(ActorRef):
    """A ref to an actor on another node; behaves like a local ref.

    ``tell`` queues the message in the peer's outbox and returns at once: it
    never raises and never blocks (an outbox that is full, a peer that stays
    unreachable, or a message that cannot be serialized sends it to dead
    letters). ``ask`` raises what the remote handler raised (see
    :class:`RemoteAskError`), ``AskTimeout`` on the system clock, or a
    :class:`RemoteError` when the message cannot be delivered. ``send``
    waits while the peer's outbox is full. Watching works as for local
    actors, including ``Terminated(existence_confirmed=False)`` when the
    node is declared gone.

    Refs compare and hash equal by path. Obtain them with
    ``system.resolve("shoal://system@host:port/user/name")`` or from
    messages (refs inside messages travel as paths). A ref holds no state
    for its node until it is used: the node's association is made on the
    first send or watch (so refs arriving in messages cost a peer nothing).
    """

    __slots__ = ("_bound", "_path", "_remoting", "address", "path_str")

    def __init__(self, remoting: Remoting, path: ActorPath, path_str: str) -> None:
        self._remoting = remoting
        self._bound: Association | None = None
        self._path = path
        self.path_str = path_str
        self.address = path.address
        """The address of the actor's node, ``system@host:port``."""

    @property
    def path(self) -> ActorPath:
        return self._path

    def bound(self) -> Association:
        """The association of the actor's node, made (or made again, after it was
        forgotten as idle) on first use."""
        assoc = self._bound
        if assoc is None or assoc.retired:
            assoc = self._bound = self._remoting.association(self.address)
        return assoc

    @property
    def _assoc(self) -> Association:
        return self.bound()

    def tell(self, message: object, sender: ActorRef | None = None) -> None:
        assoc = self._bound
        if assoc is None or assoc.retired:
            assoc = self.bound()
        assoc.tell(self.path_str, message, sender, 0)

    def ask(self, message: object, timeout: float | None = None) -> asyncio.Future[Any]:
        remoting = self._remoting
        future: asyncio.Future[Any] = remoting.loop.create_future()
        remoting.system.track_ask(future, timeout, self, message)  # validates: nothing sent yet
        assoc = self._bound
        if assoc is None or assoc.retired:
            assoc = self.bound()
        assoc.ask(self.path_str, message, future)
        return future

    async def send(self, message: object, sender: ActorRef | None = None) -> None:
        """Like ``tell``, but first wait while the peer's outbox is half full or more."""
        await self._assoc.wait_for_room()
        self.tell(message, sender)

    def stop(self) -> asyncio.Future[None]:
        """Ask the remote node to stop the actor; completes once it stopped there.

        Fails with ``AskTimeout`` after the system's ask timeout, or a
        :class:`RemoteError` if the node is unreachable or gone.
        """
        future: asyncio.Future[None] = self._remoting.loop.create_future()
        correlation = self._track(future, self)
        self._assoc.send_stop(self.path_str, correlation)
        return future

    def deliver(
        self, message: object, sender: ActorRef | None, promise: asyncio.Future[Any] | None
    ) -> None:
        if promise is None:
            self.tell(message, sender)
            return
        # A forwarded ask: the answer completes the original asker's promise.
        correlation = self._track(promise, message)
        self._assoc.tell(self.path_str, message, sender, correlation)

    def _track(self, future: asyncio.Future[Any], message: object) -> int:
        """Register ``future`` for an answer, expiring after the default ask timeout."""
        self._remoting.system.track_ask(future, None, self, message)
        return self._await_answer(future)

    def _await_answer(self, future: asyncio.Future[Any]) -> int:
        """A correlation id whose answer completes ``future``; forgotten once it is done."""
        correlation = self._remoting.next_id()
        self.bound().expect_answer(correlation, future)
        return correlation

    def add_watcher(self, watcher: ActorRef) -> None:
        self._assoc.watches.watch(self, watcher)

    def remove_watcher(self, watcher: ActorRef) -> None:
        self._assoc.watches.unwatch(self, watcher)

    def notify_terminated(self, ref: ActorRef, existence_confirmed: bool = True) -> None:
        # This ref is a watcher on the peer; ``ref`` is an actor of this node.
        self._assoc.watches.notify_terminated(self, ref, existence_confirmed)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RemoteActorRef) and other.path_str == self.path_str

    def __hash__(self) -> int:
        return hash(self.path_str)
