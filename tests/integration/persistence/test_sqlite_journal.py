"""What only the SQLite journal does: checkpoints, schema strictness, corrupt rows."""

from __future__ import annotations

import asyncio
import sqlite3
import sys
import threading
import time
from pathlib import Path

import pytest

from shoal.persistence import (
    EventRejectedError,
    JournalCorruptionError,
    JournalReadError,
    JournalWriteError,
    PersistentRepr,
    SnapshotMetadata,
    SnapshotRecord,
    SnapshotStoreError,
    SqliteJournal,
    SqliteSettings,
    SqliteSnapshotStore,
)
from shoal.persistence._sqlite_db import connect
from shoal.runtime.testing import ManualClock, quiesce


def ev(pid: str, seq: int, payload: bytes = b"x") -> PersistentRepr:
    return PersistentRepr(pid, seq, 1, "", payload, "w", 0)


async def test_checkpoints_keep_up_with_writes(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    journal = SqliteJournal(SqliteSettings(path=path, checkpoint_bytes=4096))
    try:
        for n in range(1, 51):
            await asyncio.gather(*(journal.write([ev(f"p{i}", n, b"y" * 200)]) for i in range(20)))
        assert [e.sequence_nr for e in await journal.events("p7")] == list(range(1, 51))
    finally:
        await journal.close()
    # Every committed row is readable by a fresh connection (WAL or checkpointed).
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT count(*) FROM journal").fetchone() == (1000,)


def size(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0


async def test_the_wal_is_emptied_after_a_burst_and_stays_bounded(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    wal = tmp_path / "j.db-wal"
    clock = ManualClock()
    bound = 1024 * 1024
    settings = SqliteSettings(path=path, checkpoint_bytes=bound, checkpoint_interval_s=1.0)
    journal = SqliteJournal(settings, clock=clock)
    try:
        # A burst: 50,000 events (about 15 MB) written at once, one group commit.
        await asyncio.gather(
            *(journal.write([ev(f"p{i % 100}", i // 100 + 1, b"x" * 200)]) for i in range(50_000))
        )
        clock.advance(1.0)  # the interval after the last commit: the WAL is emptied
        assert await journal.highest_sequence_nr("p7") == 500  # after the checkpoint (FIFO)
        assert size(wal) == 0
        assert size(path) > 10 * 1024 * 1024  # the events are in the database file
        # Steady state: 200 events every 0.25 s; the WAL never outgrows the bound.
        largest = 0
        for n in range(1, 41):
            await asyncio.gather(*(journal.write([ev(f"s{i}", n, b"y" * 200)]) for i in range(200)))
            clock.advance(0.25)
            await journal.highest_sequence_nr("s0")
            largest = max(largest, size(wal))
        assert 0 < largest <= bound
        clock.advance(1.0)
        await journal.highest_sequence_nr("s0")
        assert size(wal) == 0
    finally:
        await journal.close()


async def test_an_online_backup_is_one_consistent_file(tmp_path: Path) -> None:
    journal = SqliteJournal(tmp_path / "j.db")
    copy = tmp_path / "copy.db"
    try:
        await journal.write([ev("acct", 1), ev("acct", 2)])
        writing = journal.write([ev("acct", 3)])
        await journal.backup(copy)
        await writing
    finally:
        await journal.close()
    assert not (tmp_path / "copy.db-wal").exists()
    restored = SqliteJournal(copy)
    try:
        stored = [e.sequence_nr for e in await restored.events("acct")]
        assert stored in ([1, 2], [1, 2, 3])  # whole writes only: before or after the third
    finally:
        await restored.close()


async def test_a_failed_backup_is_a_read_error(tmp_path: Path) -> None:
    journal = SqliteJournal(tmp_path / "j.db")
    try:
        await journal.write([ev("acct", 1)])
        with pytest.raises(JournalReadError, match="backup to"):
            await journal.backup(tmp_path / "no-such-dir" / "copy.db")
    finally:
        await journal.close()


async def test_the_schema_refuses_mistyped_rows(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    journal = SqliteJournal(path)
    await journal.write([ev("p", 1)])
    await journal.close()
    conn = sqlite3.connect(path)
    try:
        with pytest.raises(sqlite3.IntegrityError):
            conn.execute("INSERT INTO journal VALUES ('p', 2, 1, '', 'not bytes', 'w', 0)")
        with pytest.raises(sqlite3.IntegrityError):
            conn.execute("INSERT INTO journal VALUES ('p', 1, 1, '', x'00', 'w', 0)")
    finally:
        conn.close()


async def test_a_gap_in_stored_rows_is_reported_with_its_number(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    journal = SqliteJournal(path)
    try:
        await journal.write([ev("acct", 1), ev("acct", 2), ev("acct", 3)])
        with sqlite3.connect(path) as conn:
            conn.execute("DELETE FROM journal WHERE sequence_nr = 2")
        with pytest.raises(JournalCorruptionError, match="'acct' at sequence number 2: missing"):
            await journal.events("acct")
    finally:
        await journal.close()


async def test_an_unopenable_database_fails_calls_until_it_can_be_opened(
    tmp_path: Path,
) -> None:
    directory = tmp_path / "missing-dir"
    journal = SqliteJournal(directory / "j.db")
    store = SqliteSnapshotStore(directory / "j.db")
    try:
        with pytest.raises(JournalWriteError, match="unable to open"):
            await journal.write([ev("p", 1)])
        with pytest.raises(JournalReadError, match="unable to open"):
            await journal.highest_sequence_nr("p")
        with pytest.raises(SnapshotStoreError, match="unable to open"):
            await store.load("p")
        directory.mkdir()  # the condition passes: the same instances work again
        await journal.write([ev("p", 1)])
        assert await journal.highest_sequence_nr("p") == 1
        await store.save(SnapshotRecord(SnapshotMetadata("p", 1, 0), 1, "", b"s"))
        assert await store.load("p") is not None
    finally:
        await journal.close()
        await store.close()


def test_a_new_file_opened_by_many_connections_at_once_never_reports_locked(
    tmp_path: Path,
) -> None:
    """Switching a new file to WAL and creating the schema, from 6 connections at once."""
    failures: list[BaseException] = []
    for n in range(60):
        settings = SqliteSettings(path=tmp_path / f"new-{n}.db")
        barrier = threading.Barrier(6)

        def open_and_read(
            settings: SqliteSettings = settings, barrier: threading.Barrier = barrier
        ) -> None:
            barrier.wait()
            try:
                conn = connect(settings)
                conn.execute("SELECT count(*) FROM journal JOIN snapshots").fetchall()
                conn.close()
            except Exception as exc:
                failures.append(exc)

        threads = [threading.Thread(target=open_and_read) for _ in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert failures == []


async def test_journals_and_snapshot_stores_first_used_at_once_on_a_new_file(
    tmp_path: Path,
) -> None:
    path = tmp_path / "new.db"
    journals = [SqliteJournal(path) for _ in range(3)]
    stores = [SqliteSnapshotStore(path) for _ in range(3)]
    try:
        await asyncio.gather(
            *(j.write([ev(f"p{i}", 1)]) for i, j in enumerate(journals)),
            *(j.highest_sequence_nr("q") for j in journals),
            *(
                s.save(SnapshotRecord(SnapshotMetadata(f"p{i}", 1, 0), 1, "", b"s"))
                for i, s in enumerate(stores)
            ),
        )
        assert [await journals[0].highest_sequence_nr(f"p{i}") for i in range(3)] == [1, 1, 1]
    finally:
        for plugin in (*journals, *stores):
            await plugin.close()


@pytest.mark.parametrize(
    ("deleted_to", "removed", "replay_from", "missing"),
    [
        (0, (1, 2), 1, 1),  # the first rows, no deletion marker
        (2, (3,), 1, 3),  # just past a deletion
        (0, (4, 5), 3, 4),  # inside the range asked for
        (0, (3,), 3, 3),  # the first event asked for
    ],
)
async def test_rows_removed_without_a_deletion_marker_are_corruption(
    tmp_path: Path, deleted_to: int, removed: tuple[int, ...], replay_from: int, missing: int
) -> None:
    path = tmp_path / "j.db"
    journal = SqliteJournal(path)
    try:
        await journal.write([ev("acct", n) for n in range(1, 8)])
        if deleted_to:
            await journal.delete_to("acct", deleted_to)
        with sqlite3.connect(path) as conn:
            conn.executemany("DELETE FROM journal WHERE sequence_nr = ?", [(n,) for n in removed])
        with pytest.raises(
            JournalCorruptionError, match=f"'acct' at sequence number {missing}: missing"
        ):
            await journal.events("acct", replay_from)
        with pytest.raises(  # a recovery past a snapshot at replay_from - 1, in one read
            JournalCorruptionError, match=f"'acct' at sequence number {missing}: missing"
        ):
            await journal.recover("acct", replay_from - 1, lambda chunk: None)
    finally:
        await journal.close()


_HOLD_LOCK = """
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
sys.stdin.readline()
conn.execute("COMMIT")
"""


async def test_writes_queued_behind_another_process_lock_wait_one_busy_timeout(
    tmp_path: Path,
) -> None:
    path = tmp_path / "j.db"
    timeout = 0.5
    journal = SqliteJournal(SqliteSettings(path=path, busy_timeout_s=timeout))
    await journal.write([ev("before", 1)])  # the file exists before the lock is taken
    holder = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _HOLD_LOCK, str(path),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert holder.stdin is not None
    assert holder.stdout is not None
    try:
        assert await holder.stdout.readline() == b"locked\n"
        began = time.monotonic()
        first = [journal.write([ev(f"p{i}", 1)]) for i in range(8)]
        await quiesce()  # the first group waits for the lock: these queue behind it
        second = [journal.write([ev(f"q{i}", 1)]) for i in range(4)]
        outcomes = await asyncio.gather(*first, *second, return_exceptions=True)
        waited = time.monotonic() - began
        assert all(isinstance(o, JournalWriteError) for o in outcomes), outcomes
        assert "locked" in str(outcomes[0])
        assert waited < 2.5 * timeout  # one busy timeout, not one per write (12 x 0.5 s)
        holder.stdin.write(b"release\n")
        await holder.stdin.drain()
        assert await holder.wait() == 0
        await journal.write([ev("p0", 1)])  # the lock is free: writes go through again
        assert await journal.highest_sequence_nr("p0") == 1
    finally:
        if holder.returncode is None:
            holder.kill()
            await holder.wait()
        await journal.close()


async def test_a_row_sqlite_cannot_take_fails_only_its_own_write(tmp_path: Path) -> None:
    journal = SqliteJournal(tmp_path / "j.db")
    try:
        unbindable = PersistentRepr("bad", 1, 1, "lone-\udc80", b"x", "w", 0)
        outcomes = await asyncio.gather(
            journal.write([ev("a", 1)]),
            journal.write([unbindable]),
            journal.write([ev("b", 1), ev("b", 2)]),
            return_exceptions=True,
        )
        assert outcomes[0] is None
        assert isinstance(outcomes[1], EventRejectedError)
        assert "'bad'" in str(outcomes[1])
        assert outcomes[2] is None
        assert await journal.highest_sequence_nr("bad") == 0  # known not stored
        await journal.write([ev("bad", 1)])
        assert [await journal.highest_sequence_nr(p) for p in ("a", "b", "bad")] == [1, 2, 1]
    finally:
        await journal.close()


async def test_writes_accepted_in_the_turn_of_close_are_committed(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    journal = SqliteJournal(path)
    await journal.write([ev("warm", 1)])  # the threads run
    writes = [journal.write([ev(f"p{i}", 1)]) for i in range(20)]  # their flush not yet queued
    await journal.close()
    await asyncio.gather(*writes)
    again = SqliteJournal(path)
    try:
        assert [await again.highest_sequence_nr(f"p{i}") for i in range(20)] == [1] * 20
    finally:
        await again.close()


async def test_many_writers_over_many_loop_turns_lose_no_write(tmp_path: Path) -> None:
    """Writes queued while flushes run, in every phase of the hand-off to the writer thread."""
    journal = SqliteJournal(tmp_path / "j.db")
    try:

        async def writer(pid: str) -> None:
            for n in range(1, 31):
                await journal.write([ev(pid, n)])
                if n % 3 == 0:
                    await asyncio.sleep(0)  # spread the writes over more loop turns

        await asyncio.gather(*(writer(f"w{i}") for i in range(300)))
        assert {await journal.highest_sequence_nr(f"w{i}") for i in range(300)} == {30}
    finally:
        await journal.close()
