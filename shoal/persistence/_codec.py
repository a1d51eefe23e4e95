"""Turning stored rows back into events and snapshots, with errors that say which row."""

from __future__ import annotations

from typing import Protocol

from shoal.runtime import SerializationError

from ._errors import EventDecodeError, SnapshotDecodeError
from ._journal import PersistentRepr
from ._snapshot import SnapshotRecord

__all__ = ["Deserializer", "decode_event", "decode_snapshot"]


class Deserializer(Protocol):
    """What decoding needs of the runtime's ``Serialization`` registry."""

    def deserialize(self, serializer_id: int, manifest: str, payload: bytes) -> object: ...


def decode_event(serialization: Deserializer, event: PersistentRepr) -> object:
    """The event ``event`` stores; :class:`EventDecodeError` names the row if it cannot."""
    try:
        return serialization.deserialize(event.serializer_id, event.manifest, event.payload)
    except SerializationError as exc:
        raise EventDecodeError(
            event.persistence_id, event.sequence_nr, event.serializer_id, event.manifest, str(exc)
        ) from exc


def decode_snapshot(serialization: Deserializer, snapshot: SnapshotRecord) -> object:
    """The state ``snapshot`` stores; :class:`SnapshotDecodeError` names it if it cannot."""
    meta = snapshot.metadata
    try:
        return serialization.deserialize(
            snapshot.serializer_id, snapshot.manifest, snapshot.payload
        )
    except SerializationError as exc:
        raise SnapshotDecodeError(
            meta.persistence_id,
            meta.sequence_nr,
            snapshot.serializer_id,
            snapshot.manifest,
            str(exc),
        ) from exc
