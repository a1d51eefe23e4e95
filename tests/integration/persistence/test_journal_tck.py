"""The journal compliance suite: every plugin keeps the promises of ``Journal``'s docstrings."""

from __future__ import annotations

import asyncio

import pytest

from shoal.persistence import (
    Journal,
    PersistentRepr,
    PluginClosedError,
    SequenceConflictError,
)
from shoal.runtime.testing import quiesce

from .conftest import JournalKit


def ev(pid: str, seq: int, payload: bytes | None = None) -> PersistentRepr:
    return PersistentRepr(
        pid,
        seq,
        4,
        "tck:Event",
        payload if payload is not None else f"event-{seq}".encode(),
        "writer-1",
        1_700_000_000_000 + seq,
    )


def evs(pid: str, first: int, last: int) -> list[PersistentRepr]:
    return [ev(pid, n) for n in range(first, last + 1)]


async def write_each(journal: Journal, pid: str, first: int, last: int) -> None:
    for n in range(first, last + 1):
        await journal.write([ev(pid, n)])


async def seqs(journal: Journal, pid: str, *args: int) -> list[int]:
    return [e.sequence_nr for e in await journal.events(pid, *args)]


async def test_unknown_id_is_empty(journal: Journal, pid: str) -> None:
    assert await journal.highest_sequence_nr(pid) == 0
    assert await journal.events(pid) == []


async def test_replay_returns_what_was_written(journal: Journal, pid: str) -> None:
    written = [ev(pid, 1), ev(pid, 2, b""), ev(pid, 3, bytes(range(256)))]
    for e in written:
        await journal.write([e])
    assert await journal.events(pid) == written
    assert await journal.highest_sequence_nr(pid) == 3


async def test_replay_range_and_max_count(journal: Journal, pid: str) -> None:
    await journal.write(evs(pid, 1, 5))
    await write_each(journal, pid, 6, 10)
    assert await seqs(journal, pid, 3) == list(range(3, 11))
    assert await seqs(journal, pid, 3, 6) == [3, 4, 5, 6]
    assert await seqs(journal, pid, 2, 9, 3) == [2, 3, 4]
    assert await seqs(journal, pid, 0, 2) == [1, 2]
    assert await seqs(journal, pid, 10, 10) == [10]
    assert await seqs(journal, pid, 11) == []
    assert await seqs(journal, pid, 5, 4) == []
    assert await seqs(journal, pid, 1, 10, 0) == []


async def test_atomic_multi_event_write_replays_in_order(journal: Journal, pid: str) -> None:
    await journal.write(evs(pid, 1, 3))
    await journal.write(evs(pid, 4, 9))
    assert await seqs(journal, pid) == list(range(1, 10))
    assert await journal.highest_sequence_nr(pid) == 9


async def test_highest_counts_every_acknowledged_write(journal: Journal, pid: str) -> None:
    for n in range(1, 6):
        await journal.write([ev(pid, n)])
        assert await journal.highest_sequence_nr(pid) == n


async def test_malformed_writes_are_programming_errors(journal: Journal, pid: str) -> None:
    with pytest.raises(ValueError, match="at least one"):
        await journal.write([])
    with pytest.raises(ValueError, match="one persistence id"):
        await journal.write([ev(pid, 1), ev(pid + "x", 2)])
    with pytest.raises(ValueError, match="consecutive"):
        await journal.write([ev(pid, 1), ev(pid, 3)])
    with pytest.raises(ValueError, match="start at 1"):
        await journal.write([ev(pid, 0)])
    assert await journal.highest_sequence_nr(pid) == 0


async def test_fencing_refuses_writes_that_do_not_continue(journal: Journal, pid: str) -> None:
    with pytest.raises(SequenceConflictError) as refused:
        await journal.write([ev(pid, 2)])
    assert (refused.value.persistence_id, refused.value.expected, refused.value.got) == (pid, 1, 2)
    await journal.write(evs(pid, 1, 3))
    for first in (1, 3, 5):
        with pytest.raises(SequenceConflictError, match=pid):
            await journal.write(evs(pid, first, first + 1))
    assert await seqs(journal, pid) == [1, 2, 3]
    await journal.write([ev(pid, 4)])  # the right continuation still works
    assert await journal.highest_sequence_nr(pid) == 4


