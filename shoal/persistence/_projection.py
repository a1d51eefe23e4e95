"""Projections: an async handler run over a tag query, its offset stored in the same journal."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Final

from ._errors import JournalCorruptionError
from ._journal import Journal, PersistentRepr, check_persistence_id
from ._query import EventEnvelope, Offset

__all__ = ["Projection"]

_PREFIX: Final = "shoal-projection|"
_MANIFEST: Final = "shoal.persistence.Offset"


class Projection:
    """Runs ``handler`` over every envelope of a query, at least once, resuming after restarts.

    The offset is stored in ``journal`` itself, as the events of persistence
    id ``"shoal-projection|" + name`` (older ones deleted as new ones are
    stored), after the handler has finished with the envelope: a crash
    between the two hands that envelope to the handler again on restart, so
    handlers should be idempotent. Two runs of one projection at once are
    fenced: the second one's save fails with :class:`SequenceConflictError`.

    ``save_every`` (>= 1) stores the offset after that many envelopes (and
    when a current query ends); larger values write less and redo more
    after a crash.
    """

    __slots__ = ("_journal", "_pid", "_save_every", "_seq")

    def __init__(self, journal: Journal, name: str, *, save_every: int = 1) -> None:
        if not isinstance(journal, Journal):
            raise TypeError(f"a projection needs a Journal, not {type(journal).__qualname__}")
        check_persistence_id(name)
        if isinstance(save_every, bool) or not isinstance(save_every, int) or save_every < 1:
            raise ValueError(f"save_every must be an int >= 1, got {save_every!r}")
        self._journal = journal
        self._pid = _PREFIX + name
        self._save_every = save_every
        self._seq: int | None = None

    @property
    def persistence_id(self) -> str:
        """Where the offset is stored."""
        return self._pid

    async def load_offset(self) -> Offset | None:
        """The last stored offset, or ``None`` if the projection never stored one."""
        highest = await self._journal.highest_sequence_nr(self._pid)
        self._seq = highest
        if highest == 0:
            return None
        stored = await self._journal.events(self._pid, highest, highest)
        if not stored:
            raise JournalCorruptionError(self._pid, highest, "the stored offset is missing")
        row = stored[0]
        text = row.payload.decode("ascii", "replace")
        if row.manifest != _MANIFEST or not text.isdigit() or len(text) > 19:
            raise JournalCorruptionError(self._pid, highest, f"not an offset: {row.payload!r}")
        return Offset(int(text))

    async def save_offset(self, offset: Offset) -> None:
        """Store ``offset`` as the projection's position."""
        if not isinstance(offset, Offset):
            raise TypeError(f"save_offset takes an Offset, not {type(offset).__qualname__}")
        if self._seq is None:
            self._seq = await self._journal.highest_sequence_nr(self._pid)
        seq = self._seq + 1
        payload = str(offset.value).encode("ascii")
        await self._journal.write([PersistentRepr(self._pid, seq, 0, _MANIFEST, payload)])
        self._seq = seq
        if seq > 1:
            await self._journal.delete_to(self._pid, seq - 1)

    async def run(
        self,
        query: Callable[[Offset | None], AsyncIterator[EventEnvelope]],
        handler: Callable[[EventEnvelope], Awaitable[None]],
    ) -> None:
        """Run ``handler`` over ``query(last stored offset)``, storing offsets as it goes.

        ``query`` is e.g. ``JournalQueries(journal).events_by_tag`` bound to a
        tag (``lambda offset: queries.events_by_tag("orders", offset)``).
        Returns when a current query ends; a live one runs until cancelled.
        An exception of the handler stops the run (its envelope's offset is
        not stored) and is raised.
        """
        pending: Offset | None = None
        count = 0
        async for envelope in query(await self.load_offset()):
            await handler(envelope)
            pending = envelope.offset
            count += 1
            if count >= self._save_every:
                await self.save_offset(pending)
                pending, count = None, 0
        if pending is not None:
            await self.save_offset(pending)
