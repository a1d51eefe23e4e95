"""The Cassandra journal's write path: claims, group commit, and settling unknown outcomes.

Claims (the fence). The journal remembers, per persistence id, the highest
sequence number it has written, is writing, or has read; a write that does not
continue it is refused. A write *claims* its numbers before it is sent, and
the claim is kept until the write's outcome is known:

* acknowledged: the claim stands;
* refused by the server (``InvalidRequest``: nothing applied) or never sent:
  the claim is dropped, and the next write re-reads the highest stored;
* unknown (a timeout, a lost connection): the caller gets
  :class:`JournalWriteError` at once, and the journal *settles* the write by
  sending the same rows again (the INSERTs are idempotent: same keys, same
  values) until one attempt is acknowledged, so a late landing of the
  original changes nothing. After ``CassandraSettings.settle_timeout_s``
  without success (or at ``close``) it gives up, logs a warning and drops
  the claim.

A write whose caller was cancelled while it was in flight is settled the same
way: cancelling never drops a claim early. While a persistence id has writes
being settled, new writes and ``highest_sequence_nr`` of that id wait for them,
so a new incarnation recovering on this journal instance sees their outcome
and never writes a sequence number a late write could still take.

Group commit: writes queued during one event-loop turn share requests
(UNLOGGED batches, see :mod:`._cassandra_grouping`). Each write's rows are
bound as its request is built, so a row the driver cannot bind (text that is
not valid Unicode, an integer out of range) fails only its write. If the server
refuses a batch (``InvalidRequest``, nothing applied), each of its writes is
sent again alone, so only the offending one fails.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random
from collections.abc import Callable, Sequence
from typing import Any, Final

from cassandra import InvalidRequest, RequestValidationException, Unavailable
from cassandra.query import BatchStatement, BatchType

from shoal.runtime import Backoff, Cancellable, Clock

from ._cassandra_grouping import group_writes
from ._cassandra_settings import CassandraSettings
from ._errors import EventRejectedError, JournalWriteError
from ._journal import PersistentRepr

__all__ = ["KEYS_SURELY_SHORT", "PendingWrite", "Row", "WritePath", "check_key_sizes"]

_log = logging.getLogger("shoal.persistence")

_FENCE_CACHE_LIMIT: Final = 100_000  # ids; past it the cache restarts (a miss costs one read)
_SETTLE_BACKOFF: Final = Backoff(min_delay=0.1, max_delay=5.0)
# Ids listed by one request at most. The listings are rows of one partition, so their
# batch is applied atomically and exempt from the server's batch size thresholds.
_LISTING_BATCH: Final = 256

Row = tuple[str, int, int, str, int, int, str, bytes]


# Cassandra refuses a key over 65,535 bytes. The partition key (persistence_id,
# partition_nr) is stored as a composite: each part with a 2-byte length and an
# end byte, so the id may take 65,535 - 3 - (2 + 8 + 1) bytes; the clustering key
# (sequence_nr, writer_uuid) counts 8 bytes plus the writer's.
MAX_PERSISTENCE_ID_BYTES: Final = 65_535 - 3 - 11
MAX_WRITER_UUID_BYTES: Final = 65_535 - 8
# A persistence id and writer id this many characters long together are under both
# limits even at 4 bytes a character: check_key_sizes has nothing to find.
KEYS_SURELY_SHORT: Final = 16_000


def _utf8_len(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))


def check_key_sizes(pid: str, events: Sequence[PersistentRepr]) -> None:
    """Raise :class:`EventRejectedError` if a key of the write is over Cassandra's limit.

    Checked before anything is sent or claimed: such a write is refused whole
    by the server, so it is known not to be stored.
    """
    if len(pid) * 4 > MAX_PERSISTENCE_ID_BYTES and _utf8_len(pid) > MAX_PERSISTENCE_ID_BYTES:
        raise EventRejectedError(
            f"persistence id {pid[:40]!r}... is {_utf8_len(pid)} bytes in UTF-8; the cassandra "
            f"journal stores at most {MAX_PERSISTENCE_ID_BYTES} (nothing stored)"
        )
    for e in events:
        writer = e.writer_uuid
        if len(writer) * 4 > MAX_WRITER_UUID_BYTES and _utf8_len(writer) > MAX_WRITER_UUID_BYTES:
            raise EventRejectedError(
                f"writer id of event {e.sequence_nr} of {pid!r} is {_utf8_len(writer)} bytes; "
                f"the cassandra journal stores at most {MAX_WRITER_UUID_BYTES} (nothing stored)"
            )


def _bind_into(statements: list[Any], write: PendingWrite) -> None:
    """Append ``write``'s statements to ``statements``: its rows, bound, then its extra ones."""
    rows, insert = write.rows, write.insert
    if len(rows) == 1:  # most writes: no comprehension
        statements.append(insert.bind(rows[0]))
    else:
        statements += [insert.bind(row) for row in rows]
    if write.extra:
        statements += write.extra


