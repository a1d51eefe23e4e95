"""Actor references: the only way to talk to an actor."""

from __future__ import annotations

import asyncio
from collections import deque
from itertools import islice
from typing import TYPE_CHECKING, Any, Final

from ._envelope import CLOSED, Envelope
from ._errors import AskTimeout, MailboxFullError
from ._messages import Terminated

_INF: Final = float("inf")
_COMPACT_AT: Final = 1024  # smallest queue length worth compacting

if TYPE_CHECKING:
    from ._cell import Context
    from ._clock import Cancellable, Clock
    from ._path import ActorPath


class ActorRef:
    """A handle to an actor, local or remote. Cheap to copy, safe to share.

    * ``tell`` never blocks and never raises because of the target: what
      cannot be delivered goes to dead letters.
    * ``ask`` sends at once and returns a future of the answer: the value
      the target's handler returned (or sent through ``ctx.reply_later()``),
      the handler's error, :class:`AskTimeout`, or
      :class:`ActorStoppedError` if the target stops.
    * ``send`` waits for room in a full mailbox (backpressure).

    All methods must be called from the owning system's event loop.
    """

    __slots__ = ()

    @property
    def path(self) -> ActorPath:
        """The actor's full path."""
        raise NotImplementedError

    def tell(self, message: object, sender: ActorRef | None = None) -> None:
        """Enqueue ``message``; ``sender`` becomes ``ctx.sender`` in the target."""
        raise NotImplementedError

    def ask(self, message: object, timeout: float | None = None) -> asyncio.Future[Any]:
        """Send ``message`` now; the returned future completes with the answer.

        The message is sent when ``ask`` is called, not when the future is
        awaited (as in Akka and Pykka), so issuing many asks and then
        awaiting them all costs no task per ask. ``timeout`` is in seconds of
        the system's clock (default: ``Settings.ask_timeout``); one that is
        not positive and finite raises ``ValueError`` before anything is sent.
        """
        raise NotImplementedError

    async def send(self, message: object, sender: ActorRef | None = None) -> None:
        """Like ``tell``, but wait while the target's mailbox is full."""
        self.tell(message, sender)

    def stop(self) -> asyncio.Future[None]:
        """Stop the actor after its current message; the future completes once it is dead."""
        raise NotImplementedError

    # -- the extension API: for transports and runtime layers, not for actors -------
    #
    # A transport (``shoal.remote``) implements these for its refs and calls
    # them on local ones. All run on the system's loop, never block and never
    # raise because of the target.

    def deliver(
        self, message: object, sender: ActorRef | None, promise: asyncio.Future[Any] | None
    ) -> None:
        """Deliver ``message`` as if sent by ``sender``, with an optional reply promise.

        Whoever ends up handling the message completes ``promise``: the target
        actor's turn with the handler's return value or error, the runtime
        with :class:`ActorStoppedError`/:class:`MailboxFullError` when the
        target cannot take it, or a transport with the remote answer. The
        caller owns the promise's timeout.
        """
        raise NotImplementedError

    def add_watcher(self, watcher: ActorRef) -> None:
        """Register ``watcher`` to get ``Terminated(self)`` exactly once."""
        raise NotImplementedError

    def remove_watcher(self, watcher: ActorRef) -> None:
        """Undo :meth:`add_watcher`; a ``Terminated`` already sent is not recalled."""
        raise NotImplementedError

    def notify_terminated(self, ref: ActorRef, existence_confirmed: bool = True) -> None:
        """Tell this (watching) actor that ``ref`` has terminated."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.path}>"


class ActorlessRef(ActorRef):
    """A ref with no actor behind it (an ask's reply slot, a dead path).

    Stopping it completes at once; watching it gives ``Terminated`` at once,
    with ``existence_confirmed=False``; it never watches anything itself.
    """

    __slots__ = ()

    def _loop(self) -> asyncio.AbstractEventLoop:
        raise NotImplementedError

    def stop(self) -> asyncio.Future[None]:
        future: asyncio.Future[None] = self._loop().create_future()
        future.set_result(None)
        return future

    def add_watcher(self, watcher: ActorRef) -> None:
        watcher.notify_terminated(self, existence_confirmed=False)

    def remove_watcher(self, watcher: ActorRef) -> None:
        pass

    def notify_terminated(self, ref: ActorRef, existence_confirmed: bool = True) -> None:
        pass


class LocalActorRef(ActorRef):
    """A reference to an actor of this process."""

    __slots__ = ("_cell",)

    def __init__(self, cell: Context) -> None:
        self._cell = cell

    @property
    def path(self) -> ActorPath:
        return self._cell._path()

    @property
    def is_alive(self) -> bool:
        """Whether the actor has not yet stopped."""
        return self._cell._mbox is not CLOSED

    def tell(self, message: object, sender: ActorRef | None = None) -> None:
        cell = self._cell
        if sender is not None:
            message = Envelope(message, sender, None)
        mbox = cell._mbox
        if mbox is None or len(mbox) >= cell._limit:
            cell._enqueue_slow(message)
            return
        mbox.append(message)
        if not cell._scheduled:
            cell._scheduled = True
            cell._loop.call_soon(cell._run)

    def deliver(
        self, message: object, sender: ActorRef | None, promise: asyncio.Future[Any] | None
    ) -> None:
        cell = self._cell
        item: object = Envelope(message, sender, promise) if promise or sender else message
        mbox = cell._mbox
        if mbox is None or len(mbox) >= cell._limit:
            if promise is not None and not promise.done():
                if mbox is CLOSED:
                    promise.set_exception(cell._stopped_error("is stopped"))
                    return
                if (
                    mbox is not None
                    and not cell._drop_oldest
                    and len(mbox) - cell._head >= cell._capacity
                ):
                    promise.set_exception(MailboxFullError(f"mailbox of {cell._path()} is full"))
                    return
            cell._enqueue_slow(item)
            return
        mbox.append(item)
        if not cell._scheduled:
            cell._scheduled = True
            cell._loop.call_soon(cell._run)

    def ask(self, message: object, timeout: float | None = None) -> asyncio.Future[Any]:
        cell = self._cell
        future: asyncio.Future[Any] = cell._loop.create_future()
        cell._system.track_ask(future, timeout, self, message)  # validates: nothing sent yet
        self.deliver(message, None, future)
        return future

    async def send(self, message: object, sender: ActorRef | None = None) -> None:
        cell = self._cell
        while cell._accepts_waiting() and cell._queued() >= cell._capacity:
            await cell._wait_for_room()
        self.tell(message, sender)

    def stop(self) -> asyncio.Future[None]:
        return self._cell._request_stop()

    def add_watcher(self, watcher: ActorRef) -> None:
        self._cell._add_watcher(watcher)

    def remove_watcher(self, watcher: ActorRef) -> None:
        self._cell._remove_watcher(watcher)

    def notify_terminated(self, ref: ActorRef, existence_confirmed: bool = True) -> None:
        self._cell._signal_terminated(Terminated(ref, existence_confirmed))


class AskTimeouts:
    """Expires asks without a timer handle, a callback or an object per ask.

    Asks with the same timeout are queued in deadline order, so one clock
    callback (for the earliest deadline) serves them all. A queue is flat,
    four slots per ask (deadline, promise, target, message), so that tracking
    an ask allocates nothing the garbage collector must scan. An ask that is
    answered is not removed at once (that would cost a done-callback per
    ask): answered asks are dropped from the front of their queue when the
    next ask is added or their deadline passes, and a queue is compacted
    each time it doubles, so memory stays proportional to the asks in flight
    (amortised O(1) per ask).
    """

    __slots__ = ("_clock", "_handle", "_limits", "_next", "_queues")

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._queues: dict[float, deque[Any]] = {}
        self._limits: dict[float, int] = {}  # queue length that triggers the next compaction
        self._handle: Cancellable | None = None
        self._next = _INF

    def add(
        self, future: asyncio.Future[Any], timeout: float, target: ActorRef, message: object
    ) -> None:
        """Fail ``future`` with :class:`AskTimeout` if not done ``timeout`` seconds from now."""
        deadline = self._clock.now() + timeout
        queue = self._queues.get(timeout)
        if queue is None:
            queue = self._queues[timeout] = deque()
            self._limits[timeout] = _COMPACT_AT
        else:
            # Asks mostly finish in the order they were made: dropping answered ones
            # from the front keeps the queue (and what it pins) as small as the asks
            # actually in flight.
            while queue and queue[1].done():
                _pop_ask(queue)
            if len(queue) >= self._limits[timeout]:
                queue = self._queues[timeout] = _compacted(queue)
                self._limits[timeout] = max(_COMPACT_AT, 2 * len(queue))
        queue.extend((deadline, future, target, message))
        if deadline < self._next:
            self._arm(deadline)

    def _arm(self, deadline: float) -> None:
        if self._handle is not None:
            self._handle.cancel()
        self._next = deadline
        self._handle = self._clock.call_later(deadline - self._clock.now(), self._fire)

    def _fire(self) -> None:
        self._handle = None
        self._next = _INF
        now = self._clock.now()
        earliest = _INF
        empty: list[float] = []
        for timeout, queue in self._queues.items():
            while queue and (queue[0] <= now or queue[1].done()):
                queue.popleft()
                future = queue.popleft()
                target = queue.popleft()
                message = queue.popleft()
                if not future.done():
                    future.set_exception(
                        AskTimeout(
                            f"no reply from {target.path} to {type(message).__qualname__} "
                            f"within {timeout} s"
                        )
                    )
            if queue:
                earliest = min(earliest, queue[0])
            else:
                empty.append(timeout)
        for timeout in empty:  # one queue per distinct timeout must not pile up
            del self._queues[timeout], self._limits[timeout]
        if earliest != _INF:
            self._arm(earliest)

    def close(self) -> None:
        """Fail every pending ask now (shutdown); later asks still get their timeouts."""
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        self._next = _INF
        queues = list(self._queues.values())
        self._queues.clear()
        self._limits.clear()
        for queue in queues:
            items = list(queue)
            for i in range(0, len(items), _STRIDE):
                future, target = items[i + 1], items[i + 2]
                if not future.done():
                    future.set_exception(
                        AskTimeout(f"no reply from {target.path}: the actor system shut down")
                    )


_STRIDE: Final = 4  # slots per ask in an AskTimeouts queue
_future_done: Final = asyncio.Future.done


def _pop_ask(queue: deque[Any]) -> None:
    queue.popleft()
    queue.popleft()
    queue.popleft()
    queue.popleft()


def _compacted(queue: deque[Any]) -> deque[Any]:
    """``queue`` without its answered asks; ``queue`` itself while fewer than half of
    them are answered (a burst in flight, where a copy would free little: counting
    costs a fifth of copying, and the queue stays within twice the asks in flight)."""
    answered = sum(map(_future_done, islice(queue, 1, None, _STRIDE)))
    if 2 * answered < len(queue) // _STRIDE:
        return queue
    items = list(queue)
    kept: deque[Any] = deque()
    for i in range(0, len(items), _STRIDE):
        if not items[i + 1].done():
            kept.extend(items[i : i + _STRIDE])
    return kept


def check_ask_timeout(timeout: float) -> None:
    """Raise ``ValueError`` unless ``timeout`` is positive and finite (NaN is neither)."""
    if not 0 < timeout < _INF:
        raise ValueError(f"ask timeout must be positive and finite, not {timeout}")
