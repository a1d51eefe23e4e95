"""The actor cell: mailbox, dispatch and lifecycle of one actor.

The cell *is* the actor's :class:`Context` (users see only the public
methods), so an actor costs one instance, one cell and one ref.

Scheduling never creates a task per message: a cell with work is run by one
``loop.call_soon`` callback that drains up to ``throughput`` messages, then
reschedules itself if more are waiting. Only ``async`` handlers and hooks
run in a task, one at a time per actor.

Lifecycle (``_state``)::

    NEW --started()--> RUNNING <--> BUSY (async handler/hook in flight)
      RUNNING --failure--> SUSPENDED (restart backoff, waiting for children)
      any --stop--> STOPPING (children stopping, stopped() hook) --> STOPPED
"""

from __future__ import annotations

import asyncio
import logging
import types
from collections import deque
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Final

from ._actor import Actor, constructing
from ._envelope import CLOSED, K_RECEIVE_TIMEOUT, K_TERMINATED, K_TIMER, K_USER, Envelope
from ._errors import (
    ActorInitializationError,
    ActorStoppedError,
    InvalidActorNameError,
    MailboxFullError,
    ShoalError,
)
from ._messages import ReceiveTimeout, Terminated
from ._path import ActorPath, valid_name
from ._ref import ActorRef, LocalActorRef
from ._settings import MailboxOverflow
from ._supervision import DEFAULT_STRATEGY, Directive, SupervisorStrategy
from ._timers import TimerFire, Timers

if TYPE_CHECKING:
    from ._clock import Cancellable, Clock
    from ._system import ActorSystem

_log: Final = logging.getLogger("shoal.runtime")
_Coroutine: Final = types.CoroutineType

_NEW: Final = 0
_RUNNING: Final = 1
_BUSY: Final = 2
_SUSPENDED: Final = 3
_STOPPING: Final = 4
_STOPPED: Final = 5


class StashOverflowError(ShoalError):
    """Raised by :meth:`Context.stash` when the stash is at its capacity."""


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


class _PromiseRef(ActorRef):
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

    def _deliver(
        self, message: object, sender: ActorRef | None, promise: asyncio.Future[Any] | None
    ) -> None:
        self.tell(message, sender)
        if promise is not None and not promise.done():
            promise.set_result(None)

    def stop(self) -> asyncio.Future[None]:
        future: asyncio.Future[None] = self._promise.get_loop().create_future()
        future.set_result(None)
        return future

    def _watch(self, watcher: ActorRef) -> None:
        watcher._terminated(self, existence_confirmed=False)

    def _unwatch(self, watcher: ActorRef) -> None:
        pass

    def _terminated(self, ref: ActorRef, existence_confirmed: bool = True) -> None:
        pass


class _Supervision:
    """Restart bookkeeping, created on a cell's first restart."""

    __slots__ = ("attempts", "handle", "last_failure", "pending_error", "times")

    def __init__(self) -> None:
        self.times: deque[float] = deque()
        self.attempts = 0
        self.last_failure = 0.0
        self.handle: Cancellable | None = None
        self.pending_error: BaseException | None = None


