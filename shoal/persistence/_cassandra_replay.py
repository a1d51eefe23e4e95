"""The Cassandra journal's replay and highest-sequence-number walks, as pure state machines.

Each walk says which query to run next given the rows the previous one
returned; the journal runs the queries (and issues the next one before
handing the current chunk to its consumer, so reading runs ahead). See
:mod:`._partitions` for where events live.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ._errors import JournalCorruptionError
from ._journal import PersistentRepr
from ._partitions import next_partition, partition_nr

__all__ = ["ChunkQuery", "HighestWalk", "ReplayWalk"]


@dataclass(frozen=True, slots=True)
class ChunkQuery:
    """Read up to ``limit`` rows of one partition, ascending by ``(sequence_nr, writer_uuid)``.

    With ``after`` set, rows strictly after that key; otherwise rows with
    ``sequence_nr >= lower``. Always ``sequence_nr <= upper``.
    """

    partition_nr: int
    lower: int
    upper: int
    limit: int
    after: tuple[int, str] | None = None


class ReplayWalk:
    """Which rows to read to replay ``start..upper`` (at most ``max_count`` events).

    ``start`` must already be past the deletion marker. Later partitions
    are read from ``start`` on rather than from the next expected number, so
    a second copy of an already replayed event (two writers without a
    common fence) shows up: the walk passes second copies on (the journal's
    :class:`ReplayFilter` resolves them) and reports gaps.
    """

    __slots__ = ("_chunk_size", "_expected", "_pid", "_remaining", "_size", "_start", "_upper")

    def __init__(
        self,
        persistence_id: str,
        start: int,
        upper: int,
        max_count: int,
        partition_size: int,
        chunk_size: int,
    ) -> None:
        self._pid = persistence_id
        self._start = start
        self._upper = upper
        self._remaining = max_count
        self._size = partition_size
        self._chunk_size = chunk_size
        self._expected = start

    def first(self) -> ChunkQuery | None:
        """The first query, or ``None`` if the range is empty."""
        if self._remaining <= 0 or self._start > self._upper:
            return None
        return ChunkQuery(
            partition_nr(self._start, self._size), self._start, self._upper, self._limit()
        )

    def _limit(self) -> int:
        return min(self._chunk_size, self._remaining)

    def advance(self, query: ChunkQuery, chunk: Sequence[PersistentRepr]) -> ChunkQuery | None:
        """Check ``chunk`` (the rows ``query`` returned) and return the next query, if any.

        Raises :class:`JournalCorruptionError` on a gap.
        """
        expected = self._expected
        for event in chunk:
            seq = event.sequence_nr
            if seq > expected:
                raise JournalCorruptionError(
                    self._pid, expected, f"missing (the next stored is {seq})"
                )
            if seq == expected:
                expected += 1
        self._expected = expected
        self._remaining -= len(chunk)
        if self._remaining <= 0 or self._expected > self._upper:
            return None
        if len(chunk) == query.limit:  # the partition may hold more
            last = chunk[-1]
            return ChunkQuery(
                query.partition_nr,
                self._start,
                self._upper,
                self._limit(),
                (last.sequence_nr, last.writer_uuid),
            )
        following = next_partition(query.partition_nr, self._expected, self._size)
        if following is None:
            return None
        return ChunkQuery(following, self._start, self._upper, self._limit())


class HighestWalk:
    """Which partitions to probe for the highest stored sequence number.

    Starts from ``known``, a number known to be stored or deleted (the
    deletion marker, or the caller's hint); each probe asks for the largest
    sequence number of one partition.
    """

    __slots__ = ("_size", "highest")

    def __init__(self, known: int, partition_size: int) -> None:
        self.highest = known
        self._size = partition_size

    def first(self) -> int:
        """The first partition to probe."""
        return partition_nr(self.highest + 1, self._size)

    def advance(self, probed: int, largest: int | None) -> int | None:
        """Record the largest number found in partition ``probed``; the next to probe, if any."""
        if largest is not None and largest > self.highest:
            self.highest = largest
        return next_partition(probed, self.highest + 1, self._size)
