"""An actor's lifecycle: start, stop, death watch, supervision and restart.

Plain functions over a :class:`~shoal.runtime._cell.Context`, kept apart
from the mailbox and dispatch code. States (``cell._state``)::

    NEW --started()--> RUNNING <--> BUSY (async handler/hook in flight)
      RUNNING --failure--> SUSPENDED (restart backoff, waiting for children)
      any --stop--> STOPPING (children stopping, stopped() hook) --> STOPPED

What few actors use (children, watchers, stash, timers, restart
bookkeeping) lives in a lazily created :class:`Extras`, so that the many
actors that never use it stay small and cheap for the garbage collector.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import types
from collections import deque
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Final

from ._actor import Actor, constructing
from ._envelope import CLOSED, K_RECEIVE_TIMEOUT, K_TERMINATED, Envelope
from ._errors import ActorInitializationError, HandlerError
from ._messages import ReceiveTimeout, Terminated
from ._supervision import DEFAULT_STRATEGY, Directive, SupervisorStrategy

if TYPE_CHECKING:
    from ._cell import Context
    from ._clock import Cancellable
    from ._ref import ActorRef
    from ._timers import Timers

log: Final = logging.getLogger("shoal.runtime")
Coroutine: Final = types.CoroutineType

NEW: Final = 0
RUNNING: Final = 1
BUSY: Final = 2
SUSPENDED: Final = 3
STOPPING: Final = 4
STOPPED: Final = 5


class _Marker:
    __slots__ = ("_name",)

    def __init__(self, name: str) -> None:
        self._name = name

    def __repr__(self) -> str:
        return self._name


NO_MESSAGE: Final = _Marker("<no message>")  # cell._current between messages
STARTING: Final = _Marker("<started()>")  # the "message" a failing started() hook failed on
DEFAULT_TERMINATED: Final = _Marker("<Terminated>")  # watch() rather than watch_with()


def as_failure(error: BaseException) -> Exception:
    """What supervision handles for ``error`` raised by a handler or hook.

    An ``Exception`` is itself; another ``BaseException`` raised where no task
    of the actor was cancelled (``CancelledError`` from a cancelled future's
    ``result()``) becomes a :class:`HandlerError`. ``KeyboardInterrupt`` and
    ``SystemExit`` are re-raised.
    """
    if isinstance(error, Exception):
        return error
    if isinstance(error, (KeyboardInterrupt, SystemExit)):
        raise error
    failure = HandlerError(f"handler raised {type(error).__qualname__}: {error}")
    failure.__cause__ = error
    return failure


def report(cell: Context, kind: str, msg: str, *args: object) -> None:
    """Log an actor failure with its traceback, rate-limited per kind and actor class.

    Called from the ``except`` block that caught the failure.
    """
    actor = cell._actor
    key = f"{kind} {type(actor).__qualname__ if actor is not None else cell._name}"
    cell._system._failure_log.report(key, msg, *args, exc_info=True)


class Supervision:
    """Restart bookkeeping, created on a cell's first restart."""

    __slots__ = ("attempts", "draining", "handle", "last_failure", "pending_error", "times")

    def __init__(self) -> None:
        self.times: deque[float] = deque()
        self.attempts = 0
        self.last_failure = 0.0
        self.handle: Cancellable | None = None  # the backoff delay
        self.pending_error: BaseException | None = None  # set while a restart is pending
        # The failed incarnation's handler or stopped() hook, still finishing: the
        # next incarnation must not run alongside it.
        self.draining: asyncio.Task[Any] | None = None


