"""The actor cell: mailbox and dispatch of one actor.

The cell *is* the actor's :class:`Context` (users see only the public
methods), so an actor costs one instance, one cell and one ref.

Scheduling never creates a task per message: a cell with work is run by one
``loop.call_soon`` callback that drains up to ``throughput`` messages, then
reschedules itself if more are waiting. Only ``async`` handlers and hooks
run in a task, one at a time per actor. Lifecycle, death watch and
supervision are in ``_lifecycle``.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Final, TypeVar

from . import _lifecycle as lc
from ._actor import Actor
from ._envelope import CLOSED, K_RECEIVE_TIMEOUT, K_TERMINATED, K_TIMER, K_USER, Envelope
from ._errors import (
    ActorStoppedError,
    InvalidActorNameError,
    MailboxFullError,
    ShoalError,
)
from ._lifecycle import BUSY, NEW, NO_MESSAGE, RUNNING, STOPPING
from ._messages import PoisonPill, Terminated
from ._path import ActorPath, valid_name
from ._ref import ActorRef, LocalActorRef
from ._reply import PromiseRef, Reply
from ._settings import MailboxOverflow
from ._timers import TimerFire, Timers

if TYPE_CHECKING:
    from ._clock import Clock
    from ._system import ActorSystem

_log: Final = logging.getLogger("shoal.runtime")
_NOTHING: Final = object()  # an empty mailbox, for the async drain
_Coroutine: Final = lc.Coroutine
_REPLIES_COMPACT_AT: Final = 32  # reply_later() promises kept before done ones are dropped

T = TypeVar("T")


class StashOverflowError(ShoalError):
    """Raised by :meth:`Context.stash` when the stash is at its capacity."""


class Context:
    """What an actor knows about itself and can do: ``self.ctx`` inside an actor.

    Every method must be called from within the actor (its handlers and
    hooks) on the system's event loop.
    """

    __slots__ = (
        "_actor",
        "_capacity",
        "_current",
        "_detached",
        "_drop_oldest",
        "_factory",
        "_head",
        "_limit",
        "_loop",
        "_mbox",
        "_name",
        "_parent",
        "_ref",
        "_rt",
        "_scheduled",
        "_state",
        "_system",
        "_throughput",
        "_x",
    )

    def __init__(
        self,
        system: ActorSystem,
        parent: Context | None,
        name: str,
        factory: Callable[[], Actor],
        capacity: int,
        throughput: int,
        drop_oldest: bool = False,
    ) -> None:
        self._system = system
        self._loop = system._loop
        self._parent = parent
        self._name = name
        self._factory = factory
        self._capacity = capacity
        self._throughput = throughput
        self._drop_oldest = drop_oldest
        # The mailbox is a list consumed from index ``_head`` (compacted lazily),
        # ``None`` while idle and empty, and CLOSED once stopped. A short list
        # costs a fraction of a deque, which matters for many idle actors.
        # ``_limit`` = ``_head + _capacity``: the fast path compares len() to it.
        self._mbox: Any = None
        self._head = 0
        self._limit = capacity
        self._scheduled = False
        self._state = NEW
        self._current: object = NO_MESSAGE
        self._detached = False
        self._rt: lc.ReceiveTimeoutTimer | None = None
        self._x: lc.Extras | None = None  # created when first needed
        self._ref = LocalActorRef(self)
        self._actor: Actor | None = None

    # -- public face -------------------------------------------------------------------

    @property
    def ref(self) -> LocalActorRef:
        """This actor's own ref."""
        return self._ref

    @property
    def system(self) -> ActorSystem:
        """The system this actor lives in."""
        return self._system

    @property
    def parent(self) -> ActorRef | None:
        """The parent's ref (``None`` for the guardians)."""
        return self._parent._ref if self._parent is not None else None

    @property
    def sender(self) -> ActorRef | None:
        """Who sent the current message: its sender, the asker, or ``None``."""
        item = self._current
        if type(item) is not Envelope:
            return None
        if item.sender is not None:
            return item.sender
        if item.promise is not None:
            return PromiseRef(item.promise, self._ref)
        return None

    @property
    def children(self) -> list[ActorRef]:
        """Refs of this actor's live children."""
        children = lc.children_of(self)
        return [c._ref for c in children.values()] if children else []

    def child(self, name: str) -> ActorRef | None:
        """The live child called ``name``, if any."""
        children = lc.children_of(self)
        cell = children.get(name) if children else None
        return cell._ref if cell is not None else None

    @property
    def clock(self) -> Clock:
        """The system's clock."""
        return self._system._clock

    _clock = clock

    @property
    def timers(self) -> Timers:
        """This actor's timers."""
        x = lc.extras(self)
        if x.timers is None:
            x.timers = Timers(self)
        return x.timers

    @property
    def log(self) -> logging.LoggerAdapter[logging.Logger]:
        """A logger whose lines name this actor's path."""
        return logging.LoggerAdapter(_log, {"actor_path": str(self._path())})

    def spawn(
        self,
        factory: Callable[[], Actor],
        *,
        name: str | None = None,
        capacity: int | None = None,
        throughput: int | None = None,
        overflow: MailboxOverflow | None = None,
    ) -> LocalActorRef:
        """Create a child actor from ``factory`` (a class or a zero-argument callable).

        The instance is created now (``ActorInitializationError`` if the
        factory raises); ``started`` runs before its first message. ``name``
        must be unique among live siblings; anonymous children get ``$``
        names. ``capacity`` bounds the mailbox, ``overflow`` says what a full
        mailbox does, ``throughput`` is how many messages it handles per turn
        (defaults from the system's settings).
        """
        if self._state >= STOPPING:
            raise ShoalError(f"{self._path()} is stopping and cannot spawn children")
        x = lc.extras(self)
        children = x.children
        if children is None:
            children = x.children = {}
        if name is None:
            x.b36 += 1
            name = f"${x.b36:x}"
        elif name in children or not valid_name(name):
            raise InvalidActorNameError(
                f"actor name {name!r} is taken under {self._path()}"
                if name in children
                else f"invalid actor name {name!r}"
            )
        settings = self._system._settings
        if (capacity is not None and capacity < 1) or (throughput is not None and throughput < 1):
            raise ValueError("capacity and throughput must be >= 1")
        cell = Context(
            self._system,
            self,
            name,
            factory,
            settings.mailbox_capacity if capacity is None else capacity,
            settings.throughput if throughput is None else throughput,
            (settings.mailbox_overflow if overflow is None else overflow)
            is MailboxOverflow.DROP_OLDEST,
        )
        cell._actor = lc.instantiate(cell)
        children[name] = cell
        self._system._spawned += 1
        if type(cell._actor).started is not Actor.started:
            cell._scheduled = True
            self._loop.call_soon(cell._run)
        elif cell._state == NEW:  # __init__ may already have stopped it
            cell._state = RUNNING
        return cell._ref

    def stop(
        self, ref: ActorRef | None = None, *, cause: BaseException | None = None
    ) -> asyncio.Future[None]:
        """Stop ``ref`` (default: this actor) after its current message.

        The returned future completes once it and all its children stopped.
        ``cause`` (this actor only) says why it stops itself: every ask it
        refuses from then on, queued or sent later, fails with an
        :class:`ActorStoppedError` naming the cause, with the cause as its
        ``__cause__`` (a persistent actor whose recovery failed uses it). A
        cause that is itself an ``ActorStoppedError`` subclass is raised as
        such (a fresh instance per ask).
        """
        if ref is None or ref is self._ref:
            if cause is not None:
                lc.extras(self).stop_cause = cause
            return lc.request_stop(self)
        if cause is not None:
            raise ValueError("cause= is for stopping this actor only")
        return ref.stop()

    def _stopped_error(self, what: str) -> ActorStoppedError:
        """The error an ask gets from this stopping or stopped actor (``what`` it did)."""
        x = self._x
        cause = x.stop_cause if x is not None else None
        if cause is None:
            return ActorStoppedError(f"{self._path()} {what}")
        if type(cause) is not ActorStoppedError and isinstance(cause, ActorStoppedError):
            # The actor named its own stop error (a RecoveryError, say): each asker
            # gets a fresh one of that type, so tracebacks do not pile up on one.
            try:
                again = type(cause)(*cause.args)
            except TypeError:
                pass
            else:
                again.__cause__ = cause.__cause__
                return again
        error = ActorStoppedError(f"{self._path()} {what}: {type(cause).__name__}: {cause}")
        error.__cause__ = cause
        return error

    def watch(self, ref: ActorRef) -> ActorRef:
        """Get ``Terminated(ref)`` once, when ``ref`` stops (at once if it is dead)."""
        self._watch(ref, lc.DEFAULT_TERMINATED)
        return ref

    def watch_with(self, ref: ActorRef, message: object) -> ActorRef:
        """Like :meth:`watch`, but get ``message`` instead of ``Terminated(ref)``.

        Delivered exactly once, when ``ref`` stops; :meth:`unwatch` cancels it.
        Watching a ref again (with either method) replaces what it delivers.
        """
        self._watch(ref, message)
        return ref

    def _watch(self, ref: ActorRef, message: object) -> None:
        x = lc.extras(self)
        watching = x.watching
        if watching is None:
            watching = x.watching = {}
        known = ref in watching
        watching[ref] = message  # before add_watcher: a dead ref answers at once
        if not known:
            ref.add_watcher(self._ref)

    def unwatch(self, ref: ActorRef) -> None:
        """Stop watching ``ref``; a ``Terminated`` (or message) not yet handled is dropped."""
        x = self._x
        if x is not None and x.watching is not None and ref in x.watching:
            del x.watching[ref]
            ref.remove_watcher(self._ref)

    def stash(self) -> None:
        """Set the current message aside until :meth:`unstash_all`.

        An ask stashed this way is answered when the message is handled again.
        Works for every message, ``None`` included.
        """
        item = self._current
        if item is NO_MESSAGE:
            raise ShoalError("stash() needs a current message: call it while handling one")
        if type(item) is not Envelope:
            # A plain message is wrapped, so that stashing the same one twice is
            # recognised even for values that are not unique objects (None, 1...).
            item = self._current = Envelope(item, None, None)
        x = lc.extras(self)
        stash = x.stash
        if stash is None:
            stash = x.stash = []
        elif stash and stash[-1] is item:
            raise ShoalError("the current message is already stashed")
        if len(stash) >= self._system._settings.stash_capacity:
            raise StashOverflowError(f"stash of {self._path()} is full")
        stash.append(item)
        self._detached = True

    def unstash_all(self) -> None:
        """Put every stashed message back at the front of the mailbox, in order."""
        x = self._x
        stash = x.stash if x is not None else None
        if not stash or self._mbox is CLOSED:
            return
        x.stash = None  # type: ignore[union-attr]
        mbox = self._mbox
        if mbox is None:
            self._mbox = stash
            self._head = 0
            self._limit = self._capacity
        else:
            # Insert at the head (not into the consumed prefix): a drain loop in
            # progress continues from its own index, which must then see them.
            mbox[self._head : self._head] = stash
        self._schedule()

    def set_receive_timeout(self, seconds: float | None) -> None:
        """Get :class:`ReceiveTimeout` after ``seconds`` without messages; ``None`` clears."""
        if self._rt is not None:
            self._rt.cancel()
            self._rt = None
        if seconds is not None:
            if seconds <= 0:
                raise ValueError("receive timeout must be positive")
            self._rt = lc.ReceiveTimeoutTimer(self, seconds)

    def reply_later(self) -> Reply:
        """Take over answering the current message; the handler's return value is ignored.

        If this actor stops before answering, the asker's ask fails with
        :class:`ActorStoppedError` (instead of waiting for its timeout).
        """
        item = self._current
        self._detached = True
        if type(item) is Envelope:
            promise = item.promise
            if promise is not None:
                x = lc.extras(self)
                replies = x.replies
                if replies is None:
                    replies = x.replies = []
                else:
                    n = len(replies)
                    if n >= _REPLIES_COMPACT_AT and n & (n - 1) == 0:  # at powers of two
                        replies = x.replies = [p for p in replies if not p.done()]
                replies.append(promise)
            return Reply(promise, item.sender, self._ref)
        return Reply(None, None, self._ref)

    def pipe_to_self(
        self,
        work: Awaitable[T],
        *,
        map_ok: Callable[[T], object] | None = None,
        map_err: Callable[[BaseException], object] | None = None,
    ) -> asyncio.Future[T]:
        """Run ``work`` outside the mailbox and receive its outcome as a message.

        ``work`` (a coroutine, which then runs in a task of its own, or any
        awaitable) proceeds while this actor keeps handling messages; when it
        completes, ``map_ok(result)`` (default: the result itself) or, if it
        failed or was cancelled, ``map_err(error)`` (default: the exception
        itself) is told to this actor, in its mailbox order, like any message
        (Akka's ``pipeToSelf``). A failure is never lost: if ``map_ok`` or
        ``map_err`` raises, that exception is the message. Nothing is
        delivered once this actor is stopping or stopped; ``work`` is not
        cancelled then, and a failure it ends with is logged at debug level
        only (not reported by asyncio as never retrieved). Returns the future
        of ``work``.
        """
        future = asyncio.ensure_future(work, loop=self._loop)

        def completed(done: asyncio.Future[T]) -> None:
            if self._state >= STOPPING:
                # Nobody will receive the outcome: retrieve a failure here so that
                # asyncio does not report it as "never retrieved" when collected.
                if not done.cancelled() and done.exception() is not None:
                    _log.debug("%s: piped work failed after the actor stopped", self._ref)
                return
            try:
                if done.cancelled() or done.exception() is not None:
                    error = asyncio.CancelledError() if done.cancelled() else done.exception()
                    assert error is not None
                    outcome = map_err(error) if map_err is not None else error
                else:
                    result = done.result()
                    outcome = map_ok(result) if map_ok is not None else result
            except Exception as exc:
                outcome = exc
            self._ref.tell(outcome)

        future.add_done_callback(completed)
        return future

    def forward(self, ref: ActorRef, message: object) -> None:
        """Send ``message`` to ``ref`` keeping the current sender (and ask) as its sender."""
        item = self._current
        if type(item) is Envelope and item.kind == K_USER:
            if item.promise is not None:
                self._detached = True
            ref.deliver(message, item.sender, item.promise)
        else:
            ref.tell(message)

    # -- enqueueing ----------------------------------------------------------------------

    def _schedule(self) -> None:
        if not self._scheduled:
            self._scheduled = True
            self._loop.call_soon(self._run)

    def _enqueue_slow(self, item: object) -> None:
        """Enqueue when the fast path failed: idle (no deque), full or stopped."""
        mbox = self._mbox
        if mbox is None:
            self._mbox = [item]
            self._head = 0
            self._limit = self._capacity
            self._schedule()
            return
        if mbox is CLOSED:
            self._to_dead_letters(item, "stopped")
            return
        if len(mbox) - self._head < self._capacity:
            # Room after all: _limit is refreshed once per turn, not per message.
            self._limit = self._head + self._capacity
            mbox.append(item)
            self._schedule()
            return
        if self._drop_oldest:
            for i in range(self._head, len(mbox)):
                oldest = mbox[i]
                if type(oldest) is not Envelope or oldest.kind == K_USER:
                    # O(queue) shift, on the overflow path only. Removing at or after
                    # the head keeps a drain loop in progress at the next message.
                    del mbox[i]
                    self._to_dead_letters(oldest, "mailbox-full")
                    mbox.append(item)
                    self._schedule()
                    return
        self._to_dead_letters(item, "mailbox-full")

    def _has_mail(self) -> bool:
        mbox = self._mbox
        return mbox is not None and mbox is not CLOSED and len(mbox) > self._head

    def _accepts_waiting(self) -> bool:
        """Whether a sender may wait for room (not stopping: nothing would drain)."""
        return self._mbox is not CLOSED and self._state < STOPPING

    def _queued(self) -> int:
        """Messages waiting in the mailbox."""
        mbox = self._mbox
        return 0 if mbox is None or mbox is CLOSED else len(mbox) - self._head

    def _enqueue_signal(self, envelope: Envelope) -> None:
        """Enqueue a runtime signal; it is not subject to the capacity bound."""
        mbox = self._mbox
        if mbox is CLOSED:
            return
        if mbox is None:
            mbox = self._mbox = []
            self._head = 0
            self._limit = self._capacity
        mbox.append(envelope)
        self._schedule()

    def _to_dead_letters(self, item: object, reason: str) -> None:
        if type(item) is Envelope:
            if item.kind != K_USER:
                return
            if item.promise is not None and not item.promise.done():
                error: Exception = (
                    MailboxFullError(f"mailbox of {self._path()} is full")
                    if reason == "mailbox-full"
                    else self._stopped_error(f"is {reason}")
                )
                item.promise.set_exception(error)
                return
            self._system.dead_letter(item.message, item.sender, self._ref, reason)
        else:
            self._system.dead_letter(item, None, self._ref, reason)

    async def _wait_for_room(self) -> None:
        waiter: asyncio.Future[None] = self._loop.create_future()
        self._system._room_waiters.setdefault(self, deque()).append(waiter)
        await waiter

    def _wake_room_waiters(self) -> None:
        waiters = self._system._room_waiters.pop(self, None)
        if waiters:
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)

    # -- dispatch ------------------------------------------------------------------------

    def _run(self) -> None:
        self._scheduled = False
        if self._state != RUNNING:
            if self._state == NEW:
                lc.start(self)
            return
        mbox = self._mbox
        head = start = self._head
        if mbox is None or head >= len(mbox):
            return
        actor = self._actor
        assert actor is not None
        receive = actor.receive
        end = head + self._throughput
        # The bound is recomputed only when the messages present at the last
        # computation are handled (handlers may append, unstash_all may insert):
        # not a len() per message on the path of every tell.
        size = len(mbox)
        stop = size if size < end else end  # not min(): a call per actor's turn
        while head < stop:
            item = mbox[head]
            head += 1
            # Published per message: unstash_all() and stop inside a handler read it.
            self._head = head
            self._current = item
            kind = type(item)
            if kind is Envelope:
                message = item.message
                if item.kind != K_USER or type(message) is PoisonPill:
                    coro = self._dispatch(item, receive)
                    if coro is not None:
                        self._run_async(coro, self._current, self._current.promise)  # type: ignore[attr-defined]
                else:
                    # _dispatch's user-message path, inlined: every ask and every
                    # tell with a sender takes it.
                    self._detached = False
                    promise = item.promise
                    try:
                        result = receive(message)
                    except BaseException as exc:  # a CancelledError here cancels no task of ours
                        error = lc.as_failure(exc)
                        if promise is not None and not promise.done():
                            promise.set_exception(error)
                        lc.fail(self, error, item)
                    else:
                        if type(result) is _Coroutine:
                            self._run_async(result, item, promise)
                        elif promise is not None and not self._detached and not promise.done():
                            promise.set_result(result)
            elif kind is PoisonPill:
                lc.request_stop(self)
            else:
                try:
                    result = receive(item)
                except BaseException as exc:  # a CancelledError here cancels no task of ours
                    lc.fail(self, lc.as_failure(exc), item)
                else:
                    if type(result) is _Coroutine:
                        self._run_async(result, item, None)
            if self._state != RUNNING:
                break
            if head == stop:
                size = len(mbox)
                stop = size if size < end else end
        self._system._processed += head - start
        if self._state == RUNNING:
            self._current = NO_MESSAGE  # an idle actor must not pin its last message
        if self._rt is not None:
            self._rt.touch()
        if self._mbox is not mbox:
            return  # stopped meanwhile: the mailbox is closed and drained
        if head < len(mbox):
            if head > 512 and head * 2 > len(mbox):
                del mbox[:head]
                head = 0
            self._head = head
            self._limit = head + self._capacity
            # Not if a handler's tell to itself already scheduled the next run: two
            # runs per turn would double every turn for an actor that keeps busy.
            if self._state == RUNNING and not self._scheduled:
                self._scheduled = True
                self._loop.call_soon(self._run)
        else:
            self._mbox = None  # release the drained list; the next tell makes a new one
            self._head = 0
            self._limit = self._capacity
        waiters = self._system._room_waiters
        if waiters and self in waiters:
            self._wake_room_waiters()

    def _dispatch(self, envelope: Envelope, receive: Callable[[Any], Any]) -> Any:
        """Handle one envelope; returns the handler's coroutine if it is async.

        ``self._current`` is the envelope as handled (signals are re-wrapped).
        """
        kind = envelope.kind
        if kind != K_USER:
            message = self._unwrap_signal(envelope)
            if message is NO_MESSAGE:
                return None
            # Accepted once (watch entry or timer used up): from here on it is a
            # plain message, so stashing it and handling it again works.
            envelope = Envelope(message, envelope.sender, None)
            self._current = envelope
        else:
            message = envelope.message
            if type(message) is PoisonPill:
                lc.request_stop(self)
                if envelope.promise is not None and not envelope.promise.done():
                    envelope.promise.set_result(None)
                return None
        # From here on, _run has an inlined copy for user envelopes: change both.
        self._detached = False
        promise = envelope.promise
        try:
            result = receive(message)
        except BaseException as exc:  # a CancelledError here cancels no task of ours
            error = lc.as_failure(exc)
            if promise is not None and not promise.done():
                promise.set_exception(error)
            lc.fail(self, error, envelope)
            return None
        if type(result) is _Coroutine:
            return result
        if promise is not None and not self._detached and not promise.done():
            promise.set_result(result)
        return None

    def _unwrap_signal(self, envelope: Envelope) -> object:
        """The message a signal delivers, or ``NO_MESSAGE`` if it is no longer wanted."""
        kind = envelope.kind
        message = envelope.message
        if kind == K_TERMINATED:
            assert isinstance(message, Terminated)
            return lc.take_terminated(self, message)
        if kind == K_TIMER:
            assert isinstance(message, TimerFire)
            x = self._x
            if x is None or x.timers is None or not x.timers._take(message):
                return NO_MESSAGE
            return message.message
        if kind == K_RECEIVE_TIMEOUT:
            return message if self._rt is not None and self._rt.take(envelope) else NO_MESSAGE
        return NO_MESSAGE  # pragma: no cover - every kind is handled above

    def _run_async(self, coro: Any, item: object, promise: asyncio.Future[Any] | None) -> None:
        self._state = BUSY
        # While the task runs, tells must not schedule _run: the task drains.
        self._scheduled = True
        lc.extras(self).task = self._loop.create_task(self._drain_async(coro, item, promise))

    async def _drain_async(
        self, coro: Any, item: object, promise: asyncio.Future[Any] | None
    ) -> None:
        """Await an async handler, then keep handling the mailbox in this task.

        One task serves a burst of messages (up to ``throughput``): the next
        message's coroutine is awaited here instead of in a task of its own,
        which halves the cost of async actors such as persistent ones.
        """
        x = lc.extras(self)
        me = asyncio.current_task()
        assert me is not None
        # Locals: narrowing x.task / x.stop_requested here would outlive the awaits below.
        task, stopping = x.task, x.stop_requested
        if task is not me or stopping:
            # Stopped or restarted before this task's first step, where it was not
            # cancelled (lc.cancel_task): the handler never runs, its ask fails.
            coro.close()
            if promise is not None and not promise.done():
                promise.set_exception(self._stopped_error("stopped before handling"))
            if task is me:
                x.task = None
                self._after_busy()
            return
        budget = self._throughput
        handled = 0
        while True:
            try:
                result = await coro
            except asyncio.CancelledError as exc:
                if x.task is me and not x.stop_requested and not me.cancelling():
                    # Nobody cancelled this task: the handler let a cancelled future's
                    # CancelledError escape. That fails the message, like any error.
                    if not self._async_failed(lc.as_failure(exc), item, promise):
                        break
                else:
                    if promise is not None and not promise.done():
                        promise.set_exception(self._stopped_error("stopped while handling"))
                    if x.task is not me:
                        return  # cancelled by a restart: the cell belongs to the next incarnation
                    x.task = None
                    self._after_busy()
                    if not x.stop_requested:
                        raise
                    return
            except Exception as exc:
                if x.task is not me:
                    return
                if not self._async_failed(exc, item, promise):
                    break
            except BaseException:
                if x.task is me:  # not ours to swallow, but the actor must not stay BUSY
                    x.task = None
                    self._after_busy()
                raise
            else:
                if x.task is not me:
                    return
                if promise is not None and not self._detached and not promise.done():
                    promise.set_result(result)
            handled += 1
            # The next message with an async handler, handling plain ones on the way.
            coro = None
            while coro is None and handled < budget and not x.stop_requested:
                if self._state != BUSY:
                    break
                item = self._take()
                if item is _NOTHING:
                    break
                self._current = item
                receive = self._actor.receive  # type: ignore[union-attr]
                if type(item) is Envelope:
                    coro = self._dispatch(item, receive)
                    promise = self._current.promise  # type: ignore[attr-defined]
                elif type(item) is PoisonPill:
                    coro = None
                    lc.request_stop(self)  # BUSY in this task: the drain ends below
                else:
                    promise = None
                    try:
                        coro = receive(item)
                    except BaseException as exc:  # a CancelledError here cancels no task
                        coro = None
                        self._state = RUNNING
                        lc.fail(self, lc.as_failure(exc), item)
                        if self._state == RUNNING:
                            self._state = BUSY
                    else:
                        if type(coro) is not _Coroutine:
                            coro = None
                if coro is None:
                    handled += 1
            if coro is None:
                break
        self._system._processed += handled
        if x.task is me:
            x.task = None
            self._after_busy()

    def _async_failed(
        self, error: Exception, item: object, promise: asyncio.Future[Any] | None
    ) -> bool:
        """Handle an async handler's failure (in its ``except``); whether to drain on."""
        if promise is not None and not promise.done():
            promise.set_exception(error)
        self._state = RUNNING
        lc.fail(self, error, item)
        if self._state != RUNNING:
            return False
        self._state = BUSY
        return True

    def _take(self) -> object:
        """Pop the next mailbox item for the async drain; ``_NOTHING`` if empty."""
        mbox = self._mbox
        head = self._head
        if mbox is None or mbox is CLOSED or head >= len(mbox):
            return _NOTHING
        item = mbox[head]
        head += 1
        if head >= len(mbox):
            self._mbox = None  # drained: release the list, the next tell makes a new one
            head = 0
        elif head > 512 and head * 2 > len(mbox):
            del mbox[:head]
            head = 0
        self._head = head
        self._limit = head + self._capacity
        waiters = self._system._room_waiters
        if waiters and self in waiters:
            self._wake_room_waiters()
        return item

    def _after_busy(self) -> None:
        self._scheduled = False
        if self._state == BUSY:
            self._state = RUNNING
        if self._state == RUNNING:
            self._current = NO_MESSAGE  # an idle actor must not pin its last message
        x = self._x
        if x is not None and x.stop_requested and self._state < STOPPING:
            lc.begin_stop(self)
        elif self._state == RUNNING:
            if self._rt is not None:
                self._rt.touch()
            if self._has_mail():
                self._schedule()

    # -- lifecycle (see _lifecycle) ---------------------------------------------------------

    def _instantiate(self) -> Actor:
        return lc.instantiate(self)

    def _request_stop(self) -> asyncio.Future[None]:
        return lc.request_stop(self)

    def _fail(self, error: Exception, item: object) -> None:
        lc.fail(self, error, item)

    def _add_watcher(self, watcher: ActorRef) -> None:
        lc.add_watcher(self, watcher)

    def _remove_watcher(self, watcher: ActorRef) -> None:
        lc.remove_watcher(self, watcher)

    def _signal_terminated(self, terminated: Terminated) -> None:
        lc.signal_terminated(self, terminated)

    # -- naming ----------------------------------------------------------------------------

    def _path(self) -> ActorPath:
        return ActorPath(self._system.address, tuple(self._relative().split("/")[1:]))

    def _relative(self) -> str:
        x = lc.extras(self)
        rel = x.rel
        if rel is None:
            parent = self._parent
            rel = (parent._relative() if parent is not None else "") + "/" + self._name
            x.rel = rel
        return rel

    def __repr__(self) -> str:
        return f"<Context of {self._path()}>"
