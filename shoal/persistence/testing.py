"""Test helpers: a journal and a snapshot store whose faults are methods.

:class:`FaultyJournal` wraps any :class:`~shoal.persistence.Journal` (a
fresh :class:`~shoal.persistence.MemoryJournal` by default) and
:class:`FaultySnapshotStore` any snapshot store. Each call passes through
unchanged unless a *fault* matches it: fail it, reject it (writes), hold it
until released, or delay it on a clock. Faults match by operation, by
persistence id and by call count, so a test can say "the third write of
``account|alice`` fails" without counting loop turns::

    journal = FaultyJournal()
    held = journal.hold("replay", persistence_id="account|alice")
    ref = system.spawn(lambda: Account("alice"))
    await held.reached()          # recovery is now waiting on the journal
    ...                           # assert what happens meanwhile
    held.release()

A call meets the faults in the order they were added. A hold or a delay
acts and lets the call go on to the next faults (so "hold, then fail" is
two faults); a failure or rejection ends the call. Faults act *before* the
wrapped plugin is called (nothing is stored or read), except a write
failure added with ``after_storing=True``, which stores the events and then
raises: the "outcome unknown" case of :class:`JournalWriteError`.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from typing import Final, Generic, Literal, TypeVar

from shoal.runtime import Clock, LoopClock

from ._errors import JournalReadError, JournalWriteError, SnapshotStoreError
from ._journal import MAX_SEQUENCE_NR, Journal, PersistentRepr
from ._memory import MemoryJournal, MemorySnapshotStore
from ._snapshot import LATEST, SnapshotRecord, SnapshotSelectionCriteria, SnapshotStore

__all__ = ["Fault", "FaultyJournal", "FaultySnapshotStore"]

JournalOperation = Literal["write", "replay", "highest_sequence_nr", "delete_to"]
SnapshotOperation = Literal["save", "load", "delete"]
_Op = TypeVar("_Op", JournalOperation, SnapshotOperation)

_FAIL: Final = "fail"
_REJECT: Final = "reject"
_HOLD: Final = "hold"
_DELAY: Final = "delay"


class Fault:
    """One injected fault; returned by the ``fail``/``reject``/``hold``/``delay`` methods.

    It matches calls of its operation (and persistence id, if given). It lets
    the first ``after`` matching calls through, then acts on the next
    ``times`` (``None``: every later one) and then retires. Use it from the
    event loop of the plugin it belongs to.
    """

    __slots__ = (
        "_released",
        "_waiters",
        "acted",
        "action",
        "after",
        "after_storing",
        "cancelled",
        "delay",
        "error",
        "matched",
        "operation",
        "persistence_id",
        "times",
    )

    def __init__(
        self,
        operation: str,
        action: str,
        persistence_id: str | None,
        after: int,
        times: int | None,
        error: Exception | None = None,
        delay: float = 0.0,
        after_storing: bool = False,
    ) -> None:
        if after < 0 or (times is not None and times < 1):
            raise ValueError("a fault needs after >= 0 and times >= 1 (or None)")
        self.operation = operation
        self.persistence_id = persistence_id
        self.after = after
        self.times = times
        self.matched = 0
        """Calls that matched so far (let through or acted on)."""
        self.acted = 0
        """Calls the fault acted on so far."""
        self.cancelled = False
        self.action = action
        """``"fail"``, ``"reject"``, ``"hold"`` or ``"delay"``."""
        self.error = error
        self.delay = delay
        self.after_storing = after_storing
        self._released: asyncio.Event | None = None
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []

    def cancel(self) -> None:
        """Retire the fault: later calls pass (a held call is released)."""
        self.cancelled = True
        self.release()

    def release(self) -> None:
        """Let every call this (hold) fault holds, or will hold, continue."""
        if self._released is None:
            self._released = asyncio.Event()
        self._released.set()

    async def reached(self, count: int = 1) -> None:
        """Wait until the fault has acted on ``count`` calls in all (held ones included)."""
        if self.acted >= count:
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((count, waiter))
        await waiter

    async def wait_released(self) -> None:
        """Wait until :meth:`release` (what a held call does)."""
        if self._released is None:
            self._released = asyncio.Event()
        await self._released.wait()

    def applies(self, operation: str, persistence_id: str | None) -> bool:
        """Count a call and say whether the fault acts on it (the faulty plugins ask)."""
        if self.cancelled or operation != self.operation:
            return False
        if self.persistence_id is not None and persistence_id != self.persistence_id:
            return False
        self.matched += 1
        if self.matched <= self.after:
            return False
        if self.times is not None and self.acted >= self.times:
            return False
        self.acted += 1
        for count, waiter in list(self._waiters):
            if self.acted >= count:
                self._waiters.remove((count, waiter))
                if not waiter.done():
                    waiter.set_result(None)
        return True

    def __repr__(self) -> str:
        pid = f" of {self.persistence_id!r}" if self.persistence_id is not None else ""
        return f"<Fault {self.action} {self.operation}{pid}, acted {self.acted}>"


class _Faults:
    """The fault table shared by the faulty journal and snapshot store."""

    def __init__(self, clock: Clock | None) -> None:
        self._faults: list[Fault] = []
        self._clock = clock
        self._calls: Counter[tuple[str, str | None]] = Counter()

    def add(self, fault: Fault) -> Fault:
        self._faults.append(fault)
        return fault

    def calls(self, operation: str, persistence_id: str | None) -> int:
        if persistence_id is not None:
            return self._calls[(operation, persistence_id)]
        return sum(n for (op, _), n in self._calls.items() if op == operation)

    def clear(self) -> None:
        faults, self._faults = self._faults, []
        for fault in faults:
            fault.cancel()

    async def enter(self, operation: str, persistence_id: str | None) -> Fault | None:
        """Apply the matching faults; returns a write fault to raise after storing."""
        self._calls[(operation, persistence_id)] += 1
        for fault in list(self._faults):  # a hold may last while faults are added
            if not fault.applies(operation, persistence_id):
                continue
            action = fault.action
            if action == _HOLD:
                await fault.wait_released()
            elif action == _DELAY:
                clock = self._clock
                if clock is None:
                    clock = LoopClock(asyncio.get_running_loop())
                await clock.sleep(fault.delay)
            elif action == _REJECT:
                raise ValueError(f"injected rejection of a {operation} of {persistence_id!r}")
            elif fault.after_storing:
                return fault
            else:
                raise _error(fault, operation, persistence_id)
        return None


def _error(fault: Fault, operation: str, persistence_id: str | None) -> Exception:
    if fault.error is not None:
        return fault.error
    what = f"injected fault: {operation} of {persistence_id!r} failed"
    if operation in ("write", "delete_to"):
        return JournalWriteError(what)
    if operation in ("replay", "highest_sequence_nr"):
        return JournalReadError(what)
    return SnapshotStoreError(what)


class _FaultMethods(Generic[_Op]):
    """The fault methods the faulty journal and snapshot store share (over their operations)."""

    _faults: _Faults

    def hold(
        self,
        operation: _Op,
        *,
        persistence_id: str | None = None,
        after: int = 0,
        times: int | None = None,
    ) -> Fault:
        """Make matching calls wait until :meth:`Fault.release` (or ``cancel``)."""
        return self._faults.add(Fault(operation, _HOLD, persistence_id, after, times))

    def delay(
        self,
        operation: _Op,
        seconds: float,
        *,
        persistence_id: str | None = None,
        after: int = 0,
        times: int | None = None,
    ) -> Fault:
        """Make matching calls wait ``seconds`` on the clock given at construction, then
        proceed."""
        if seconds < 0:
            raise ValueError("a delay cannot be negative")
        fault = Fault(operation, _DELAY, persistence_id, after, times, None, seconds)
        return self._faults.add(fault)

    def clear(self) -> None:
        """Retire every fault (held calls continue)."""
        self._faults.clear()

    def calls(self, operation: _Op, persistence_id: str | None = None) -> int:
        """How many calls of ``operation`` (for ``persistence_id``, or for any) were made."""
        return self._faults.calls(operation, persistence_id)


class FaultyJournal(_FaultMethods[JournalOperation], Journal):
    """A journal that passes calls to ``inner`` unless an injected fault matches them.

    ``inner`` defaults to a new :class:`MemoryJournal`. ``clock`` times
    :meth:`delay` faults (default: the event loop's clock); give the
    system's manual clock to control them from a test. Faults on ``replay``
    act when the replay starts, before its first chunk.
    """

    def __init__(self, inner: Journal | None = None, *, clock: Clock | None = None) -> None:
        self.inner = inner if inner is not None else MemoryJournal()
        self._faults = _Faults(clock)

    # -- injecting faults -------------------------------------------------------------

    def fail(
        self,
        operation: JournalOperation,
        *,
        persistence_id: str | None = None,
        error: Exception | None = None,
        after: int = 0,
        times: int | None = None,
        after_storing: bool = False,
    ) -> Fault:
        """Make matching calls raise ``error``.

        The default error is the one the operation documents for a storage
        failure: :class:`JournalWriteError` for ``write``/``delete_to``,
        :class:`JournalReadError` for reads. ``after_storing`` (writes
        only) stores the events first.
        """
        if after_storing and operation != "write":
            raise ValueError("after_storing applies to writes only")
        fault = Fault(operation, _FAIL, persistence_id, after, times, error, 0.0, after_storing)
        return self._faults.add(fault)

    def reject(
        self, *, persistence_id: str | None = None, after: int = 0, times: int | None = None
    ) -> Fault:
        """Make matching writes be refused as a whole (``ValueError``: nothing is stored).

        A :class:`PersistentActor` reports such a write as
        :class:`EventRejectedError` and keeps running.
        """
        return self._faults.add(Fault("write", _REJECT, persistence_id, after, times))

    # -- the journal ----------------------------------------------------------------------

    async def write(self, events: Sequence[PersistentRepr]) -> None:
        pid = events[0].persistence_id if events else None
        late = await self._faults.enter("write", pid)
        await self.inner.write(events)
        if late is not None:
            raise _error(late, "write", pid)

    async def replay(
        self,
        persistence_id: str,
        from_sequence_nr: int = 1,
        to_sequence_nr: int = MAX_SEQUENCE_NR,
        max_count: int = MAX_SEQUENCE_NR,
    ) -> AsyncIterator[Sequence[PersistentRepr]]:
        await self._faults.enter("replay", persistence_id)
        async for chunk in self.inner.replay(
            persistence_id, from_sequence_nr, to_sequence_nr, max_count
        ):
            yield chunk

    async def highest_sequence_nr(self, persistence_id: str, from_sequence_nr: int = 0) -> int:
        await self._faults.enter("highest_sequence_nr", persistence_id)
        return await self.inner.highest_sequence_nr(persistence_id, from_sequence_nr)

    async def claim_writer(self, persistence_id: str, writer_uuid: str) -> None:
        await self.inner.claim_writer(persistence_id, writer_uuid)

    def next_write(self) -> asyncio.Future[None]:
        return self.inner.next_write()

    async def delete_to(self, persistence_id: str, to_sequence_nr: int) -> None:
        await self._faults.enter("delete_to", persistence_id)
        await self.inner.delete_to(persistence_id, to_sequence_nr)

    async def close(self) -> None:
        self._faults.clear()
        await self.inner.close()


class FaultySnapshotStore(_FaultMethods[SnapshotOperation], SnapshotStore):
    """A snapshot store that passes calls to ``inner`` unless an injected fault matches them.

    ``inner`` defaults to a new :class:`MemorySnapshotStore`; the fault
    methods are :class:`FaultyJournal`'s, over ``save``, ``load`` and
    ``delete`` (default error: :class:`SnapshotStoreError`).
    """

    def __init__(self, inner: SnapshotStore | None = None, *, clock: Clock | None = None) -> None:
        self.inner = inner if inner is not None else MemorySnapshotStore()
        self._faults = _Faults(clock)

    def fail(
        self,
        operation: SnapshotOperation,
        *,
        persistence_id: str | None = None,
        error: Exception | None = None,
        after: int = 0,
        times: int | None = None,
    ) -> Fault:
        """Make matching calls raise ``error`` (default :class:`SnapshotStoreError`)."""
        return self._faults.add(Fault(operation, _FAIL, persistence_id, after, times, error))

    async def save(self, snapshot: SnapshotRecord) -> None:
        await self._faults.enter("save", snapshot.metadata.persistence_id)
        await self.inner.save(snapshot)

    async def load(
        self, persistence_id: str, criteria: SnapshotSelectionCriteria = LATEST
    ) -> SnapshotRecord | None:
        await self._faults.enter("load", persistence_id)
        return await self.inner.load(persistence_id, criteria)

    async def delete(self, persistence_id: str, criteria: SnapshotSelectionCriteria) -> None:
        await self._faults.enter("delete", persistence_id)
        await self.inner.delete(persistence_id, criteria)

    async def close(self) -> None:
        self._faults.clear()
        await self.inner.close()
