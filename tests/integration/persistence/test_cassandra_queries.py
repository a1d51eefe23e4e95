"""What only Cassandra's tag queries do: hour buckets, the tag delay, late acknowledgements.

The journal's wall clock is injected, so the tests choose the orderings.
"""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import pytest
from cassandra import OperationTimedOut

from shoal.persistence import (
    CassandraJournal,
    CassandraSettings,
    JournalQueries,
    JournalWriteError,
    Offset,
    PersistentRepr,
)
from shoal.persistence._cassandra_tags import BUCKET_US
from shoal.runtime.testing import ManualClock

pytestmark = pytest.mark.cassandra

HOUR = BUCKET_US / 1_000_000


class Wall:
    """A wall clock that moves only when told, or by ``step`` at every reading."""

    def __init__(self, now: float, step: float = 0.0) -> None:
        self.now = now
        self.step = step

    def __call__(self) -> float:
        now = self.now
        self.now += self.step
        return now


def tagged(pid: str, seq: int, tag: str) -> PersistentRepr:
    return PersistentRepr(pid, seq, 1, "", f"{pid}/{seq}".encode(), "w", seq, (tag,))


async def test_a_tag_query_walks_hour_buckets_and_resumes_across_them(
    cassandra_settings: CassandraSettings, pid: str
) -> None:
    wall = Wall(1_800_000_000.0)
    tag = f"{pid}:hours"
    async with CassandraJournal(cassandra_settings, wall_clock=wall) as journal:
        for seq in range(1, 7):  # two events an hour, then three empty hours
            await journal.write([tagged(pid, seq, tag)])
            wall.now += HOUR / 2 if seq % 2 else 4 * HOUR
        q = JournalQueries(journal, clock=ManualClock())
        found = [e async for e in q.current_events_by_tag(tag, page_size=4)]
        assert [e.event.sequence_nr for e in found] == [1, 2, 3, 4, 5, 6]
        assert len({e.offset.value >> 8 for e in found}) == 6
        for i, envelope in enumerate(found):
            rest = [
                e.event.sequence_nr async for e in q.current_events_by_tag(tag, envelope.offset)
            ]
            assert rest == list(range(i + 2, 7))
        with pytest.raises(ValueError, match="beyond the end"):
            await anext(q.current_events_by_tag(tag, Offset(2**62)))


async def test_tag_queries_read_only_events_older_than_the_delay(
    cassandra_settings: CassandraSettings, pid: str
) -> None:
    settings = dataclasses.replace(cassandra_settings, tag_delay_s=2.0)
    wall = Wall(1_800_000_000.0)
    tag = f"{pid}:delayed"
    async with CassandraJournal(settings, wall_clock=wall) as journal:
        await journal.write([tagged(pid, 1, tag)])
        q = JournalQueries(journal, clock=ManualClock())
        assert [e async for e in q.current_events_by_tag(tag)] == []  # too recent
        wall.now += 2.5
        assert [e.event.sequence_nr async for e in q.current_events_by_tag(tag)] == [1]


async def test_a_tagged_write_acknowledged_after_the_delay_is_not_acknowledged(
    cassandra_settings: CassandraSettings, pid: str
) -> None:
    settings = dataclasses.replace(cassandra_settings, tag_delay_s=1.0)
    wall = Wall(1_800_000_000.0, step=0.6)  # each reading 0.6 s later: in time
    tag = f"{pid}:late"
    async with CassandraJournal(settings, wall_clock=wall) as journal:
        await journal.write([tagged(pid, 1, tag)])
        wall.step = 5.0  # the acknowledgement comes 5 s after the ordering was taken
        with pytest.raises(JournalWriteError, match="tag_delay_s"):
            await journal.write([tagged(pid, 2, tag)])
        assert await journal.highest_sequence_nr(pid) == 2  # stored, as an unknown outcome
        wall.step = 0.0
        wall.now += 10
        found = [
            e.event.sequence_nr async for e in JournalQueries(journal).current_events_by_tag(tag)
        ]
        assert found == [1, 2]


def untagged(pid: str, seq: int, size: int) -> PersistentRepr:
    return PersistentRepr(pid, seq, 1, "", bytes(size), "w", seq)


