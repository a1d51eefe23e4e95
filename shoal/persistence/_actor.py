"""``PersistentActor``: an actor whose state is the fold of the events it persisted.

Lifecycle of one incarnation::

    started ── recovering ──(snapshot + replay done)── recovery_completed ── commands
                    │                                                          │
                    └─ failure: logged, queued commands         write failure: actor stops
                       fail with RecoveryError, actor stops

While it recovers, and while an ``async`` command handler awaits a persist,
the runtime handles no other message of this actor: commands arriving
meanwhile wait in the mailbox and are handled afterwards, in order (the
mailbox does the stashing; its capacity bounds how many may wait).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
from collections.abc import Awaitable, Callable, Collection, Coroutine, Sequence
from typing import Any, ClassVar, Final, final

from shoal.runtime import Actor, SerializationError, Serialized, ShoalError

from ._codec import decode_snapshot
from ._errors import (
    EventDecodeError,
    EventRejectedError,
    JournalError,
    PluginClosedError,
    RecoveryError,
)
from ._extension import Persistence
from ._journal import Journal, PersistentRepr, check_persistence_id, check_tags
from ._snapshot import (
    LATEST,
    SnapshotMetadata,
    SnapshotRecord,
    SnapshotSelectionCriteria,
)

__all__ = ["PersistentActor"]

_log = logging.getLogger("shoal.persistence")

# Sent by a persistent actor to itself when its recovery failed: the commands
# queued before it are refused with the RecoveryError, then the actor stops.
_STOP_AFTER_FAILED_RECOVERY: Final = object()


class _WriterIds:
    """Writer ids, unique per incarnation, without a system call each.

    A random 64-bit prefix per process (renewed in a forked child) and a
    counter: 32 hex digits, like a uuid4's. Reading the kernel's random
    source releases the GIL, which costs the loop a wait for it whenever a
    plugin thread wants it too, as while thousands of actors recover.
    """

    __slots__ = ("_count", "_prefix")

    def __init__(self) -> None:
        self.renew()

    def renew(self) -> None:
        self._prefix = os.urandom(8).hex()
        self._count = itertools.count()

    def next(self) -> str:
        return f"{self._prefix}{next(self._count):016x}"


_writer_ids = _WriterIds()
os.register_at_fork(after_in_child=_writer_ids.renew)


def _retrieve(future: asyncio.Future[Any]) -> None:
    """Mark a future's outcome as seen (asyncio logs an exception nobody retrieved)."""
    if not future.cancelled():
        future.exception()


