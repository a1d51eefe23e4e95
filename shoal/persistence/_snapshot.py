"""The snapshot-store plugin API.

A snapshot is a persistent actor's state at one sequence number, stored so
recovery can start there instead of replaying every event. Like events, it is
stored as the serialization registry's ``(serializer_id, manifest, payload)``.

The concurrency contract is the journal's (see :mod:`._journal`): call from
the plugin's event loop; methods never block it and may run concurrently.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Final

from ._journal import MAX_SEQUENCE_NR

__all__ = [
    "LATEST",
    "SnapshotMetadata",
    "SnapshotRecord",
    "SnapshotSelectionCriteria",
    "SnapshotStore",
]


@dataclass(frozen=True, slots=True)
class SnapshotMetadata:
    """Which state a snapshot holds: ``persistence_id`` after event ``sequence_nr``.

    ``timestamp`` is milliseconds since the epoch on the saver's clock.
    """

    persistence_id: str
    sequence_nr: int
    timestamp: int = 0


@dataclass(frozen=True, slots=True)
class SnapshotRecord:
    """A stored snapshot: its metadata and the serialized state."""

    metadata: SnapshotMetadata
    serializer_id: int
    manifest: str
    payload: bytes


@dataclass(frozen=True, slots=True)
class SnapshotSelectionCriteria:
    """Bounds on the snapshots a load or delete considers (all inclusive).

    The default selects every snapshot; ``SnapshotSelectionCriteria.latest()``
    is the same, spelled for loads. ``none()`` selects nothing (recovery
    without a snapshot).
    """

    max_sequence_nr: int = MAX_SEQUENCE_NR
    max_timestamp: int = MAX_SEQUENCE_NR
    min_sequence_nr: int = 0
    min_timestamp: int = 0

    @staticmethod
    def latest() -> SnapshotSelectionCriteria:
        """Every snapshot; a load returns the one with the highest sequence number."""
        return SnapshotSelectionCriteria()

    @staticmethod
    def none() -> SnapshotSelectionCriteria:
        """No snapshot at all."""
        return SnapshotSelectionCriteria(max_sequence_nr=0, max_timestamp=0)

    def matches(self, metadata: SnapshotMetadata) -> bool:
        """Whether ``metadata`` lies within every bound."""
        return (
            self.min_sequence_nr <= metadata.sequence_nr <= self.max_sequence_nr
            and self.min_timestamp <= metadata.timestamp <= self.max_timestamp
        )

    def is_empty(self) -> bool:
        """Whether no snapshot can match (lets plugins skip the storage round trip)."""
        return (
            self.max_sequence_nr < self.min_sequence_nr
            or self.max_timestamp < self.min_timestamp
            or self.max_sequence_nr < 1
        )


LATEST: Final = SnapshotSelectionCriteria()
"""Criteria selecting every snapshot: a load returns the newest."""


class SnapshotStore(abc.ABC):
    """An asynchronous snapshot store.

    Plugins: :class:`MemorySnapshotStore`, :class:`SqliteSnapshotStore`,
    :class:`CassandraSnapshotStore`; all pass the compliance suite in
    ``tests/integration/persistence``. Usable as an async context manager,
    which closes it.
    """

    @abc.abstractmethod
    async def save(self, snapshot: SnapshotRecord) -> None:
        """Store ``snapshot``, replacing any snapshot of the same id and sequence number.

        Atomic: after a failure (:class:`SnapshotStoreError`) either the old
        state or the whole new snapshot is stored, never a part. When this
        returns, every later ``load`` sees it.
        """

    @abc.abstractmethod
    async def load(
        self,
        persistence_id: str,
        criteria: SnapshotSelectionCriteria = LATEST,
    ) -> SnapshotRecord | None:
        """The matching snapshot with the highest sequence number, or ``None``.

        Ties on sequence number cannot exist (a save replaces). Raises
        :class:`SnapshotStoreError` on storage failure.
        """

    @abc.abstractmethod
    async def delete(self, persistence_id: str, criteria: SnapshotSelectionCriteria) -> None:
        """Delete every snapshot of ``persistence_id`` matching ``criteria``.

        Idempotent. To delete one snapshot, bound both sequence numbers to it.
        """

    @abc.abstractmethod
    async def close(self) -> None:
        """Finish the operations already accepted, then release every resource.

        Idempotent; any later call raises :class:`PluginClosedError`.
        """

    async def __aenter__(self) -> SnapshotStore:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()
