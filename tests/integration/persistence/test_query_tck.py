"""The query compliance suite: ``JournalQueries`` over every plugin.

Live queries run on a manual clock: a test advances it only while the query
waits for its next poll, so each poll is one step of the test.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Generic, TypeVar

import pytest

from shoal.persistence import (
    EventEnvelope,
    Journal,
    JournalQueries,
    Offset,
    PersistentRepr,
    Projection,
    SequenceConflictError,
)
from shoal.runtime.testing import ManualClock

from .conftest import JournalKit

_T = TypeVar("_T")

INTERVAL = 0.25


def ev(pid: str, seq: int) -> PersistentRepr:
    return PersistentRepr(pid, seq, 4, "tck:Event", f"event-{seq}".encode(), "writer-1", seq)


async def write(journal: Journal, pid: str, first: int, last: int) -> None:
    await journal.write([ev(pid, n) for n in range(first, last + 1)])


async def seqs(events: AsyncIterator[PersistentRepr]) -> list[int]:
    return [e.sequence_nr async for e in events]


class Follower(Generic[_T]):
    """Steps a live query on a manual clock, keeping its pending read across steps."""

    def __init__(self, live: AsyncIterator[_T], clock: ManualClock) -> None:
        self.live = live
        self.clock = clock
        self.task: asyncio.Future[_T] | None = None

    async def _run(self, polls: int) -> bool:
        """Whether the next element arrived within ``polls`` polls."""
        if self.task is None:
            self.task = asyncio.ensure_future(anext(self.live))
        task = self.task
        while not task.done():
            if self.clock.pending:
                if polls == 0:
                    return False
                polls -= 1
                self.clock.advance(INTERVAL)
            else:  # the query is reading the journal: wait for it, not for time
                await asyncio.wait({task}, timeout=0.01)
        return True

    async def next(self, polls: int = 5) -> _T:
        """The next element, advancing the clock at most ``polls`` times."""
        assert await self._run(polls), "no element after the polls allowed"
        assert self.task is not None
        task, self.task = self.task, None
        return task.result()

    async def idle(self, polls: int) -> None:
        """Assert that ``polls`` polls find nothing (the query keeps waiting)."""
        assert not await self._run(polls), "an element arrived"

    async def close(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
                await self.task


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


async def test_current_events_by_id(journal: Journal, pid: str, clock: ManualClock) -> None:
    await write(journal, pid, 1, 3)
    await write(journal, pid, 4, 7)
    q = JournalQueries(journal, clock=clock)
    assert await seqs(q.current_events_by_persistence_id(pid)) == list(range(1, 8))
    assert await seqs(q.current_events_by_persistence_id(pid, 3, 5)) == [3, 4, 5]
    assert await seqs(q.current_events_by_persistence_id(pid, 8)) == []
    assert await seqs(q.current_events_by_persistence_id(pid + "-none")) == []
    await journal.delete_to(pid, 2)
    assert await seqs(q.current_events_by_persistence_id(pid)) == list(range(3, 8))


async def test_current_events_across_chunks(journal_kit: JournalKit, pid: str) -> None:
    journal = journal_kit.open(chunk_size=3)
    await write(journal, pid, 1, 10)
    q = JournalQueries(journal, clock=ManualClock())
    assert await seqs(q.current_events_by_persistence_id(pid, 2)) == list(range(2, 11))


async def test_live_events_see_later_writes_once(
    journal: Journal, pid: str, clock: ManualClock
) -> None:
    await write(journal, pid, 1, 2)
    q = JournalQueries(journal, poll_interval=INTERVAL, clock=clock)
    live = Follower(q.events_by_persistence_id(pid, 2, 6), clock)
    assert (await live.next()).sequence_nr == 2
    await write(journal, pid, 3, 4)  # written after the query started
    assert (await live.next()).sequence_nr == 3
    assert (await live.next()).sequence_nr == 4
    await live.idle(polls=2)  # nothing new: nothing twice
    await write(journal, pid, 5, 7)
    assert [(await live.next()).sequence_nr for _ in range(2)] == [5, 6]
    with pytest.raises(StopAsyncIteration):  # ends at to_sequence_nr
        await live.next()


async def test_live_events_of_an_unwritten_id(
    journal: Journal, pid: str, clock: ManualClock
) -> None:
    q = JournalQueries(journal, poll_interval=INTERVAL, clock=clock)
    live = Follower(q.events_by_persistence_id(pid), clock)
    await live.idle(polls=1)
    await write(journal, pid, 1, 1)
    assert (await live.next()).sequence_nr == 1
    await live.close()


async def test_current_and_live_persistence_ids(
    journal_kit: JournalKit, pid: str, clock: ManualClock
) -> None:
    journal = journal_kit.open()
    ids = [f"{pid}-{n}" for n in (3, 1, 2)]
    for p in ids:
        await write(journal, p, 1, 2)
    await journal.highest_sequence_nr(f"{pid}-0", 5)  # a deletion marker alone holds an id
    q = JournalQueries(journal, poll_interval=INTERVAL, clock=clock)
    expected = sorted([*ids, f"{pid}-0"])
    assert ours(pid, [p async for p in q.current_persistence_ids(page_size=2)]) == expected
    assert await journal.persistence_ids(expected[1], 2) == expected[2:]
    live = Follower(Ours(pid, q.persistence_ids(page_size=2)), clock)
    assert [await live.next() for _ in expected] == expected
    await write(journal, f"{pid}-00", 1, 1)  # sorts before ids already yielded
    await write(journal, pid, 1, 1)  # sorts before all
    await write(journal, f"{pid}-1", 3, 3)  # an id already yielded
    assert {await live.next(), await live.next()} == {pid, f"{pid}-00"}
    await live.idle(polls=2)
    await live.close()


@pytest.mark.parametrize(
    ("after", "limit", "error"),
    [(3, 10, TypeError), ("", 0, ValueError), ("", True, TypeError)],
)
async def test_bad_id_pages_are_refused(
    journal_kit: JournalKit, after: object, limit: object, error: type
) -> None:
    journal = journal_kit.open()
    with pytest.raises(error):
        await journal.persistence_ids(after, limit)  # type: ignore[arg-type]
    if isinstance(after, str):  # queries take a page size, not a start
        q = JournalQueries(journal, clock=ManualClock())
        with pytest.raises(error):
            q.current_persistence_ids(page_size=limit)  # type: ignore[arg-type]
    if journal_kit.kind != "cassandra":  # its keyspace is shared by the whole session
        assert await journal.persistence_ids() == []


def ours(pid: str, ids: list[str]) -> list[str]:
    """The ids of this test (Cassandra's keyspace holds every test's)."""
    return [p for p in ids if p.startswith(pid)]


class Ours:
    """A live id query, keeping only this test's ids."""

    def __init__(self, pid: str, ids: AsyncIterator[str]) -> None:
        self.pid = pid
        self.ids = ids

    def __aiter__(self) -> Ours:
        return self

    async def __anext__(self) -> str:
        while True:
            found = await anext(self.ids)
            if found.startswith(self.pid):
                return found