class Context:
    """What an actor knows about itself and can do: ``self.ctx`` inside an actor.

    Every method must be called from within the actor (its handlers and
    hooks) on the system's event loop.
    """

    __slots__ = (
        "_actor",
        "_b36",
        "_capacity",
        "_children",
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
        "_rel",
        "_rt",
        "_scheduled",
        "_stash",
        "_state",
        "_stop_future",
        "_stop_requested",
        "_supervision",
        "_system",
        "_task",
        "_throughput",
        "_timers",
        "_watchers",
        "_watching",
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
        self._state = _NEW
        self._current: object = None
        self._detached = False
        self._children: dict[str, Context] | None = None
        self._watchers: set[ActorRef] | None = None
        self._watching: set[ActorRef] | None = None
        self._stash: list[object] | None = None
        self._timers: Timers | None = None
        self._rt: _ReceiveTimeout | None = None
        self._task: asyncio.Task[None] | None = None
        self._stop_future: asyncio.Future[None] | None = None
        self._stop_requested = False
        self._supervision: _Supervision | None = None
        self._rel: str | None = None
        self._b36 = 0
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
            return _PromiseRef(item.promise, self._ref)
        return None

    @property
    def children(self) -> list[ActorRef]:
        """Refs of this actor's live children."""
        return [c._ref for c in self._children.values()] if self._children else []

    def child(self, name: str) -> ActorRef | None:
        """The live child called ``name``, if any."""
        cell = self._children.get(name) if self._children else None
        return cell._ref if cell is not None else None

    @property
    def clock(self) -> Clock:
        """The system's clock."""
        return self._system._clock

    _clock = clock

    @property
    def timers(self) -> Timers:
        """This actor's timers."""
        if self._timers is None:
            self._timers = Timers(self)
        return self._timers

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
        if self._state >= _STOPPING:
            raise ShoalError(f"{self._path()} is stopping and cannot spawn children")
        children = self._children
        if children is None:
            children = self._children = {}
        if name is None:
            self._b36 += 1
            name = f"${self._b36:x}"
        elif name in children or not valid_name(name):
            raise InvalidActorNameError(
                f"actor name {name!r} is taken under {self._path()}"
                if name in children
                else f"invalid actor name {name!r}"
            )
        settings = self._system._settings
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
        cell._actor = cell._instantiate()
        children[name] = cell
        self._system._spawned += 1
        if type(cell._actor).started is not Actor.started:
            cell._scheduled = True
            self._loop.call_soon(cell._run)
        else:
            cell._state = _RUNNING
        return cell._ref

    def stop(self, ref: ActorRef | None = None) -> asyncio.Future[None]:
        """Stop ``ref`` (default: this actor) after its current message.

        The returned future completes once it and all its children stopped.
        """
        if ref is None or ref is self._ref:
            return self._request_stop()
        return ref.stop()

    def watch(self, ref: ActorRef) -> ActorRef:
        """Get ``Terminated(ref)`` once, when ``ref`` stops (at once if it is dead)."""
        if self._watching is None:
            self._watching = set()
        if ref not in self._watching:
            self._watching.add(ref)
            ref._watch(self._ref)
        return ref

    def unwatch(self, ref: ActorRef) -> None:
        """Stop watching ``ref``; a ``Terminated`` not yet handled is dropped."""
        if self._watching is not None and ref in self._watching:
            self._watching.discard(ref)
            ref._unwatch(self._ref)

    def stash(self) -> None:
        """Set the current message aside until :meth:`unstash_all`.

        An ask stashed this way is answered when the message is handled again.
        """
        stash = self._stash
        if stash is None:
            stash = self._stash = []
        if len(stash) >= self._system._settings.stash_capacity:
            raise StashOverflowError(f"stash of {self._path()} is full")
        stash.append(self._current)
        self._detached = True

    def unstash_all(self) -> None:
        """Put every stashed message back at the front of the mailbox, in order."""
        stash = self._stash
        if not stash or self._mbox is CLOSED:
            return
        self._stash = None
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
            self._rt = _ReceiveTimeout(self, seconds)

    def reply_later(self) -> Reply:
        """Take over answering the current message; the handler's return value is ignored."""
        item = self._current
        self._detached = True
        if type(item) is Envelope:
            return Reply(item.promise, item.sender, self._ref)
        return Reply(None, None, self._ref)

    def forward(self, ref: ActorRef, message: object) -> None:
        """Send ``message`` to ``ref`` keeping the current sender (and ask) as its sender."""
        item = self._current
        if type(item) is Envelope and item.kind == K_USER:
            if item.promise is not None:
                self._detached = True
            ref._deliver(message, item.sender, item.promise)
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
        if self._drop_oldest and len(mbox) > self._head:
            oldest = mbox[self._head]
            if type(oldest) is not Envelope or oldest.kind == K_USER:
                # O(queue) shift, on the overflow path only. Removing at the head
                # keeps a drain loop in progress pointing at the next message.
                del mbox[self._head]
                self._to_dead_letters(oldest, "mailbox-full")
                mbox.append(item)
                self._schedule()
                return
        self._to_dead_letters(item, "mailbox-full")

    def _has_mail(self) -> bool:
        mbox = self._mbox
        return mbox is not None and mbox is not CLOSED and len(mbox) > self._head

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
                    else ActorStoppedError(f"{self._path()} is {reason}")
                )
                item.promise.set_exception(error)
                return
            self._system._dead_letter(item.message, item.sender, self._ref, reason)
        else:
            self._system._dead_letter(item, None, self._ref, reason)

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
        if self._state != _RUNNING:
            if self._state == _NEW:
                self._start()
            return
        mbox = self._mbox
        head = start = self._head
        if mbox is None or head >= len(mbox):
            return
        actor = self._actor
        assert actor is not None
        receive = actor.receive
        end = head + self._throughput
        while head < end and head < len(mbox):
            item = mbox[head]
            head += 1
            # Published per message: unstash_all() and stop inside a handler read it.
            self._head = head
            self._current = item
            if type(item) is Envelope:
                self._dispatch(item, receive)
            else:
                try:
                    result = receive(item)
                except Exception as exc:
                    self._fail(exc, item)
                else:
                    if type(result) is _Coroutine:
                        self._run_async(result, item, None)
            if self._state != _RUNNING:
                break
        self._system._processed += head - start
        if self._state == _RUNNING:
            self._current = None  # an idle actor must not pin its last message
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
            if self._state == _RUNNING:
                self._scheduled = True
                self._loop.call_soon(self._run)
        else:
            self._mbox = None  # release the drained list; the next tell makes a new one
            self._head = 0
            self._limit = self._capacity
        waiters = self._system._room_waiters
        if waiters and self in waiters:
            self._wake_room_waiters()

    def _dispatch(self, envelope: Envelope, receive: Callable[[Any], Any]) -> None:
        kind = envelope.kind
        if kind != K_USER:
            message = self._unwrap_signal(envelope)
            if message is None:
                return
        else:
            message = envelope.message
        self._detached = False
        promise = envelope.promise
        try:
            result = receive(message)
        except Exception as exc:
            if promise is not None and not promise.done():
                promise.set_exception(exc)
            self._fail(exc, envelope)
            return
        if type(result) is _Coroutine:
            self._run_async(result, envelope, promise)
        elif promise is not None and not self._detached and not promise.done():
            promise.set_result(result)

    def _unwrap_signal(self, envelope: Envelope) -> object | None:
        kind = envelope.kind
        message = envelope.message
        if kind == K_TERMINATED:
            assert isinstance(message, Terminated)
            if self._watching is None or message.ref not in self._watching:
                return None
            self._watching.discard(message.ref)
            return message
        if kind == K_TIMER:
            assert isinstance(message, TimerFire)
            if self._timers is None or not self._timers._take(message):
                return None
            return message.message
        if kind == K_RECEIVE_TIMEOUT:
            return message if self._rt is not None and self._rt.take(envelope) else None
        return None  # pragma: no cover - every kind is handled above

    def _run_async(self, coro: Any, item: object, promise: asyncio.Future[Any] | None) -> None:
        self._state = _BUSY
        self._task = self._loop.create_task(self._await_handler(coro, item, promise))

    async def _await_handler(
        self, coro: Any, item: object, promise: asyncio.Future[Any] | None
    ) -> None:
        try:
            result = await coro
        except asyncio.CancelledError:
            if promise is not None and not promise.done():
                promise.set_exception(ActorStoppedError(f"{self._path()} stopped while handling"))
            self._task = None
            self._after_busy()
            if not self._stop_requested:
                raise
            return
        except Exception as exc:
            self._task = None
            if promise is not None and not promise.done():
                promise.set_exception(exc)
            if self._state == _BUSY:
                self._state = _RUNNING
            self._fail(exc, item)
            self._after_busy()
            return
        self._task = None
        if promise is not None and not self._detached and not promise.done():
            promise.set_result(result)
        self._current = None
        self._after_busy()

    def _after_busy(self) -> None:
        if self._state == _BUSY:
            self._state = _RUNNING
        if self._stop_requested and self._state < _STOPPING:
            self._begin_stop()
        elif self._state == _RUNNING:
            if self._rt is not None:
                self._rt.touch()
            if self._has_mail():
                self._schedule()

    # -- lifecycle -----------------------------------------------------------------------

    def _instantiate(self) -> Actor:
        token = constructing.set(self)
        try:
            actor = self._factory()
        except Exception as exc:
            raise ActorInitializationError(
                f"factory of {self._path()} raised {type(exc).__name__}: {exc}"
            ) from exc
        finally:
            constructing.reset(token)
        if not isinstance(actor, Actor):
            raise ActorInitializationError(
                f"factory of {self._path()} returned {type(actor).__qualname__}, not an Actor"
            )
        actor._ctx = self
        return actor

    def _start(self) -> None:
        assert self._actor is not None
        self._state = _RUNNING
        self._current = None
        try:
            result = self._actor.started()
        except Exception as exc:
            self._fail(exc, None)
        else:
            if type(result) is _Coroutine:
                self._run_async(result, None, None)
                return
        if self._state == _RUNNING and self._has_mail():
            self._schedule()

    def _request_stop(self) -> asyncio.Future[None]:
        future = self._stop_future
        if future is None:
            future = self._stop_future = self._loop.create_future()
            if self._state == _STOPPED:
                future.set_result(None)
        if self._state >= _STOPPING:
            return future
        if self._state == _BUSY and self._task is not None:
            self._stop_requested = True
            if asyncio.current_task() is not self._task:
                self._task.cancel()
            return future
        self._begin_stop()
        return future

    def _begin_stop(self) -> None:
        self._state = _STOPPING
        self._cancel_timers()
        if self._supervision is not None and self._supervision.handle is not None:
            self._supervision.handle.cancel()
        if self._children:
            for child in list(self._children.values()):
                child._request_stop()
        else:
            self._loop.call_soon(self._finish_stop)

    def _cancel_timers(self) -> None:
        if self._timers is not None:
            self._timers.cancel_all()
        if self._rt is not None:
            self._rt.cancel()
            self._rt = None

    def _child_terminated(self, child: Context) -> None:
        if self._children is not None and self._children.get(child._name) is child:
            del self._children[child._name]
        if self._children:
            return
        if self._state == _STOPPING:
            self._finish_stop()
        elif self._state == _SUSPENDED and self._supervision is not None:
            error = self._supervision.pending_error
            if error is not None and self._supervision.handle is None:
                self._complete_restart(error)

    def _finish_stop(self) -> None:
        if self._state == _STOPPED or self._children:
            return
        actor = self._actor
        try:
            result = actor.stopped() if actor is not None else None
        except Exception:
            _log.exception("stopped() hook of %s raised", self._path())
        else:
            if type(result) is _Coroutine:
                self._loop.create_task(self._await_stopped_hook(result))
                return
        self._finalize()

    async def _await_stopped_hook(self, coro: Any) -> None:
        try:
            await coro
        except Exception:
            _log.exception("stopped() hook of %s raised", self._path())
        finally:
            self._finalize()

    def _finalize(self) -> None:
        if self._state == _STOPPED:
            return
        self._state = _STOPPED
        mbox, self._mbox = self._mbox, CLOSED
        pending = mbox[self._head :] if mbox else None
        self._head = 0
        for item in _chain(self._stash, pending):
            self._to_dead_letters(item, "stopped")
        self._stash = None
        self._wake_room_waiters()
        watchers, self._watchers = self._watchers, None
        if watchers:
            for watcher in watchers:
                watcher._terminated(self._ref)
        watching, self._watching = self._watching, None
        if watching:
            for ref in watching:
                ref._unwatch(self._ref)
        self._actor = None
        self._current = None
        self._system._stopped += 1
        if self._stop_future is None:
            self._stop_future = self._loop.create_future()
        if not self._stop_future.done():
            self._stop_future.set_result(None)
        if self._parent is not None:
            self._parent._child_terminated(self)

    def _add_watcher(self, watcher: ActorRef) -> None:
        if self._state == _STOPPED:
            watcher._terminated(self._ref)
            return
        if self._watchers is None:
            self._watchers = set()
        self._watchers.add(watcher)

    def _remove_watcher(self, watcher: ActorRef) -> None:
        if self._watchers is not None:
            self._watchers.discard(watcher)

    def _signal_terminated(self, terminated: Terminated) -> None:
        self._enqueue_signal(Envelope(terminated, terminated.ref, None, K_TERMINATED))

    # -- supervision ---------------------------------------------------------------------

    def _strategy_for_children(self) -> SupervisorStrategy:
        if self._actor is None:
            return DEFAULT_STRATEGY
        strategy = getattr(self._actor, "supervisor_strategy", None)
        return strategy if strategy is not None else DEFAULT_STRATEGY

    def _fail(self, error: Exception, item: object) -> None:
        """Apply the parent's strategy to a failure of this actor."""
        parent = self._parent
        strategy = parent._strategy_for_children() if parent is not None else DEFAULT_STRATEGY
        try:
            directive = strategy.decider(error)
        except Exception:
            _log.exception("supervisor decider of %s raised; stopping the child", self._path())
            directive = Directive.STOP
        message = item.message if type(item) is Envelope else item
        if directive is Directive.RESUME:
            _log.error(
                "%s failed on %s; resumed",
                self._path(),
                type(message).__qualname__,
                exc_info=error,
            )
        elif directive is Directive.RESTART:
            self._restart(error, message, strategy)
        elif directive is Directive.STOP:
            _log.error("%s failed; stopping it", self._path(), exc_info=error)
            self._request_stop()
        else:
            _log.error("%s failed; escalating to its parent", self._path(), exc_info=error)
            if parent is None or parent._parent is None:
                self._request_stop()
            else:
                parent._fail(error, None)

    def _restart(self, error: Exception, message: object, strategy: SupervisorStrategy) -> None:
        if self._state >= _STOPPING:
            return
        sup = self._supervision
        if sup is None:
            sup = self._supervision = _Supervision()
        now = self._system._clock.now()
        if strategy.max_restarts is not None:
            while sup.times and now - sup.times[0] > strategy.within:
                sup.times.popleft()
            if len(sup.times) >= strategy.max_restarts:
                _log.error(
                    "%s failed %d times within %s s; stopping it",
                    self._path(),
                    len(sup.times) + 1,
                    strategy.within,
                    exc_info=error,
                )
                self._request_stop()
                return
            sup.times.append(now)
        _log.error("%s failed; restarting it", self._path(), exc_info=error)
        if self._task is not None and asyncio.current_task() is not self._task:
            self._task.cancel()
        self._state = _SUSPENDED
        sup.pending_error = error
        actor = self._actor
        if actor is not None:
            try:
                actor.before_restart(error, message)
            except Exception:
                _log.exception("before_restart() of %s raised", self._path())
        self._cancel_timers()
        if self._children:
            for child in list(self._children.values()):
                child._request_stop()
        backoff = strategy.backoff
        if backoff is not None:
            if now - sup.last_failure > backoff.reset_after:
                sup.attempts = 0
            delay = backoff.delay(sup.attempts)
            sup.attempts += 1
            sup.last_failure = now
            sup.handle = self._system._clock.call_later(delay, self._backoff_elapsed)
        elif not self._children:
            self._loop.call_soon(self._complete_restart, error)

    def _backoff_elapsed(self) -> None:
        sup = self._supervision
        assert sup is not None
        sup.handle = None
        if self._state == _SUSPENDED and not self._children and sup.pending_error is not None:
            self._complete_restart(sup.pending_error)

    def _complete_restart(self, error: BaseException) -> None:
        if self._state != _SUSPENDED:
            return
        assert self._supervision is not None
        self._supervision.pending_error = None
        try:
            fresh = self._instantiate()
        except ActorInitializationError:
            _log.exception("restart of %s failed; stopping it", self._path())
            self._state = _RUNNING
            self._request_stop()
            return
        self._actor = fresh
        try:
            fresh.after_restart(error)
        except Exception:
            _log.exception("after_restart() of %s raised", self._path())
        self._state = _NEW
        self._schedule()

    # -- naming ----------------------------------------------------------------------------

    def _path(self) -> ActorPath:
        return ActorPath(self._system.address, tuple(self._relative().split("/")[1:]))

    def _relative(self) -> str:
        rel = self._rel
        if rel is None:
            parent = self._parent
            rel = (parent._relative() if parent is not None else "") + "/" + self._name
            self._rel = rel
        return rel

    def __repr__(self) -> str:
        return f"<Context of {self._path()}>"


