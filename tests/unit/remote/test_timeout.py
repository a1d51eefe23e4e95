"""Timeouts on the system clock: a manual clock decides when they fire."""

from __future__ import annotations

import asyncio

import pytest

from shoal.remote._timeout import with_timeout
from shoal.runtime.testing import ManualClock, quiesce


async def test_a_timeout_fires_when_the_clock_says_so() -> None:
    clock = ManualClock()
    never: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    task = asyncio.ensure_future(with_timeout(clock, never, 5.0))
    await quiesce()
    clock.advance(4.9)
    await quiesce()
    assert not task.done()
    clock.advance(0.1)
    with pytest.raises(TimeoutError):
        await task


async def test_a_result_in_time_cancels_the_timer() -> None:
    clock = ManualClock()
    done: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    done.set_result(7)
    assert await with_timeout(clock, done, 1.0) == 7
    assert clock.pending == 0


async def test_an_outside_cancellation_is_not_turned_into_a_timeout() -> None:
    clock = ManualClock()
    never: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    task = asyncio.ensure_future(with_timeout(clock, never, 5.0))
    await quiesce()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
