"""Timeouts on the system's clock (so a test's manual clock decides when they fire)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from shoal.runtime import Clock

T = TypeVar("T")


async def with_timeout(clock: Clock, awaitable: Awaitable[T], timeout: float) -> T:
    """Await ``awaitable``; raise ``TimeoutError`` once ``timeout`` passed on ``clock``.

    Like ``asyncio.timeout``, it cancels the current task when time is up and
    turns only that cancellation into ``TimeoutError``: a cancellation from
    anyone else propagates untouched.
    """
    task = asyncio.current_task()
    if task is None:
        raise RuntimeError("with_timeout() must run in a task")
    fired = False

    def expire() -> None:
        nonlocal fired
        fired = True
        task.cancel()

    handle = clock.call_later(timeout, expire)
    try:
        return await awaitable
    except asyncio.CancelledError:
        if fired and task.uncancel() == 0:
            raise TimeoutError(f"timed out after {timeout} s") from None
        raise
    finally:
        handle.cancel()
