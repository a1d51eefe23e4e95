"""The SQLite journal's blocking half: settings, schema and the operations run on its threads.

Everything here runs on a :class:`ThreadWorker` thread, never on the event
loop. Layout (one database, ``shoal.db`` by default, for journal and
snapshots; see :mod:`._sqlite` for the files on disk and backups):

* ``journal`` — one row per event, unique on ``(persistence_id,
  sequence_nr)``. A rowid table plus that index, not a ``WITHOUT ROWID``
  table keyed by it: concurrent actors' appends land at the table's end and
  touch few pages, where the keyed layout scatters them over every id's
  pages (2.4x fewer rows/s for 1,000 interleaved ids, same replay speed);
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
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from operator import attrgetter
from typing import Final, Literal, cast

from ._errors import EventRejectedError, JournalWriteError, SequenceConflictError
from ._journal import PersistentRepr, offset_beyond_end

__all__ = [
    "GroupCommitter",
    "SqliteSettings",
    "backup",
    "checkpoint",
    "connect",
    "truncate_wal",
    "delete_to",
    "highest",
    "is_busy",
    "deleted_to",
    "insert_tagged",
    "persistence_ids",
    "read_tag",
    "tag_rows",
    "read_chunk",
    "read_first_chunk",
    "read_recovery",
]

_SCHEMA: Final = (
    """CREATE TABLE IF NOT EXISTS journal (
        persistence_id TEXT NOT NULL,
        sequence_nr INTEGER NOT NULL,
        serializer_id INTEGER NOT NULL,
        manifest TEXT NOT NULL,
        payload BLOB NOT NULL,
        writer_uuid TEXT NOT NULL,
        timestamp INTEGER NOT NULL,
        UNIQUE (persistence_id, sequence_nr)
    ) STRICT""",
    """CREATE TABLE IF NOT EXISTS journal_meta (
        persistence_id TEXT NOT NULL PRIMARY KEY,
        deleted_to INTEGER NOT NULL
    ) WITHOUT ROWID, STRICT""",
    """CREATE TABLE IF NOT EXISTS journal_tags (
        ordering INTEGER PRIMARY KEY AUTOINCREMENT,
        tag TEXT NOT NULL,
        persistence_id TEXT NOT NULL,
        sequence_nr INTEGER NOT NULL
    ) STRICT""",
    "CREATE INDEX IF NOT EXISTS journal_tags_by_tag ON journal_tags (tag, ordering)",
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

_TABLE_NAMES: Final = frozenset({"journal", "journal_meta", "journal_tags", "snapshots"})
_TABLES: Final = "SELECT name FROM sqlite_schema WHERE type = 'table'"
_HIGHEST: Final = """SELECT max(
    coalesce((SELECT max(sequence_nr) FROM journal WHERE persistence_id = ?1), 0),
    coalesce((SELECT deleted_to FROM journal_meta WHERE persistence_id = ?1), 0))"""
# One INSERT statement per group (see GroupCommitter): up to this many rows,
# 7 host parameters each, within SQLite's limit of 32,766 (since 3.32).
_ROWS_PER_STATEMENT: Final = 4096
_COLUMNS: Final = 7
_ROW_OVERHEAD: Final = 100  # about the bytes of a row's keys and headers, besides its payload
_LOOKUP_CHUNK: Final = 500
_LOOKUP: Final = """SELECT v.column1,
    (SELECT max(sequence_nr) FROM journal WHERE persistence_id = v.column1),
    (SELECT deleted_to FROM journal_meta WHERE persistence_id = v.column1)
    FROM (VALUES {}) AS v"""


def _insert_sql(rows: int) -> str:
    return "INSERT INTO journal VALUES " + ", ".join(["(?, ?, ?, ?, ?, ?, ?)"] * rows)


def insert_rows(conn: sqlite3.Connection, flat: list[object]) -> None:
    """Insert rows given as one flat list of column values, atomically.

    Up to ``_ROWS_PER_STATEMENT`` rows are one statement, atomic on its own
    (or part of the caller's transaction); more take a transaction of several.
    """
    rows = len(flat) // _COLUMNS
    if rows <= _ROWS_PER_STATEMENT:
        conn.execute(_insert_sql(rows), flat)
        return
    own = not conn.in_transaction
    if own:
        conn.execute("BEGIN IMMEDIATE")
    try:
        step = _ROWS_PER_STATEMENT * _COLUMNS
        for start in range(0, len(flat), step):
            part = flat[start : start + step]
            conn.execute(_insert_sql(len(part) // _COLUMNS), part)
        if own:
            conn.execute("COMMIT")
    except BaseException:
        if own and conn.in_transaction:
            conn.rollback()
        raise


_TAG_INSERT: Final = "INSERT INTO journal_tags (tag, persistence_id, sequence_nr) VALUES "


def insert_tagged(conn: sqlite3.Connection, flat: list[object], tags: list[object]) -> None:
    """:func:`insert_rows`, and the tag rows ``tags`` (flat ``tag, pid, seq`` triples) with them.

    Without tags this is :func:`insert_rows`; with tags, both in one transaction.
    """
    if not tags:
        insert_rows(conn, flat)
        return
    own = not conn.in_transaction
    if own:
        conn.execute("BEGIN IMMEDIATE")
    try:
        insert_rows(conn, flat)
        step = _ROWS_PER_STATEMENT * 3
        for start in range(0, len(tags), step):
            part = tags[start : start + step]
            conn.execute(_TAG_INSERT + ", ".join(["(?, ?, ?)"] * (len(part) // 3)), part)
        if own:
            conn.execute("COMMIT")
    except BaseException:
        if own and conn.in_transaction:
            conn.rollback()
        raise


def tag_rows(events: Sequence[PersistentRepr]) -> list[object]:
    """The flat ``tag, persistence_id, sequence_nr`` values of the tags of ``events``."""
    return [
        v for e in events if e.tags for t in e.tags for v in (t, e.persistence_id, e.sequence_nr)
    ]


# The journal's columns of one event, in table order, as a tuple (one C call: the
# group commit builds one per row while holding the GIL the event loop wants).
_row: Final = attrgetter(
    "persistence_id",
    "sequence_nr",
    "serializer_id",
    "manifest",
    "payload",
    "writer_uuid",
    "timestamp",
)


def flat_rows(events: Sequence[PersistentRepr]) -> list[object]:
    """The journal's column values of ``events``, row after row, in one flat list."""
    flat: list[object] = []
    for e in events:
        flat += _row(e)
    return flat


_READ_TAG: Final = """SELECT t.ordering, t.persistence_id, t.sequence_nr, j.serializer_id,
    j.manifest, j.payload, j.writer_uuid, j.timestamp
    FROM journal_tags AS t LEFT JOIN journal AS j
    ON j.persistence_id = t.persistence_id AND j.sequence_nr = t.sequence_nr
    WHERE t.tag = ? AND t.ordering > ? ORDER BY t.ordering LIMIT ?"""


def read_tag(
    conn: sqlite3.Connection, tag: str, after: int, limit: int
) -> tuple[int, list[tuple[int, PersistentRepr]]]:
    """Up to ``limit`` tag rows of ``tag`` past ordering ``after``: the last ordering read
    (``after`` if none) and the events still stored, with their orderings."""
    rows = conn.execute(_READ_TAG, (tag, after, limit)).fetchall()
    tags = (tag,)
    found = [
        (ordering, PersistentRepr(pid, seq, ser, man, payload, writer, ts, tags))
        for ordering, pid, seq, ser, man, payload, writer, ts in rows
        if payload is not None  # None: the event was deleted
    ]
    last = rows[-1][0] if rows else after
    if last == after and after > 0:  # nothing past it: is it past every ordering given out?
        row = conn.execute(_LAST_ORDERING).fetchone()
        end = int(row[0]) if row is not None else 0
        if after > end:
            raise offset_beyond_end(tag, after, end)
    return last, found


_LAST_ORDERING: Final = "SELECT seq FROM sqlite_sequence WHERE name = 'journal_tags'"


_DELETED_TO: Final = "SELECT deleted_to FROM journal_meta WHERE persistence_id = ?"
_READ: Final = """SELECT sequence_nr, serializer_id, manifest, payload, writer_uuid, timestamp
    FROM journal WHERE persistence_id = ? AND sequence_nr BETWEEN ? AND ?
    ORDER BY sequence_nr LIMIT ?"""


@dataclass(frozen=True, slots=True)
class SqliteSettings:
    """Settings of the SQLite journal and snapshot store.

    The write-ahead log (``<path>-wal``) is kept bounded by three means:

    * ``checkpoint_bytes``: after about this many bytes of events the journal
      has the *reader* thread run a passive WAL checkpoint, so copying the
      WAL into the database overlaps with writing instead of stalling a
      group commit (+25% appends/s). Each connection also checkpoints by
      itself once the WAL holds 4 x ``checkpoint_bytes``
      (``wal_autocheckpoint``), the backstop if the reader cannot keep up.
    * ``checkpoint_interval_s``: at most this long (on the journal's clock)
      after a write, the reader thread copies the whole WAL into the
      database and truncates the WAL file to 0 bytes, without waiting for
      other connections: if one is busy at that moment, it copies what it
      can, and the next write starts the WAL over, truncating its file to
      ``checkpoint_bytes`` (``journal_size_limit``). One such checkpoint per
      interval at most, none while no writes come.

    So the WAL file stays below about ``checkpoint_bytes`` plus what is
    written in one ``checkpoint_interval_s``, and never above 4 x
    ``checkpoint_bytes`` plus one group commit; ``checkpoint_interval_s``
    after the last write, every event is in the database file and the WAL
    file is empty. A reader of another process that holds an old snapshot
    for long can delay this, never lose data.
    """

    path: str | os.PathLike[str] = "shoal.db"
    """The database file (journal and snapshots); while it is open SQLite
    keeps ``<path>-wal`` and ``<path>-shm`` beside it."""

    synchronous: Literal["NORMAL", "FULL", "EXTRA"] = "NORMAL"
    """``"NORMAL"`` makes every acknowledged write survive a crash of the
    process (including SIGKILL); in WAL mode the last transactions may be
    lost on power failure or an OS crash. ``"FULL"`` also survives those,
    at one fsync per group commit; ``"EXTRA"`` adds a sync of the directory."""

    replay_chunk_size: int = 4096
    """Rows fetched per round trip to the reader thread during replay; one
    chunk is fetched ahead of the consumer."""

    busy_timeout_s: float = 5.0
    """Seconds a connection waits for another connection's (or process's)
    write lock before failing."""

    mmap_size: int = field(default=256 * 1024 * 1024)
    """Bytes of the database file read through memory mapping (SQLite's
    ``mmap_size``); ``0`` reads with system calls only."""

    checkpoint_bytes: int = 16 * 1024 * 1024
    """Bytes of events after which the reader thread runs a passive WAL
    checkpoint (at least 4096); also bounds the WAL file (see above)."""

    checkpoint_interval_s: float = 1.0
    """Seconds (journal clock) after a write by which the WAL is copied into
    the database and its file truncated (see above)."""

    def __post_init__(self) -> None:
        if self.replay_chunk_size < 1:
            raise ValueError("replay_chunk_size must be positive")
        if self.checkpoint_bytes < 4096:
            raise ValueError("checkpoint_bytes must be at least one page (4096)")
        if not 0 < self.checkpoint_interval_s < float("inf"):
            raise ValueError("checkpoint_interval_s must be positive and finite")


def connect(settings: SqliteSettings) -> sqlite3.Connection:
    """Open the database in WAL mode and create the tables if missing."""
    conn = sqlite3.connect(
        settings.path,
        isolation_level=None,  # transactions are explicit: BEGIN IMMEDIATE ... COMMIT
        check_same_thread=True,
        cached_statements=256,  # the group INSERT of each size recently seen
        timeout=settings.busy_timeout_s,
    )
    try:
        _while_busy(settings.busy_timeout_s, lambda: _enter_wal(conn))
        conn.execute(f"PRAGMA synchronous={settings.synchronous}")
        conn.execute(f"PRAGMA mmap_size={int(settings.mmap_size)}")
        conn.execute(f"PRAGMA wal_autocheckpoint={4 * settings.checkpoint_bytes // 4096}")
        conn.execute(f"PRAGMA journal_size_limit={int(settings.checkpoint_bytes)}")
        _while_busy(settings.busy_timeout_s, lambda: _create_tables(conn))
    except BaseException:
        conn.close()
        raise
    return conn


def is_busy(exc: BaseException | None) -> bool:
    """Whether ``exc`` is SQLite's "database is locked" (another connection holds the lock)."""
    if not isinstance(exc, sqlite3.OperationalError):
        return False
    primary = getattr(exc, "sqlite_errorcode", 0) & 0xFF  # extended codes keep it in the low byte
    return primary in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)


