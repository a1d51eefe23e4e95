"""The SQLite journal's blocking half: settings, schema and the operations run on its threads.

Everything here runs on a :class:`ThreadWorker` thread, never on the event
loop. Layout (one database file for journal and snapshots):

* ``journal`` — one row per event, primary key ``(persistence_id,
  sequence_nr)``, a ``WITHOUT ROWID`` table so an append is one B-tree insert;
* ``journal_meta`` — per persistence id, ``deleted_to``: deleted rows are
  removed, and this marker keeps the highest sequence number when every
  event was deleted;
* ``snapshots`` — primary key ``(persistence_id, sequence_nr)``.

Tables are ``STRICT``, so a row of the wrong type cannot be stored (SQLite
>= 3.37).
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final, Literal

from ._errors import JournalWriteError, SequenceConflictError
from ._journal import PersistentRepr

__all__ = ["GroupCommitter", "SqliteSettings", "connect", "delete_to", "highest", "read_chunk"]

_SCHEMA: Final = (
    """CREATE TABLE IF NOT EXISTS journal (
        persistence_id TEXT NOT NULL,
        sequence_nr INTEGER NOT NULL,
        serializer_id INTEGER NOT NULL,
        manifest TEXT NOT NULL,
        payload BLOB NOT NULL,
        writer_uuid TEXT NOT NULL,
        timestamp INTEGER NOT NULL,
        PRIMARY KEY (persistence_id, sequence_nr)
    ) WITHOUT ROWID, STRICT""",
    """CREATE TABLE IF NOT EXISTS journal_meta (
        persistence_id TEXT NOT NULL PRIMARY KEY,
        deleted_to INTEGER NOT NULL
    ) WITHOUT ROWID, STRICT""",
    """CREATE TABLE IF NOT EXISTS snapshots (
        persistence_id TEXT NOT NULL,
        sequence_nr INTEGER NOT NULL,
        timestamp INTEGER NOT NULL,
        serializer_id INTEGER NOT NULL,
        manifest TEXT NOT NULL,
        payload BLOB NOT NULL,
        PRIMARY KEY (persistence_id, sequence_nr)
    ) STRICT""",
)

_HIGHEST: Final = """SELECT max(
    coalesce((SELECT max(sequence_nr) FROM journal WHERE persistence_id = ?1), 0),
    coalesce((SELECT deleted_to FROM journal_meta WHERE persistence_id = ?1), 0))"""
_INSERT: Final = "INSERT INTO journal VALUES (?, ?, ?, ?, ?, ?, ?)"
_READ: Final = """SELECT sequence_nr, serializer_id, manifest, payload, writer_uuid, timestamp
    FROM journal WHERE persistence_id = ? AND sequence_nr BETWEEN ? AND ?
    ORDER BY sequence_nr LIMIT ?"""


@dataclass(frozen=True, slots=True)
class SqliteSettings:
    """Settings of the SQLite journal and snapshot store.

    ``synchronous``: ``"NORMAL"`` (the default) makes every acknowledged write
    survive a crash of the process (including SIGKILL); in WAL mode the
    last transactions may be lost on power failure or an OS crash.
    ``"FULL"`` also survives those, at one fsync per group commit.
    ``replay_chunk_size`` rows are fetched per round trip to the reader
    thread during replay; one chunk is fetched ahead of the consumer.
    ``busy_timeout_s`` is how long a connection waits for another
    connection's (or process's) write lock before failing.
    """

    path: str | os.PathLike[str] = "shoal.db"
    synchronous: Literal["NORMAL", "FULL", "EXTRA"] = "NORMAL"
    replay_chunk_size: int = 4096
    busy_timeout_s: float = 5.0
    mmap_size: int = field(default=256 * 1024 * 1024)

    def __post_init__(self) -> None:
        if self.replay_chunk_size < 1:
            raise ValueError("replay_chunk_size must be positive")


def connect(settings: SqliteSettings) -> sqlite3.Connection:
    """Open the database in WAL mode and create the tables if missing."""
    conn = sqlite3.connect(
        settings.path,
        isolation_level=None,  # transactions are explicit: BEGIN IMMEDIATE ... COMMIT
        check_same_thread=True,
        timeout=settings.busy_timeout_s,
    )
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={settings.synchronous}")
        conn.execute(f"PRAGMA mmap_size={int(settings.mmap_size)}")
        for ddl in _SCHEMA:
            conn.execute(ddl)
    except BaseException:
        conn.close()
        raise
    return conn


def highest(conn: sqlite3.Connection, persistence_id: str) -> int:
    """The highest stored (or deleted) sequence number of ``persistence_id``, 0 if none."""
    row = conn.execute(_HIGHEST, (persistence_id,)).fetchone()
    return int(row[0])


def read_chunk(
    conn: sqlite3.Connection, persistence_id: str, from_nr: int, to_nr: int, limit: int
) -> list[PersistentRepr]:
    """Up to ``limit`` events ``from_nr <= n <= to_nr``, ascending."""
    pid = persistence_id
    return [
        PersistentRepr(pid, seq, ser, man, payload, writer, ts)
        for seq, ser, man, payload, writer, ts in conn.execute(_READ, (pid, from_nr, to_nr, limit))
    ]


def delete_to(conn: sqlite3.Connection, persistence_id: str, to_sequence_nr: int) -> None:
    """Delete events ``<= min(to_sequence_nr, highest)`` and raise the ``deleted_to`` marker."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        to = min(to_sequence_nr, highest(conn, persistence_id))
        conn.execute(
            """INSERT INTO journal_meta VALUES (?1, ?2) ON CONFLICT (persistence_id)
            DO UPDATE SET deleted_to = max(deleted_to, ?2)""",
            (persistence_id, to),
        )
        conn.execute(
            "DELETE FROM journal WHERE persistence_id = ? AND sequence_nr <= ?",
            (persistence_id, to),
        )
        conn.execute("COMMIT")
    except BaseException:
        conn.rollback()
        raise