class Extras:
    """The state of an actor that most actors never need."""

    __slots__ = (
        "b36",
        "children",
        "never_started",
        "rel",
        "replies",
        "stash",
        "stop_cause",
        "stop_future",
        "stop_requested",
        "supervision",
        "task",
        "timers",
        "watchers",
        "watching",
    )

    def __init__(self) -> None:
        self.children: dict[str, Context] | None = None
        self.watchers: set[ActorRef] | None = None
        # Watched refs and what to deliver when they stop (DEFAULT_TERMINATED: Terminated).
        self.watching: dict[ActorRef, object] | None = None
        self.stash: list[object] | None = None
        self.timers: Timers | None = None
        self.task: asyncio.Task[None] | None = None
        self.stop_future: asyncio.Future[None] | None = None
        self.stop_requested = False
        self.supervision: Supervision | None = None
        self.rel: str | None = None
        self.b36 = 0
        self.never_started = False  # stopped before started() ran: skip stopped()
        # Promises of asks answered through reply_later(): failed when the actor stops.
        self.replies: list[asyncio.Future[Any]] | None = None
        # Why the actor stopped itself (ctx.stop(cause=...)): every ask it refuses carries it.
        self.stop_cause: BaseException | None = None


def extras(cell: Context) -> Extras:
    x = cell._x
    if x is None:
        x = cell._x = Extras()
    return x


def children_of(cell: Context) -> dict[str, Context] | None:
    x = cell._x
    return x.children if x is not None else None


# -- start -------------------------------------------------------------------------------


def instantiate(cell: Context) -> Actor:
    token = constructing.set(cell)
    try:
        actor = cell._factory()
    except Exception as exc:
        raise ActorInitializationError(
            f"factory of {cell._path()} raised {type(exc).__name__}: {exc}"
        ) from exc
    finally:
        constructing.reset(token)
    if not isinstance(actor, Actor):
        raise ActorInitializationError(
            f"factory of {cell._path()} returned {type(actor).__qualname__}, not an Actor"
        )
    actor._ctx = cell
    return actor


def start(cell: Context) -> None:
    assert cell._actor is not None
    cell._state = RUNNING
    cell._current = NO_MESSAGE
    try:
        result = cell._actor.started()
    except BaseException as exc:
        fail(cell, as_failure(exc), STARTING)
    else:
        if type(result) is Coroutine:
            cell._run_async(result, STARTING, None)
            return
    if cell._state == RUNNING and cell._has_mail():
        cell._schedule()


# -- stop --------------------------------------------------------------------------------


def request_stop(cell: Context) -> asyncio.Future[None]:
    x = extras(cell)
    future = x.stop_future
    if future is None:
        future = x.stop_future = cell._loop.create_future()
        if cell._state == STOPPED:
            future.set_result(None)
    if cell._state >= STOPPING:
        return future
    if cell._state == BUSY and x.task is not None:
        x.stop_requested = True
        if asyncio.current_task() is not x.task:
            cancel_task(x.task)
        return future
    begin_stop(cell)
    return future


def cancel_task(task: asyncio.Task[Any]) -> None:
    """Cancel an actor's task, unless it has not taken its first step yet.

    A task cancelled before its first step never runs its body: its cleanup
    (state, the handler's promise) would never happen and the handler's
    coroutine would never be awaited. Such a task checks at its start whether
    it is still wanted (see ``Context._drain_async``).
    """
    if inspect.getcoroutinestate(task.get_coro()) != inspect.CORO_CREATED:  # type: ignore[arg-type]
        task.cancel()


def begin_stop(cell: Context) -> None:
    x = extras(cell)
    if cell._state == NEW:
        x.never_started = True
    cell._state = STOPPING
    cancel_timers(cell)
    if x.supervision is not None and x.supervision.handle is not None:
        x.supervision.handle.cancel()
        x.supervision.handle = None
    cell._wake_room_waiters()  # nothing will drain the mailbox any more
    if x.children:
        for child in list(x.children.values()):
            # One loop turn per level: no recursion, however deep the tree.
            cell._loop.call_soon(request_stop, child)
    else:
        cell._loop.call_soon(finish_stop, cell)