def _while_busy(timeout_s: float, step: Callable[[], None]) -> None:
    """Run ``step``, again while it fails with "database is locked", for up to ``timeout_s``.

    For the statements SQLite does not retry itself: switching a new file to
    WAL, and a schema change started by a reader, fail at once rather than
    wait (to avoid a deadlock) when several connections open one new file.
    """
    deadline = time.monotonic() + timeout_s
    delay = 0.001
    while True:
        try:
            step()
            return
        except sqlite3.OperationalError as exc:
            if not is_busy(exc) or time.monotonic() + delay > deadline:
                raise
        time.sleep(delay)  # on the plugin's own thread, never the event loop
        delay = min(delay * 2, 0.05)


def _enter_wal(conn: sqlite3.Connection) -> None:
    mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
    if str(mode).lower() != "wal":
        raise sqlite3.OperationalError(f"cannot switch to WAL mode (journal_mode is {mode})")


def _create_tables(conn: sqlite3.Connection) -> None:
    """Create the missing tables in one write transaction (none if all exist)."""
    present = {name for (name,) in conn.execute(_TABLES)}
    if present >= _TABLE_NAMES:
        return
    conn.execute("BEGIN IMMEDIATE")  # waits for the write lock (busy_timeout) like a write
    try:
        for ddl in _SCHEMA:
            conn.execute(ddl)
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.rollback()
        raise


