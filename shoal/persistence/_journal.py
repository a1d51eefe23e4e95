"""The journal plugin API: what every event store (memory, SQLite, Cassandra) promises.

A journal stores, per *persistence id*, a gap-free sequence of events
numbered from 1. Events are opaque to it: each row carries the serializer id,
manifest and payload bytes the runtime's serialization registry produced
(nothing is ever pickled), plus the writer's id and a timestamp.

Concurrency contract shared by every method: call it from the event loop the
plugin was first used on; methods never block that loop (storage I/O runs on
plugin-owned threads or the driver's own I/O thread). Methods may be called
concurrently, for the same or different persistence ids.

Every method (of journals and snapshot stores alike) refuses a persistence id
that is not a non-empty, valid text ``str`` with ``ValueError`` (see
:func:`check_persistence_id`), before touching storage.
"""

from __future__ import annotations

import abc
import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Final

import msgspec

from ._errors import JournalCorruptionError, SequenceConflictError

__all__ = [
    "MAX_SEQUENCE_NR",
    "Journal",
    "PersistentRepr",
    "check_ids_page",
    "check_persistence_id",
    "check_tag",
    "check_tags",
    "check_write",
    "fence",
    "offset_beyond_end",
    "validate_chunk",
]

MAX_SEQUENCE_NR: Final = 2**63 - 1
"""The largest sequence number any journal stores (a signed 64-bit integer)."""


# A msgspec Struct rather than a frozen dataclass: recovery builds one per
# replayed event, and a Struct is built ~10x faster (benchmarks/journal.py).
class PersistentRepr(msgspec.Struct, frozen=True, gc=False):
    """One event as a journal stores it.

    ``serializer_id``, ``manifest`` and ``payload`` are what
    ``Serialization.serialize`` returned for the event. ``writer_uuid``
    identifies the incarnation that wrote it (unique per incarnation: the
    Cassandra journal keys rows by it so two writers never overwrite each
    other's events); ``timestamp`` is milliseconds
    since the epoch on the writer's clock (informational: never used for
    ordering). ``tags`` name the tag queries that find the event (see
    :meth:`Journal.tagged_events`); they are stored with the event, in the
    same atomic write. ``replay`` need not return them (SQLite's does not);
    a tag query's events carry the tag they were found by.
    """

    persistence_id: str
    sequence_nr: int
    serializer_id: int
    manifest: str
    payload: bytes
    writer_uuid: str = ""
    timestamp: int = 0
    tags: tuple[str, ...] = ()


def check_persistence_id(persistence_id: str) -> str:
    """Return ``persistence_id`` if every plugin can store it; raise ``ValueError`` if not.

    A persistence id is a non-empty ``str`` that is valid Unicode text (it
    encodes to UTF-8: no lone surrogates). Plugins may have limits of their
    own (Cassandra: its key size). Every journal and snapshot store method
    checks the id it is given, so one bad id fails only the calls naming it.
    """
    if not isinstance(persistence_id, str):  # one error type for every invalid id
        raise ValueError(  # noqa: TRY004
            f"a persistence id is a str, not {type(persistence_id).__qualname__}: "
            f"{persistence_id!r}"
        )
    if persistence_id and persistence_id.isascii():  # the common case, in one scan
        return persistence_id
    if not persistence_id:
        raise ValueError("a persistence id must not be empty")
    try:
        persistence_id.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(
            f"persistence id {persistence_id!r} is not valid text: {exc.reason} at "
            f"position {exc.start} (a lone surrogate cannot be stored)"
        ) from None
    return persistence_id


def check_tag(tag: str) -> str:
    """Return ``tag`` if it can be stored: a non-empty ``str`` of valid text; else raise."""
    if not isinstance(tag, str):
        raise TypeError(f"a tag is a str, not {type(tag).__qualname__}: {tag!r}")
    if not tag:
        raise ValueError("a tag must not be empty")
    if not tag.isascii():
        try:
            tag.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise ValueError(f"tag {tag!r} is not valid text: {exc.reason}") from None
    return tag