def _request(statements: list[Any], consistency: int | None, *, logged: bool = False) -> Any:
    """``statements`` as one request: the one statement as is, several as one batch.

    The batch's consistency level is ``consistency``, or the first statement's if None.
    """
    if len(statements) == 1:
        return statements[0]
    if consistency is None:
        consistency = statements[0].consistency_level
    kind = BatchType.LOGGED if logged else BatchType.UNLOGGED
    batch = BatchStatement(batch_type=kind, consistency_level=consistency)
    for one in statements:
        batch.add(one)
    return batch


class PendingWrite:
    """One accepted write, from its claim until its outcome is known."""

    __slots__ = ("extra", "first", "fut", "insert", "last", "logged", "orphaned", "pid", "rows",
                 "settled", "size")  # fmt: skip

    def __init__(
        self,
        pid: str,
        first: int,
        last: int,
        rows: list[Row],
        size: int,
        fut: asyncio.Future[None],
        extra: list[Any] | None = None,
        *,
        logged: bool = False,
    ) -> None:
        self.pid = pid
        self.extra = extra  # bound statements sent with the rows (tags), if any
        self.logged = logged  # sent alone, as a LOGGED batch (rows in several partitions)
        self.first = first
        self.last = last
        self.rows = rows
        self.size = size
        self.fut = fut
        # The rows are bound when their request is built (again if it is sent again):
        # bound statements kept until the outcome would outlive young collections by
        # the thousand under load.
        self.insert: Any = None  # the prepared insert the rows are bound to
        self.orphaned = False  # its caller stopped waiting: it is settled in the background
        self.settled = False


class _Listing:
    """The ids to be listed by one request, and its outcome."""

    __slots__ = ("fut", "insert", "pids")

    def __init__(self, insert: Any, fut: asyncio.Future[None]) -> None:
        self.insert = insert
        self.fut = fut
        self.pids: list[str] = []


class _Unsettled:
    """The writes of one persistence id whose outcome is not known yet, and who waits."""

    __slots__ = ("count", "done")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.count = 0
        self.done: asyncio.Future[None] = loop.create_future()


def _exception(sent: asyncio.Future[list[Any]]) -> BaseException | None:
    """The error of a finished request (a cancelled one: its outcome is unknown)."""
    if sent.cancelled():
        return JournalWriteError("the request was cancelled")
    return sent.exception()


def _known_not_stored(exc: BaseException) -> bool:
    """Whether the server certainly applied nothing of a request that failed with ``exc``."""
    return isinstance(exc, (RequestValidationException, Unavailable))


