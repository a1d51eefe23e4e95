"""Deterministic test helpers: a manual clock, quiescence, a probe actor.

Example::

    clock = ManualClock()
    async with ActorSystem("t", Settings.testing(clock=clock)) as system:
        ref = system.spawn(Ticker)
        clock.advance(1.0)          # fires every timer due within that second
        await quiesce(system)       # every message those timers sent is handled
        assert await ref.ask(Count()) == 1

``await quiesce(system)`` replaces counting loop turns before asserting that
something did (or did not) happen; ``await clock.run_until_idle(system)``
runs a system's timers and messages until nothing is left to do.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Final

from . import _lifecycle as lc
from ._actor import Actor

if TYPE_CHECKING:
    from ._cell import Context
    from ._ref import ActorRef
    from ._system import ActorSystem

__all__ = ["ManualClock", "Probe", "QuiesceError", "quiesce", "settle"]


class _ManualTimer:
    __slots__ = ("args", "callback", "cancelled", "deadline")

    def __init__(self, deadline: float, callback: Callable[..., object], args: tuple[object, ...]):
        self.deadline = deadline
        self.callback = callback
        self.args = args
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class ManualClock:
    """A :class:`~shoal.runtime.Clock` whose time moves only when told to.

    ``advance(seconds)`` moves time forward and runs, synchronously and in
    deadline order, every callback that falls due, including ones scheduled by
    other callbacks within the window. Work those callbacks hand to the event
    loop (messages to actors) runs when the test next awaits.
    """

    def __init__(self, start: float = 0.0) -> None:
        self._now = start
        self._heap: list[tuple[float, int, _ManualTimer]] = []
        self._seq = itertools.count()

    def now(self) -> float:
        return self._now

    def call_later(
        self, delay: float, callback: Callable[..., object], *args: object
    ) -> _ManualTimer:
        timer = _ManualTimer(self._now + max(delay, 0.0), callback, args)
        heapq.heappush(self._heap, (timer.deadline, next(self._seq), timer))
        return timer

    async def sleep(self, delay: float) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.call_later(delay, _resolve, future)
        await future

    def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds``, running every callback due by then."""
        if seconds < 0:
            raise ValueError("time cannot go backwards")
        target = self._now + seconds
        while self._heap and self._heap[0][0] <= target:
            deadline, _, timer = heapq.heappop(self._heap)
            if timer.cancelled:
                continue
            self._now = deadline
            timer.callback(*timer.args)
        self._now = target

    @property
    def pending(self) -> int:
        """How many scheduled callbacks are neither run nor cancelled."""
        return sum(1 for _, _, t in self._heap if not t.cancelled)

    def next_deadline(self) -> float | None:
        """The earliest pending deadline, or ``None``."""
        heap = self._heap
        while heap and heap[0][2].cancelled:
            heapq.heappop(heap)  # cancelled timers are dropped here rather than scanned
        return heap[0][0] if heap else None

    async def run_until_idle(
        self, system: ActorSystem, *, max_time: float = 3600.0, max_turns: int = 10_000
    ) -> float:
        """Alternately :func:`quiesce` ``system`` and advance to the next timer.

        Returns once no timer is left, or once ``max_time`` seconds of virtual
        time have passed (then time stands exactly ``max_time`` later, every
        timer due by then has run and the system is quiescent): a periodic
        timer never runs out, so the limit is what ends such a run. Returns
        the virtual time that passed. ``max_turns`` bounds each quiescence
        (see :func:`quiesce`).
        """
        if not max_time >= 0:
            raise ValueError(f"max_time must be >= 0, not {max_time}")
        start = self._now
        limit = start + max_time
        await quiesce(system, max_turns=max_turns)
        while True:
            deadline = self.next_deadline()
            if deadline is None:
                return self._now - start
            if deadline > limit:
                self.advance(limit - self._now)
                await quiesce(system, max_turns=max_turns)
                return self._now - start
            self.advance(deadline - self._now)
            await quiesce(system, max_turns=max_turns)


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class _ProbeActor(Actor):
    def __init__(self, inbox: asyncio.Queue[tuple[object, ActorRef | None]]) -> None:
        self._inbox = inbox

    def receive(self, message: object) -> None:
        self._inbox.put_nowait((message, self.ctx.sender))


class Probe:
    """An actor that records what it receives, for tests (like Akka's TestProbe).

    ``await probe.receive()`` returns the next message; ``probe.sender`` is
    the sender of the last one received. The ``timeout`` is a guard so that a
    broken test fails instead of hanging; it is real time, as it only bounds
    waiting for an event.
    """

    def __init__(self, system: ActorSystem, name: str | None = None) -> None:
        self._inbox: asyncio.Queue[tuple[object, ActorRef | None]] = asyncio.Queue()
        self.ref = system.spawn(lambda: _ProbeActor(self._inbox), name=name)
        self.sender: ActorRef | None = None

    async def receive(self, timeout: float = 5.0) -> object:
        """The next message received (waits for it)."""
        message, self.sender = await asyncio.wait_for(self._inbox.get(), timeout)
        return message

    async def expect(self, expected: object, timeout: float = 5.0) -> object:
        """Receive the next message and assert it equals ``expected``."""
        message = await self.receive(timeout)
        if message != expected:
            raise AssertionError(f"expected {expected!r}, received {message!r}")
        return message

    def pending(self) -> int:
        """Messages received and not yet taken with :meth:`receive`."""
        return self._inbox.qsize()


