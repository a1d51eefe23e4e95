"""Test helpers: a manual clock that tests advance instead of sleeping.

Example::

    clock = ManualClock()
    async with ActorSystem("t", Settings.testing(clock=clock)) as system:
        ref = system.spawn(Ticker)
        clock.advance(1.0)          # fires every timer due within that second
        assert await ref.ask(Count()) == 1
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Callable
from typing import TYPE_CHECKING

from ._actor import Actor

if TYPE_CHECKING:
    from ._ref import ActorRef
    from ._system import ActorSystem

__all__ = ["ManualClock", "Probe", "settle"]


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
        for deadline, _, timer in sorted(self._heap):
            if not timer.cancelled:
                return deadline
        return None


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
    """Let the event loop run ``rounds`` turns, so local message chains complete.

    Deterministic for local actors: every message an actor sends is handled
    within a bounded number of turns. Use it before asserting that something
    did *not* happen.
    """
    for _ in range(rounds):
        await asyncio.sleep(0)
