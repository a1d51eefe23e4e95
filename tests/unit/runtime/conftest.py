"""Fixtures of the runtime suite: a manual clock and a system driven by it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from shoal.runtime import ActorSystem, Settings
from shoal.runtime.testing import ManualClock


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
async def system(clock: ManualClock) -> AsyncIterator[ActorSystem]:
    async with ActorSystem("test", Settings.testing(clock=clock)) as sys:
        yield sys