def cancel_timers(cell: Context) -> None:
    x = cell._x
    if x is not None and x.timers is not None:
        x.timers.cancel_all()
    if cell._rt is not None:
        cell._rt.cancel()
        cell._rt = None


def child_terminated(cell: Context, child: Context) -> None:
    children = children_of(cell)
    if children is not None and children.get(child._name) is child:
        del children[child._name]
    if children:
        return
    if cell._state == STOPPING:
        finish_stop(cell)
    elif cell._state == SUSPENDED:
        maybe_complete_restart(cell)


def finish_stop(cell: Context) -> None:
    x = extras(cell)
    if cell._state != STOPPING or x.children or x.task is not None:
        return
    sup = x.supervision
    if sup is not None and sup.draining is not None:
        return  # finish_stop runs again when the old incarnation's task is done
    actor = cell._actor
    if actor is not None and not x.never_started:
        cell._actor = None  # stopped() runs once per instance
        result = _run_stopped_hook(cell, actor)
        if result is not None:
            x.task = cell._loop.create_task(_await_stopped_hook(cell, result))
            return
    finalize(cell)


def _run_stopped_hook(cell: Context, actor: Actor) -> Any:
    """Call ``actor.stopped()``; returns its coroutine if it is async."""
    try:
        result = actor.stopped()
    except Exception:
        report(cell, "stopped() failed", "stopped() hook of %s raised", cell._path())
        return None
    return result if type(result) is Coroutine else None


async def _await_hook(cell: Context, coro: Any) -> None:
    """Await an async ``stopped()`` hook, logging its failure like a plain hook's."""
    try:
        await coro
    except Exception:
        report(cell, "stopped() failed", "stopped() hook of %s raised", cell._path())


async def _await_stopped_hook(cell: Context, coro: Any) -> None:
    try:
        await _await_hook(cell, coro)
    finally:
        extras(cell).task = None
        finalize(cell)


def finalize(cell: Context) -> None:
    if cell._state == STOPPED:
        return
    cell._state = STOPPED
    x = extras(cell)
    mbox, cell._mbox = cell._mbox, CLOSED
    pending = mbox[cell._head :] if mbox else None
    cell._head = 0
    for item in _chain(x.stash, pending):
        cell._to_dead_letters(item, "stopped")
    x.stash = None
    replies, x.replies = x.replies, None
    if replies:
        for promise in replies:
            if not promise.done():
                promise.set_exception(cell._stopped_error("stopped before replying"))
    cell._wake_room_waiters()
    watchers, x.watchers = x.watchers, None
    if watchers:
        for watcher in watchers:
            watcher.notify_terminated(cell._ref)
    watching, x.watching = x.watching, None
    if watching:
        for ref in watching:
            ref.remove_watcher(cell._ref)
    cell._actor = None
    cell._current = NO_MESSAGE
    cancel_timers(cell)  # ones started by stopped() itself
    x.timers = None  # a Timers refers back to its cell: no cycle left behind
    if x.supervision is not None:
        x.supervision.pending_error = None  # its traceback would pin the failed instance
    cell._system._stopped += 1
    if x.stop_future is None:
        x.stop_future = cell._loop.create_future()
    if not x.stop_future.done():
        x.stop_future.set_result(None)
    parent = cell._parent
    if parent is not None:
        siblings = children_of(parent)
        if siblings is not None and siblings.get(cell._name) is cell:
            del siblings[cell._name]  # the name is free once stop() has resolved
        # The parent learns in the next turn: no recursion, however deep the tree.
        cell._loop.call_soon(child_terminated, parent, cell)


def _chain(*parts: Iterable[object] | None) -> Iterable[object]:
    for part in parts:
        if part:
            yield from part


# -- death watch -------------------------------------------------------------------------


def add_watcher(cell: Context, watcher: ActorRef) -> None:
    if cell._state == STOPPED:
        watcher.notify_terminated(cell._ref)
        return
    x = extras(cell)
    if x.watchers is None:
        x.watchers = set()
    x.watchers.add(watcher)