async def test_concurrent_writes_of_one_number_store_exactly_one(
    journal: Journal, pid: str
) -> None:
    await journal.write([ev(pid, 1)])
    outcomes = await asyncio.gather(
        *(journal.write([ev(pid, 2, f"incarnation-{i}".encode())]) for i in range(5)),
        return_exceptions=True,
    )
    assert sum(o is None for o in outcomes) == 1
    assert all(isinstance(o, SequenceConflictError) for o in outcomes if o is not None)
    assert await seqs(journal, pid) == [1, 2]


async def test_fencing_across_instances(journal_kit: JournalKit, pid: str) -> None:
    """A second journal instance on the same storage: exact for SQLite, documented for Cassandra."""
    if not journal_kit.durable:
        pytest.skip("a memory journal has no second instance")
    first = journal_kit.open()
    await first.write(evs(pid, 1, 3))
    second = journal_kit.open()
    assert await second.highest_sequence_nr(pid) == 3
    await second.write([ev(pid, 4)])
    fresh = journal_kit.open()  # knows nothing yet: reads the stored highest
    with pytest.raises(SequenceConflictError):
        await fresh.write([ev(pid, 4)])
    if journal_kit.kind == "sqlite":  # every write is checked against the committed state
        with pytest.raises(SequenceConflictError):
            await first.write([ev(pid, 4)])
        assert await seqs(second, pid) == [1, 2, 3, 4]
        await second.write([ev(pid, 5)])
        # A stale write refused inside a group does not fail the others.
        outcomes = await asyncio.gather(
            first.write([ev(pid, 5)]),
            first.write([ev(f"{pid}-a", 1)]),
            first.write([ev(f"{pid}-b", 1)]),
            return_exceptions=True,
        )
        assert isinstance(outcomes[0], SequenceConflictError)
        assert outcomes[1:] == [None, None]
        await first.write([ev(pid, 6)])
        assert await seqs(second, pid) == [1, 2, 3, 4, 5, 6]
    else:  # Cassandra fences per instance: the stale one writes, and replay repairs it
        stale = PersistentRepr(pid, 4, 4, "tck:Event", b"stale", "writer-2", 0)
        await first.write([stale])
        assert await fresh.events(pid) == evs(pid, 1, 4)  # the newer writer's 4 is kept


async def test_delete_to(journal: Journal, pid: str) -> None:
    await journal.write(evs(pid, 1, 5))
    await journal.delete_to(pid, 3)
    assert await seqs(journal, pid) == [4, 5]
    assert await seqs(journal, pid, 2, 4) == [4]
    assert await journal.highest_sequence_nr(pid) == 5
    await journal.delete_to(pid, 2)  # deleting less than before: nothing happens
    assert await seqs(journal, pid) == [4, 5]
    await journal.delete_to(pid, 99)  # beyond the highest: up to the highest
    assert await seqs(journal, pid) == []
    assert await journal.highest_sequence_nr(pid) == 5
    with pytest.raises(SequenceConflictError):
        await journal.write([ev(pid, 5)])
    await journal.write([ev(pid, 6)])
    assert await seqs(journal, pid) == [6]
    await journal.delete_to(pid + "-unknown", 10)
    assert await journal.highest_sequence_nr(pid + "-unknown") == 0


async def test_highest_survives_deleting_everything_in_a_new_instance(
    journal_kit: JournalKit, pid: str
) -> None:
    journal = journal_kit.open()
    await journal.write(evs(pid, 1, 4))
    await journal.delete_to(pid, 4)
    await journal.close()
    if journal_kit.durable:
        journal = journal_kit.open()
        assert await journal.highest_sequence_nr(pid) == 4
        with pytest.raises(SequenceConflictError):
            await journal.write([ev(pid, 1)])
        await journal.write([ev(pid, 5)])
        assert await seqs(journal, pid) == [5]


