"""The Cassandra journal.

Tables (in the configured keyspace, created on demand)::

    messages (persistence_id, partition_nr, sequence_nr, writer_uuid, timestamp,
              ser_id, ser_manifest, event,
              PRIMARY KEY ((persistence_id, partition_nr), sequence_nr, writer_uuid))
    metadata (persistence_id PRIMARY KEY, deleted_to)
    repairs, tag_views, tag_buckets, persistence_ids   (see _cassandra_tags)
    owners, owner_claims                               (fencing="epoch", see _cassandra_fencing)

Writes: the events of one write all lie in one partition (a write that
straddles a partition boundary goes whole into its last event's partition;
see :mod:`._partitions` for why that beats a LOGGED batch), so Cassandra
applies them atomically and in isolation. Writes queued during one event-loop
turn share requests (UNLOGGED batches of a few partitions each, see
:mod:`._cassandra_grouping`): group commit, as the SQLite journal does.

``writer_uuid`` is part of the row key so that two writers storing the same
sequence number (see *Fencing*) never overwrite each other's acknowledged
event: both rows stay, and replay repairs the duplicate deterministically
(:mod:`._replay_filter`: the newer writer's events are kept, the older
writer's dropped with a warning, counted in :attr:`CassandraJournal.repaired_events`
and recorded in the ``repairs`` table, which :meth:`CassandraJournal.repairs` lists).

Fencing without a lightweight transaction on the write path (a Paxos round
per append would cost four round trips): each journal instance remembers the
highest sequence number of every persistence id it has written or read the
highest of (recovery does), and refuses a write that does not continue it.
A write keeps its claim until its outcome is known, even if its caller was
cancelled; a write whose outcome is unknown is sent again until it is (see
:mod:`._cassandra_writes`), and meanwhile new writes and recoveries of that id
wait. This is exact for every writer using the same journal instance: one
node's stale incarnation of an entity is refused, and a late write can never
take a number a newer incarnation wrote. Across nodes it is only as good as
the single-writer guarantee above it (cluster sharding runs one incarnation
per entity; a node that lost its shards is downed): a second node's writer
is not prevented, and replay repairs what it stored twice. That is
``CassandraSettings.fencing = "none"``; ``"epoch"`` adds ownership fencing
across nodes (:mod:`._cassandra_fencing`).

Deletes raise a ``deleted_to`` marker first, then drop the rows with range
tombstones; the marker keeps the highest sequence number when every event is
gone.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any, Final

from shoal.runtime import Clock, LoopClock

from ._cassandra_fencing import OwnershipFence, owners_tables
from ._cassandra_grouping import ROW_OVERHEAD
from ._cassandra_replay import ChunkQuery, HighestWalk, ReplayWalk
from ._cassandra_session import CassandraSession, CassandraSettings, Once
from ._cassandra_statements import Statements, tables
from ._cassandra_tags import (
    TagStatements,
    ordering_at,
    read_tag_page,
    tag_rows,
    tag_tables,
)
from ._cassandra_writes import (
    KEYS_SURELY_SHORT,
    PendingWrite,
    Row,
    WritePath,
    check_key_sizes,
)
from ._errors import (
    EventRejectedError,
    JournalError,
    JournalReadError,
    JournalWriteError,
    PluginClosedError,
)
from ._journal import (
    MAX_SEQUENCE_NR,
    Journal,
    PersistentRepr,
    check_ids_page,
    check_persistence_id,
    check_tag,
    check_write,
    fence,
    offset_beyond_end,
    validate_chunk,
)
from ._partitions import partition_nr, write_partition
from ._replay_filter import EPOCH_MARK, Repair, ReplayFilter

__all__ = ["CassandraJournal"]

_log = logging.getLogger("shoal.persistence")


def _log_record_failure(sent: asyncio.Future[list[Any]]) -> None:
    if not sent.cancelled() and sent.exception() is not None:
        _log.warning("cassandra journal: recording a replay repair failed: %s", sent.exception())


def _retrieved(sent: asyncio.Future[Any]) -> None:
    """Mark the outcome of a request nobody awaits any more as seen."""
    if not sent.cancelled():
        sent.exception()


_DELETE_CONCURRENCY: Final = 32  # range deletes in flight at once
# Tag offsets later than this past the reader's clock come from no writer (see tagged_events).
_FUTURE_ORDERINGS_S: Final = 24 * 3600.0


class CassandraJournal(Journal):
    """The production journal on Apache Cassandra (module docstring: layout, atomicity, fencing).

    Pass ``session`` to share one driver session with a
    :class:`CassandraSnapshotStore`; the journal then leaves closing it to
    the caller. ``clock`` times the re-sending of writes whose outcome is
    unknown (default: the event loop's).

    Refusals: a write whose persistence id or writer id is over Cassandra's
    key size limit, whose request the server refuses (e.g. over its message
    size limit) or whose row the driver cannot bind fails with
    :class:`EventRejectedError`: nothing of it is stored, its numbers are
    free, and writes grouped with it are unaffected.
    """

    def __init__(
        self,
        settings: CassandraSettings,
        *,
        session: CassandraSession | None = None,
        clock: Clock | None = None,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self._wall = wall_clock
        self._instance = random.getrandbits(8)  # the low bits of this instance's tag orderings
        self._last_micros = 0
        self._owns_session = session is None
        self._session = session if session is not None else CassandraSession(settings)
        self._statements: Statements | None = None
        self._setup: Once[Statements] = Once()
        self._clock = clock
        self._writes = WritePath(settings, self._session.execute, self._get_clock)
        self._repairs_seen: set[tuple[str, int, str]] = set()
        self.repaired_events = 0
        """Events replays of this instance dropped (each counted once): see :meth:`repairs`."""
        self._closed = False

    def _get_clock(self) -> Clock:
        if self._clock is None:
            self._clock = LoopClock(asyncio.get_running_loop())
        return self._clock

    def _check_open(self) -> None:
        if self._closed:
            raise PluginClosedError("the cassandra journal is closed")

    async def _ready(self) -> Statements:
        """Set up on first use (not checking ``_closed``: writes under way may finish)."""
        statements = self._statements
        if statements is None:
            statements = self._statements = await self._setup.get(self._prepare)
        return statements

    async def _prepare(self) -> Statements:
        """Create the tables if configured and prepare the statements, once."""
        settings = self.settings
        send = self._session.execute
        clock = self._get_clock

        def setup(session: Any) -> Statements:
            if settings.tables_autocreate:
                for ddl in (*tables(settings.keyspace), *tag_tables(settings.keyspace)):
                    session.execute(ddl)
                if settings.fencing == "epoch":
                    for ddl in owners_tables(settings.keyspace):
                        session.execute(ddl)
            return Statements(session, settings, send, clock)

        return await self._session.run_blocking(setup)

    async def start(self) -> None:
        """Connect, create the tables if configured and prepare statements (else done lazily)."""
        self._check_open()
        try:
            await self._ready()
        except JournalError:
            raise
        except Exception as exc:
            raise JournalReadError(f"cassandra journal unavailable: {exc}") from exc

    # -- writing ----------------------------------------------------------------------

    async def write(self, events: Sequence[PersistentRepr]) -> None:
        pid = check_write(events)
        if self._closed:
            self._check_open()
        writer = events[0].writer_uuid
        # One event (most writes): no generator, which the collector would have to track,
        # and its keys need no check when they are short in characters.
        if len(events) == 1:
            tagged = bool(events[0].tags)
            if len(pid) + len(writer) > KEYS_SURELY_SHORT:
                check_key_sizes(pid, events)
        else:
            tagged = any(e.tags for e in events)
            check_key_sizes(pid, events)
        first, last = events[0].sequence_nr, events[-1].sequence_nr
        path = self._writes
        path.enter()
        pending: PendingWrite | None = None
        owners: OwnershipFence | None = None
        listing: asyncio.Future[None] | None = None
        epoch = 0
        try:
            if self.settings.fencing == "epoch":
                owners, epoch = await self._owner_epoch(pid, writer)
            partition = write_partition(first, last, self.settings.partition_size)
            if path.unsettled and pid in path.unsettled:
                await path.settled(pid)  # an earlier write's outcome decides the fence
            st = self._statements
            known = path.highest.get(pid)
            if st is None or known is None:
                st, known = await self._before_first_write(pid, first)
            if first != known + 1:
                fence(pid, known, first)  # raises
            # Untagged and unfenced (the common write) makes no list beyond its rows:
            # every object a write keeps until its outcome costs the collector.
            extra: list[Any] | None = None
            taken = 0
            writers: list[str] | None = None  # the stored writer column, if not the uuid
            if owners is not None or tagged:
                writers = _stored_writers(events, owners is not None, epoch)
                extra, taken = self._extra_rows(st, pid, events, writers, tagged=tagged)
            path.claim(pid, last)  # claimed now, so a concurrent stale write is refused
            rows: list[Row] = []
            size = 0
            for i, e in enumerate(events):
                stored = e.writer_uuid if writers is None else writers[i]
                rows.append((pid, partition, e.sequence_nr, stored, e.timestamp,
                             e.serializer_id, e.manifest, e.payload))  # fmt: skip
                size += len(pid) + len(e.manifest) + len(e.payload) + len(stored)
            fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            size += ROW_OVERHEAD * len(rows)
            pending = PendingWrite(pid, first, last, rows, size, fut, extra, logged=tagged)
            if st.tags is not None and pid not in path.listed:
                # The id's persistence_ids row, sent beside the events rather than
                # before them (no extra round trip on a first write), with the other
                # ids listed this turn: in the events' batch it would make a large
                # event's batch span two partitions, which the server's batch size
                # limit then applies to.
                listing = path.list_id(st.tags.insert_id, pid)
            path.enqueue(st, pending)
            await fut
            if tagged:
                self._check_in_time(pid, first, last, taken)
            if owners is not None:
                await owners.after_write(pid, writer, epoch, first, last)
            if listing is not None:
                await self._listed(pid, first, last, listing)
            if self._next_write is not None:
                self._acknowledged()
        except asyncio.CancelledError:
            if pending is not None:
                path.orphan(pending)  # its outcome, not this cancellation, decides the claim
            raise
        except Exception as exc:
            if isinstance(exc, (JournalError, PluginClosedError, EventRejectedError, ValueError)):
                raise
            raise JournalWriteError(
                f"cassandra write of {pid!r} sequence numbers {first}..{last} failed "
                f"(nothing stored): {exc}"
            ) from exc
        finally:
            if pending is None:
                path.leave()  # nothing was queued: nothing to settle
            if listing is not None:  # its outcome is seen, even if the write failed first
                listing.add_done_callback(_retrieved)

    async def _listed(self, pid: str, first: int, last: int, listing: asyncio.Future[None]) -> None:
        """Wait for ``pid``'s ``persistence_ids`` row, sent beside its write of ``first..last``.

        The write is acknowledged only once its id is listed. If the listing
        fails, the events are stored but the write fails: this instance lists
        the id again with the id's next write.
        """
        try:
            await listing
        except Exception as exc:
            raise JournalWriteError(
                f"cassandra write of {pid!r} sequence numbers {first}..{last} is stored, but "
                f"listing the id in persistence_ids failed (its next write lists it): {exc}"
            ) from exc
        self._writes.mark_listed(pid)

    def _extra_rows(
        self,
        st: Statements,
        pid: str,
        events: Sequence[PersistentRepr],
        writers: list[str],
        *,
        tagged: bool,
    ) -> tuple[list[Any], int]:
        """The bound rows written with ``events``: their tags' (in one LOGGED batch).

        Returns them and the wall-clock microsecond the orderings were taken
        at. Raises :class:`EventRejectedError` if one cannot be bound (nothing
        was sent or claimed).
        """
        tags = st.tags
        extra: list[Any] = []
        micros = 0
        if tags is None:
            if tagged:  # refused rather than stored without them: a tag query would miss them
                raise EventRejectedError(
                    f"cannot store the tags of {pid!r}: keyspace {self.settings.keyspace} has no "
                    "tag tables (tag_views, tag_buckets; see docs/persistence.md)"
                )
            return extra, micros
        try:
            if tagged:
                micros = max(int(self._wall() * 1_000_000), self._last_micros + 1)
                chosen = [e for e in events if e.tags]
                orderings = [ordering_at(micros + i, self._instance) for i in range(len(chosen))]
                self._last_micros = micros + len(chosen) - 1
                stored = [w for e, w in zip(events, writers, strict=True) if e.tags]
                extra += tag_rows(tags, chosen, stored, orderings)
        except Exception as exc:  # a value the driver cannot bind: nothing was sent
            raise EventRejectedError(
                f"cassandra journal cannot store the events {events[0].sequence_nr}.."
                f"{events[-1].sequence_nr} of {pid!r} (nothing stored): {exc}"
            ) from exc
        return extra, micros

    def _check_in_time(self, pid: str, first: int, last: int, micros: int) -> None:
        """Fail a tagged write acknowledged too late for tag queries (see ``_cassandra_tags``)."""
        delay = self.settings.tag_delay_s
        if delay > 0 and self._wall() * 1_000_000 - micros > delay * 1_000_000:
            raise JournalWriteError(
                f"cassandra write of {pid!r} sequence numbers {first}..{last} is stored, but "
                f"was acknowledged more than tag_delay_s ({delay} s) after its tag orderings "
                "were taken: a tag query may have passed them, so it is not acknowledged"
            )

    async def _owner_epoch(self, pid: str, writer: str) -> tuple[OwnershipFence, int]:
        """The fence and the epoch ``writer`` owns ``pid`` under (it claims if it never did)."""
        try:
            fence = (await self._ready()).fence
            assert fence is not None
            return fence, await fence.before_write(pid, writer)
        except JournalError:
            raise
        except Exception as exc:
            raise JournalWriteError(f"cassandra: claiming {pid!r} failed: {exc}") from exc

    async def claim_writer(self, persistence_id: str, writer_uuid: str) -> None:
        """With ``fencing="epoch"``, make ``writer_uuid`` the owner (a lightweight transaction).

        See :mod:`._cassandra_fencing`. Without fencing it does nothing.
        Raises :class:`JournalWriteError` if the claim fails.
        """
        check_persistence_id(persistence_id)
        self._check_open()
        if self.settings.fencing != "epoch":
            return
        try:
            fence = (await self._ready()).fence
            assert fence is not None
            await fence.claim(persistence_id, writer_uuid)
        except JournalError:
            raise
        except Exception as exc:
            raise JournalWriteError(
                f"cassandra: claiming {persistence_id!r} failed: {exc}"
            ) from exc

    async def _before_first_write(self, pid: str, first: int) -> tuple[Statements, int]:
        """Set up if needed, and read ``pid``'s highest sequence number if not known yet."""
        try:
            st = await self._ready()
            known = self._writes.highest.get(pid)
            if known is None:
                found = await self._read_highest(st, pid, 0)
                known = self._writes.highest.setdefault(pid, found)  # a concurrent writer won?
        except Exception as exc:
            raise JournalWriteError(f"cassandra write of {pid!r} at {first} failed: {exc}") from exc
        return st, known

    # -- reading ----------------------------------------------------------------------

    async def _deleted_to(self, st: Statements, pid: str) -> int:
        rows = await self._session.execute(st.deleted_to, (pid,))
        return int(rows[0][0]) if rows and rows[0][0] is not None else 0

    async def _read_highest(self, st: Statements, pid: str, hint: int) -> int:
        deleted = await self._deleted_to(st, pid)
        walk = HighestWalk(max(hint, deleted), self.settings.partition_size)
        probe: int | None = walk.first()
        while probe is not None:
            rows = await self._session.execute(st.largest, (pid, probe))
            probe = walk.advance(probe, int(rows[0][0]) if rows else None)
        if walk.highest == hint > deleted and not await self._stored(st, pid, hint):
            # Covered by the caller's snapshot, but not in the journal: see Journal.
            await self._session.execute(st.set_deleted_to, (hint, pid))
            if st.tags is not None:  # the id is held now: listed by persistence_ids()
                await self._session.execute(st.tags.insert_id, (pid,))
                self._writes.mark_listed(pid)
        return walk.highest

    async def _stored(self, st: Statements, pid: str, sequence_nr: int) -> bool:
        """Whether event ``sequence_nr`` is stored, knowing none after it is."""
        nominal = partition_nr(sequence_nr, self.settings.partition_size)
        for partition in (nominal, nominal + 1):  # where a write may have put it
            rows = await self._session.execute(st.largest, (pid, partition))
            if rows and int(rows[0][0]) >= sequence_nr:
                return True
        return False

    async def highest_sequence_nr(self, persistence_id: str, from_sequence_nr: int = 0) -> int:
        check_persistence_id(persistence_id)
        self._check_open()
        if self._writes.unsettled and persistence_id in self._writes.unsettled:
            await self._writes.settled(persistence_id)  # a write's outcome is still unknown
        try:
            st = await self._ready()
            found = await self._read_highest(st, persistence_id, from_sequence_nr)
        except PluginClosedError:
            raise
        except Exception as exc:
            raise JournalReadError(
                f"cassandra: highest sequence number of {persistence_id!r} failed: {exc}"
            ) from exc
        self._writes.learn(persistence_id, found)
        return found

    def _fetch(self, st: Statements, pid: str, q: ChunkQuery) -> asyncio.Future[list[Any]]:
        if q.after is None:
            return self._session.execute(
                st.read_from, (pid, q.partition_nr, q.lower, q.upper, q.limit)
            )
        seq, writer = q.after
        return self._session.execute(
            st.read_after, (pid, q.partition_nr, seq, writer, q.upper, q.limit)
        )

    async def replay(
        self,
        persistence_id: str,
        from_sequence_nr: int = 1,
        to_sequence_nr: int = MAX_SEQUENCE_NR,
        max_count: int = MAX_SEQUENCE_NR,
    ) -> AsyncIterator[Sequence[PersistentRepr]]:
        check_persistence_id(persistence_id)
        pid = persistence_id
        self._check_open()
        ahead: asyncio.Future[list[Any]] | None = None
        repair = ReplayFilter(pid)
        try:
            st = await self._ready()
            start = max(from_sequence_nr, await self._deleted_to(st, pid) + 1)
            walk = ReplayWalk(
                pid,
                start,
                to_sequence_nr,
                max_count,
                self.settings.partition_size,
                self.settings.replay_chunk_size,
            )
            query = walk.first()
            ahead = self._fetch(st, pid, query) if query is not None else None
            while query is not None and ahead is not None:
                rows = await ahead
                ahead = None
                chunk = [
                    PersistentRepr(pid, seq, ser, manifest, event, writer, ts)
                    for seq, writer, ts, ser, manifest, event in rows
                ]
                following = walk.advance(query, chunk)
                if following is not None:
                    ahead = self._fetch(st, pid, following)  # read ahead of the consumer
                query = following
                kept = repair.feed(chunk)
                if kept:
                    if repair.repairs:  # events were dropped: check what is left
                        validate_chunk(pid, kept[0].sequence_nr, kept)
                    yield kept
            kept = repair.finish()
            if kept and repair.repairs:
                validate_chunk(pid, kept[0].sequence_nr, kept)
            size = self.settings.replay_chunk_size
            for i in range(0, len(kept), size):  # what the filter held back, in chunks
                yield kept[i : i + size]
        except (JournalError, PluginClosedError):
            raise
        except Exception as exc:
            raise JournalReadError(f"cassandra replay of {pid!r} failed: {exc}") from exc
        finally:
            if ahead is not None:
                ahead.cancel()
            if repair.repairs:
                self._record_repairs(repair.repairs)

    def _record_repairs(self, repairs: list[Repair]) -> None:
        """Warn, count and store (for :meth:`repairs`) the events a replay dropped."""
        new = [r for r in repairs if (r.persistence_id, r.sequence_nr, r.dropped_writer)
               not in self._repairs_seen]  # fmt: skip
        if not new:
            return
        for r in new:
            self._repairs_seen.add((r.persistence_id, r.sequence_nr, r.dropped_writer))
        self.repaired_events += len(new)
        first = new[0]
        _log.warning(
            "cassandra journal: %r has events stored twice by two writers; replay keeps the "
            "newer writer %r and drops %d events of the older writer %r from sequence number "
            "%d on (CassandraJournal.repairs() lists every such repair)",
            first.persistence_id,
            first.kept_writer,
            len(new),
            first.dropped_writer,
            first.sequence_nr,
        )
        st = self._statements
        if st is None or st.record_repair is None:
            return
        stamp = int(time.time() * 1000)
        for r in new:
            row = (r.persistence_id, r.sequence_nr, r.dropped_writer, r.kept_writer, stamp)
            self._session.execute(st.record_repair, row).add_done_callback(_log_record_failure)

    async def repairs(self, persistence_id: str | None = None) -> list[Repair]:
        """The events replays dropped because a newer writer stored the same numbers.

        For operators: every repair any instance of this journal recorded in
        the keyspace (table ``repairs``), or only ``persistence_id``'s. The
        dropped events stay in the ``messages`` table, untouched; replays
        skip them (see ``_replay_filter`` for the rule).
        """
        self._check_open()
        if persistence_id is not None:
            check_persistence_id(persistence_id)
        try:
            st = await self._ready()
        except Exception as exc:
            raise JournalReadError(f"cassandra: listing repairs failed: {exc}") from exc
        if st.all_repairs is None:
            raise JournalReadError(f"cassandra: no table {self.settings.keyspace}.repairs")
        try:
            if persistence_id is None:
                rows = await self._session.execute(st.all_repairs)
            else:
                rows = await self._session.execute(st.repairs_of, (persistence_id,))
        except Exception as exc:
            raise JournalReadError(f"cassandra: listing repairs failed: {exc}") from exc
        return sorted(Repair(*row) for row in rows) if rows else []

    # -- queries ----------------------------------------------------------------------

    async def _tag_statements(self, what: str) -> TagStatements:
        self._check_open()
        try:
            st = await self._ready()
        except Exception as exc:
            raise JournalReadError(f"cassandra: {what} failed: {exc}") from exc
        if st.tags is None:
            raise NotImplementedError(
                f"keyspace {self.settings.keyspace} has no tag tables: cannot do {what}"
            )
        return st.tags

    async def persistence_ids(self, after: str = "", limit: int = 1000) -> list[str]:
        """See :meth:`Journal.persistence_ids`; ids are listed from the ``persistence_ids``
        table (written with an id's first event or its deletion marker)."""
        check_ids_page(after, limit)
        tags = await self._tag_statements("listing persistence ids")
        try:
            rows = await self._session.execute(tags.ids, (after, limit))
        except Exception as exc:
            raise JournalReadError(f"cassandra: listing persistence ids failed: {exc}") from exc
        return [str(row[0]) for row in rows]

    async def tagged_events(
        self, tag: str, after: int, limit: int
    ) -> tuple[int, list[tuple[int, PersistentRepr]]]:
        """See :meth:`Journal.tagged_events`; only events ordered at least
        ``CassandraSettings.tag_delay_s`` ago are read (see ``_cassandra_tags``)."""
        check_tag(tag)
        check_ids_page("", limit)
        tags = await self._tag_statements(f"tag query {tag!r}")
        now = self._wall()
        upper = ordering_at(int((now - self.settings.tag_delay_s) * 1_000_000), 0xFF)
        if upper <= after:
            end = ordering_at(int((now + _FUTURE_ORDERINGS_S) * 1_000_000), 0xFF)
            if after > end:  # later than any writer's clock could be
                raise offset_beyond_end(tag, after, end)
            return after, []
        try:
            return await read_tag_page(self._session.execute, tags, tag, after, upper, limit)
        except Exception as exc:
            raise JournalReadError(f"cassandra: tag query {tag!r} failed: {exc}") from exc

    # -- deleting ---------------------------------------------------------------------

    async def delete_to(self, persistence_id: str, to_sequence_nr: int) -> None:
        check_persistence_id(persistence_id)
        pid = persistence_id
        self._check_open()
        try:
            st = await self._ready()
            deleted = await self._deleted_to(st, pid)
            highest = await self._read_highest(st, pid, 0)
            to = min(to_sequence_nr, highest)
            if to <= deleted:
                return
            await self._session.execute(st.set_deleted_to, (to, pid))
            size = self.settings.partition_size
            # an event <= to may have moved into the partition after its own
            partitions = range(partition_nr(deleted + 1, size), partition_nr(to, size) + 2)
            for i in range(0, len(partitions), _DELETE_CONCURRENCY):
                await asyncio.gather(
                    *(
                        self._session.execute(st.delete_range, (pid, p, to))
                        for p in partitions[i : i + _DELETE_CONCURRENCY]
                    )
                )
        except PluginClosedError:
            raise
        except Exception as exc:
            raise JournalWriteError(
                f"cassandra: deleting {pid!r} up to {to_sequence_nr} failed: {exc}"
            ) from exc

    async def close(self) -> None:
        self._closed = True
        await self._writes.close()
        if self._statements is not None and self._statements.fence is not None:
            await self._statements.fence.close()
        if self._owns_session:
            await self._session.close()


def _stored_writers(events: Sequence[PersistentRepr], fenced: bool, epoch: int) -> list[str]:
    """The writer column of each event: its writer uuid, and the epoch when fenced.

    A function of its own: a comprehension inside ``write`` would turn the
    names it reads into cells, allocated on every write.
    """
    if not fenced:
        return [e.writer_uuid for e in events]
    return [f"{e.writer_uuid}{EPOCH_MARK}{epoch}" for e in events]