async def settle(rounds: int = 20) -> None:
    """Let the event loop run ``rounds`` turns.

    Prefer :func:`quiesce`, which waits exactly as long as the system has
    work instead of a guessed number of turns.
    """
    for _ in range(rounds):
        await asyncio.sleep(0)


class QuiesceError(AssertionError):
    """Raised by :func:`quiesce` when the system is still busy after its turn limit.

    Its message names what was still busy (actors, runnable tasks): usually an
    actor that keeps sending itself messages, or a task that never blocks.
    """


# Turns a system must look idle in a row on a loop whose ready queue cannot be
# inspected (uvloop): covers the runtime's own short call_soon chains (a stop
# reaching the parent), which are invisible from outside.
_STABLE_TURNS: Final = 3


async def quiesce(system: ActorSystem | None = None, *, max_turns: int = 10_000) -> None:
    """Return once ``system`` has nothing left to do before its next timer.

    Without a system, only the loop is checked: its tasks and callbacks (for
    code that runs no actors, e.g. a journal or a transport under test).

    Quiescent means: every mailbox is empty, no actor is scheduled, starting,
    stopping or restarting without waiting on a timer, every task on the loop
    (but the caller's) is blocked on something not yet done, and no callback
    is ready to run. Actors and tasks waiting on a timer (the system's clock,
    manual or real) count as idle: advancing the clock is the caller's move.
    Work on other threads or sockets is not waited for.

    On asyncio the loop's ready queue is checked directly; on other loops
    (uvloop) the system must look idle for a few consecutive turns. Raises
    :class:`QuiesceError` if it is not quiescent after ``max_turns`` loop
    turns (a busy system fails the test instead of hanging it).
    """
    loop = asyncio.get_running_loop()
    ready = getattr(loop, "_ready", None)  # asyncio's ready queue; uvloop has none
    me = asyncio.current_task()
    counters = _counters(system)
    stable = 0
    for _ in range(max_turns):
        await asyncio.sleep(0)
        now = _counters(system)
        if now != counters or _first_busy(system, me) is not None:
            counters = now
            stable = 0
            continue
        if ready is not None:
            if not ready:
                return
            continue
        stable += 1
        if stable >= _STABLE_TURNS:
            return
    what = _first_busy(system, me) or "callbacks keep being scheduled"
    where = repr(system) if system is not None else "the loop"
    raise QuiesceError(f"{where} still busy after {max_turns} loop turns: {what}")


def _counters(system: ActorSystem | None) -> tuple[int, ...]:
    if system is None:
        return ()
    return system._processed, system._spawned, system._stopped, system._dead_letters


def _first_busy(system: ActorSystem | None, me: asyncio.Task[object] | None) -> str | None:
    """A description of something that still has work to do, or ``None``."""
    for cell in _cells(system) if system is not None else ():
        busy = _cell_busy(cell)
        if busy is not None:
            return f"{cell._path()} {busy}"
    for task in asyncio.all_tasks():
        if task is not me and _runnable(task):
            return f"task {task.get_name()} ({task.get_coro()!r}) is ready to run"
    return None


def _cell_busy(cell: Context) -> str | None:
    """What ``cell`` is about to do without waiting for a timer, or ``None``."""
    state = cell._state
    x = cell._x
    task = x.task if x is not None else None
    if state == lc.RUNNING:
        if cell._has_mail():
            return f"has {cell._queued()} message(s) queued"
        return "is scheduled to run" if cell._scheduled else None
    if state == lc.BUSY:  # an async handler or hook in flight: busy unless it is blocked
        return "is running an async handler" if task is None or _runnable(task) else None
    if state == lc.NEW:
        return "is about to start"
    if state == lc.STOPPED:
        return None
    # SUSPENDED (restarting) or STOPPING: idle while waiting for a backoff timer,
    # children, or a task; otherwise a runtime callback is about to move it on.
    sup = x.supervision if x is not None else None
    if task is not None:
        return "is running its stopped() hook" if _runnable(task) else None
    if x is not None and x.children:
        # Children are stopped one level per turn: a child not yet stopping has its
        # stop request pending (invisible on a loop whose queue cannot be read).
        if any(child._state < lc.STOPPING for child in x.children.values()):
            return "is stopping its children"
        return None
    if sup is not None and sup.draining is not None:
        return None
    if state == lc.SUSPENDED and sup is not None and sup.handle is not None:
        return None
    return "is restarting" if state == lc.SUSPENDED else "is stopping"


def _runnable(task: asyncio.Task[object]) -> bool:
    """Whether ``task`` will run without a timer or I/O: not blocked on a pending future."""
    if task.done():
        return False
    waiter = getattr(task, "_fut_waiter", None)
    return waiter is None or waiter.done()


def _cells(system: ActorSystem) -> Iterator[Context]:
    stack = [system._user, system._system]
    while stack:
        cell = stack.pop()
        yield cell
        children = lc.children_of(cell)
        if children:
            stack.extend(children.values())
