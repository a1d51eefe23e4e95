"""The Cassandra write path without a server: claims kept until outcomes are known."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from cassandra import InvalidRequest, OperationTimedOut

from shoal.persistence import CassandraSettings, EventRejectedError, JournalWriteError
from shoal.persistence._cassandra_writes import PendingWrite, WritePath
from shoal.runtime.testing import ManualClock, quiesce


class _Insert:
    def bind(self, row: tuple[Any, ...]) -> tuple[Any, ...]:
        return row


class _Statements:
    insert = _Insert()
    write_cl = 1


class _Server:
    """Answers each request when the test says so."""

    def __init__(self) -> None:
        self.requests: list[tuple[Any, asyncio.Future[list[Any]]]] = []

    def __call__(self, statement: Any) -> asyncio.Future[list[Any]]:
        fut: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        self.requests.append((statement, fut))
        return fut

    def answer(self, exc: BaseException | None = None) -> None:
        _, fut = self.requests.pop(0)
        if exc is None:
            fut.set_result([])
        else:
            fut.set_exception(exc)


def _settings(**changes: Any) -> CassandraSettings:
    return CassandraSettings(group_max_partitions=1, settle_timeout_s=10.0, **changes)


def _write(path: WritePath, pid: str, seq: int) -> PendingWrite:
    fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    row = (pid, 0, seq, "w", 0, 1, "", b"e")
    write = PendingWrite(pid, seq, seq, [row], 50, fut)
    path.enter()
    path.claim(pid, seq)
    path.enqueue(_Statements(), write)
    return write


async def test_an_unknown_outcome_is_sent_again_until_known_and_the_claim_stands() -> None:
    server, clock = _Server(), ManualClock()
    path = WritePath(_settings(), server, lambda: clock)
    write = _write(path, "p", 5)
    await quiesce()
    server.answer(OperationTimedOut("timed out"))
    with pytest.raises(JournalWriteError, match="may or may not be stored"):
        await write.fut
    waiting = asyncio.ensure_future(path.settled("p"))
    await quiesce()
    assert not waiting.done()  # the id's next writer waits
    clock.advance(0.1)
    server.answer(OperationTimedOut("again"))
    await quiesce()
    clock.advance(0.2)
    assert len(server.requests) == 1  # the same rows, a third time
    server.answer()
    await waiting
    assert path.highest["p"] == 5  # stored: the numbers stay taken
    await path.close()


async def test_a_write_never_settled_gives_its_claim_up_after_the_settle_timeout(
    caplog: pytest.LogCaptureFixture,
) -> None:
    server, clock = _Server(), ManualClock()
    path = WritePath(_settings(), server, lambda: clock)
    write = _write(path, "p", 5)
    await quiesce()
    server.answer(OperationTimedOut("timed out"))
    with pytest.raises(JournalWriteError):
        await write.fut
    with caplog.at_level(logging.WARNING, "shoal.persistence"):
        for _ in range(20):
            clock.advance(5.0)
            await quiesce()
            if server.requests:
                server.answer(OperationTimedOut("still"))
                await quiesce()
        await path.settled("p")
    assert "stays unknown" in caplog.text
    assert "p" not in path.highest  # the next write re-reads the stored highest
    await path.close()


async def test_a_cancelled_caller_leaves_the_claim_to_the_outcome() -> None:
    server, clock = _Server(), ManualClock()
    path = WritePath(_settings(), server, lambda: clock)
    write = _write(path, "p", 5)
    await quiesce()
    write.fut.cancel()  # what cancelling the awaiting task does
    path.orphan(write)
    waiting = asyncio.ensure_future(path.settled("p"))
    await quiesce()
    assert not waiting.done()
    assert path.highest["p"] == 5
    server.answer()
    await waiting
    assert path.highest["p"] == 5
    await path.close()


async def test_a_refused_write_is_rejected_and_frees_its_numbers() -> None:
    server, clock = _Server(), ManualClock()
    path = WritePath(_settings(), server, lambda: clock)
    write = _write(path, "p", 5)
    await quiesce()
    server.answer(InvalidRequest("Key length of 70000 is longer than maximum of 65535"))
    with pytest.raises(EventRejectedError, match="nothing stored"):
        await write.fut
    assert "p" not in path.highest
    await path.close()


async def test_close_gives_up_writes_waiting_to_be_sent_again() -> None:
    server, clock = _Server(), ManualClock()
    path = WritePath(_settings(), server, lambda: clock)
    write = _write(path, "p", 5)
    await quiesce()
    server.answer(OperationTimedOut("timed out"))
    with pytest.raises(JournalWriteError):
        await write.fut
    await path.close()  # does not wait for the backoff
    assert "p" not in path.highest
    assert not path.unsettled


async def test_close_waits_for_a_listing_in_flight() -> None:
    server, clock = _Server(), ManualClock()
    path = WritePath(_settings(), server, lambda: clock)
    listed = path.list_id(_Insert(), "p")
    await quiesce()
    assert len(server.requests) == 1
    closing = asyncio.ensure_future(path.close())
    await quiesce()
    assert not closing.done()  # the ids' writes are not acknowledged before it
    server.answer()
    await closing
    await listed