def tagged(pid: str, seq: int, *tags: str) -> PersistentRepr:
    return PersistentRepr(pid, seq, 4, "tck:Event", f"{pid}-{seq}".encode(), "w", seq, tags)


async def test_current_events_by_tag_resume_exactly(
    journal_kit: JournalKit, pid: str, clock: ManualClock
) -> None:
    journal = journal_kit.open()
    a, b = f"{pid}-a", f"{pid}-b"
    await journal.write(
        [tagged(a, 1, f"{pid}:red"), tagged(a, 2), tagged(a, 3, f"{pid}:red", f"{pid}:blue")]
    )
    await journal.write([tagged(b, 1, f"{pid}:blue"), tagged(b, 2, f"{pid}:red")])
    await journal.write([tagged(a, 4, f"{pid}:red")])
    q = JournalQueries(journal, clock=clock)
    red = [e async for e in q.current_events_by_tag(f"{pid}:red", page_size=2)]
    assert [(e.event.persistence_id, e.event.sequence_nr) for e in red] == [
        (a, 1), (a, 3), (b, 2), (a, 4)
    ]  # fmt: skip
    assert red[0].event.payload == f"{a}-1".encode()
    assert all(e.event.tags == (f"{pid}:red",) for e in red)
    assert [e.offset for e in red] == sorted(e.offset for e in red)
    for i, envelope in enumerate(red):  # resuming after each offset yields exactly the rest
        rest = [e async for e in q.current_events_by_tag(f"{pid}:red", envelope.offset)]
        assert rest == red[i + 1 :]
    assert [e.event.sequence_nr async for e in q.current_events_by_tag(f"{pid}:blue")] == [3, 1]
    assert [e async for e in q.current_events_by_tag(f"{pid}:unknown-tag")] == []
    await journal.delete_to(a, 3)
    left = [e async for e in q.current_events_by_tag(f"{pid}:red")]
    assert [(e.event.persistence_id, e.event.sequence_nr) for e in left] == [(b, 2), (a, 4)]
    if journal_kit.durable:  # a second instance reads the same tags and offsets
        other = JournalQueries(journal_kit.open(), clock=clock)
        assert [e async for e in other.current_events_by_tag(f"{pid}:red")] == left


