"""In-memory journal and snapshot store, for tests and examples.

Nothing survives the process. Every operation completes within one event-loop
step, so they are trivially atomic; ``replay_chunk_size`` lets tests exercise
chunked replays.
"""

from __future__ import annotations

import asyncio
import bisect
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field

import msgspec

from ._errors import PluginClosedError
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
)
from ._snapshot import LATEST, SnapshotRecord, SnapshotSelectionCriteria, SnapshotStore

__all__ = ["MemoryJournal", "MemorySnapshotStore"]


@dataclass(slots=True)
class _Stream:
    events: list[PersistentRepr] = field(default_factory=list)  # ascending, after deleted_to
    deleted_to: int = 0

    @property
    def highest(self) -> int:
        return self.events[-1].sequence_nr if self.events else self.deleted_to


class MemoryJournal(Journal):
    """A journal held in a dict; fencing is exact (one process, one store)."""

    def __init__(self, *, replay_chunk_size: int = 1000) -> None:
        if replay_chunk_size < 1:
            raise ValueError("replay_chunk_size must be positive")
        self._streams: dict[str, _Stream] = {}
        self._tags: dict[str, list[tuple[int, str, int]]] = {}  # ordering, pid, sequence_nr
        self._ordering = 0
        self._chunk = replay_chunk_size
        self._closed = False

    def _check_open(self) -> None:
        if self._closed:
            raise PluginClosedError("the memory journal is closed")

    async def write(self, events: Sequence[PersistentRepr]) -> None:
        self._check_open()
        pid = check_write(events)
        stream = self._streams.get(pid)
        if stream is None:
            stream = self._streams[pid] = _Stream()
        fence(pid, stream.highest, events[0].sequence_nr)
        stream.events.extend(events)
        for event in events:
            for tag in event.tags:
                self._ordering += 1
                self._tags.setdefault(tag, []).append((self._ordering, pid, event.sequence_nr))
        self._acknowledged()

    async def replay(
        self,
        persistence_id: str,
        from_sequence_nr: int = 1,
        to_sequence_nr: int = MAX_SEQUENCE_NR,
        max_count: int = MAX_SEQUENCE_NR,
    ) -> AsyncIterator[Sequence[PersistentRepr]]:
        check_persistence_id(persistence_id)
        self._check_open()
        stream = self._streams.get(persistence_id)
        if stream is None or not stream.events or max_count <= 0:
            return
        events = stream.events  # a delete replaces the list; appends are past ``stop``
        base = events[0].sequence_nr
        start = max(from_sequence_nr, base) - base
        stop = min(to_sequence_nr - base + 1, start + max_count)
        while start < stop:
            end = min(start + self._chunk, stop)
            chunk = events[start:end]
            if not chunk:
                return
            yield chunk
            start = end
            await asyncio.sleep(0)  # yield to the loop between chunks, like real plugins

    async def highest_sequence_nr(self, persistence_id: str, from_sequence_nr: int = 0) -> int:
        check_persistence_id(persistence_id)
        self._check_open()
        stream = self._streams.get(persistence_id)
        highest = stream.highest if stream is not None else 0
        if from_sequence_nr > highest:  # covered by the caller's snapshot: see Journal
            if stream is None:
                stream = self._streams[persistence_id] = _Stream()
            stream.deleted_to = from_sequence_nr
            stream.events = []
            return from_sequence_nr
        return highest

    async def delete_to(self, persistence_id: str, to_sequence_nr: int) -> None:
        check_persistence_id(persistence_id)
        self._check_open()
        stream = self._streams.get(persistence_id)
        if stream is None:
            return
        to = min(to_sequence_nr, stream.highest)
        if to <= stream.deleted_to:
            return
        stream.deleted_to = to
        stream.events = [e for e in stream.events if e.sequence_nr > to]

    async def tagged_events(
        self, tag: str, after: int, limit: int
    ) -> tuple[int, list[tuple[int, PersistentRepr]]]:
        check_tag(tag)
        check_ids_page("", limit)
        self._check_open()
        if after > self._ordering:
            raise offset_beyond_end(tag, after, self._ordering)
        rows = self._tags.get(tag, [])
        start = bisect.bisect_right(rows, after, key=lambda row: row[0])
        last = after
        found: list[tuple[int, PersistentRepr]] = []
        for ordering, pid, seq in rows[start : start + limit]:
            last = ordering
            events = self._streams[pid].events
            index = seq - events[0].sequence_nr if events else -1
            if 0 <= index < len(events):  # else deleted
                found.append((ordering, msgspec.structs.replace(events[index], tags=(tag,))))
        return last, found

    async def persistence_ids(self, after: str = "", limit: int = 1000) -> list[str]:
        check_ids_page(after, limit)
        self._check_open()
        return sorted(pid for pid in self._streams if pid > after)[:limit]

    async def close(self) -> None:
        self._closed = True


class MemorySnapshotStore(SnapshotStore):
    """A snapshot store held in a dict."""

    def __init__(self) -> None:
        self._snapshots: dict[str, dict[int, SnapshotRecord]] = {}
        self._closed = False

    def _check_open(self) -> None:
        if self._closed:
            raise PluginClosedError("the memory snapshot store is closed")

    async def save(self, snapshot: SnapshotRecord) -> None:
        check_persistence_id(snapshot.metadata.persistence_id)
        self._check_open()
        meta = snapshot.metadata
        self._snapshots.setdefault(meta.persistence_id, {})[meta.sequence_nr] = snapshot

    async def load(
        self,
        persistence_id: str,
        criteria: SnapshotSelectionCriteria = LATEST,
    ) -> SnapshotRecord | None:
        check_persistence_id(persistence_id)
        self._check_open()
        found = [
            s
            for s in self._snapshots.get(persistence_id, {}).values()
            if criteria.matches(s.metadata)
        ]
        return max(found, key=lambda s: s.metadata.sequence_nr, default=None)

    async def delete(self, persistence_id: str, criteria: SnapshotSelectionCriteria) -> None:
        check_persistence_id(persistence_id)
        self._check_open()
        stored = self._snapshots.get(persistence_id, {})
        for seq in [seq for seq, s in stored.items() if criteria.matches(s.metadata)]:
            del stored[seq]

    async def close(self) -> None:
        self._closed = True