async def test_many_ids_concurrently(journal: Journal, pid: str) -> None:
    ids = [f"{pid}-{i}" for i in range(200)]

    async def writer(p: str) -> None:
        n = 0
        for size in (1, 3, 1, 2, 1, 5, 1, 1):
            await journal.write(evs(p, n + 1, n + size))
            n += size

    await asyncio.gather(*(writer(p) for p in ids))
    highs = await asyncio.gather(*(journal.highest_sequence_nr(p) for p in ids))
    assert highs == [15] * len(ids)
    for p in ids[:: len(ids) // 10]:
        assert await journal.events(p) == evs(p, 1, 15)


async def test_a_write_of_many_events(journal: Journal, pid: str) -> None:
    await journal.write([ev(pid, 1)])
    await journal.write(evs(pid, 2, 6001))
    assert await journal.highest_sequence_nr(pid) == 6001
    assert await seqs(journal, pid, 5990) == list(range(5990, 6002))


async def test_large_payloads(journal: Journal, pid: str) -> None:
    big = bytes(range(256)) * 4096  # 1 MiB
    await journal.write([ev(pid, 1, big)])
    await journal.write([ev(pid, 2, big[:300_000]), ev(pid, 3, big[:300_000])])
    replayed = await journal.events(pid)
    assert [len(e.payload) for e in replayed] == [len(big), 300_000, 300_000]
    assert replayed[0].payload == big


async def test_chunked_replay(journal_kit: JournalKit, pid: str) -> None:
    journal = journal_kit.open(chunk_size=7)
    await journal.write(evs(pid, 1, 20))
    await write_each(journal, pid, 21, 50)
    sizes = [len(chunk) async for chunk in journal.replay(pid)]
    assert sum(sizes) == 50
    assert all(0 < s <= 7 for s in sizes)
    assert await seqs(journal, pid, 10, 40, 17) == list(range(10, 27))
    async for _chunk in journal.replay(pid):
        break  # abandoning a replay midway leaves the journal usable
    await journal.write([ev(pid, 51)])
    assert await journal.highest_sequence_nr(pid) == 51


@pytest.mark.parametrize("start", [1, 2, 3, 4, 5, 7, 10, 12])
async def test_partition_boundaries(journal_kit: JournalKit, pid: str, start: int) -> None:
    """Writes of 1-3 events straddle partitions of 3 (only Cassandra has partitions)."""
    journal = journal_kit.open(partition_size=3, chunk_size=2)
    n = 0
    for size in (2, 2, 3, 1, 3, 2, 1, 1, 3):
        await journal.write(evs(pid, n + 1, n + size))
        n += size
    assert n == 18
    assert await journal.highest_sequence_nr(pid) == 18
    assert await journal.highest_sequence_nr(pid, start) == 18
    assert await seqs(journal, pid, start) == list(range(start, 19))
    assert await seqs(journal, pid, start, start + 4) == list(range(start, start + 5))
    await journal.delete_to(pid, start)
    assert await seqs(journal, pid) == list(range(start + 1, 19))
    assert await journal.highest_sequence_nr(pid) == 18
    if journal_kit.kind == "cassandra":
        with pytest.raises(ValueError, match="partition size"):
            await journal.write(evs(pid, 19, 22))


async def test_data_survives_reopening(journal_kit: JournalKit, pid: str) -> None:
    if not journal_kit.durable:
        pytest.skip("memory is not durable")
    journal = journal_kit.open()
    await journal.write(evs(pid, 1, 3))
    await journal.close()
    again = journal_kit.open()
    assert await again.events(pid) == evs(pid, 1, 3)


async def test_closed_journal_refuses_calls(journal_kit: JournalKit, pid: str) -> None:
    journal = journal_kit.open(chunk_size=5)  # an instance of its own, even for memory
    await journal.write([ev(pid, 1)])
    await journal.close()
    await journal.close()  # idempotent
    with pytest.raises(PluginClosedError):
        await journal.write([ev(pid, 2)])
    with pytest.raises(PluginClosedError):
        await journal.events(pid)
    with pytest.raises(PluginClosedError):
        await journal.highest_sequence_nr(pid)
    with pytest.raises(PluginClosedError):
        await journal.delete_to(pid, 1)


async def test_close_finishes_accepted_writes(journal_kit: JournalKit, pid: str) -> None:
    if not journal_kit.durable:
        pytest.skip("memory is not durable")
    journal = journal_kit.open()
    await journal.write([ev(pid, 1)])
    writes = [asyncio.ensure_future(journal.write([ev(f"{pid}-{i}", 1)])) for i in range(20)]
    await quiesce()  # every write accepted (the loop is idle; no wall-clock time)
    await journal.close()
    await asyncio.gather(*writes)
    again = journal_kit.open()
    assert [await again.highest_sequence_nr(f"{pid}-{i}") for i in range(20)] == [1] * 20


@pytest.mark.parametrize("bad", ["", "lone-\udc80-surrogate"])
async def test_an_invalid_persistence_id_fails_only_its_own_calls(
    journal: Journal, pid: str, bad: str
) -> None:
    async def write(events: list[PersistentRepr]) -> None:
        await journal.write(events)

    outcomes = await asyncio.gather(
        write([ev(f"{pid}-a", 1)]),
        write([ev(bad, 1)]),
        write([ev(f"{pid}-b", 1), ev(f"{pid}-b", 2)]),
        return_exceptions=True,
    )
    assert outcomes[0] is None
    assert isinstance(outcomes[1], ValueError)
    assert "persistence id" in str(outcomes[1])
    assert outcomes[2] is None
    with pytest.raises(ValueError, match="persistence id"):
        await journal.highest_sequence_nr(bad)
    with pytest.raises(ValueError, match="persistence id"):
        await journal.events(bad)
    with pytest.raises(ValueError, match="persistence id"):
        await journal.delete_to(bad, 1)
    assert await seqs(journal, f"{pid}-a") == [1]
    assert await seqs(journal, f"{pid}-b") == [1, 2]


async def test_a_known_number_past_the_stored_ones_continues_from_it(
    journal_kit: JournalKit, pid: str
) -> None:
    """A snapshot at 5 over an empty (or lost) journal: the journal continues from 5."""
    journal = journal_kit.open()
    assert await journal.highest_sequence_nr(pid, 5) == 5
    with pytest.raises(SequenceConflictError):
        await journal.write([ev(pid, 1)])
    await journal.write([ev(pid, 6)])
    assert await seqs(journal, pid) == [6]  # 1..5 count as deleted, not missing
    await journal.write(evs(f"{pid}-b", 1, 2))  # events the snapshot covers are deleted
    assert await journal.highest_sequence_nr(f"{pid}-b", 4) == 4
    await journal.write([ev(f"{pid}-b", 5)])
    assert await seqs(journal, f"{pid}-b") == [5]
    if journal_kit.durable:
        again = journal_kit.open()
        assert await again.highest_sequence_nr(pid) == 6
        assert await seqs(again, pid) == [6]
        assert await again.highest_sequence_nr(f"{pid}-b") == 5


@pytest.mark.parametrize("after", [0, 3, 4, 9, 10, 12])
async def test_recover_replays_past_the_snapshot_up_to_the_highest(
    journal_kit: JournalKit, pid: str, after: int
) -> None:
    """``recover`` is ``highest_sequence_nr(pid, after)`` and a replay after ``after``."""
    journal = journal_kit.open(chunk_size=4)
    await journal.write(evs(pid, 1, 5))
    await write_each(journal, pid, 6, 10)
    chunks: list[list[PersistentRepr]] = []
    assert await journal.recover(pid, after, lambda c: chunks.append(list(c))) == max(10, after)
    assert [e for c in chunks for e in c] == evs(pid, after + 1, 10)
    assert all(0 < len(c) <= 4 for c in chunks)
    with pytest.raises(SequenceConflictError):
        await journal.write([ev(pid, max(10, after))])
    await journal.write([ev(pid, max(10, after) + 1)])  # a snapshot past the end: continues


async def test_recover_of_an_unknown_or_deleted_id(journal: Journal, pid: str) -> None:
    got: list[PersistentRepr] = []
    assert await journal.recover(pid, 0, got.extend) == 0
    await journal.write(evs(pid, 1, 4))
    await journal.delete_to(pid, 4)
    assert await journal.recover(pid, 0, got.extend) == 4  # every event deleted
    assert got == []
    await journal.write(evs(pid, 5, 7))
    await journal.delete_to(pid, 5)
    assert await journal.recover(pid, 0, got.extend) == 7
    assert got == evs(pid, 6, 7)


async def test_an_error_raised_while_recovering_ends_the_recovery(
    journal: Journal, pid: str
) -> None:
    await journal.write(evs(pid, 1, 3))

    def apply(chunk: object) -> None:
        raise RuntimeError("on_event failed")

    with pytest.raises(RuntimeError, match="on_event failed"):
        await journal.recover(pid, 0, apply)
    await journal.write([ev(pid, 4)])  # the journal is still usable
    assert await seqs(journal, pid) == [1, 2, 3, 4]