def _chain(*parts: Iterable[object] | None) -> Iterable[object]:
    for part in parts:
        if part:
            yield from part


class _ReceiveTimeout:
    """One actor's receive timeout: fires after ``seconds`` of inactivity."""

    __slots__ = ("_cell", "_handle", "_last", "_seconds")

    def __init__(self, cell: Context, seconds: float) -> None:
        self._cell = cell
        self._seconds = seconds
        self._last = cell._system._clock.now()
        self._handle: Cancellable | None = cell._system._clock.call_later(seconds, self._check)

    def touch(self) -> None:
        self._last = self._cell._system._clock.now()

    def cancel(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def take(self, envelope: Envelope) -> bool:
        return envelope.sender is None and self._cell._rt is self

    def _check(self) -> None:
        clock = self._cell._system._clock
        idle = clock.now() - self._last
        if idle < self._seconds:
            self._handle = clock.call_later(self._seconds - idle, self._check)
            return
        cell = self._cell
        if not cell._has_mail() and cell._state == _RUNNING:
            cell._enqueue_signal(Envelope(ReceiveTimeout(), None, None, K_RECEIVE_TIMEOUT))
            self._last = clock.now()
        # Busy (async handler) or messages pending: activity resets the idle time.
        self._handle = clock.call_later(self._seconds, self._check)
