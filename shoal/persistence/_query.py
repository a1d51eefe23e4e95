"""Read-side queries over a journal: events by persistence id or by tag, all ids; current, live.

A *current* query yields what is stored when it runs, then ends. A *live*
query yields the same, then keeps following the persistence id: it reads
again as soon as the journal instance it reads acknowledges a write
(:meth:`Journal.next_write`: writes made in this process through that
instance), and otherwise every ``poll_interval`` seconds (on the given
clock: writes of other processes), and yields each newly stored event,
until it reaches ``to_sequence_nr`` or the consumer stops iterating.
Either kind yields every event exactly once, in sequence order: it
resumes each poll after the last sequence number it yielded, and journals
store a persistence id's events gap-free and apply its writes whole and in
order. Deleted events are skipped.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from contextlib import aclosing
from typing import Final

import msgspec

from ..runtime import Clock, LoopClock
from ._journal import (
    MAX_SEQUENCE_NR,
    Journal,
    PersistentRepr,
    check_ids_page,
    check_persistence_id,
    check_tag,
)

__all__ = ["DEFAULT_POLL_INTERVAL", "EventEnvelope", "JournalQueries", "Offset"]

_Page = tuple[int, list[tuple[int, PersistentRepr]]]

DEFAULT_POLL_INTERVAL: Final = 1.0
"""Seconds between two polls of a live query, unless ``poll_interval`` says otherwise."""


class Offset(msgspec.Struct, frozen=True, order=True):
    """A position in the events of a tag: opaque, ordered, resumable.

    Take it from an :class:`EventEnvelope` and pass it back to a tag query
    to read on after that event (with the same journal). ``Offset()`` is
    the start, before every event. Offsets of one journal compare in the
    order its tag queries yield them.
    """

    value: int = 0

    def __post_init__(self) -> None:
        if isinstance(self.value, bool) or not isinstance(self.value, int):
            raise TypeError(f"an Offset holds an int, not {type(self.value).__qualname__}")
        if self.value < 0:
            raise ValueError(f"an Offset is never negative, got {self.value}")


class EventEnvelope(msgspec.Struct, frozen=True):
    """An event a tag query found, and the offset to resume after it."""

    offset: Offset
    event: PersistentRepr


def _check_offset(offset: Offset) -> Offset:
    if not isinstance(offset, Offset):
        raise TypeError(
            f"a tag query starts after an Offset, not {type(offset).__qualname__}: {offset!r}"
        )
    return offset


def _check_sequence_nr(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} is an int, not {type(value).__qualname__}: {value!r}")
    if not 0 <= value <= MAX_SEQUENCE_NR:
        raise ValueError(f"{name} must be between 0 and {MAX_SEQUENCE_NR}, got {value}")
    return value


class JournalQueries:
    """Queries over ``journal`` (any :class:`Journal` plugin).

    ``poll_interval`` (seconds, > 0) is how often live queries look for new
    events; ``clock`` times those polls (default: the running event loop's).
    Queries are async iterators of :class:`PersistentRepr`; decode events
    with :func:`~shoal.persistence.decode_event`. Stop a query early by
    leaving its ``async for`` (or calling ``aclose`` on it): it releases its
    journal read at once.
    """

    __slots__ = ("_clock", "_journal", "_poll_interval")

    def __init__(
        self,
        journal: Journal,
        *,
        poll_interval: float = DEFAULT_POLL_INTERVAL,
        clock: Clock | None = None,
    ) -> None:
        if not isinstance(journal, Journal):
            raise TypeError(f"queries need a Journal, not {type(journal).__qualname__}")
        if (
            isinstance(poll_interval, bool)
            or not isinstance(poll_interval, int | float)
            or not math.isfinite(poll_interval)
            or poll_interval <= 0
        ):
            raise ValueError(f"poll_interval must be a finite number > 0, got {poll_interval!r}")
        self._journal = journal
        self._poll_interval = float(poll_interval)
        self._clock = clock

    @property
    def poll_interval(self) -> float:
        """Seconds between two polls of a live query."""
        return self._poll_interval

    def current_events_by_persistence_id(
        self,
        persistence_id: str,
        from_sequence_nr: int = 1,
        to_sequence_nr: int = MAX_SEQUENCE_NR,
    ) -> AsyncIterator[PersistentRepr]:
        """The stored events ``from_sequence_nr <= n <= to_sequence_nr`` of ``persistence_id``.

        Includes every write acknowledged before iteration starts; ends at
        the present end. Bad arguments raise ``ValueError`` or ``TypeError``
        here, before anything is read.
        """
        self._check(persistence_id, from_sequence_nr, to_sequence_nr)
        return self._run(persistence_id, from_sequence_nr, to_sequence_nr, live=False)

    def events_by_persistence_id(
        self,
        persistence_id: str,
        from_sequence_nr: int = 1,
        to_sequence_nr: int = MAX_SEQUENCE_NR,
    ) -> AsyncIterator[PersistentRepr]:
        """Like :meth:`current_events_by_persistence_id`, then follows new events (live).

        Ends once it has yielded the event at ``to_sequence_nr`` (or an event
        past it was deleted); otherwise runs until the consumer stops. A new
        event is seen within about one ``poll_interval`` of being
        acknowledged.
        """
        self._check(persistence_id, from_sequence_nr, to_sequence_nr)
        return self._run(persistence_id, from_sequence_nr, to_sequence_nr, live=True)

    def current_events_by_tag(
        self, tag: str, offset: Offset | None = None, *, page_size: int = 1000
    ) -> AsyncIterator[EventEnvelope]:
        """The stored events tagged ``tag`` after ``offset`` (default: all), in tag order.

        Tag order is the order the writes were acknowledged in; the events of
        one persistence id come in sequence order. Ends at the present end; a
        tag no event carries yields nothing. Deleted events are skipped. Bad
        arguments raise ``ValueError`` or ``TypeError`` here; a journal that
        stores no tags raises ``NotImplementedError`` when iterated.
        """
        check_tag(tag)
        check_ids_page("", page_size)
        start = _check_offset(offset) if offset is not None else Offset()
        return self._tag(tag, start.value, page_size, live=False)

    def events_by_tag(
        self, tag: str, offset: Offset | None = None, *, page_size: int = 1000
    ) -> AsyncIterator[EventEnvelope]:
        """:meth:`current_events_by_tag`, then each newly tagged event (live).

        Polls every ``poll_interval``; never misses an acknowledged event
        nor yields one twice. Resume after a restart by passing the offset of
        the last envelope handled.
        """
        check_tag(tag)
        check_ids_page("", page_size)
        start = _check_offset(offset) if offset is not None else Offset()
        return self._tag(tag, start.value, page_size, live=True)

    async def _tag(
        self, tag: str, after: int, page_size: int, *, live: bool
    ) -> AsyncGenerator[EventEnvelope]:
        clock = self._clock if self._clock is not None else LoopClock()
        journal = self._journal
        ahead: asyncio.Future[_Page] | None = None
        try:
            while True:
                written = journal.next_write() if live else None  # before the read: no miss
                if ahead is None:
                    last, found = await journal.tagged_events(tag, after, page_size)
                else:
                    last, found = await ahead
                    ahead = None
                if last == after:  # nothing new
                    if written is None:
                        return
                    await self._wait(clock, written)
                    continue
                after = last
                # Read the next page while the consumer handles this one.
                ahead = asyncio.ensure_future(journal.tagged_events(tag, after, page_size))
                for ordering, event in found:
                    yield EventEnvelope(Offset(ordering), event)
        finally:
            if ahead is not None:
                ahead.cancel()
                if ahead.done() and not ahead.cancelled():
                    ahead.exception()  # retrieved: the consumer left before needing it

    def current_persistence_ids(self, *, page_size: int = 1000) -> AsyncIterator[str]:
        """Every persistence id the journal holds when iteration starts, in ``str`` order.

        Read ``page_size`` ids at a time. An id written during the iteration
        may or may not be included. Raises ``NotImplementedError`` (when
        iterated) for a journal that cannot list ids.
        """
        check_ids_page("", page_size)
        return self._ids(page_size, live=False)

    def persistence_ids(self, *, page_size: int = 1000) -> AsyncIterator[str]:
        """:meth:`current_persistence_ids`, then each new id as it appears (live).

        Polls every ``poll_interval``; yields each id once. It remembers the
        ids it yielded (memory grows with the number of ids).
        """
        check_ids_page("", page_size)
        return self._ids(page_size, live=True)

    async def _ids(self, page_size: int, *, live: bool) -> AsyncGenerator[str]:
        clock = self._clock if self._clock is not None else LoopClock()
        seen: set[str] = set()
        while True:
            written = self._journal.next_write() if live else None
            after = ""
            while True:
                page = await self._journal.persistence_ids(after, page_size)
                for pid in page:
                    if pid not in seen:
                        if live:
                            seen.add(pid)
                        yield pid
                if len(page) < page_size:
                    break
                after = page[-1]
            if written is None:
                return
            await self._wait(clock, written)

    async def _wait(self, clock: Clock, written: asyncio.Future[None]) -> None:
        """Until the next poll, or sooner if this journal instance acknowledges a write."""
        if written.done():
            return
        timer = asyncio.ensure_future(clock.sleep(self._poll_interval))
        try:
            await asyncio.wait({timer, written}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            timer.cancel()

    @staticmethod
    def _check(persistence_id: str, from_sequence_nr: int, to_sequence_nr: int) -> None:
        check_persistence_id(persistence_id)
        _check_sequence_nr("from_sequence_nr", from_sequence_nr)
        _check_sequence_nr("to_sequence_nr", to_sequence_nr)

    async def _run(
        self, persistence_id: str, from_sequence_nr: int, to_sequence_nr: int, *, live: bool
    ) -> AsyncGenerator[PersistentRepr]:
        next_nr = max(from_sequence_nr, 1)
        clock = self._clock if self._clock is not None else LoopClock()
        bounded = live and to_sequence_nr < MAX_SEQUENCE_NR
        while next_nr <= to_sequence_nr:
            written = self._journal.next_write() if live else None  # before the read: no miss
            # Read before the replay: if the end was already stored then, this replay
            # covers it, and what it did not yield up to the end is deleted.
            end_stored = (
                bounded
                and await self._journal.highest_sequence_nr(persistence_id) >= to_sequence_nr
            )
            async with aclosing(
                _chunks(self._journal.replay(persistence_id, next_nr, to_sequence_nr))
            ) as chunks:
                async for chunk in chunks:
                    for event in chunk:
                        yield event
                    next_nr = chunk[-1].sequence_nr + 1
            if written is None or end_stored:
                return
            await self._wait(clock, written)


async def _chunks(
    replay: AsyncIterator[Sequence[PersistentRepr]],
) -> AsyncGenerator[Sequence[PersistentRepr]]:
    """``replay`` as an async generator, closing it (if it can be) when closed itself."""
    try:
        async for chunk in replay:
            yield chunk
    finally:
        close = getattr(replay, "aclose", None)
        if close is not None:
            await close()
