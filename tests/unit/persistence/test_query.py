"""Queries by persistence id over a journal: current, live, ranges and bad input."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from shoal.persistence import JournalQueries, MemoryJournal, PersistentRepr
from shoal.runtime.testing import ManualClock, settle


def ev(pid: str, seq: int) -> PersistentRepr:
    return PersistentRepr(pid, seq, 1, "", f"{pid}-{seq}".encode())


async def write(journal: MemoryJournal, pid: str, first: int, last: int) -> None:
    await journal.write([ev(pid, n) for n in range(first, last + 1)])


async def collect(events: AsyncIterator[PersistentRepr]) -> list[int]:
    return [e.sequence_nr async for e in events]


async def test_current_query_yields_the_stored_range_then_ends() -> None:
    journal = MemoryJournal(replay_chunk_size=2)
    await write(journal, "a", 1, 5)
    await write(journal, "b", 1, 2)
    queries = JournalQueries(journal, clock=ManualClock())
    assert await collect(queries.current_events_by_persistence_id("a")) == [1, 2, 3, 4, 5]
    assert await collect(queries.current_events_by_persistence_id("a", 2, 4)) == [2, 3, 4]
    assert await collect(queries.current_events_by_persistence_id("a", 6)) == []
    assert await collect(queries.current_events_by_persistence_id("unknown")) == []


async def test_current_query_skips_deleted_events() -> None:
    journal = MemoryJournal()
    await write(journal, "a", 1, 4)
    await journal.delete_to("a", 2)
    queries = JournalQueries(journal, clock=ManualClock())
    assert await collect(queries.current_events_by_persistence_id("a")) == [3, 4]


async def test_live_query_sees_writes_made_after_it_started_exactly_once() -> None:
    journal = MemoryJournal(replay_chunk_size=3)
    clock = ManualClock()
    await write(journal, "a", 1, 2)
    queries = JournalQueries(journal, poll_interval=0.5, clock=clock)
    seen: list[int] = []

    async def follow() -> None:
        async for event in queries.events_by_persistence_id("a", to_sequence_nr=9):
            seen.append(event.sequence_nr)  # noqa: PERF401 (seen grows as events arrive)

    task = asyncio.create_task(follow())
    await settle()
    assert seen == [1, 2]
    await write(journal, "a", 3, 4)
    await settle()
    assert seen == [1, 2, 3, 4]  # woken by the write through the same journal: no poll needed
    clock.advance(0.5)  # a poll that finds nothing new yields nothing twice
    await settle()
    assert seen == [1, 2, 3, 4]
    await write(journal, "a", 5, 9)
    clock.advance(0.5)
    await settle()
    assert seen == list(range(1, 10))
    await asyncio.wait_for(task, 1)  # ended at to_sequence_nr


async def test_live_query_ends_when_the_end_is_deleted() -> None:
    journal = MemoryJournal()
    await write(journal, "a", 1, 3)
    await journal.delete_to("a", 3)
    queries = JournalQueries(journal, clock=ManualClock())
    assert await collect(queries.events_by_persistence_id("a", 1, 2)) == []


async def test_cancelling_a_waiting_live_query_ends_it() -> None:
    journal = MemoryJournal()
    clock = ManualClock()
    await write(journal, "a", 1, 1)
    queries = JournalQueries(journal, clock=clock)
    live = queries.events_by_persistence_id("a")
    assert (await anext(live)).sequence_nr == 1
    task = asyncio.create_task(anext(live))
    await settle()
    assert clock.pending == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    with pytest.raises(StopAsyncIteration):
        await anext(live)


@pytest.mark.parametrize(
    ("args", "error", "text"),
    [
        (("",), ValueError, "must not be empty"),
        ((3,), ValueError, "is a str"),
        (("a", -1), ValueError, "from_sequence_nr must be between"),
        (("a", 1, 2**63), ValueError, "to_sequence_nr must be between"),
        (("a", "1"), TypeError, "from_sequence_nr is an int"),
        (("a", True), TypeError, "from_sequence_nr is an int"),
    ],
)
def test_bad_arguments_fail_at_the_call(args: tuple[object, ...], error: type, text: str) -> None:
    queries = JournalQueries(MemoryJournal(), clock=ManualClock())
    with pytest.raises(error, match=text):
        queries.current_events_by_persistence_id(*args)  # type: ignore[arg-type]
    with pytest.raises(error, match=text):
        queries.events_by_persistence_id(*args)  # type: ignore[arg-type]


@pytest.mark.parametrize("interval", [0, -1, float("nan"), float("inf"), True, "1"])
def test_a_bad_poll_interval_is_refused(interval: object) -> None:
    with pytest.raises(ValueError, match="poll_interval"):
        JournalQueries(MemoryJournal(), poll_interval=interval)  # type: ignore[arg-type]


def test_a_journal_is_required() -> None:
    with pytest.raises(TypeError, match="need a Journal"):
        JournalQueries(object())  # type: ignore[arg-type]
