"""The fault-injecting journal and snapshot store of ``shoal.persistence.testing``."""

from __future__ import annotations

import asyncio

import pytest

import shoal.persistence.testing
from shoal.persistence import (
    JournalReadError,
    JournalWriteError,
    PersistentRepr,
    SnapshotMetadata,
    SnapshotRecord,
    SnapshotSelectionCriteria,
    SnapshotStoreError,
)
from shoal.persistence.testing import FaultyJournal, FaultySnapshotStore
from shoal.runtime.testing import ManualClock, quiesce


def ev(seq: int, pid: str = "p") -> PersistentRepr:
    return PersistentRepr(pid, seq, 1, "", b"x")


def snap(seq: int, pid: str = "p") -> SnapshotRecord:
    return SnapshotRecord(SnapshotMetadata(pid, seq), 1, "", b"s")


def test_public_names_are_pinned() -> None:
    assert sorted(shoal.persistence.testing.__all__) == [
        "Fault",
        "FaultyJournal",
        "FaultySnapshotStore",
    ]


async def test_without_faults_calls_pass_through() -> None:
    journal = FaultyJournal()
    await journal.write([ev(1), ev(2)])
    assert [e.sequence_nr for e in await journal.events("p")] == [1, 2]
    assert await journal.highest_sequence_nr("p") == 2
    await journal.delete_to("p", 1)
    assert [e.sequence_nr for e in await journal.events("p")] == [2]
    assert journal.calls("write") == 1
    assert journal.calls("replay", "p") == 2
    assert journal.calls("replay", "q") == 0
    await journal.close()


async def test_a_failure_by_persistence_id_and_call_count() -> None:
    journal = FaultyJournal()
    fault = journal.fail("write", persistence_id="p", after=1, times=2)
    await journal.write([ev(1)])  # the first matching call passes
    await journal.write([ev(1, "q")])  # another id: not matched
    for _ in range(2):
        with pytest.raises(JournalWriteError, match="injected fault: write of 'p'"):
            await journal.write([ev(2)])
    await journal.write([ev(2)])  # retired after two
    assert (fault.matched, fault.acted) == (4, 2)
    assert [e.sequence_nr for e in await journal.events("p")] == [1, 2]


async def test_default_errors_match_each_operation() -> None:
    journal = FaultyJournal()
    journal.fail("replay")
    journal.fail("highest_sequence_nr")
    journal.fail("delete_to")
    with pytest.raises(JournalReadError):
        await journal.events("p")
    with pytest.raises(JournalReadError):
        await journal.highest_sequence_nr("p")
    with pytest.raises(JournalWriteError):
        await journal.delete_to("p", 1)
    custom = RuntimeError("custom")
    journal.fail("write", error=custom)
    with pytest.raises(RuntimeError) as info:
        await journal.write([ev(1)])
    assert info.value is custom


async def test_a_failure_after_storing_stores_then_raises() -> None:
    journal = FaultyJournal()
    journal.fail("write", after_storing=True, times=1)
    with pytest.raises(JournalWriteError):
        await journal.write([ev(1)])
    assert await journal.highest_sequence_nr("p") == 1
    with pytest.raises(ValueError, match="writes only"):
        journal.fail("replay", after_storing=True)


async def test_a_rejection_stores_nothing() -> None:
    journal = FaultyJournal()
    journal.reject(times=1)
    with pytest.raises(ValueError, match="injected rejection"):
        await journal.write([ev(1)])
    assert await journal.highest_sequence_nr("p") == 0
    await journal.write([ev(1)])


async def test_a_hold_waits_for_release_then_later_faults_act() -> None:
    journal = FaultyJournal()
    held = journal.hold("write", times=1)
    journal.fail("write", times=1)
    write = asyncio.ensure_future(journal.write([ev(1)]))
    await held.reached()
    assert not write.done()
    held.release()
    with pytest.raises(JournalWriteError):
        await write  # the hold, then the failure
    await journal.write([ev(1)])


async def test_cancel_and_clear_retire_faults() -> None:
    journal = FaultyJournal()
    held = journal.hold("highest_sequence_nr")
    query = asyncio.ensure_future(journal.highest_sequence_nr("p"))
    await held.reached()
    held.cancel()
    assert await query == 0
    assert await journal.highest_sequence_nr("p") == 0  # cancelled: no longer holds
    journal.fail("write")
    journal.clear()
    await journal.write([ev(1)])


async def test_a_delay_runs_on_the_given_clock() -> None:
    clock = ManualClock()
    journal = FaultyJournal(clock=clock)
    delayed = journal.delay("write", 2.0, times=1)
    write = asyncio.ensure_future(journal.write([ev(1)]))
    await delayed.reached()
    clock.advance(1.9)
    await quiesce()
    assert not write.done()
    clock.advance(0.1)
    await write
    assert await journal.highest_sequence_nr("p") == 1
    with pytest.raises(ValueError, match="negative"):
        journal.delay("write", -1.0)


async def test_faults_need_sensible_counts() -> None:
    journal = FaultyJournal()
    with pytest.raises(ValueError, match="after >= 0"):
        journal.fail("write", times=0)
    with pytest.raises(ValueError, match="after >= 0"):
        journal.fail("write", after=-1)


async def test_the_snapshot_store_takes_the_same_faults() -> None:
    store = FaultySnapshotStore()
    store.fail("save", persistence_id="p", times=1)
    with pytest.raises(SnapshotStoreError, match="injected fault: save of 'p'"):
        await store.save(snap(1))
    await store.save(snap(1))
    held = store.hold("load", times=1)
    load = asyncio.ensure_future(store.load("p"))
    await held.reached()
    held.release()
    loaded = await load
    assert loaded is not None
    assert loaded.metadata.sequence_nr == 1
    store.delay("delete", 0.0, times=1)
    store.fail("delete", times=1)
    with pytest.raises(SnapshotStoreError):
        await store.delete("p", SnapshotSelectionCriteria())
    assert store.calls("save") == 2
    assert store.calls("load", "p") == 1
    store.clear()
    await store.close()
