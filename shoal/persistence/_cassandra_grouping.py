"""Group commit for the Cassandra journal: which queued writes share one request (pure).

A request costs the Python driver ~100 µs of CPU, which caps one process at
~8,000 requests/s; an UNLOGGED batch carrying several persistence ids' writes
costs little more than one of them. Cassandra applies a batch's mutations
per partition, each atomically and in isolation, so every write stays atomic
(each write lies in one partition, see :mod:`._partitions`); only the
acknowledgement is shared: if the request fails, every write in it fails
with an unknown outcome.

Groups stay under Cassandra's default thresholds for multi-partition
batches, so the server neither warns nor refuses them:
``unlogged_batch_across_partitions_warn_threshold`` (10 partitions) and
``batch_size_warn_threshold`` (5 KiB; refused at 50 KiB). A write too big for
that goes alone: single-partition batches are exempt from both.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

__all__ = ["MAX_GROUP_BYTES", "MAX_GROUP_PARTITIONS", "ROW_OVERHEAD", "group_writes"]

MAX_GROUP_PARTITIONS: Final = 10
MAX_GROUP_BYTES: Final = 4096  # below the 5 KiB warning, with room for the estimate's error
ROW_OVERHEAD: Final = 48
"""Estimated bytes of a row beyond its persistence id, manifest, payload and writer
(numeric columns, timestamps, cell headers): a write's size is the sum over its
rows of those four lengths plus this."""


def group_writes(
    sizes: Sequence[int],
    max_partitions: int = MAX_GROUP_PARTITIONS,
    max_bytes: int = MAX_GROUP_BYTES,
) -> list[range]:
    """Split queued writes (their estimated sizes, in queue order) into request groups.

    Returns consecutive index ranges covering every write once, in order.
    A group holds at most ``max_partitions`` writes and ``max_bytes`` bytes,
    unless it is a single write.
    """
    groups: list[range] = []
    start = 0
    total = 0
    for i, size in enumerate(sizes):
        count = i - start
        if count and (count >= max_partitions or total + size > max_bytes):
            groups.append(range(start, i))
            start, total = i, 0
        total += size
    if start < len(sizes):
        groups.append(range(start, len(sizes)))
    return groups