def checkpoint(conn: sqlite3.Connection) -> None:
    """Copy what the WAL holds into the database, without waiting for anyone (PASSIVE)."""
    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()


def truncate_wal(conn: sqlite3.Connection, busy_timeout_s: float) -> None:
    """Copy the whole WAL into the database and truncate the WAL file to 0 bytes.

    Never waits for other connections: with no busy timeout, a checkpoint
    that meets a writer or a reader of an older snapshot copies what it can
    (as PASSIVE does) and leaves the file as it is. The bulk is copied by a
    PASSIVE checkpoint first, while writers go on: a TRUNCATE checkpoint
    holds the write lock while it copies, so it is left only what was
    committed meanwhile (copying a whole WAL of many megabytes under the
    lock stalled group commits for hundreds of milliseconds).
    """
    conn.execute("PRAGMA busy_timeout=0")
    try:
        conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
    finally:
        conn.execute(f"PRAGMA busy_timeout={int(busy_timeout_s * 1000)}")


def backup(conn: sqlite3.Connection, target: str | os.PathLike[str]) -> None:
    """Copy the database ``conn`` reads into the file ``target``, as one consistent snapshot.

    Uses SQLite's online backup API: writers may go on meanwhile; the copy
    holds every transaction committed before it began, and none after.
    """
    dest = sqlite3.connect(target)
    try:
        conn.backup(dest)
    finally:
        dest.close()


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


