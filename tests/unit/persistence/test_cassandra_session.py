"""CassandraSession's asyncio bridge against a fake driver: completion, backpressure, resends."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from cassandra.cluster import NoHostAvailable
from cassandra.connection import ConnectionBusy

from shoal.persistence import CassandraSession, CassandraSettings
from shoal.persistence._cassandra_session import Once, _unsent_busy
from shoal.runtime.testing import quiesce


class FakeResponse:
    """A driver ResponseFuture whose outcome the test decides (now or later)."""

    def __init__(self, busy: bool = False) -> None:
        self.callbacks: tuple[Any, Any, tuple[Any, ...], tuple[Any, ...]] | None = None
        self.busy = busy

    def add_callbacks(
        self, callback: Any, errback: Any, callback_args: Any = (), errback_args: Any = ()
    ) -> None:
        self.callbacks = (callback, errback, callback_args, errback_args)
        if self.busy:  # refused at once, like a connection whose socket buffer is full
            self.fail(busy())

    def succeed(self, rows: list[Any]) -> None:
        assert self.callbacks is not None
        callback, _, args, _ = self.callbacks
        callback(rows, *args)

    def fail(self, exc: BaseException) -> None:
        assert self.callbacks is not None
        _, errback, _, args = self.callbacks
        errback(exc, *args)


class FakeDriver:
    def __init__(self, always_busy: bool = False) -> None:
        self.sent: list[tuple[Any, FakeResponse]] = []
        self.always_busy = always_busy
        self.new_send = asyncio.Event()

    def execute_async(self, statement: Any, params: Any) -> FakeResponse:
        response = FakeResponse(self.always_busy)
        self.sent.append((statement, response))
        self.new_send.set()
        return response

    async def sends(self, count: int) -> None:
        while len(self.sent) < count:
            self.new_send.clear()
            await self.new_send.wait()


def busy() -> NoHostAvailable:
    return NoHostAvailable("busy", {"host": ConnectionBusy("overloaded")})


def session_with(driver: FakeDriver, **settings: Any) -> CassandraSession:
    session = CassandraSession(CassandraSettings(**settings))
    session._session = driver
    session._loop = asyncio.get_running_loop()
    return session


async def turns() -> None:
    await quiesce()  # the driver's callbacks have run (no wall-clock time)


async def test_results_and_errors_reach_the_loop() -> None:
    driver = FakeDriver()
    session = session_with(driver)
    ok, bad = session.execute("a"), session.execute("b")
    driver.sent[0][1].succeed([(1,)])
    driver.sent[1][1].fail(ValueError("no"))
    assert await ok == [(1,)]
    with pytest.raises(ValueError, match="no"):
        await bad


async def test_requests_beyond_the_cap_wait_in_order() -> None:
    driver = FakeDriver()
    session = session_with(driver, max_in_flight=2)
    futures = [session.execute(i) for i in range(5)]
    assert [s for s, _ in driver.sent] == [0, 1]
    driver.sent[0][1].succeed([])
    await turns()
    assert [s for s, _ in driver.sent] == [0, 1, 2]
    for _, response in driver.sent[1:]:
        response.succeed([])
    await turns()
    assert [s for s, _ in driver.sent] == [0, 1, 2, 3, 4]
    for _, response in driver.sent[3:]:
        response.succeed([])
    assert await asyncio.gather(*futures) == [[]] * 5


async def test_a_request_refused_unsent_is_sent_again() -> None:
    driver = FakeDriver()
    session = session_with(driver)
    fut = session.execute("stmt")
    driver.sent[0][1].fail(busy())
    await driver.sends(2)  # resent after a short backoff
    driver.sent[1][1].succeed([("row",)])
    assert await fut == [("row",)]


async def test_resending_gives_up_after_the_request_timeout() -> None:
    driver = FakeDriver(always_busy=True)
    session = session_with(driver, request_timeout_s=0.004)
    with pytest.raises(NoHostAvailable):
        await session.execute("stmt")
    assert len(driver.sent) == 3  # sent, then resent after 1 ms and 2 ms (4 ms would exceed)


@pytest.mark.parametrize(
    ("exc", "unsent"),
    [
        (ConnectionBusy("x"), True),
        (NoHostAvailable("x", {"h": ConnectionBusy("x")}), True),
        (NoHostAvailable("x", {"h": ConnectionBusy("x"), "g": OSError("x")}), False),
        (NoHostAvailable("x", {}), False),
        (OSError("x"), False),
    ],
)
def test_unsent_busy(exc: BaseException, unsent: bool) -> None:
    assert _unsent_busy(exc) is unsent


async def test_once_shares_one_attempt_and_retries_failures() -> None:
    once: Once[int] = Once()
    calls = 0
    gate = asyncio.Event()

    async def make() -> int:
        nonlocal calls
        calls += 1
        await gate.wait()
        if calls == 1:
            raise OSError("first attempt fails")
        return calls

    first = asyncio.gather(once.get(make), once.get(make), return_exceptions=True)
    await turns()
    gate.set()
    outcomes = await first
    assert all(isinstance(o, OSError) for o in outcomes)
    assert calls == 1
    assert await once.get(make) == 2
    assert await once.get(make) == 2
