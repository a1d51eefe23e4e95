"""Partition arithmetic of the Cassandra journal (pure functions, no I/O).

Events of one persistence id are spread over Cassandra partitions
``(persistence_id, partition_nr)`` so no partition grows without bound. The
*nominal* partition of event ``n`` is ``(n - 1) // partition_size``.

One write (one ``persist_all``) must be atomic. Cassandra applies a batch
atomically *and in isolation* only within one partition; a batch over two
partitions would need a LOGGED batch (a batchlog round trip on two extra
replicas, atomic only eventually, and a reader may see half of it until the
batchlog replays). So a write whose events straddle a partition boundary is
stored *whole in the partition of its last event*: every write is a
single-partition UNLOGGED batch. A write may therefore hold at most
``partition_size`` events.

Consequences, which readers rely on:

* event ``n`` lives in partition ``nominal(n)`` or ``nominal(n) + 1``;
* the partition of an event never decreases as ``n`` grows, so reading
  partitions in ascending order and rows in ascending order yields the
  events in order;
* once partition ``p`` is exhausted while looking for event ``n``, ``n`` can
  only be in ``p + 1`` if ``p + 1 <= nominal(n) + 1``; past that, ``n`` does
  not exist (sequence numbers are gap-free), see :func:`next_partition`.
"""

from __future__ import annotations

__all__ = ["next_partition", "partition_nr", "write_partition"]


def partition_nr(sequence_nr: int, partition_size: int) -> int:
    """The nominal partition of event ``sequence_nr`` (numbered from 1)."""
    return (sequence_nr - 1) // partition_size


def write_partition(first: int, last: int, partition_size: int) -> int:
    """The partition that stores a write of events ``first..last``: its last event's.

    Raises ``ValueError`` for a write of more than ``partition_size`` events.
    """
    if last - first + 1 > partition_size:
        raise ValueError(
            f"one write holds {last - first + 1} events, more than the journal's partition "
            f"size {partition_size}"
        )
    return partition_nr(last, partition_size)


def next_partition(exhausted: int, next_sequence_nr: int, partition_size: int) -> int | None:
    """Where to look for event ``next_sequence_nr`` after partition ``exhausted`` had no more.

    Returns the next partition to read, or ``None`` when the event cannot be
    stored anywhere further (so the replay, or the search for the highest
    sequence number, is complete).
    """
    candidate = exhausted + 1
    if candidate <= partition_nr(next_sequence_nr, partition_size) + 1:
        return candidate
    return None