async def test_live_events_by_tag_see_later_writes_once(
    journal_kit: JournalKit, pid: str, clock: ManualClock
) -> None:
    journal = journal_kit.open()
    await journal.write([tagged(pid, 1, f"{pid}:t"), tagged(pid, 2)])
    q = JournalQueries(journal, poll_interval=INTERVAL, clock=clock)
    live = Follower(q.events_by_tag(f"{pid}:t", page_size=2), clock)
    first = await live.next()
    assert first.event.sequence_nr == 1
    await live.idle(polls=2)
    await journal.write(
        [tagged(pid, 3, f"{pid}:t"), tagged(pid, 4, f"{pid}:t"), tagged(pid, 5, f"{pid}:t")]
    )
    got = [await live.next() for _ in range(3)]
    assert [e.event.sequence_nr for e in got] == [3, 4, 5]
    await live.idle(polls=2)
    await live.close()
    # A restarted query resumes after the last offset handled, exactly.
    resumed = Follower(q.events_by_tag(f"{pid}:t", got[0].offset), clock)
    assert [(await resumed.next()).event.sequence_nr for _ in range(2)] == [4, 5]
    await resumed.idle(polls=1)
    await resumed.close()


async def test_bad_tags_and_offsets_are_refused(journal_kit: JournalKit, pid: str) -> None:
    journal = journal_kit.open()
    q = JournalQueries(journal, clock=ManualClock())
    with pytest.raises(ValueError, match="must not be empty"):
        q.current_events_by_tag("")
    with pytest.raises(TypeError, match="a tag is a str"):
        q.events_by_tag(3)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="starts after an Offset"):
        q.current_events_by_tag(f"{pid}:t", 5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="never negative"):
        Offset(-1)
    with pytest.raises(TypeError, match="holds an int"):
        Offset("1")  # type: ignore[arg-type]
    for bad in [("",), ("a", "a"), ("\ud800",)]:
        with pytest.raises(ValueError, match="tag"):
            await journal.write([tagged(pid, 1, *bad)])
    with pytest.raises(TypeError, match="a tag is a str"):
        await journal.write([tagged(pid, 1, 3)])  # type: ignore[arg-type]
    await journal.write([tagged(pid, 1, f"{pid}:ok")])  # the journal keeps working
    assert [e.event.sequence_nr async for e in q.current_events_by_tag(f"{pid}:ok")] == [1]


async def test_a_projection_resumes_after_its_stored_offset(
    journal_kit: JournalKit, pid: str
) -> None:
    journal = journal_kit.open()
    await journal.write([tagged(pid, n, f"{pid}:p") for n in range(1, 6)])
    q = JournalQueries(journal, clock=ManualClock())
    seen: list[int] = []

    async def handle(envelope: EventEnvelope) -> None:
        if envelope.event.sequence_nr == 4 and 4 not in seen:
            seen.append(4)
            raise RuntimeError("handler failed")
        seen.append(envelope.event.sequence_nr)

    projection = Projection(journal, f"proj-{pid}", save_every=2)
    with pytest.raises(RuntimeError, match="handler failed"):
        await projection.run(lambda offset: q.current_events_by_tag(f"{pid}:p", offset), handle)
    assert seen == [1, 2, 3, 4]  # stored after 2; 3 was handled but its offset not stored
    again = journal_kit.open() if journal_kit.durable else journal
    q2 = JournalQueries(again, clock=ManualClock())
    restarted = Projection(again, f"proj-{pid}", save_every=2)
    await restarted.run(lambda offset: q2.current_events_by_tag(f"{pid}:p", offset), handle)
    assert seen == [1, 2, 3, 4, 3, 4, 5]  # at least once: 3 and 4 again, from the offset
    stored = await restarted.load_offset()
    assert stored is not None
    assert [e async for e in q2.current_events_by_tag(f"{pid}:p", stored)] == []
    assert len(await again.events(restarted.persistence_id)) == 1  # older offsets deleted


