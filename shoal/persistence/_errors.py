"""The persistence error hierarchy.

Every error a user of :mod:`shoal.persistence` can catch is defined here and
exported from the package. Each docstring says who raises it and when.
"""

from __future__ import annotations

from shoal.runtime import ActorStoppedError, ShoalError


class PersistenceError(ShoalError):
    """Base class of every error :mod:`shoal.persistence` raises on purpose."""


class PluginClosedError(PersistenceError):
    """An operation on a journal or snapshot store that has been closed.

    Raised by every plugin method called after ``close()`` began; writes that
    were accepted before ``close()`` are still committed and acknowledged.
    """


class JournalError(PersistenceError):
    """Base class of the errors a journal plugin raises."""


class JournalWriteError(JournalError):
    """A journal write failed in the storage layer (I/O error, timeout, unavailable).

    Raised by :meth:`Journal.write`. The outcome is *unknown*: the write may or
    may not have been stored, but never partly (writes are atomic). A
    :class:`PersistentActor` stops on it, so its state never runs ahead of
    the journal; its next incarnation recovers whatever was stored.
    """


class SequenceConflictError(JournalError):
    """A write that does not continue the highest stored sequence number.

    Raised by :meth:`Journal.write` when the first event's sequence number is
    not ``highest + 1`` for its persistence id. Nothing of that write was
    stored. This is the journal's fencing: a second, stale incarnation of the
    same persistent actor cannot interleave its events with the current one's.
    """

    def __init__(self, persistence_id: str, expected: int, got: int) -> None:
        super().__init__(
            f"write to {persistence_id!r} refused: it starts at sequence number {got}, "
            f"but the journal expects {expected} (another writer or a stale incarnation?)"
        )
        self.persistence_id = persistence_id
        self.expected = expected
        self.got = got


class OwnershipLostError(JournalWriteError):
    """A write by an incarnation that no longer owns its persistence id.

    Raised by :meth:`Journal.write` of the Cassandra journal with
    ``CassandraSettings.fencing = "epoch"`` when another writer claimed the
    id (:meth:`Journal.claim_writer`) after this one: found before sending
    (nothing stored) or by the check after the write was stored (then it may
    be stored, and the new owner's events supersede it; see
    ``docs/persistence.md``). Either way the write is not acknowledged, and
    a :class:`PersistentActor` stops on it, like on any journal failure.
    """


class JournalReadError(JournalError):
    """Reading the journal (replay, highest sequence number) failed in the storage layer.

    Raised by :meth:`Journal.replay`, :meth:`Journal.highest_sequence_nr` and
    :meth:`Journal.delete_to`; nothing was changed by a failed read.
    """


class JournalCorruptionError(JournalError):
    """The stored events of a persistence id break the journal's invariants.

    Raised during replay when a row is malformed, when sequence numbers have
    a gap, or (Cassandra) when two writers stored the same sequence number.
    The message names the persistence id and the sequence number.
    """

    def __init__(self, persistence_id: str, sequence_nr: int, problem: str) -> None:
        super().__init__(
            f"journal of {persistence_id!r} at sequence number {sequence_nr}: {problem}"
        )
        self.persistence_id = persistence_id
        self.sequence_nr = sequence_nr


class EventDecodeError(PersistenceError):
    """A stored event whose payload cannot be decoded (corrupt bytes, unknown manifest).

    Raised by :func:`decode_event`, hence by a persistent actor's recovery.
    The message names the persistence id, sequence number, serializer id and
    manifest; ``__cause__`` is the runtime's ``SerializationError``.
    """

    def __init__(
        self, persistence_id: str, sequence_nr: int, serializer_id: int, manifest: str, reason: str
    ) -> None:
        super().__init__(
            f"event {sequence_nr} of {persistence_id!r} (serializer {serializer_id}, manifest "
            f"{manifest!r}) cannot be decoded: {reason}"
        )
        self.persistence_id = persistence_id
        self.sequence_nr = sequence_nr


class SnapshotStoreError(PersistenceError):
    """A snapshot store operation failed in the storage layer.

    Raised by :meth:`SnapshotStore.save`, ``load`` and ``delete``. A failed
    save leaves either the previous state or the complete new snapshot.
    """


class SnapshotDecodeError(PersistenceError):
    """A stored snapshot whose payload cannot be decoded.

    Raised by :func:`decode_snapshot`, hence by a persistent actor's
    recovery. The message names the persistence id and sequence number.
    """

    def __init__(
        self, persistence_id: str, sequence_nr: int, serializer_id: int, manifest: str, reason: str
    ) -> None:
        super().__init__(
            f"snapshot at sequence number {sequence_nr} of {persistence_id!r} (serializer "
            f"{serializer_id}, manifest {manifest!r}) cannot be decoded: {reason}"
        )
        self.persistence_id = persistence_id
        self.sequence_nr = sequence_nr


class EventRejectedError(PersistenceError):
    """An event that cannot be persisted: the serializer refused it, or the journal cannot store it.

    Raised by :meth:`PersistentActor.persist` / ``persist_all`` and by
    :meth:`Journal.write` when the write is known not to be stored (the
    journal refused a row it cannot hold, e.g. over a size limit). Only that
    persist fails: the actor keeps running with its state and sequence
    number unchanged.
    """


class RecoveryError(PersistenceError, ActorStoppedError):
    """A persistent actor could not recover its state, so it stopped.

    Raised by ``ask`` for every command that was queued for a persistent
    actor whose recovery failed: loading the snapshot, reading the journal
    (an unreadable file, a corrupt journal), decoding a stored event or
    applying it. The message names the persistence id and the failure;
    ``__cause__`` is the underlying error (e.g. :class:`JournalReadError`,
    :class:`JournalCorruptionError`, :class:`EventDecodeError`). The failure
    is also logged. The actor stops without handling any command; an ask
    sent after it stopped gets the runtime's plain ``ActorStoppedError``.
    It is an ``ActorStoppedError``, so code that handles a stopped target
    handles this too.
    """