async def test_a_new_id_is_listed_once_by_its_first_write_small_large_or_tagged(
    cassandra_settings: CassandraSettings, pid: str
) -> None:
    small, large, tagged_small = f"{pid}-small", f"{pid}-large", f"{pid}-tagged"
    async with CassandraJournal(cassandra_settings) as journal:
        await journal.write([untagged(small, 1, 100)])
        await journal.write([untagged(large, 1, 8 * 1024), untagged(large, 2, 8 * 1024)])
        await journal.write([tagged(tagged_small, 1, f"{pid}:t")])
        await journal.write([untagged(small, 2, 100)])  # not a first write
        ids = [i async for i in JournalQueries(journal).current_persistence_ids()]
        assert {small, large, tagged_small} <= set(ids)
        assert ids == sorted(set(ids))
        assert await journal.highest_sequence_nr(small) == 2
        replayed = [e for chunk in [c async for c in journal.replay(large, 1, 2)] for e in chunk]
        assert [e.payload for e in replayed] == [bytes(8 * 1024)] * 2


class _ListingFails:
    """The journal's write requests, except that the next ``count`` listings of ids fail."""

    def __init__(self, journal: CassandraJournal, count: int) -> None:
        assert journal._statements is not None
        assert journal._statements.tags is not None
        self.query_id = journal._statements.tags.insert_id.query_id
        self.send = journal._writes._send
        self.count = count
        self.listings = 0  # requests that list ids
        self.listed = 0  # ids they list
        journal._writes._send = self

    def __call__(self, statement: Any) -> asyncio.Future[list[Any]]:
        batched = getattr(statement, "_statements_and_parameters", None)
        if batched is None:
            prepared = getattr(statement, "prepared_statement", None)
            ids = int(prepared is not None and prepared.query_id == self.query_id)
        else:
            ids = sum(1 for _, query_id, _ in batched if query_id == self.query_id)
        if not ids:
            return self.send(statement)
        self.listings += 1
        self.listed += ids
        if self.listings > self.count:
            return self.send(statement)
        failed: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        failed.set_exception(OperationTimedOut("the listing timed out"))
        return failed


async def test_a_failed_listing_fails_the_write_and_the_ids_next_write_lists_it(
    cassandra_settings: CassandraSettings, pid: str
) -> None:
    async with CassandraJournal(cassandra_settings) as journal:
        await journal.start()
        fault = _ListingFails(journal, count=1)
        with pytest.raises(JournalWriteError, match="is stored, but listing the id"):
            await journal.write([untagged(pid, 1, 10)])
        assert await journal.highest_sequence_nr(pid) == 1  # the event is stored
        assert pid not in [i async for i in JournalQueries(journal).current_persistence_ids()]
        await journal.write([untagged(pid, 2, 10)])  # lists it, and is acknowledged
        await journal.write([untagged(pid, 3, 10)])  # listed: no request of its own
        assert fault.listings == 2
        assert pid in [i async for i in JournalQueries(journal).current_persistence_ids()]


async def test_each_journal_instance_lists_an_id_it_writes_once(
    cassandra_settings: CassandraSettings, pid: str
) -> None:
    # A second instance cannot tell whether the first one listed the id: it lists it again.
    for seq in (1, 3):
        async with CassandraJournal(cassandra_settings) as journal:
            await journal.start()
            fault = _ListingFails(journal, count=0)
            await journal.highest_sequence_nr(pid)  # as a recovery does
            await journal.write([untagged(pid, seq, 10)])
            await journal.write([untagged(pid, seq + 1, 10)])
            assert fault.listings == 1
    async with CassandraJournal(cassandra_settings) as journal:
        assert pid in [i async for i in JournalQueries(journal).current_persistence_ids()]
        assert await journal.highest_sequence_nr(pid) == 4


async def test_ids_first_written_in_one_loop_turn_are_listed_by_shared_requests(
    cassandra_settings: CassandraSettings, pid: str
) -> None:
    ids = [f"{pid}-{i:03}" for i in range(300)]
    async with CassandraJournal(cassandra_settings) as journal:
        await journal.start()
        await asyncio.gather(*(journal.highest_sequence_nr(i) for i in ids))  # recoveries
        fault = _ListingFails(journal, count=0)
        await asyncio.gather(*(journal.write([untagged(i, 1, 10)]) for i in ids))
        assert (fault.listings, fault.listed) == (2, 300)  # 256 ids a request at most
        listed = [i async for i in JournalQueries(journal).current_persistence_ids()]
        assert set(ids) <= set(listed)
