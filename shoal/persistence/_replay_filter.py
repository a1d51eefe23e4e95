"""Replay repair: two writers stored the same sequence number; keep the newer one (pure).

How it can happen on Cassandra: an old incarnation's write lands late (after a
timeout whose outcome the journal could not settle, or from another node's
journal instance) while a newer incarnation, which recovered without it, wrote
the same numbers. Both rows stay (``writer_uuid`` is part of the key).

The rule, applied identically by every replay so every recovery sees the same
events: at the first sequence number two writers share, the *newer* writer is
the one whose event there has the later ``(epoch, timestamp, writer_uuid)``:
the ownership epoch its writer claimed (with ``fencing="epoch"``, carried in
the stored writer id, see :func:`writer_epoch`; 0 otherwise), then the
timestamp, its writer's wall clock when it persisted (the newer incarnation
persisted after recovering, so after the old one's event). The newer writer's
events are kept; the older writer's events from that number on are dropped,
each reported as a :class:`Repair` (the journal logs a warning, counts them
and records them for operators). The older writer's events *before* that
number are kept: the newer incarnation recovered them.

The filter holds back the last ``window`` events it was given, so a second copy
up to that many events later (e.g. in the next Cassandra partition) is still
caught; a copy further away cannot be repaired and is reported as corruption.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass

from ._errors import JournalCorruptionError
from ._journal import PersistentRepr

__all__ = ["EPOCH_MARK", "Repair", "ReplayFilter", "writer_epoch"]


@dataclass(frozen=True, slots=True, order=True)
class Repair:
    """One event dropped by replay repair: ``dropped_writer``'s event ``sequence_nr``.

    ``kept_writer`` is the newer writer whose events were kept in its place;
    ``detected_at`` is when a replay first dropped it (milliseconds since the
    epoch; 0 until recorded).
    """

    persistence_id: str
    sequence_nr: int
    dropped_writer: str
    kept_writer: str
    detected_at: int = 0


EPOCH_MARK = "#epoch="
"""With ownership fencing, a stored writer id ends with this and the writer's epoch."""


def writer_epoch(writer_uuid: str) -> int:
    """The ownership epoch a stored writer id carries (``<writer>#epoch=<n>``), 0 if none."""
    if EPOCH_MARK not in writer_uuid:
        return 0
    digits = writer_uuid.rpartition(EPOCH_MARK)[2]
    return int(digits) if digits.isdigit() and digits.isascii() else 0


def _newer(a: PersistentRepr, b: PersistentRepr) -> bool:
    return (writer_epoch(a.writer_uuid), a.timestamp, a.writer_uuid) > (
        writer_epoch(b.writer_uuid),
        b.timestamp,
        b.writer_uuid,
    )


class ReplayFilter:
    """Feed it the rows of one replay in storage order; it returns the events to keep.

    Not thread-safe; one per replay. :meth:`feed` returns the events that
    can no longer change (all but the last ``window``), :meth:`finish` the
    rest; :attr:`repairs` lists what was dropped.
    """

    __slots__ = (
        "_buffer",
        "_dropped_from",
        "_emitted_to",
        "_kept_by",
        "_pid",
        "_window",
        "repairs",
    )

    def __init__(self, persistence_id: str, window: int = 100) -> None:
        if window < 1:
            raise ValueError("window must be positive")
        self._pid = persistence_id
        self._window = window
        self._buffer: list[PersistentRepr] = []  # ascending by sequence number
        self._dropped_from: dict[str, int] = {}  # older writer -> first number dropped
        self._kept_by: dict[str, str] = {}  # older writer -> the newer writer kept instead
        self._emitted_to = 0
        self.repairs: list[Repair] = []

    def feed(self, rows: Sequence[PersistentRepr]) -> list[PersistentRepr]:
        """Take ``rows`` (ascending within one partition); return the events now final."""
        if not rows:
            return []
        buffer = self._buffer
        first, last = rows[0].sequence_nr, rows[-1].sequence_nr
        if (
            not self._dropped_from
            and last - first == len(rows) - 1  # ascending without repeats: no second copy
            and (not buffer or first > buffer[-1].sequence_nr)
            and first > self._emitted_to
        ):
            buffer.extend(rows)
        else:
            for row in rows:
                self._add(row)
        return self._emit(len(buffer) - self._window)

    def finish(self) -> list[PersistentRepr]:
        """The events still held back (the replay has no more rows)."""
        return self._emit(len(self._buffer))

    def _emit(self, count: int) -> list[PersistentRepr]:
        if count <= 0:
            return []
        out = self._buffer[:count]
        del self._buffer[:count]
        self._emitted_to = out[-1].sequence_nr
        return out

    def _drop(self, row: PersistentRepr) -> None:
        kept = self._kept_by.get(row.writer_uuid, "")
        self.repairs.append(Repair(self._pid, row.sequence_nr, row.writer_uuid, kept))

    def _add(self, row: PersistentRepr) -> None:
        seq = row.sequence_nr
        cut = self._dropped_from.get(row.writer_uuid)
        if cut is not None and seq >= cut:
            self._drop(row)
            return
        if seq <= self._emitted_to:
            raise JournalCorruptionError(
                self._pid,
                seq,
                f"stored twice, by writer {row.writer_uuid!r} and another, too far apart "
                f"to repair (more than {self._window} events)",
            )
        buffer = self._buffer
        keys = [e.sequence_nr for e in buffer]
        i = bisect.bisect_left(keys, seq)
        if i == len(buffer) or buffer[i].sequence_nr != seq:
            buffer.insert(i, row)
            return
        other = buffer[i]
        if other.writer_uuid == row.writer_uuid:
            return  # the same row read twice: nothing to repair
        winner, loser = (row, other) if _newer(row, other) else (other, row)
        self._dropped_from[loser.writer_uuid] = seq
        self._kept_by[loser.writer_uuid] = winner.writer_uuid
        if loser is other:
            # The older writer's held-back events from here on go; the newer one's row
            # takes the place.
            kept = []
            for e in buffer:
                if e.writer_uuid == loser.writer_uuid and e.sequence_nr >= seq:
                    self._drop(e)
                else:
                    kept.append(e)
            buffer[:] = kept
            keys = [e.sequence_nr for e in buffer]
            buffer.insert(bisect.bisect_left(keys, seq), row)
        else:
            self._drop(row)