class GroupCommitter:
    """Commits many pending writes in one transaction, checking each one's fencing.

    Lives on the writer thread. It caches the highest sequence number of each
    persistence id it has seen, so a write's fencing check is a dict lookup;
    the cache is dropped whenever ``PRAGMA data_version`` shows that another
    connection (another process, or the snapshot store) committed meanwhile,
    and after any failed transaction, so the check is always against the
    database's committed state.
    """

    __slots__ = ("_data_version", "_highest")

    def __init__(self) -> None:
        self._highest: dict[str, int] = {}
        self._data_version = -1

    def commit(
        self, conn: sqlite3.Connection, writes: Sequence[Sequence[PersistentRepr]]
    ) -> list[Exception | None]:
        """Commit ``writes`` (each a valid, non-empty write); one outcome per write.

        All accepted writes share one transaction. Should that transaction
        fail, each write is retried in a transaction of its own, so one bad
        write cannot fail the others.
        """
        try:
            return self._commit_group(conn, writes)
        except sqlite3.Error as exc:
            self._highest.clear()
            if len(writes) == 1:
                return [_write_error(writes[0], exc)]
        outcomes: list[Exception | None] = []
        for write in writes:
            try:
                outcomes.extend(self._commit_group(conn, (write,)))
            except sqlite3.Error as exc:
                self._highest.clear()
                outcomes.append(_write_error(write, exc))
        return outcomes

    def forget(self) -> None:
        """Drop the cache (after this thread changed the database by other means)."""
        self._highest.clear()

    def _commit_group(
        self, conn: sqlite3.Connection, writes: Sequence[Sequence[PersistentRepr]]
    ) -> list[Exception | None]:
        outcomes: list[Exception | None] = [None] * len(writes)
        conn.execute("BEGIN IMMEDIATE")
        try:
            version = conn.execute("PRAGMA data_version").fetchone()[0]
            cache = self._highest
            if version != self._data_version:
                cache.clear()
                self._data_version = version
            rows: list[tuple[str, int, int, str, bytes, str, int]] = []
            for i, events in enumerate(writes):
                first = events[0]
                pid = first.persistence_id
                known = cache.get(pid)
                if known is None:
                    known = highest(conn, pid)
                if first.sequence_nr != known + 1:
                    outcomes[i] = SequenceConflictError(pid, known + 1, first.sequence_nr)
                    cache[pid] = known
                    continue
                cache[pid] = events[-1].sequence_nr
                rows.extend(
                    [
                        (pid, e.sequence_nr, e.serializer_id, e.manifest, e.payload,
                         e.writer_uuid, e.timestamp)
                        for e in events
                    ]
                )  # fmt: skip
            if rows:
                conn.executemany(_INSERT, rows)
            conn.execute("COMMIT")
        except BaseException:
            self._highest.clear()
            if conn.in_transaction:
                conn.rollback()
            raise
        return outcomes


def _write_error(events: Sequence[PersistentRepr], exc: sqlite3.Error) -> JournalWriteError:
    first = events[0]
    err = JournalWriteError(
        f"sqlite write of {first.persistence_id!r} sequence numbers {first.sequence_nr}.."
        f"{events[-1].sequence_nr} failed: {exc}"
    )
    err.__cause__ = exc
    return err