class WritePath:
    """Claims, the write queue and settling, for one :class:`CassandraJournal`.

    Lives on the journal's event loop; ``send`` is the session's ``execute``.
    """

    def __init__(
        self,
        settings: CassandraSettings,
        send: Callable[[Any], asyncio.Future[list[Any]]],
        clock: Callable[[], Clock],
    ) -> None:
        self.settings = settings
        self._send = send
        self._clock = clock
        self.highest: dict[str, int] = {}  # the fence: see the module docstring
        self.listed: set[str] = set()  # ids this instance stored a persistence_ids row of
        self.unsettled: dict[str, _Unsettled] = {}
        self._queued: list[PendingWrite] = []
        self._active = 0  # write() calls and accepted writes not settled; close() waits
        self._idle: asyncio.Future[None] | None = None
        self._closing = False
        self._timers: dict[PendingWrite, Cancellable] = {}  # writes waiting to be sent again
        self._random = random.Random()
        self._listing: _Listing | None = None  # the ids to list at the end of this turn

    # -- claims ---------------------------------------------------------------------------

    def claim(self, pid: str, last: int) -> None:
        """Claim ``pid``'s numbers up to ``last`` (the caller checked the fence)."""
        highest = self.highest
        if len(highest) >= _FENCE_CACHE_LIMIT:
            highest.clear()
        highest[pid] = last

    def mark_listed(self, pid: str) -> None:
        """Remember that ``pid`` is listed, so its later writes list it no more."""
        listed = self.listed
        if len(listed) >= _FENCE_CACHE_LIMIT:
            listed.clear()  # a forgotten id is listed again: idempotent, one request
        listed.add(pid)

    def release(self, write: PendingWrite) -> None:
        """Drop ``write``'s claim, if it is still the latest: re-read before the next write."""
        if self.highest.get(write.pid) == write.last:
            del self.highest[write.pid]

    def learn(self, pid: str, found: int) -> None:
        """Record a highest read from storage, keeping a claim of a write in flight."""
        if found > self.highest.get(pid, -1):
            self.highest[pid] = found

    async def settled(self, pid: str) -> None:
        """Wait until ``pid`` has no write whose outcome is unknown."""
        entry = self.unsettled.get(pid)
        if entry is not None:
            await asyncio.shield(entry.done)

    def _unsettle(self, write: PendingWrite) -> None:
        write.orphaned = True
        entry = self.unsettled.get(write.pid)
        if entry is None:
            entry = self.unsettled[write.pid] = _Unsettled(write.fut.get_loop())
        entry.count += 1

    def _resolve(self, write: PendingWrite) -> None:
        entry = self.unsettled.get(write.pid)
        if entry is None:
            return
        entry.count -= 1
        if entry.count == 0:
            del self.unsettled[write.pid]
            entry.done.set_result(None)

    # -- accounting ---------------------------------------------------------------------

    def enter(self) -> None:
        """A ``write()`` call begins (``close`` waits for it)."""
        self._active += 1

    def leave(self, count: int = 1) -> None:
        """A ``write()`` call that queued nothing ended, or ``count`` queued writes are settled."""
        self._active -= count
        if self._active == 0 and self._idle is not None and not self._idle.done():
            self._idle.set_result(None)

    async def close(self) -> None:
        """Wait for every accepted write; writes being settled give up at their next attempt."""
        self._closing = True
        timers, self._timers = self._timers, {}
        for write, timer in timers.items():
            timer.cancel()
            self._give_up(write, "the journal closed")
        if self._active:
            self._idle = asyncio.get_running_loop().create_future()
            await self._idle

    # -- queueing and sending ---------------------------------------------------------------

    def enqueue(self, st: Any, write: PendingWrite) -> None:
        """Queue ``write`` for the flush at the end of this loop turn."""
        self._queued.append(write)
        if len(self._queued) == 1:
            write.fut.get_loop().call_soon(self._flush, st)

    def list_id(self, insert: Any, pid: str) -> asyncio.Future[None]:
        """Store ``pid``'s ``persistence_ids`` row with ``insert``; the future gets the outcome.

        Ids asked for during one loop turn share a request (an UNLOGGED batch
        within one partition): a new id costs no request of its own.
        """
        listing = self._listing
        if listing is None or len(listing.pids) >= _LISTING_BATCH:
            loop = asyncio.get_running_loop()
            listing = self._listing = _Listing(insert, loop.create_future())
            self.enter()  # close() waits for its outcome too
            loop.call_soon(self._send_listing, listing)
        listing.pids.append(pid)
        return listing.fut

    def _send_listing(self, listing: _Listing) -> None:
        if self._listing is listing:
            self._listing = None
        insert, fut = listing.insert, listing.fut
        try:
            bound = [insert.bind((pid,)) for pid in listing.pids]
            sent = self._send(_request(bound, None))
        except Exception as exc:  # refused unsent (e.g. the driver shut down)
            fut.set_exception(exc)
            self.leave()
            return

        def done(sent: asyncio.Future[list[Any]]) -> None:
            exc = _exception(sent)
            if exc is None:
                fut.set_result(None)
            else:
                fut.set_exception(exc)
            self.leave()

        sent.add_done_callback(done)

    def orphan(self, write: PendingWrite) -> None:
        """The caller of ``write`` was cancelled: settle it in the background, keeping the claim."""
        if not write.settled and not write.orphaned:
            self._unsettle(write)

    def _flush(self, st: Any) -> None:
        """Send every write queued during the last loop turn, grouped (``_cassandra_grouping``)."""
        queued, self._queued = self._queued, []
        ready: list[PendingWrite] = []
        for write in queued:
            write.insert = st.insert
            if write.logged:
                self._send_group(st, [write])
            else:
                ready.append(write)
        settings = self.settings
        sizes = [w.size for w in ready]
        for group in group_writes(sizes, settings.group_max_partitions, settings.group_max_bytes):
            self._send_group(st, [ready[i] for i in group])

    def _send_group(self, st: Any, writes: list[PendingWrite]) -> None:
        """Bind ``writes`` and send them in one request.

        Bound group by group, so only one request's statements are alive at a
        time. A write whose rows cannot be bound (text that is not valid
        Unicode, an integer out of range) fails alone: nothing of it is sent.
        """
        statements: list[Any] = []
        sending = writes
        for write in writes:
            mark = len(statements)
            try:
                _bind_into(statements, write)
            except Exception as exc:
                del statements[mark:]
                rejected = EventRejectedError(
                    f"cassandra journal cannot store events {write.first}..{write.last} of "
                    f"{write.pid!r} (nothing stored): {exc}"
                )
                rejected.__cause__ = exc
                self._outcome(write, rejected)
                sending = [w for w in sending if w is not write]
        if not sending:
            return
        try:
            sent = self._send(_request(statements, st.write_cl, logged=sending[0].logged))
        except Exception as exc:  # the driver refused to send it (e.g. shut down)
            for write in sending:
                self._outcome(write, exc)
            return
        sent.add_done_callback(functools.partial(self._sent, st, sending))

    def _sent(self, st: Any, writes: list[PendingWrite], sent: asyncio.Future[list[Any]]) -> None:
        exc = _exception(sent)
        if exc is None:  # stored: the claims stand (the common outcome: no call per write)
            for write in writes:
                write.settled = True
                if write.orphaned:
                    self._resolve(write)
                fut = write.fut
                if not fut.done():
                    fut.set_result(None)
            self.leave(len(writes))
            return
        if isinstance(exc, InvalidRequest) and len(writes) > 1:
            # The server refused the whole batch and applied none of it: one write
            # is at fault (too big, a key over the limit); send each alone.
            for write in writes:
                self._send_group(st, [write])
            return
        for write in writes:
            self._outcome(write, exc)

    def _outcome(self, write: PendingWrite, exc: BaseException) -> None:
        """Settle the claim of ``write`` by its request's failure, then tell its caller.

        (Success is settled in :meth:`_sent`.)
        """
        fut = write.fut
        if isinstance(exc, (InvalidRequest, EventRejectedError)):
            if isinstance(exc, EventRejectedError):
                error: Exception = exc
            else:
                error = EventRejectedError(
                    f"cassandra refused events {write.first}..{write.last} of {write.pid!r} "
                    f"(nothing stored): {exc}"
                )
                error.__cause__ = exc
            self.release(write)
            self._finish(write)
        elif _known_not_stored(exc):
            error = JournalWriteError(
                f"cassandra write of {write.pid!r} sequence numbers {write.first}..{write.last} "
                f"failed (nothing stored): {exc}"
            )
            error.__cause__ = exc
            self.release(write)
            self._finish(write)
        else:
            error = JournalWriteError(
                f"cassandra write of {write.pid!r} sequence numbers {write.first}..{write.last} "
                f"failed (it may or may not be stored; the journal keeps sending it until it "
                f"knows): {exc}"
            )
            error.__cause__ = exc
            if not write.orphaned:
                self._unsettle(write)
            self._retry(write, 0, self._clock().now())
        if not fut.done():
            fut.set_exception(error)

    def _finish(self, write: PendingWrite) -> None:
        write.settled = True
        if write.orphaned:
            self._resolve(write)
        self.leave()

    # -- settling writes whose outcome is unknown ------------------------------------------

    def _retry(self, write: PendingWrite, attempt: int, since: float) -> None:
        if self._closing:
            self._give_up(write, "the journal closed")
            return
        clock = self._clock()
        if clock.now() - since >= self.settings.settle_timeout_s:
            self._give_up(write, f"no attempt succeeded in {self.settings.settle_timeout_s} s")
            return
        delay = _SETTLE_BACKOFF.delay(attempt, self._random.random())
        self._timers[write] = clock.call_later(delay, self._resend, write, attempt, since)

    def _resend(self, write: PendingWrite, attempt: int, since: float) -> None:
        self._timers.pop(write, None)
        if self._closing:
            self._give_up(write, "the journal closed")
            return
        try:
            sent = self._send(self._statement(write))
        except Exception:
            self._retry(write, attempt + 1, since)
            return

        def done(sent: asyncio.Future[list[Any]]) -> None:
            exc = _exception(sent)
            if exc is None:
                self._finish(write)  # stored for certain: the claim stands
            elif _known_not_stored(exc):
                # The same rows cannot have been stored either (the server refuses
                # identical requests alike): the numbers are free again.
                self.release(write)
                self._finish(write)
            else:
                self._retry(write, attempt + 1, since)

        sent.add_done_callback(done)

    def _statement(self, write: PendingWrite) -> Any:
        """``write`` alone, as one request: its one statement, or a batch of them."""
        statements: list[Any] = []
        _bind_into(statements, write)
        return _request(statements, None, logged=write.logged)

    def _give_up(self, write: PendingWrite, why: str) -> None:
        _log.warning(
            "cassandra journal: the outcome of the write of %r sequence numbers %d..%d stays "
            "unknown (%s); its claim is dropped. Should it land late, the next recovery keeps "
            "the newer writer's events (see CassandraJournal.repairs)",
            write.pid,
            write.first,
            write.last,
            why,
        )
        self.release(write)
        self._finish(write)
