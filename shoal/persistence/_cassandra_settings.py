"""Settings of the Cassandra plugins, kept apart from the driver.

Importing this module does not import ``cassandra`` (the driver): a system
can name Cassandra settings, and ``shoal.persistence`` can be imported, on a
machine without the driver; it is loaded only when a Cassandra plugin is.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final, Literal

from ._cassandra_grouping import MAX_GROUP_BYTES, MAX_GROUP_PARTITIONS

__all__ = ["CassandraSettings"]

_IDENT: Final = re.compile(r"[a-z][a-z0-9_]{0,47}")
_CONSISTENCY: Final = frozenset(
    {"ANY", "ONE", "TWO", "THREE", "QUORUM", "ALL", "LOCAL_QUORUM", "EACH_QUORUM", "LOCAL_ONE"}
)


def _default_replication() -> dict[str, str | int]:
    return {"class": "SimpleStrategy", "replication_factor": 1}


@dataclass(frozen=True, slots=True)
class CassandraSettings:
    """Settings of the Cassandra journal and snapshot store.

    Group commit (see ``_cassandra_grouping``): writes queued in one loop
    turn share UNLOGGED batches of at most ``group_max_partitions`` writes
    and ``group_max_bytes``. The defaults stay under Cassandra's default
    ``unlogged_batch_across_partitions_warn_threshold`` (10) and
    ``batch_size_warn_threshold`` (5 KiB), so the server neither warns nor
    refuses; raise them together with those server settings. 1 turns
    grouping off.
    """

    contact_points: tuple[str, ...] = ("127.0.0.1:9042",)
    """Cassandra nodes to connect to first, as ``"host:port"`` (or ``"host"``
    for port 9042); the driver discovers the others."""

    keyspace: str = "shoal"
    """The keyspace of the journal and snapshot tables."""

    replication: Mapping[str, str | int] = field(default_factory=_default_replication)
    """The keyspace's replication map, used only when ``keyspace_autocreate``
    creates it; production clusters want e.g.
    ``{"class": "NetworkTopologyStrategy", "dc1": 3}``."""

    keyspace_autocreate: bool = True
    """Create the keyspace if it does not exist."""

    tables_autocreate: bool = True
    """Create the tables if they do not exist."""

    partition_size: int = 500_000
    """Events per Cassandra partition,
    ``partition_nr = (sequence_nr - 1) // partition_size``; one write may
    hold at most this many events. Never change it for a keyspace that
    already holds events: rows would be looked up in the wrong partitions."""

    write_consistency: str = "LOCAL_QUORUM"
    """Consistency level of writes, a ``cassandra.ConsistencyLevel`` name.
    ``LOCAL_QUORUM`` for both reads and writes means a read sees every
    acknowledged write."""

    read_consistency: str = "LOCAL_QUORUM"
    """Consistency level of reads (see ``write_consistency``)."""

    local_datacenter: str | None = None
    """The datacenter the driver prefers; ``None`` lets the driver pick the
    one of the first contact point."""

    protocol_version: int = 5
    """The native protocol version the driver speaks."""

    request_timeout_s: float = 10.0
    """Seconds each request may take, on the client side."""

    replay_chunk_size: int = 5000
    """Rows fetched per page during replay (1..50000)."""

    connect_timeout_s: float = 10.0
    """Seconds connecting to a Cassandra node may take."""

    group_max_partitions: int = MAX_GROUP_PARTITIONS
    """Writes (persistence ids) per group-commit batch; 1 turns grouping off."""

    group_max_bytes: int = MAX_GROUP_BYTES
    """Payload bytes per group-commit batch."""

    max_in_flight: int = 512
    """Requests (per session) out at once; more wait, in order, for earlier
    ones to complete: backpressure instead of failures when the driver's
    socket buffers fill."""

    settle_timeout_s: float = 60.0
    """How long the journal keeps sending again a write whose outcome is
    unknown (a timeout, a lost connection) so its outcome becomes known,
    while its sequence numbers stay claimed and that persistence id's new
    writes wait; past it the claim is dropped with a warning (see
    ``CassandraJournal``)."""

    tag_delay_s: float = 1.0
    """Tag queries read only events whose orderings (the writer's wall clock)
    are at least this old, and a tagged write acknowledged later than this
    after its orderings were taken fails with ``JournalWriteError``. So a
    tag query never misses an acknowledged event while the writers' clocks
    lag the reader's by less than this minus the writes' latency. ``0``
    reads up to the present: exact for a single journal instance."""

    fencing: Literal["none", "epoch"] = "none"
    """How writers on different nodes are kept apart (``docs/persistence.md``).
    ``"none"``: each journal instance fences its own writers (a stale
    incarnation on the same node is refused); a second node's writer is not
    prevented, and replay repairs numbers stored twice (newer writer wins).
    ``"epoch"``: an incarnation claims its persistence id when it starts (one
    lightweight transaction), and every write is checked against the claim
    after it is stored (one shared read per event-loop turn), so a stale
    owner on any node is never acknowledged a write. Needs the ``owners``
    table."""

    def __post_init__(self) -> None:
        if not _IDENT.fullmatch(self.keyspace):
            raise ValueError(f"invalid keyspace name {self.keyspace!r}")
        if self.partition_size < 1:
            raise ValueError("partition_size must be positive")
        if not 1 <= self.replay_chunk_size <= 50_000:
            raise ValueError("replay_chunk_size must be within 1..50000")
        for level in (self.write_consistency, self.read_consistency):
            if level not in _CONSISTENCY:
                raise ValueError(f"unknown consistency level {level!r}")
        if not self.contact_points:
            raise ValueError("at least one contact point is needed")
        if self.group_max_partitions < 1 or self.group_max_bytes < 1:
            raise ValueError("group_max_partitions and group_max_bytes must be positive")
        if self.max_in_flight < 1:
            raise ValueError("max_in_flight must be positive")
        if not 0 <= self.tag_delay_s < float("inf"):
            raise ValueError("tag_delay_s must be >= 0 and finite")
        if self.fencing not in ("none", "epoch"):
            raise ValueError(f"fencing is 'none' or 'epoch', not {self.fencing!r}")
        if not 0 <= self.settle_timeout_s < float("inf"):
            raise ValueError("settle_timeout_s must be >= 0 and finite")

    def replication_cql(self) -> str:
        """The replication map as a CQL literal."""
        parts = []
        for key, value in self.replication.items():
            if not re.fullmatch(r"[A-Za-z0-9_.\-]+", key) or not re.fullmatch(
                r"[A-Za-z0-9_.\-]+", str(value)
            ):
                raise ValueError(f"invalid replication setting {key!r}: {value!r}")
            parts.append(f"'{key}': '{value}'")
        return "{" + ", ".join(parts) + "}"