async def test_bad_projection_arguments(journal: Journal) -> None:
    with pytest.raises(ValueError, match="save_every"):
        Projection(journal, "x", save_every=0)
    with pytest.raises(ValueError, match="empty"):
        Projection(journal, "")
    with pytest.raises(TypeError, match="takes an Offset"):
        await Projection(journal, "x").save_offset(3)  # type: ignore[arg-type]


async def test_tags_of_a_refused_write_are_not_stored(journal_kit: JournalKit, pid: str) -> None:
    journal = journal_kit.open()
    await journal.write([tagged(pid, 1, f"{pid}:g")])
    ids = [f"{pid}-{i}" for i in range(5)]
    outcomes = await asyncio.gather(  # one group commit, with one write fenced out
        *(journal.write([tagged(p, 1, f"{pid}:g"), tagged(p, 2, f"{pid}:g")]) for p in ids),
        journal.write([tagged(pid, 1, f"{pid}:g")]),
        return_exceptions=True,
    )
    assert outcomes[:5] == [None] * 5
    assert isinstance(outcomes[5], SequenceConflictError)
    q = JournalQueries(journal, clock=ManualClock())
    found = [
        (e.event.persistence_id, e.event.sequence_nr)
        async for e in q.current_events_by_tag(f"{pid}:g")
    ]
    assert sorted(found) == sorted([(pid, 1)] + [(p, n) for p in ids for n in (1, 2)])
    per_id = {p: [n for other, n in found if other == p] for p in ids}
    assert all(ns == [1, 2] for ns in per_id.values())  # each id's events in sequence order


async def test_live_queries_wake_on_a_write_through_the_same_journal(
    journal: Journal, pid: str, clock: ManualClock
) -> None:
    tag = f"{pid}:woken"
    q = JournalQueries(journal, poll_interval=3600.0, clock=clock)  # never polls again here
    queries: list[AsyncIterator[object]] = [
        q.events_by_persistence_id(pid),
        q.events_by_tag(tag),
        Ours(pid, q.persistence_ids()),
    ]
    nexts = [asyncio.ensure_future(anext(query)) for query in queries]
    try:
        while clock.pending < len(nexts):  # each has read nothing and waits for its poll
            await asyncio.wait(nexts, timeout=0.01)
            assert not any(n.done() for n in nexts)
        await journal.write([tagged(pid, 1, tag)])
        by_id, by_tag, new_id = await asyncio.wait_for(asyncio.gather(*nexts), 30)
        assert isinstance(by_id, PersistentRepr)
        assert by_id.sequence_nr == 1
        assert isinstance(by_tag, EventEnvelope)
        assert by_tag.event.sequence_nr == 1
        assert new_id == pid
        assert clock.now() == 0  # woken by the write, not by a poll
    finally:
        for n in nexts:
            n.cancel()
        for query in queries:
            close = getattr(query, "aclose", None)
            if close is not None:
                await close()


async def test_an_offset_beyond_the_end_is_a_clear_error(
    journal: Journal, pid: str, clock: ManualClock
) -> None:
    tag = f"{pid}:end"
    await journal.write([tagged(pid, 1, tag)])
    q = JournalQueries(journal, poll_interval=INTERVAL, clock=clock)
    [envelope] = [e async for e in q.current_events_by_tag(tag)]
    assert [e async for e in q.current_events_by_tag(tag, envelope.offset)] == []  # the end
    for query in (q.current_events_by_tag, q.events_by_tag):
        with pytest.raises(ValueError, match="beyond the end"):
            await anext(query(tag, Offset(2**62)))
    await journal.write([tagged(pid, 2, tag)])  # the journal goes on
    assert [e.event.sequence_nr async for e in q.current_events_by_tag(tag)] == [1, 2]