class PersistentActor(Actor):
    """An event-sourced actor: commands in, events persisted, state rebuilt by replay.

    Subclasses define :attr:`persistence_id`, :meth:`on_command` (an
    ``async`` method to persist) and :meth:`on_event`. To use snapshots,
    also define :meth:`snapshot_state` and :meth:`apply_snapshot`, and set
    :attr:`snapshot_every` or call :meth:`save_snapshot`.

    Guarantees: an event is applied (``on_event``) only after the journal
    acknowledged it, so the state never runs ahead of the journal; sequence
    numbers are gap-free; a journal write failure stops the actor (logged
    with the persistence id); an event the serializer rejects fails only
    that persist (:class:`EventRejectedError`). The journal's fencing refuses
    the writes of a second, stale incarnation of the same persistence id.

    If recovery fails (the snapshot store or journal cannot be read, the
    journal is corrupt, a stored event cannot be decoded or applied), the
    failure is logged with the persistence id, every command already queued
    fails with :class:`RecoveryError` (its ``__cause__`` is the underlying
    error; tells go to dead letters) and the actor stops without handling
    any command. An ask sent after it stopped fails with the same
    :class:`RecoveryError` (a subclass of the runtime's ``ActorStoppedError``).

    Do not override :meth:`started` (recovery runs there); use
    :meth:`recovery_completed`.
    """

    snapshot_every: ClassVar[int | None] = None
    """Save a snapshot each time the sequence number crosses a multiple of this
    (``None``: only on demand). Saving runs in the background; a failure is
    logged and does not affect the actor."""

    recovery_criteria: ClassVar[SnapshotSelectionCriteria] = LATEST
    """Which snapshot recovery starts from; ``SnapshotSelectionCriteria.none()``
    replays every event."""

    _pers_seq: int = 0
    _pers_busy: bool = False
    _pers_writer: str = ""
    _pers_saving: set[asyncio.Task[None]] | None = None
    _pers_failure: RecoveryError | None = None  # set when recovery failed
    _pers_marker_queued: bool = False
    # Set in started(): the hot path of persist_all looks nothing up.
    _pers_journal: Journal
    _pers_pid: str
    _pers_serialize: Callable[[object], Serialized]
    _pers_wall_clock: Callable[[], float]
    _pers_tags_for: Callable[[Any], Collection[str]] | None = None  # None: tags_for not defined

    # -- what subclasses define -------------------------------------------------------

    @property
    def persistence_id(self) -> str:
        """The id of this actor's event stream (e.g. ``"account|alice"``).

        Read once, when the actor starts: it must not change afterwards.
        """
        raise NotImplementedError(f"{type(self).__qualname__} does not define persistence_id")

    def on_command(self, command: Any) -> Any:
        """Handle a command (plain or ``async``); the return value answers an ``ask``."""
        raise NotImplementedError(f"{type(self).__qualname__} does not implement on_command")

    def on_event(self, event: Any) -> None:
        """Apply one persisted event to the state.

        Called after each persist and for every event replayed in recovery,
        so it must be deterministic and do no I/O; a plain method.
        """
        raise NotImplementedError(f"{type(self).__qualname__} does not implement on_event")

    def snapshot_state(self) -> object:
        """The state to store in a snapshot (a serializable value)."""
        raise NotImplementedError(f"{type(self).__qualname__} does not define snapshot_state")

    def apply_snapshot(self, state: Any) -> None:
        """Restore the state from a snapshot's value, before later events are replayed."""
        raise NotImplementedError(f"{type(self).__qualname__} does not define apply_snapshot")

    def tags_for(self, event: Any) -> Collection[str]:
        """The tags to store with ``event`` (default: none); tag queries find it by them.

        Called once per event as it is persisted; must be deterministic. A
        tag is a non-empty ``str``; a bad tag rejects the write with
        :class:`EventRejectedError`. See :class:`JournalQueries`.
        """
        return ()

    def recovery_completed(self) -> Awaitable[None] | None:
        """Called once recovery is complete, before the first command (plain or ``async``)."""
        return None

    # -- state --------------------------------------------------------------------------

    @property
    def last_sequence_nr(self) -> int:
        """The sequence number of the last event applied (0 before any)."""
        return self._pers_seq

    @property
    def persistence(self) -> Persistence:
        """The system's :class:`Persistence` extension (journal and snapshot store)."""
        return self.ctx.system.extension(Persistence)

    # -- the runtime's hooks -------------------------------------------------------------

    @final
    def receive(self, message: Any) -> Any:
        """Hand ``message`` to :meth:`on_command` (define that, not this)."""
        if self._pers_failure is not None:
            return self._refuse(message)
        return self.on_command(message)

    @final
    async def started(self) -> None:
        """Recover: latest snapshot, highest sequence number, replay; then the hook."""
        self._pers_writer = _writer_ids.next()
        try:
            ext = self.persistence
            self._pers_pid = check_persistence_id(self.persistence_id)
            self._pers_journal = ext.journal
            self._pers_serialize = self.ctx.system.serialization.serialize
            self._pers_wall_clock = ext.settings.wall_clock
            if type(self).tags_for is not PersistentActor.tags_for:
                self._pers_tags_for = self.tags_for
            await self._recover()
        except Exception as exc:  # CancelledError (a stop meanwhile) passes through
            self._recovery_failed(exc)
            return
        hook = self.recovery_completed()
        if hook is not None:
            await hook

    def _recovery_failed(self, cause: Exception) -> None:
        """Log ``cause``, refuse the commands queued so far, then stop.

        Called in the ``except`` block that caught ``cause`` (the log line's
        traceback is the current exception's).
        """
        error = RecoveryError(
            f"recovery of {self._describe()} failed: {type(cause).__name__}: {cause}"
        )
        error.__cause__ = cause
        self._pers_failure = error
        ctx = self.ctx
        self._report("recovery-failed", "%s: %s; stopping", ctx.ref.path, error, exc_info=True)
        self._pers_marker_queued = self._queue_stop_marker()

    def _queue_stop_marker(self) -> bool:
        """Queue the marker that stops this actor; ``False`` if the mailbox refused it.

        Everything queued before the marker is refused with the recovery
        error. A full mailbox refuses the marker: it is queued again once a
        refused command made room.
        """
        marker: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        marker.add_done_callback(_retrieve)
        self.ctx.ref.deliver(_STOP_AFTER_FAILED_RECOVERY, None, marker)
        return not marker.done()

    def _refuse(self, message: object) -> None:
        """Handle ``message`` after a failed recovery: fail its ask, dead-letter it."""
        ctx = self.ctx
        if message is _STOP_AFTER_FAILED_RECOVERY:
            ctx.stop(cause=self._pers_failure)  # later asks get the recovery error too
            return
        failure = self._pers_failure
        assert failure is not None
        error = RecoveryError(*failure.args)  # one instance per asker: tracebacks pile up
        error.__cause__ = failure.__cause__
        ctx.reply_later().fail(error)
        ctx.system.dead_letter(message, ctx.sender, ctx.ref, "recovery-failed")
        if not self._pers_marker_queued:
            self._pers_marker_queued = self._queue_stop_marker()

    def _report(self, key: str, msg: str, *args: object, exc_info: bool = False) -> None:
        """Log through the system's rate limit for persistence (a log line per event
        would let one broken journal flood the log)."""
        try:
            limited = self.ctx.system.extension(Persistence).log
        except ShoalError:  # the system is shutting down: no extension any more
            _log.error(msg, *args, exc_info=exc_info)
            return
        limited.report(key, msg, *args, exc_info=exc_info)

    def _describe(self) -> str:
        try:
            return repr(self.persistence_id)
        except Exception:
            return f"a {type(self).__qualname__}"

    async def _recover(self) -> None:
        pid = self._pers_pid
        ext = self.persistence
        serialization = self.ctx.system.serialization
        snapshot = await ext.snapshot_store.load(pid, self.recovery_criteria)
        start = 0
        if snapshot is not None:
            start = snapshot.metadata.sequence_nr
            self.apply_snapshot(decode_snapshot(serialization, snapshot))
        self._pers_seq = start
        # Ownership first (a fencing journal refuses the previous owner from now on),
        # then the highest (it also primes the journal's fence) and the replay up to it.
        journal = ext.journal
        if type(journal).claim_writer is not Journal.claim_writer:  # the default only checks pid
            await journal.claim_writer(pid, self._pers_writer)
        deserialize = serialization.deserialize
        on_event = self.on_event

        def apply(chunk: Sequence[PersistentRepr]) -> None:
            for stored in chunk:
                try:
                    event = deserialize(stored.serializer_id, stored.manifest, stored.payload)
                except SerializationError as exc:
                    raise EventDecodeError(
                        pid, stored.sequence_nr, stored.serializer_id, stored.manifest, str(exc)
                    ) from exc
                # on_event sees the event's own number, as it does live
                self._pers_seq = stored.sequence_nr
                on_event(event)

        highest = await journal.recover(pid, start, apply)
        # Events between the last replayed and the highest were deleted: skip their numbers.
        self._pers_seq = max(self._pers_seq, highest)

    # -- persisting ---------------------------------------------------------------------

    def persist(self, event: object) -> Coroutine[Any, Any, None]:
        """Persist one event, then apply it: ``await self.persist(event)``.

        The same as ``persist_all((event,))`` (see there).
        """
        return self.persist_all((event,))

    async def persist_all(self, events: Sequence[object]) -> None:
        """Write ``events`` atomically, then apply each with :meth:`on_event`.

        Returns once they are written and applied. Raises
        :class:`EventRejectedError` if one cannot be serialized or the journal
        refuses to store it (nothing is written; the actor carries on). Any
        journal failure (including a fencing refusal) is logged with the
        persistence id, stops the actor and is raised; no event of the write
        is applied. Call it from this actor's own handler, one persist at a
        time.
        """
        if not events:
            return
        if self._pers_busy:
            raise RuntimeError("persist called while another persist of this actor is in flight")
        pid = self._pers_pid
        serialize = self._pers_serialize
        stamp = int(self._pers_wall_clock() * 1000)
        writer = self._pers_writer
        first = self._pers_seq + 1
        tags_for = self._pers_tags_for
        reprs = []
        for seq, event in enumerate(events, first):
            try:
                s = serialize(event)
            except SerializationError as exc:
                raise EventRejectedError(
                    f"event {type(event).__qualname__} for {pid!r} rejected: {exc}"
                ) from exc
            tags: tuple[str, ...] = ()
            if tags_for is not None:
                try:
                    tags = tuple(sorted(set(tags_for(event))))
                    check_tags(tags)
                except (TypeError, ValueError) as exc:
                    raise EventRejectedError(
                        f"tags of event {type(event).__qualname__} for {pid!r} rejected: {exc}"
                    ) from exc
            reprs.append(
                PersistentRepr(
                    pid, seq, s.serializer_id, s.manifest, s.payload, writer, stamp, tags
                )
            )
        self._pers_busy = True
        try:
            await self._pers_journal.write(reprs)
        except ValueError as exc:  # the journal cannot hold this write (e.g. too many events)
            raise EventRejectedError(f"events for {pid!r} rejected: {exc}") from exc
        except (JournalError, PluginClosedError) as exc:
            self._report(
                "persist-failed",
                "%s: persisting events %d..%d of %r failed; stopping so the state cannot "
                "run ahead of the journal: %s",
                self.ctx.ref.path,
                first,
                first + len(reprs) - 1,
                pid,
                exc,
            )
            self.ctx.stop()
            raise
        finally:
            self._pers_busy = False
        before = self._pers_seq
        on_event = self.on_event
        for seq, event in enumerate(events, first):
            self._pers_seq = seq
            on_event(event)
        every = self.snapshot_every
        if every is not None and self._pers_seq // every != before // every:
            self._snapshot_in_background()

    # -- snapshots and deletion -----------------------------------------------------------

    def _snapshot_record(self) -> SnapshotRecord:
        state = self.snapshot_state()
        s = self.ctx.system.serialization.serialize(state)
        stamp = int(self.persistence.settings.wall_clock() * 1000)
        meta = SnapshotMetadata(self.persistence_id, self._pers_seq, stamp)
        return SnapshotRecord(meta, s.serializer_id, s.manifest, s.payload)

    async def save_snapshot(self) -> SnapshotMetadata:
        """Store the current state as a snapshot now; returns what was stored.

        Raises ``SerializationError`` if the state cannot be serialized and
        :class:`SnapshotStoreError` if the store fails.
        """
        record = self._snapshot_record()
        await self.persistence.snapshot_store.save(record)
        return record.metadata

    def _snapshot_in_background(self) -> None:
        try:
            record = self._snapshot_record()  # the state as of now, not as of later
        except Exception:
            self._report(
                "snapshot-failed",
                "%s: snapshot of %r failed",
                self.ctx.ref.path,
                self.persistence_id,
                exc_info=True,
            )
            return
        saving = self._pers_saving
        if saving is None:
            saving = self._pers_saving = set()
        task = asyncio.ensure_future(self._save_quietly(record))
        saving.add(task)
        task.add_done_callback(saving.discard)

    async def _save_quietly(self, record: SnapshotRecord) -> None:
        try:
            await self.persistence.snapshot_store.save(record)
        except Exception as exc:
            self._report(
                "snapshot-failed",
                "snapshot %d of %r failed: %s",
                record.metadata.sequence_nr,
                record.metadata.persistence_id,
                exc,
            )

    async def delete_events(self, to_sequence_nr: int) -> None:
        """Delete this actor's events up to ``to_sequence_nr`` (at most the last one).

        Recovery then starts from a snapshot at or after that number, so
        take one first. Raises the journal's error on failure.
        """
        await self.persistence.journal.delete_to(
            self.persistence_id, min(to_sequence_nr, self._pers_seq)
        )

    async def delete_snapshots(self, criteria: SnapshotSelectionCriteria = LATEST) -> None:
        """Delete this actor's snapshots matching ``criteria`` (default: all)."""
        await self.persistence.snapshot_store.delete(self.persistence_id, criteria)