_NEXT_ID: Final = (
    "SELECT min(persistence_id) FROM ("
    "SELECT min(persistence_id) AS persistence_id FROM journal WHERE persistence_id > ?1 "
    "UNION ALL "
    "SELECT min(persistence_id) FROM journal_meta WHERE persistence_id > ?1)"
)


def persistence_ids(conn: sqlite3.Connection, after: str, limit: int) -> list[str]:
    """Up to ``limit`` ids with events or a deletion marker, ascending, each above ``after``.

    One index seek per id, however many events each id holds.
    """
    ids: list[str] = []
    conn.execute("BEGIN")
    try:
        while len(ids) < limit:
            (found,) = conn.execute(_NEXT_ID, (after,)).fetchone()
            if found is None:
                break
            ids.append(found)
            after = found
    finally:
        conn.execute("COMMIT")
    return ids


def deleted_to(conn: sqlite3.Connection, persistence_id: str) -> int:
    """The deletion marker of ``persistence_id``: events up to it were deleted (0 if none)."""
    row = conn.execute(_DELETED_TO, (persistence_id,)).fetchone()
    return int(row[0]) if row is not None else 0


def read_first_chunk(
    conn: sqlite3.Connection, persistence_id: str, from_nr: int, to_nr: int, limit: int
) -> tuple[int, list[PersistentRepr]]:
    """The first event a replay must find, and the first chunk (see :func:`read_chunk`).

    Both in one read transaction: the first event is ``from_nr`` or, past a
    deletion, the one after the marker; a replay whose first row is later
    has found rows removed without a marker.
    """
    conn.execute("BEGIN")
    try:
        first = max(from_nr, deleted_to(conn, persistence_id) + 1)
        return first, read_chunk(conn, persistence_id, first, to_nr, limit)
    finally:
        conn.execute("COMMIT")