def remove_watcher(cell: Context, watcher: ActorRef) -> None:
    x = cell._x
    if x is not None and x.watchers is not None:
        x.watchers.discard(watcher)


def signal_terminated(cell: Context, terminated: Terminated) -> None:
    cell._enqueue_signal(Envelope(terminated, terminated.ref, None, K_TERMINATED))


def take_terminated(cell: Context, terminated: Terminated) -> object:
    """What to deliver for a dequeued Terminated: once, if still watching, else NO_MESSAGE."""
    x = cell._x
    if x is None or x.watching is None:
        return NO_MESSAGE
    custom = x.watching.pop(terminated.ref, NO_MESSAGE)
    if custom is NO_MESSAGE:
        return NO_MESSAGE
    return terminated if custom is DEFAULT_TERMINATED else custom


# -- supervision -------------------------------------------------------------------------


def strategy_for_children(cell: Context) -> SupervisorStrategy:
    strategy = getattr(cell._actor, "supervisor_strategy", None)
    return strategy if strategy is not None else DEFAULT_STRATEGY


def fail(cell: Context, error: Exception, item: object) -> None:
    """Apply the parent's strategy to a failure of ``cell``'s actor.

    Called from the ``except`` block that caught ``error``. ``item`` is what
    failed: a mailbox item, or ``STARTING`` for the ``started()`` hook, plain
    or async. A failure of ``started()`` cannot be resumed (the actor is not
    initialised): Resume becomes Stop there, as in Akka.
    """
    parent = cell._parent
    strategy = strategy_for_children(parent) if parent is not None else DEFAULT_STRATEGY
    try:
        directive = strategy.decider(error)
    except Exception:
        report(cell, "decider failed", "supervisor decider of %s raised; stopping", cell._path())
        directive = Directive.STOP
    if item is STARTING and directive is Directive.RESUME:
        directive = Directive.STOP
    message = item.message if type(item) is Envelope else item
    what = "started()" if item is STARTING else type(message).__qualname__
    if directive is Directive.RESUME:
        report(cell, "failed, resumed", "%s failed on %s; resumed", cell._path(), what)
    elif directive is Directive.RESTART:
        restart(cell, error, message, strategy)
    elif directive is Directive.STOP:
        report(cell, "failed, stopped", "%s failed on %s; stopping it", cell._path(), what)
        request_stop(cell)
    else:
        report(cell, "failed, escalated", "%s failed on %s; escalating", cell._path(), what)
        if parent is None or parent._parent is None:
            request_stop(cell)
        else:
            fail(parent, error, None)


