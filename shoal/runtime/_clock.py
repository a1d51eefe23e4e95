"""Time as an injected dependency.

Every timer, timeout and "now" in Shoal goes through a :class:`Clock`. The
default, :class:`LoopClock`, reads the event loop's monotonic time; tests use
:class:`shoal.runtime.testing.ManualClock` and advance it explicitly.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Protocol


class Cancellable(Protocol):
    """A scheduled callback that can be cancelled (idempotent)."""

    def cancel(self) -> None: ...


class Clock(Protocol):
    """A monotonic clock that can run callbacks later.

    Contract: ``now()`` never goes backwards and is in seconds. ``call_later``
    runs ``callback(*args)`` on the event loop's thread once ``now()`` has
    reached the deadline; callbacks due at the same time run in the order they
    were scheduled. Callbacks must not block; they may schedule more.
    """

    def now(self) -> float: ...

    def call_later(
        self, delay: float, callback: Callable[..., object], *args: object
    ) -> Cancellable: ...

    async def sleep(self, delay: float) -> None: ...


class LoopClock:
    """The production clock: the running event loop's ``time()`` and timers."""

    __slots__ = ("_loop",)

    def __init__(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self._loop = loop if loop is not None else asyncio.get_running_loop()

    def now(self) -> float:
        return self._loop.time()

    def call_later(
        self, delay: float, callback: Callable[..., object], *args: object
    ) -> Cancellable:
        return self._loop.call_later(max(delay, 0.0), callback, *args)

    async def sleep(self, delay: float) -> None:
        await asyncio.sleep(delay)