_RECOVER: Final = """SELECT sequence_nr, serializer_id, manifest, payload, writer_uuid, timestamp,
    (SELECT max(sequence_nr) FROM journal WHERE persistence_id = ?1),
    (SELECT deleted_to FROM journal_meta WHERE persistence_id = ?1)
    FROM journal WHERE persistence_id = ?1 AND sequence_nr >=
        max(?2, coalesce((SELECT deleted_to FROM journal_meta WHERE persistence_id = ?1), 0) + 1)
    ORDER BY sequence_nr LIMIT ?3"""


def read_recovery(
    conn: sqlite3.Connection, persistence_id: str, from_nr: int, limit: int
) -> tuple[int, int, list[PersistentRepr]]:
    """The highest sequence number, the first event a replay from ``from_nr`` must find,
    and the first chunk of up to ``limit`` events from there: what a recovery reads first.

    With events, one statement (so one snapshot of the database) answers all
    three; the first event is ``from_nr`` or, past a deletion, the one after
    the marker (see :func:`read_first_chunk`). Without events, the highest
    comes from a second statement, maybe of a later snapshot: the caller must
    not take events up to it as replayed (see ``SqliteJournal.recover``).
    """
    pid = persistence_id
    rows = conn.execute(_RECOVER, (pid, from_nr, limit)).fetchall()
    if not rows:
        return highest(conn, pid), from_nr, []
    stored, deleted = rows[0][6], rows[0][7] or 0
    chunk = [
        PersistentRepr(pid, seq, ser, man, payload, writer, ts)
        for seq, ser, man, payload, writer, ts, _, _ in rows
    ]
    return max(stored, deleted), max(from_nr, deleted + 1), chunk