def check_tags(tags: tuple[str, ...]) -> None:
    """Raise unless ``tags`` is a tuple of distinct valid tags (see :func:`check_tag`)."""
    if not isinstance(tags, tuple):
        raise TypeError(f"an event's tags are a tuple, not {type(tags).__qualname__}")
    for tag in tags:
        check_tag(tag)
    if len(set(tags)) != len(tags):
        raise ValueError(f"an event's tags must be distinct: {tags!r}")


def check_ids_page(after: str, limit: int) -> None:
    """Raise ``TypeError``/``ValueError`` unless ``after`` is a ``str`` and ``limit`` an int >= 1.

    The arguments of :meth:`Journal.persistence_ids`.
    """
    if not isinstance(after, str):
        raise TypeError(f"after is a str, not {type(after).__qualname__}: {after!r}")
    if isinstance(limit, bool) or not isinstance(limit, int):
        raise TypeError(f"limit is an int, not {type(limit).__qualname__}: {limit!r}")
    if limit < 1:
        raise ValueError(f"limit must be at least 1, got {limit}")


def check_write(events: Sequence[PersistentRepr]) -> str:
    """Validate the shape of one atomic write and return its persistence id.

    A write is non-empty, names one persistence id, and numbers its events
    consecutively from a first sequence number >= 1, and its persistence id
    passes :func:`check_persistence_id`. Raises ``ValueError`` otherwise (a
    programming error of the caller, not a storage condition).
    """
    if not events:
        raise ValueError("a journal write needs at least one event")
    first = events[0]
    pid = first.persistence_id
    if not (type(pid) is str and pid and pid.isascii()):  # else: the common case, checked
        check_persistence_id(pid)
    expected = first.sequence_nr
    if expected < 1:
        raise ValueError(f"sequence numbers start at 1, got {expected} for {pid!r}")
    if len(events) == 1:  # the common case: one persist, one event
        if first.tags:
            check_tags(first.tags)
        if expected > MAX_SEQUENCE_NR:
            raise ValueError(f"sequence number overflow for {pid!r}")
        return pid
    for event in events:
        if event.persistence_id != pid:
            raise ValueError(
                f"one write covers one persistence id: {event.persistence_id!r} != {pid!r}"
            )
        if event.sequence_nr != expected:
            raise ValueError(
                f"sequence numbers of one write must be consecutive: expected {expected}, "
                f"got {event.sequence_nr} for {pid!r}"
            )
        expected += 1
        if event.tags:
            check_tags(event.tags)
    if expected - 1 > MAX_SEQUENCE_NR:
        raise ValueError(f"sequence number overflow for {pid!r}")
    return pid


def fence(persistence_id: str, highest: int, first_sequence_nr: int) -> None:
    """Raise :class:`SequenceConflictError` unless a write starting at ``first_sequence_nr``
    continues ``highest``, the highest sequence number stored for ``persistence_id``."""
    if first_sequence_nr != highest + 1:
        raise SequenceConflictError(persistence_id, highest + 1, first_sequence_nr)


def offset_beyond_end(tag: str, after: int, end: int) -> ValueError:
    """The error of a tag query started after ``after`` when the journal's orderings end at
    ``end``."""
    return ValueError(
        f"offset {after} is beyond the end of the journal's tag orderings ({end}) for tag "
        f"{tag!r}: an Offset is only valid for the journal that yielded it"
    )


def validate_chunk(persistence_id: str, expected: int, chunk: Sequence[PersistentRepr]) -> int:
    """Check that a replayed chunk continues at ``expected`` without gaps or duplicates.

    Returns the next expected sequence number. Raises
    :class:`JournalCorruptionError` naming the persistence id and sequence
    number at the first row out of place.
    """
    for event in chunk:
        if event.sequence_nr < expected:
            raise JournalCorruptionError(
                persistence_id, event.sequence_nr, "stored twice (by two writers?)"
            )
        if event.sequence_nr > expected:
            raise JournalCorruptionError(
                persistence_id, expected, f"missing (the next stored is {event.sequence_nr})"
            )
        expected += 1
    return expected


