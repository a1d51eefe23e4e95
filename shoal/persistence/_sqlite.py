"""The SQLite journal and snapshot store: the embedded default.

One database file in WAL mode. The journal owns two threads, each with its
own connection: a *writer* that group-commits and a *reader* for replays and
highest-sequence-number queries (WAL lets them run side by side). The event
loop never blocks on SQLite.

Group commit: :meth:`SqliteJournal.write` queues the write and, unless a
flush is already queued, queues one on the writer thread at the end of the
current loop turn. A flush takes *every* write queued by then, commits them
in one statement (one transaction, one fsync at most) and acknowledges them
all with one callback into the loop. While it commits, new writes queue up
for the next flush, so the batch size adapts to the load with no added
latency when idle. Every acknowledged write is committed.

The hand-off takes no lock: the loop appends to a deque and the writer
thread pops from its other end (both atomic), so the loop never waits for
the writer thread, however busy it is. The "flush queued" flag is set only
by the loop (when it queues a flush) and cleared only by the writer, *before*
it counts what to take; a write appended after the count sees the cleared
flag and queues the next flush, so no write is left behind (at worst a flush
finds nothing to do).

Files and backups. The journal (and, by default, the snapshot store) is the
database file ``shoal.db`` (``SqliteSettings.path``) plus, while it is open,
two files beside it: ``shoal.db-wal``, the write-ahead log, which holds
recently committed transactions not yet copied into ``shoal.db``, and
``shoal.db-shm``, the WAL's shared-memory index. ``shoal.db`` alone is not a
complete copy while the journal runs: never copy the files of a running
journal with ``cp`` (a copy taken mid-write may be corrupt or miss
acknowledged events). Back up either

* online, with :meth:`SqliteJournal.backup` (SQLite's backup API: a
  consistent snapshot into one file, while writes go on), or the
  ``sqlite3`` shell's ``.backup`` command; or
* offline: stop the node (closing the journal checkpoints the WAL into
  ``shoal.db`` and removes ``-wal`` and ``-shm``), then copy ``shoal.db``.
  After a crash, copy all three files together, or open the database once
  so SQLite recovers the WAL into it.

How the WAL is kept bounded is described at :class:`SqliteSettings`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Sequence
from typing import TypeVar

from shoal.runtime import Cancellable, Clock, LoopClock

from ._errors import (
    JournalReadError,
    JournalWriteError,
    PluginClosedError,
    SnapshotStoreError,
)
from ._journal import (
    MAX_SEQUENCE_NR,
    Journal,
    PersistentRepr,
    check_ids_page,
    check_persistence_id,
    check_tag,
    check_write,
    validate_chunk,
)
from ._snapshot import (
    LATEST,
    SnapshotMetadata,
    SnapshotRecord,
    SnapshotSelectionCriteria,
    SnapshotStore,
)
from ._sqlite_db import (
    GroupCommitter,
    SqliteSettings,
    backup,
    checkpoint,
    connect,
    delete_to,
    highest,
    persistence_ids,
    read_chunk,
    read_first_chunk,
    read_recovery,
    read_tag,
    truncate_wal,
)
from ._thread_worker import ThreadWorker

__all__ = ["SqliteJournal", "SqliteSettings", "SqliteSnapshotStore"]

_T = TypeVar("_T")
_log = logging.getLogger("shoal.persistence")

_Pending = tuple[Sequence[PersistentRepr], "asyncio.Future[None]"]


def _settings(settings: SqliteSettings | str | os.PathLike[str]) -> SqliteSettings:
    if isinstance(settings, SqliteSettings):
        return settings
    return SqliteSettings(path=settings)


def _close(conn: sqlite3.Connection) -> None:
    conn.close()


def _log_checkpoint_failure(exc: Exception) -> None:
    _log.warning("sqlite journal: WAL checkpoint failed (the next will retry): %s", exc)


def _complete(batch: list[_Pending], outcomes: Sequence[Exception | None]) -> None:
    """On the loop: acknowledge (or fail) every write of one flush."""
    for (_, fut), outcome in zip(batch, outcomes, strict=True):
        if fut.done():  # the writer stopped waiting; the outcome stands regardless
            continue
        if outcome is None:
            fut.set_result(None)
        else:
            fut.set_exception(outcome)


class SqliteJournal(Journal):
    """The embedded journal: one SQLite file, WAL, group commit.

    Durability: see :class:`SqliteSettings` ``synchronous``. Fencing is exact
    for every writer of the file, in this process or another: each write is
    checked against the committed highest sequence number inside the
    transaction that stores it. ``clock`` times the WAL checkpoints (default:
    the event loop's; the ``Persistence`` extension passes the system's).
    On disk it is ``settings.path`` plus, while open, ``<path>-wal`` and
    ``<path>-shm``; copy a running journal with :meth:`backup` only, never
    file by file.
    """

    def __init__(
        self, settings: SqliteSettings | str | os.PathLike[str], *, clock: Clock | None = None
    ) -> None:
        self.settings = _settings(settings)
        self._clock = clock
        self._checkpoint_timer: Cancellable | None = None
        opener = self._open
        self._writer: ThreadWorker[sqlite3.Connection] = ThreadWorker(
            "shoal-sqlite-journal-writer", opener, _close
        )
        self._reader: ThreadWorker[sqlite3.Connection] = ThreadWorker(
            "shoal-sqlite-journal-reader", opener, _close
        )
        self._committer = GroupCommitter()
        # Appended by the loop, popped by the writer thread (see the module docstring).
        self._pending: deque[_Pending] = deque()
        self._flush_queued = False  # set by the loop, cleared by the writer thread
        self._busy_timeout_ms = int(self.settings.busy_timeout_s * 1000)  # writer thread's
        self._closed = False

    def _open(self) -> sqlite3.Connection:
        return connect(self.settings)

    def _check_open(self) -> None:
        if self._closed:
            raise PluginClosedError(f"the sqlite journal {self.settings.path!s} is closed")

    def write(self, events: Sequence[PersistentRepr]) -> asyncio.Future[None]:
        check_write(events)
        self._check_open()
        loop = self._writer.loop
        fut: asyncio.Future[None] = loop.create_future()
        self._pending.append((events, fut))  # the caller must not mutate it meanwhile
        if not self._flush_queued:
            self._flush_queued = True
            # Queued at the end of this loop turn, not now: every actor resumed in
            # this turn adds its write first, so one flush takes them all. Waking
            # the writer at the first write would split the group, and each extra
            # flush costs the writer thread GIL hand-offs with the busy loop.
            loop.call_soon(self._queue_flush, time.monotonic())
        return fut

    def _queue_flush(self, since: float) -> None:
        """On the loop, at the end of the turn of a write: have the writer thread flush.

        ``since`` is when the first write of this flush was queued: the flush
        waits for another connection's lock until one busy timeout after it.
        """
        self._writer.submit_nowait(lambda conn: self._flush(conn, since), self._fail_flush)

    def _committed(self, batch: list[_Pending], outcomes: Sequence[Exception | None]) -> None:
        """On the loop: acknowledge a flush; have the WAL emptied within the interval."""
        _complete(batch, outcomes)
        self._acknowledged()
        # Armed after a commit, not at a write: a flush still running when the
        # timer fires arms the next one, so the last commit is always followed
        # by a checkpoint. One timer per interval, not one per flush.
        if self._checkpoint_timer is None and not self._closed:
            clock = self._clock
            if clock is None:
                clock = self._clock = LoopClock(self._writer.loop)
            self._checkpoint_timer = clock.call_later(
                self.settings.checkpoint_interval_s, self._checkpoint_due
            )

    def _checkpoint_due(self) -> None:
        """On the loop, ``checkpoint_interval_s`` after a write: empty the WAL (see settings)."""
        self._checkpoint_timer = None
        if not self._closed:
            timeout = self.settings.busy_timeout_s
            self._reader.submit_nowait(lambda c: truncate_wal(c, timeout), _log_checkpoint_failure)

    def _take_pending(self) -> list[_Pending]:
        """On the writer thread: every write queued so far (see the module docstring)."""
        self._flush_queued = False  # first: a write appended after the count queues a flush
        pending = self._pending
        return [pending.popleft() for _ in range(len(pending))]

    def _wait_for_lock_until(self, conn: sqlite3.Connection, deadline: float) -> None:
        """Have ``conn`` wait for another connection's write lock until ``deadline`` at most.

        So writes that queued while a flush waited for the lock wait one
        ``busy_timeout_s`` in all, counted from when they were queued, not one
        more per flush ahead of them. Set only when it differs noticeably
        from the current timeout (a statement per flush would cost).
        """
        full = int(self.settings.busy_timeout_s * 1000)
        wanted = max(0, min(full, int((deadline - time.monotonic()) * 1000)))
        if abs(wanted - self._busy_timeout_ms) > max(full // 10, 10):
            conn.execute(f"PRAGMA busy_timeout={wanted}")
            self._busy_timeout_ms = wanted

    def _flush(self, conn: sqlite3.Connection, since: float) -> None:
        """On the writer thread: commit every queued write in one transaction."""
        batch = self._take_pending()
        if not batch:
            return
        outcomes: Sequence[Exception | None]
        try:
            self._wait_for_lock_until(conn, since + self.settings.busy_timeout_s)
            outcomes = self._committer.commit(conn, [events for events, _ in batch])
        except Exception as exc:  # not a storage error (those are per write): fail them all
            self._committer.forget()
            err = JournalWriteError(f"sqlite journal {self.settings.path!s}: {exc!r}")
            err.__cause__ = exc
            outcomes = [err] * len(batch)
        self._writer.post(self._committed, batch, outcomes)
        if self._committer.wal_bytes >= self.settings.checkpoint_bytes:
            self._committer.wal_bytes = 0
            self._writer.post(self._checkpoint_soon)

    def _checkpoint_soon(self) -> None:
        """On the loop: have the reader thread checkpoint (see ``SqliteSettings``)."""
        if not self._closed:
            self._reader.submit_nowait(checkpoint, _log_checkpoint_failure)

    def _fail_flush(self, exc: Exception) -> None:
        """On the writer thread: the flush could not run (the database did not open)."""
        batch = self._take_pending()
        err = JournalWriteError(f"sqlite journal {self.settings.path!s} unavailable: {exc}")
        err.__cause__ = exc
        self._writer.post(_complete, batch, [err] * len(batch))

    async def _read(self, fn: Callable[[sqlite3.Connection], _T], what: str) -> _T:
        self._check_open()
        try:
            return await self._reader.submit(fn)
        except sqlite3.Error as exc:
            raise JournalReadError(f"sqlite journal: {what} failed: {exc}") from exc

    async def replay(
        self,
        persistence_id: str,
        from_sequence_nr: int = 1,
        to_sequence_nr: int = MAX_SEQUENCE_NR,
        max_count: int = MAX_SEQUENCE_NR,
    ) -> AsyncIterator[Sequence[PersistentRepr]]:
        check_persistence_id(persistence_id)
        chunk_size = self.settings.replay_chunk_size
        pid = persistence_id
        what = f"replay of {pid!r} from {from_sequence_nr}"

        def fetch(start: int, limit: int) -> asyncio.Future[list[PersistentRepr]]:
            return asyncio.ensure_future(
                self._read(lambda c: read_chunk(c, pid, start, to_sequence_nr, limit), what)
            )

        remaining = max_count
        if remaining <= 0 or from_sequence_nr > to_sequence_nr:
            return
        limit = min(chunk_size, remaining)
        # The first event must be the first asked for or, past a deletion, the one
        # after the marker: a later one means rows were removed without a marker.
        expected, chunk = await self._read(
            lambda c: read_first_chunk(c, pid, from_sequence_nr, to_sequence_nr, limit), what
        )
        ahead: asyncio.Future[list[PersistentRepr]] | None = None
        try:
            while chunk:
                expected = validate_chunk(pid, expected, chunk)
                remaining -= len(chunk)
                if len(chunk) == limit and remaining > 0:  # a full chunk: there may be more
                    limit = min(chunk_size, remaining)
                    ahead = fetch(chunk[-1].sequence_nr + 1, limit)  # read ahead of the consumer
                yield chunk
                if ahead is None:
                    return
                chunk = await ahead
                ahead = None
        finally:
            if ahead is not None:
                ahead.cancel()

    async def recover(
        self,
        persistence_id: str,
        after: int,
        apply: Callable[[Sequence[PersistentRepr]], None],
    ) -> int:
        """See :meth:`Journal.recover`: one round trip to the reader thread and one
        statement for an id whose events fit in one replay chunk."""
        check_persistence_id(persistence_id)
        if after >= MAX_SEQUENCE_NR:  # nothing can follow it
            return await super().recover(persistence_id, after, apply)
        pid = persistence_id
        limit = self.settings.replay_chunk_size
        found, expected, chunk = await self._read(
            lambda c: read_recovery(c, pid, after + 1, limit), f"recovery of {pid!r}"
        )
        if not chunk:
            if found > after:  # all deleted, or written since the first read: the long way
                return await super().recover(pid, after, apply)
            if after > found:  # covered by the caller's snapshot: see Journal
                await self._delete_to(pid, after, beyond_highest=True)
            return after
        validate_chunk(pid, expected, chunk)
        apply(chunk)
        last = chunk[-1].sequence_nr
        if last < found:  # a full chunk: replay the rest, up to the highest read with it
            async for rest in self.replay(pid, last + 1, found):
                apply(rest)
        return found

    async def highest_sequence_nr(self, persistence_id: str, from_sequence_nr: int = 0) -> int:
        check_persistence_id(persistence_id)
        found = await self._read(lambda c: highest(c, persistence_id), "highest sequence number")
        if from_sequence_nr > found:  # covered by the caller's snapshot: see Journal
            await self._delete_to(persistence_id, from_sequence_nr, beyond_highest=True)
            return from_sequence_nr
        return found

    async def persistence_ids(self, after: str = "", limit: int = 1000) -> list[str]:
        check_ids_page(after, limit)
        return await self._read(lambda c: persistence_ids(c, after, limit), "listing ids")

    async def tagged_events(
        self, tag: str, after: int, limit: int
    ) -> tuple[int, list[tuple[int, PersistentRepr]]]:
        check_tag(tag)
        check_ids_page("", limit)
        return await self._read(lambda c: read_tag(c, tag, after, limit), f"tag query {tag!r}")

    async def delete_to(self, persistence_id: str, to_sequence_nr: int) -> None:
        check_persistence_id(persistence_id)
        await self._delete_to(persistence_id, to_sequence_nr, beyond_highest=False)

    async def _delete_to(
        self, persistence_id: str, to_sequence_nr: int, *, beyond_highest: bool
    ) -> None:
        self._check_open()

        def job(conn: sqlite3.Connection) -> None:
            # On the writer thread: the fencing cache learns the new highest, and
            # the lock wait is a whole busy timeout again (a flush may have cut it).
            self._committer.forget(persistence_id)
            self._wait_for_lock_until(conn, time.monotonic() + self.settings.busy_timeout_s)
            delete_to(conn, persistence_id, to_sequence_nr, beyond_highest=beyond_highest)

        try:
            await self._writer.submit(job)
        except sqlite3.Error as exc:
            raise JournalWriteError(
                f"sqlite journal: deleting {persistence_id!r} up to {to_sequence_nr} failed: {exc}"
            ) from exc

    async def backup(self, target: str | os.PathLike[str]) -> None:
        """Copy the whole database (journal and whatever shares its file) into ``target``.

        An online backup with SQLite's backup API: writes go on meanwhile;
        ``target`` (overwritten if it exists) holds exactly the transactions
        committed before the copy began, in one self-contained file. Runs on
        the reader thread. Raises :class:`JournalReadError` if it fails.
        """
        await self._read(lambda c: backup(c, target), f"backup to {os.fspath(target)!r}")

    async def close(self) -> None:
        self._closed = True
        if self._checkpoint_timer is not None:
            self._checkpoint_timer.cancel()
            self._checkpoint_timer = None
        if self._pending:  # accepted in this loop turn: flush before the thread stops
            self._queue_flush(time.monotonic())
        await self._writer.stop()
        await self._reader.stop()


_LOAD = """SELECT sequence_nr, timestamp, serializer_id, manifest, payload FROM snapshots
    WHERE persistence_id = ? AND sequence_nr BETWEEN ? AND ? AND timestamp BETWEEN ? AND ?
    ORDER BY sequence_nr DESC LIMIT 1"""
_DELETE = """DELETE FROM snapshots
    WHERE persistence_id = ? AND sequence_nr BETWEEN ? AND ? AND timestamp BETWEEN ? AND ?"""


def _criteria_args(pid: str, c: SnapshotSelectionCriteria) -> tuple[str, int, int, int, int]:
    return (pid, c.min_sequence_nr, c.max_sequence_nr, c.min_timestamp, c.max_timestamp)


class SqliteSnapshotStore(SnapshotStore):
    """Snapshots in the same SQLite file as the journal (or another), on their own thread."""

    def __init__(self, settings: SqliteSettings | str | os.PathLike[str]) -> None:
        self.settings = _settings(settings)
        self._worker: ThreadWorker[sqlite3.Connection] = ThreadWorker(
            "shoal-sqlite-snapshots", lambda: connect(self.settings), _close
        )
        self._closed = False

    async def _run(self, fn: Callable[[sqlite3.Connection], _T], what: str) -> _T:
        if self._closed:
            raise PluginClosedError(f"the sqlite snapshot store {self.settings.path!s} is closed")
        try:
            return await self._worker.submit(fn)
        except sqlite3.Error as exc:
            raise SnapshotStoreError(f"sqlite snapshot store: {what} failed: {exc}") from exc

    async def save(self, snapshot: SnapshotRecord) -> None:
        check_persistence_id(snapshot.metadata.persistence_id)
        m = snapshot.metadata
        row = (
            m.persistence_id,
            m.sequence_nr,
            m.timestamp,
            snapshot.serializer_id,
            snapshot.manifest,
            snapshot.payload,
        )

        def job(conn: sqlite3.Connection) -> None:
            conn.execute("INSERT OR REPLACE INTO snapshots VALUES (?, ?, ?, ?, ?, ?)", row)

        await self._run(job, f"saving {m.persistence_id!r} at {m.sequence_nr}")

    async def load(
        self,
        persistence_id: str,
        criteria: SnapshotSelectionCriteria = LATEST,
    ) -> SnapshotRecord | None:
        check_persistence_id(persistence_id)
        if criteria.is_empty():
            return None
        args = _criteria_args(persistence_id, criteria)

        def job(conn: sqlite3.Connection) -> SnapshotRecord | None:
            row = conn.execute(_LOAD, args).fetchone()
            if row is None:
                return None
            seq, ts, ser, manifest, payload = row
            return SnapshotRecord(SnapshotMetadata(persistence_id, seq, ts), ser, manifest, payload)

        return await self._run(job, f"loading {persistence_id!r}")

    async def delete(self, persistence_id: str, criteria: SnapshotSelectionCriteria) -> None:
        check_persistence_id(persistence_id)
        if criteria.is_empty():
            return
        args = _criteria_args(persistence_id, criteria)

        def job(conn: sqlite3.Connection) -> None:
            conn.execute(_DELETE, args)

        await self._run(job, f"deleting snapshots of {persistence_id!r}")

    async def close(self) -> None:
        self._closed = True
        await self._worker.stop()