def delete_to(
    conn: sqlite3.Connection,
    persistence_id: str,
    to_sequence_nr: int,
    *,
    beyond_highest: bool = False,
) -> None:
    """Delete events ``<= min(to_sequence_nr, highest)`` and raise the ``deleted_to`` marker.

    With ``beyond_highest``, up to ``to_sequence_nr`` even past the highest
    stored: the numbers up to it count as used (a snapshot covers them).
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        to = min(to_sequence_nr, highest(conn, persistence_id))
        if beyond_highest:
            to = to_sequence_nr
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
    """Commits many pending writes with one INSERT statement, checking each one's fencing.

    Lives on the writer thread. One statement per group matters: SQLite runs
    without the GIL, and each time this thread takes the GIL back while the
    event loop is busy it may wait a whole switch interval (5 ms); a group of
    1,000 writes costs two or three such waits instead of one per row.

    Fencing: the committer caches the highest sequence number of every
    persistence id it wrote or looked up (ids not yet seen are looked up
    together, in one query per group). The cache can lag behind the database
    (another process appended meanwhile) but never lead it (a failed write
    clears it; deleting never lowers the highest). So a write at or below
    the cached number is refused at once; one past it (a newer incarnation
    continuing what another process wrote) is checked exactly, alone, inside
    its own transaction. A lagging cache may also let a write of an already
    stored number pass the check; the unique index on
    ``(persistence_id, sequence_nr)`` then refuses the group's statement, and
    every write of that group is retried alone, checked exactly. So the check
    is exact for writers in any process, and a refusal
    (:class:`SequenceConflictError`, nothing stored) fails only its own write.
    """

    __slots__ = ("_highest", "wal_bytes")

    def __init__(self) -> None:
        self._highest: dict[str, int] = {}
        self.wal_bytes = 0
        """About how many bytes the committed rows added to the WAL (the payloads
        plus ~100 bytes of keys and headers a row); the owner resets it."""

    def commit(
        self, conn: sqlite3.Connection, writes: Sequence[Sequence[PersistentRepr]]
    ) -> list[Exception | None]:
        """Commit ``writes`` (each a valid, non-empty write); one outcome per write.

        Should the group's statement fail, each write is retried in a
        transaction of its own, so one bad write cannot fail the others;
        except when the group could not get the write lock within the busy
        timeout: then none could, and all fail at once (retrying them one by
        one would make the last wait one busy timeout per write ahead of it).
        """
        try:
            return self._commit_group(conn, writes)
        except Exception as exc:  # binding errors (e.g. a lone surrogate) are not sqlite3.Error
            self._highest.clear()
            if is_busy(exc):
                return [_write_error(events, exc) for events in writes]
        outcomes: list[Exception | None] = []
        for events in writes:
            outcome = self._commit_one(conn, events)
            outcomes.append(outcome)
            if outcome is not None and is_busy(outcome.__cause__):
                # locked now: the rest would each wait a whole busy timeout too
                failed = outcome.__cause__
                assert failed is not None
                outcomes += [_write_error(e, failed) for e in writes[len(outcomes) :]]
                break
        return outcomes

    def forget(self, persistence_id: str | None = None) -> None:
        """Drop the cache (after a failure of unknown extent), or one id's entry."""
        if persistence_id is None:
            self._highest.clear()
        else:
            self._highest.pop(persistence_id, None)

    def _look_up(self, conn: sqlite3.Connection, pids: list[str]) -> None:
        for start in range(0, len(pids), _LOOKUP_CHUNK):
            chunk = pids[start : start + _LOOKUP_CHUNK]
            sql = _LOOKUP.format(", ".join(["(?)"] * len(chunk)))
            for pid, stored, deleted in conn.execute(sql, chunk):
                self._highest[pid] = max(stored or 0, deleted or 0)

    def _commit_group(
        self, conn: sqlite3.Connection, writes: Sequence[Sequence[PersistentRepr]]
    ) -> list[Exception | None]:
        cache = self._highest
        unseen = list({w[0].persistence_id for w in writes} - cache.keys())
        if unseen:
            self._look_up(conn, unseen)
        outcomes: list[Exception | None] = [None] * len(writes)
        flat: list[object] = []
        tagged: list[PersistentRepr] = []
        unsure: list[int] = []
        row = _row
        for i, events in enumerate(writes):
            first = events[0]
            pid = first.persistence_id
            known = cache[pid]
            if first.sequence_nr != known + 1:
                if first.sequence_nr <= known:  # stored for certain: the cache never leads
                    outcomes[i] = SequenceConflictError(pid, known + 1, first.sequence_nr)
                else:  # the cache may lag (another process wrote): check exactly, alone
                    unsure.append(i)
                continue
            cache[pid] = events[-1].sequence_nr
            for e in events:
                flat += row(e)
                if e.tags:
                    tagged.append(e)
        if flat:
            try:
                insert_tagged(conn, flat, tag_rows(tagged))
            except BaseException:
                cache.clear()
                raise
            payloads = cast("list[bytes]", flat[4::_COLUMNS])
            self.wal_bytes += sum(map(len, payloads)) + _ROW_OVERHEAD * len(payloads)
        for i in unsure:  # in queue order, after the group: a later write of the id follows
            outcomes[i] = self._commit_one(conn, writes[i])
        return outcomes

    def _commit_one(
        self, conn: sqlite3.Connection, events: Sequence[PersistentRepr]
    ) -> Exception | None:
        first = events[0]
        pid = first.persistence_id
        try:
            conn.execute("BEGIN IMMEDIATE")
            known = highest(conn, pid)
            if first.sequence_nr != known + 1:
                conn.rollback()
                self._highest[pid] = known
                return SequenceConflictError(pid, known + 1, first.sequence_nr)
            flat = flat_rows(events)
            insert_tagged(conn, flat, tag_rows(events))
            conn.execute("COMMIT")
        except Exception as exc:
            self._highest.pop(pid, None)
            if conn.in_transaction:
                conn.rollback()
            if isinstance(exc, _UNBINDABLE):  # refused before SQLite stored anything
                return _rejected(events, exc)
            if isinstance(exc, sqlite3.Error):
                return _write_error(events, exc)
            raise
        self._highest[pid] = events[-1].sequence_nr
        self.wal_bytes += sum(len(e.payload) + _ROW_OVERHEAD for e in events)
        return None


# A row SQLite cannot take at all (a str that is not valid text, an integer over 64 bits,
# a value of the wrong type): the write is refused before anything is stored.
_UNBINDABLE: Final = (
    UnicodeEncodeError,
    OverflowError,
    TypeError,
    sqlite3.InterfaceError,
    sqlite3.ProgrammingError,
    sqlite3.IntegrityError,  # a STRICT column refused the value's type
)


def _rejected(events: Sequence[PersistentRepr], exc: Exception) -> EventRejectedError:
    first = events[0]
    err = EventRejectedError(
        f"sqlite journal cannot store the events {first.sequence_nr}..{events[-1].sequence_nr} "
        f"of {first.persistence_id!r} (nothing stored): {exc}"
    )
    err.__cause__ = exc
    return err


def _write_error(events: Sequence[PersistentRepr], exc: BaseException) -> JournalWriteError:
    first = events[0]
    err = JournalWriteError(
        f"sqlite write of {first.persistence_id!r} sequence numbers {first.sequence_nr}.."
        f"{events[-1].sequence_nr} failed: {exc}"
    )
    err.__cause__ = exc
    return err