class Journal(abc.ABC):
    """An asynchronous event journal.

    Plugins: :class:`MemoryJournal`, :class:`SqliteJournal`,
    :class:`CassandraJournal`; all pass the compliance suite in
    ``tests/integration/persistence``.

    A journal can be used as an async context manager, which closes it.
    """

    @abc.abstractmethod
    def write(self, events: Sequence[PersistentRepr]) -> Awaitable[None]:
        """Store ``events`` atomically: all of them or none, ever; await the result.

        Plugins may implement it as ``async def`` or return a future (the
        SQLite journal does, saving a coroutine per write); a malformed or
        refused call may then raise when called rather than when awaited.
        The journal may keep ``events`` until the write completes: do not
        mutate it meanwhile.

        ``events`` belong to one persistence id and carry consecutive sequence
        numbers (``ValueError`` otherwise, see :func:`check_write`). The first
        must be exactly one more than the highest sequence number stored for
        that id, or the write is refused with :class:`SequenceConflictError`
        and nothing is stored (fencing; deleted events still count as
        stored). Each plugin documents how far this check reaches (Cassandra:
        per journal instance).

        When this returns, the events are durable to the plugin's documented
        level and visible to every later ``replay`` and
        ``highest_sequence_nr`` call. Writes of one persistence id are applied
        in the order they were accepted; writes of different ids are
        independent (one failing never fails another's, except when the
        storage itself fails).

        On :class:`EventRejectedError` the write was refused and nothing of it
        is stored: the plugin cannot hold one of its rows (e.g. a manifest
        that is not valid text, or over a size limit); writes grouped with it
        are unaffected. On :class:`JournalWriteError` the outcome is unknown
        (stored entirely or not at all). Cancelling the awaiting task does not withdraw the
        write either: it may still be stored.
        """

    @abc.abstractmethod
    def replay(
        self,
        persistence_id: str,
        from_sequence_nr: int = 1,
        to_sequence_nr: int = MAX_SEQUENCE_NR,
        max_count: int = MAX_SEQUENCE_NR,
    ) -> AsyncIterator[Sequence[PersistentRepr]]:
        """Stream the stored events ``from_sequence_nr <= n <= to_sequence_nr``, in chunks.

        Yields non-empty chunks whose events ascend by sequence number
        without gaps, at most ``max_count`` events in all; deleted events are
        skipped. Every write acknowledged before the call is included if it is
        in range; writes acknowledged during the replay may or may not be (an
        included write is always included whole). Chunks are fetched ahead
        of the consumer, one chunk at a time, so memory stays bounded.

        Raises :class:`JournalReadError` on storage failure and
        :class:`JournalCorruptionError` on rows that break the invariants.
        """

    @abc.abstractmethod
    async def highest_sequence_nr(self, persistence_id: str, from_sequence_nr: int = 0) -> int:
        """The highest sequence number stored for ``persistence_id``, or 0 if none.

        Deleted events still count: deleting never lowers it. It includes
        every write acknowledged before the call; a write still in flight
        may or may not be counted (it is not acknowledged yet), so the answer
        is only stable when the id has no writer, as during recovery.

        ``from_sequence_nr`` is a number the caller knows to be covered (its
        snapshot's): the answer is at least it, and plugins may start their
        search there. If the journal holds less (a snapshot over an empty or
        lost journal), it records the events up to ``from_sequence_nr`` as
        deleted (any stored ones are deleted), so the next write continues
        from it and a replay does not report them missing.
        """

    @abc.abstractmethod
    async def delete_to(self, persistence_id: str, to_sequence_nr: int) -> None:
        """Delete the events ``1 <= n <= to_sequence_nr`` of ``persistence_id``.

        Deleted events are never replayed again; ``highest_sequence_nr`` is
        unchanged. ``to_sequence_nr`` beyond the highest stored number deletes
        up to the highest. Idempotent; deleting less than before does nothing.
        """

    @abc.abstractmethod
    async def close(self) -> None:
        """Finish the writes already accepted, then release every resource.

        Idempotent. Any later call raises :class:`PluginClosedError`.
        """

    _next_write: asyncio.Future[None] | None = None

    def next_write(self) -> asyncio.Future[None]:
        """A future done when this instance next acknowledges a write (of any id).

        Live queries wait on it besides their poll timer, so they see a write
        made through the same journal instance at once; writes of other
        processes are seen at the next poll. Never fails; do not cancel it
        (it is shared). Call it from the journal's event loop.
        """
        fut = self._next_write
        if fut is None or fut.done():
            fut = self._next_write = asyncio.get_running_loop().create_future()
        return fut

    def _acknowledged(self) -> None:
        """Plugins call it after acknowledging writes: wakes :meth:`next_write` waiters."""
        fut = self._next_write
        if fut is not None:
            self._next_write = None
            if not fut.done():
                fut.set_result(None)

    async def claim_writer(self, persistence_id: str, writer_uuid: str) -> None:
        """Make ``writer_uuid`` the only incarnation allowed to write ``persistence_id``.

        A :class:`PersistentActor` calls it once when it starts, before it
        reads its highest sequence number. Plugins that fence writers by
        ownership (Cassandra with ``fencing="epoch"``) record the new owner
        here, so a previous owner's later writes are refused; the others
        fence by sequence number alone and do nothing (the default).
        """
        check_persistence_id(persistence_id)

    async def recover(
        self,
        persistence_id: str,
        after: int,
        apply: Callable[[Sequence[PersistentRepr]], None],
    ) -> int:
        """Replay ``persistence_id`` for a recovery; return its highest sequence number.

        ``after`` is the sequence number the recovering actor's snapshot
        covers (0 without one). Every stored event past it is handed to
        ``apply`` (called on the loop, chunk by chunk, as :meth:`replay`
        yields them); an exception ``apply`` raises ends the recovery and
        propagates. The same as ``highest = await highest_sequence_nr(pid,
        after)`` followed by a replay of ``after + 1 .. highest`` (the
        default), including what ``highest_sequence_nr`` does for a snapshot
        over an empty journal; plugins may do it in fewer round trips.
        """
        highest = await self.highest_sequence_nr(persistence_id, after)
        async for chunk in self.replay(persistence_id, after + 1, highest):
            apply(chunk)
        return highest

    async def persistence_ids(self, after: str = "", limit: int = 1000) -> list[str]:
        """Up to ``limit`` persistence ids the journal holds, sorted, each greater than ``after``.

        An id is held once a write of it was acknowledged (or a deletion
        marker recorded), even if all its events are deleted. Ids sort by
        code point (``str`` order). Page through every id by passing the last
        one returned as ``after``. Plugins that cannot list ids raise
        ``NotImplementedError`` (the default).
        """
        raise NotImplementedError(f"{type(self).__qualname__} cannot list persistence ids")

    async def tagged_events(
        self, tag: str, after: int, limit: int
    ) -> tuple[int, list[tuple[int, PersistentRepr]]]:
        """Events tagged ``tag`` whose tag ordering is past ``after``, ascending, at most ``limit``.

        Every tagged write gets orderings greater than those of every write
        acknowledged before it, so reading on from the last ordering seen
        never misses an acknowledged event nor repeats one. Returns the last
        ordering examined (``after`` if none; deleted events are examined but
        not returned) and the ``(ordering, event)`` pairs found. ``after``
        beyond every ordering the journal has given out (an offset from
        another journal, or made up) raises ``ValueError``. Plugins that do
        not store tags raise ``NotImplementedError`` (the default).
        """
        raise NotImplementedError(f"{type(self).__qualname__} cannot query tags")

    async def events(
        self,
        persistence_id: str,
        from_sequence_nr: int = 1,
        to_sequence_nr: int = MAX_SEQUENCE_NR,
        max_count: int = MAX_SEQUENCE_NR,
    ) -> list[PersistentRepr]:
        """Every event :meth:`replay` yields, as one list (tests and tools)."""
        result: list[PersistentRepr] = []
        async for chunk in self.replay(persistence_id, from_sequence_nr, to_sequence_nr, max_count):
            result.extend(chunk)
        return result

    async def __aenter__(self) -> Journal:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()