def restart(cell: Context, error: Exception, message: object, strategy: SupervisorStrategy) -> None:
    if cell._state >= SUSPENDED:
        # Already restarting (or stopping): a failure reported meanwhile, e.g. by a
        # child being stopped, does not restart it twice.
        report(cell, "failed restarting", "%s failed again while restarting", cell._path())
        return
    x = extras(cell)
    sup = x.supervision
    if sup is None:
        sup = x.supervision = Supervision()
    now = cell._system._clock.now()
    if strategy.max_restarts is not None:
        while sup.times and now - sup.times[0] > strategy.within:
            sup.times.popleft()
        if len(sup.times) >= strategy.max_restarts:
            report(
                cell,
                "failed, stopped",
                "%s failed %d times within %s s; stopping it",
                cell._path(),
                len(sup.times) + 1,
                strategy.within,
            )
            request_stop(cell)
            return
        sup.times.append(now)
    report(cell, "failed, restarted", "%s failed; restarting it", cell._path())
    cell._state = SUSPENDED
    sup.pending_error = error
    task = x.task
    if task is not None and asyncio.current_task() is not task:
        # The failed incarnation is inside an async handler: cancel it and let it
        # finish (its cleanup may await) before the next incarnation starts.
        x.task = None
        cancel_task(task)  # one not yet started sees it is no longer the cell's task
        _drain(cell, sup, task)
        cell._scheduled = False  # the task no longer drains; complete_restart schedules
    cell.unstash_all()  # stashed messages go to the next incarnation (Akka's Stash)
    actor = cell._actor
    if actor is not None:
        try:
            actor.before_restart(error, message)
        except Exception:
            report(cell, "before_restart() failed", "before_restart() of %s raised", cell._path())
        # The failed instance is stopped like any other: resources opened in
        # started() are released in stopped() (Akka's default preRestart).
        cell._actor = None
        hook = _run_stopped_hook(cell, actor)
        if hook is not None:
            _drain(cell, sup, cell._loop.create_task(_await_hook(cell, hook)))
    cancel_timers(cell)
    if x.children:
        for child in list(x.children.values()):
            cell._loop.call_soon(request_stop, child)
    backoff = strategy.backoff
    if backoff is not None:
        if now - sup.last_failure > backoff.reset_after:
            sup.attempts = 0
        delay = backoff.delay(sup.attempts, cell._system.random.random())
        sup.attempts += 1
        sup.last_failure = now
        if sup.handle is not None:
            sup.handle.cancel()
        sup.handle = cell._system._clock.call_later(delay, _backoff_elapsed, cell)
    else:
        cell._loop.call_soon(maybe_complete_restart, cell)


def _drain(cell: Context, sup: Supervision, task: asyncio.Task[Any]) -> None:
    """Hold the restart (or stop) until ``task`` of the failed incarnation is done."""
    previous = sup.draining
    if previous is not None and not previous.done():
        task = asyncio.ensure_future(asyncio.wait((previous, task)))
    sup.draining = task
    task.add_done_callback(lambda _: _drained(cell, sup, task))


def _drained(cell: Context, sup: Supervision, task: asyncio.Future[Any]) -> None:
    if sup.draining is task:
        sup.draining = None
    if cell._state == SUSPENDED:
        maybe_complete_restart(cell)
    elif cell._state == STOPPING:
        finish_stop(cell)


def _backoff_elapsed(cell: Context) -> None:
    sup = extras(cell).supervision
    assert sup is not None
    sup.handle = None
    maybe_complete_restart(cell)


def maybe_complete_restart(cell: Context) -> None:
    """Complete a pending restart once backoff, children and the old task are done."""
    if cell._state != SUSPENDED:
        return
    x = extras(cell)
    sup = x.supervision
    if sup is None or sup.pending_error is None or sup.handle is not None:
        return
    if x.children or sup.draining is not None:
        return
    complete_restart(cell, sup.pending_error)


def complete_restart(cell: Context, error: BaseException) -> None:
    if cell._state != SUSPENDED:
        return
    sup = extras(cell).supervision
    assert sup is not None
    sup.pending_error = None
    try:
        fresh = instantiate(cell)
    except ActorInitializationError:
        report(cell, "restart failed", "restart of %s failed; stopping it", cell._path())
        cell._state = RUNNING
        request_stop(cell)
        return
    cell._actor = fresh
    try:
        fresh.after_restart(error)
    except Exception:
        report(cell, "after_restart() failed", "after_restart() of %s raised", cell._path())
    if cell._state == SUSPENDED:  # after_restart() may have stopped it
        cell._state = NEW
        cell._schedule()


# -- receive timeout ---------------------------------------------------------------------


class ReceiveTimeoutTimer:
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
        if cell._state >= STOPPING:
            self._handle = None
            return
        if not cell._has_mail() and cell._state == RUNNING:
            cell._enqueue_signal(Envelope(ReceiveTimeout(), None, None, K_RECEIVE_TIMEOUT))
            self._last = clock.now()
        # Busy (async handler) or messages pending: activity resets the idle time.
        self._handle = clock.call_later(self._seconds, self._check)
