"""Tags and persistence ids on Cassandra: the tables queries read, and how they are read.

Tables (in the journal's keyspace)::

    tag_views (tag, bucket, ordering, persistence_id, sequence_nr, writer_uuid,
               timestamp, ser_id, ser_manifest, event,
               PRIMARY KEY ((tag, bucket), ordering, persistence_id, sequence_nr))
    tag_buckets (tag, bucket, PRIMARY KEY ((tag), bucket))
    persistence_ids (part, persistence_id, PRIMARY KEY ((part), persistence_id))

A tagged write is one LOGGED batch: its events' rows in ``messages``, a
``tag_views`` row per (event, tag) carrying the whole event, and the
``tag_buckets`` rows naming the buckets it wrote to. Cassandra's batch log
applies all of them or, after a failure, all of them eventually; a write
acknowledged to its caller has every row applied. (Being multi-partition,
such a batch is subject to the server's ``batch_size_fail_threshold``, 50
KiB by default: a larger tagged write is refused with
``EventRejectedError``.) Untagged writes are unchanged (single-partition
UNLOGGED batches, grouped). The first write of an id by a journal instance
also stores the id's ``persistence_ids`` row, in a request sent beside the
write's (one for the ids listed during a loop turn: an UNLOGGED batch within
the table's one partition), and is acknowledged once both are stored (an instance
cannot tell whether another one listed the id: it lists every id it writes
once). So every id with an acknowledged write is listed; a write that failed
may have stored events of an id not listed until the id's next write.

*Orderings* (the ``Offset`` values of Cassandra tag queries) are the
writer's wall clock in microseconds, shifted left 8 bits and or-ed with an
8-bit number random per journal instance; consecutive tagged events of one
instance get strictly increasing orderings. A ``bucket`` is an hour of them
(:func:`bucket_of`), so no partition grows without bound.

*The delay.* Orderings come from clocks, and a write takes time to land, so
an event may get an ordering below one a tag query already passed. Tag
queries therefore read only events ordered at least ``tag_delay_s`` ago (on
the reader's wall clock), and a tagged write acknowledged later than
``tag_delay_s`` after its ordering was taken fails with
``JournalWriteError`` (stored, but not acknowledged: as an unknown
outcome). So a tag query never misses an acknowledged event as long as the
writers' clocks are no further behind the reader's than the margin between
``tag_delay_s`` and the writes' acknowledgement times. ``tag_delay_s = 0``
reads up to the present: exact for one writer instance, which is what a
single node (or a test) has.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from typing import Any, Final

from ._cassandra_session import consistency_levels, prepare_at
from ._cassandra_settings import CassandraSettings
from ._journal import PersistentRepr

__all__ = [
    "BUCKET_US",
    "TagStatements",
    "bucket_of",
    "micros_of",
    "ordering_at",
    "read_tag_page",
    "tag_rows",
    "tag_tables",
]

BUCKET_US: Final = 3_600_000_000
"""Microseconds of orderings per ``tag_views`` partition (an hour)."""
_SHIFT: Final = 8


def ordering_at(micros: int, instance: int) -> int:
    """The ordering of an event tagged at ``micros`` by the journal instance ``instance``."""
    return (micros << _SHIFT) | instance


def micros_of(ordering: int) -> int:
    """The wall-clock microsecond an ordering was taken at."""
    return ordering >> _SHIFT


def bucket_of(ordering: int) -> int:
    """The ``tag_views`` bucket (partition) of an ordering."""
    return micros_of(ordering) // BUCKET_US


def tag_tables(ks: str) -> tuple[str, ...]:
    return (
        f"""CREATE TABLE IF NOT EXISTS {ks}.tag_views (
            tag text, bucket bigint, ordering bigint, persistence_id text, sequence_nr bigint,
            writer_uuid text, timestamp bigint, ser_id int, ser_manifest text, event blob,
            PRIMARY KEY ((tag, bucket), ordering, persistence_id, sequence_nr))""",
        f"""CREATE TABLE IF NOT EXISTS {ks}.tag_buckets (
            tag text, bucket bigint, PRIMARY KEY ((tag), bucket))""",
        f"""CREATE TABLE IF NOT EXISTS {ks}.persistence_ids (
            part int, persistence_id text, PRIMARY KEY ((part), persistence_id))""",
    )


class TagStatements:
    """The prepared statements of tags and ids (prepared on the executor)."""

    def __init__(self, session: Any, settings: CassandraSettings) -> None:
        ks = settings.keyspace
        write_cl, read_cl = consistency_levels(settings)

        prepare = functools.partial(prepare_at, session)

        self.insert_tag = prepare(
            f"INSERT INTO {ks}.tag_views (tag, bucket, ordering, persistence_id, sequence_nr, "
            "writer_uuid, timestamp, ser_id, ser_manifest, event) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            write_cl,
        )
        self.insert_bucket = prepare(
            f"INSERT INTO {ks}.tag_buckets (tag, bucket) VALUES (?, ?)", write_cl
        )
        self.insert_id = prepare(
            f"INSERT INTO {ks}.persistence_ids (part, persistence_id) VALUES (0, ?)", write_cl
        )
        for stmt in (self.insert_tag, self.insert_bucket, self.insert_id):
            stmt.is_idempotent = True
        self.buckets = prepare(
            f"SELECT bucket FROM {ks}.tag_buckets WHERE tag = ? AND bucket >= ? AND bucket <= ?",
            read_cl,
        )
        self.read_tag = prepare(
            f"SELECT ordering, persistence_id, sequence_nr, writer_uuid, timestamp, ser_id, "
            f"ser_manifest, event FROM {ks}.tag_views WHERE tag = ? AND bucket = ? "
            "AND ordering > ? AND ordering <= ? LIMIT ?",
            read_cl,
        )
        self.deleted_to = prepare(
            f"SELECT persistence_id, deleted_to FROM {ks}.metadata WHERE persistence_id IN ?",
            read_cl,
        )
        self.ids = prepare(
            f"SELECT persistence_id FROM {ks}.persistence_ids WHERE part = 0 "
            "AND persistence_id > ? LIMIT ?",
            read_cl,
        )


def tag_rows(
    st: TagStatements,
    events: list[PersistentRepr],
    writers: list[str],
    orderings: list[int],
) -> list[Any]:
    """The bound ``tag_views`` and ``tag_buckets`` rows of ``events`` (tagged, one ordering each).

    ``writers`` are the writer ids as stored; may raise if a value cannot be bound.
    """
    bound: list[Any] = []
    buckets: set[tuple[str, int]] = set()
    for e, writer, ordering in zip(events, writers, orderings, strict=True):
        bucket = bucket_of(ordering)
        for tag in e.tags:
            bound.append(st.insert_tag.bind((tag, bucket, ordering, e.persistence_id,
                         e.sequence_nr, writer, e.timestamp, e.serializer_id, e.manifest,
                         e.payload)))  # fmt: skip
            buckets.add((tag, bucket))
    bound += [st.insert_bucket.bind(key) for key in sorted(buckets)]
    return bound


async def read_tag_page(
    execute: Callable[..., asyncio.Future[list[Any]]],
    st: TagStatements,
    tag: str,
    after: int,
    upper: int,
    limit: int,
) -> tuple[int, list[tuple[int, PersistentRepr]]]:
    """Up to ``limit`` events of ``tag`` ordered in ``(after, upper]``, deleted ones skipped.

    Returns the last ordering read (``after`` if none) and the events still
    stored with their orderings: the contract of :meth:`Journal.tagged_events`.
    Reads the buckets in order (listing them from ``tag_buckets`` when the
    range spans several), then the ``deleted_to`` markers of the page's ids.
    """
    low, high = bucket_of(after), bucket_of(upper)
    if low == high:
        buckets = [low]
    else:
        buckets = [int(r[0]) for r in await execute(st.buckets, (tag, low, high))]
    rows: list[Any] = []
    for bucket in buckets:
        rows += await execute(st.read_tag, (tag, bucket, after, upper, limit - len(rows)))
        if len(rows) >= limit:
            break
    if not rows:
        return after, []
    pids = list({str(row[1]) for row in rows})
    deleted = {str(p): int(d) for p, d in await execute(st.deleted_to, (pids,)) if d is not None}
    found = [
        (ordering, PersistentRepr(pid, seq, ser, man, event, writer, ts, (tag,)))
        for ordering, pid, seq, writer, ts, ser, man, event in rows
        if seq > deleted.get(pid, 0)
    ]
    return int(rows[-1][0]), found
