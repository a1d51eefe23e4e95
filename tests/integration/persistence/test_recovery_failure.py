"""A persistent actor whose recovery fails: its askers learn why, then it stops."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import msgspec
import pytest

from shoal.persistence import (
    EventDecodeError,
    JournalCorruptionError,
    JournalReadError,
    MemoryJournal,
    Persistence,
    PersistenceSettings,
    RecoveryError,
    SnapshotStoreError,
    SqliteSettings,
)
from shoal.persistence.testing import FaultyJournal, FaultySnapshotStore
from shoal.runtime import ActorRef, ActorStoppedError, ActorSystem, MailboxFullError, Settings
from shoal.runtime.testing import ManualClock

from .test_persistent_actor import Account, Balance, Deposit, watch


@pytest.fixture(params=["memory", "sqlite"])
def settings(request: pytest.FixtureRequest, tmp_path: Path) -> PersistenceSettings:
    if request.param == "memory":
        return PersistenceSettings.testing()
    return PersistenceSettings(sqlite=SqliteSettings(path=tmp_path / "actors.db"))


@pytest.fixture
async def system(settings: PersistenceSettings) -> AsyncIterator[ActorSystem]:
    async with ActorSystem("recovery", Settings.testing()) as sys:
        Persistence.configure(sys, settings)
        yield sys


def asked(ref: ActorRef, message: object) -> asyncio.Future[object]:
    """Ask now, whether ``ask`` sends when called or when awaited (a promise, no timeout)."""
    promise: asyncio.Future[object] = asyncio.get_running_loop().create_future()
    ref.deliver(message, None, promise)
    return promise


async def fails_with(ref: ActorRef, message: object) -> RecoveryError:
    with pytest.raises(RecoveryError) as info:
        await ref.ask(message)
    return info.value


async def test_an_undecodable_event_fails_the_queued_asks_with_its_cause(
    system: ActorSystem, pid: str, caplog: pytest.LogCaptureFixture
) -> None:
    ref = system.spawn(lambda: Account(pid))
    await ref.ask(Deposit(5))
    await ref.stop()
    journal = system.extension(Persistence).journal
    ok = (await journal.events(f"account|{pid}"))[0]
    await journal.write([msgspec.structs.replace(ok, sequence_nr=2, payload=b"\xc1corrupt")])
    dead_before = system.stats()["dead_letters"]

    with caplog.at_level(logging.ERROR, logger="shoal.persistence"):
        again = system.spawn(lambda: Account(pid))
        probe = watch(system, again)
        first = asked(again, Balance())  # queued during recovery
        again.tell(Deposit(1))  # a tell: a dead letter
        second = await fails_with(again, Deposit(2))

    error = await fails_with_future(first)
    for err in (error, second):
        assert isinstance(err, ActorStoppedError)  # what callers handled so far still works
        assert isinstance(err.__cause__, EventDecodeError)
        assert f"recovery of 'account|{pid}' failed: EventDecodeError: event 2 of" in str(err)
    assert error is not second  # each asker its own instance
    await probe.receive()  # Terminated: it stopped without handling a command
    assert system.stats()["dead_letters"] - dead_before == 3
    assert f"event 2 of 'account|{pid}'" in caplog.text
    later = await fails_with(again, Balance())  # after it stopped: still the cause
    assert isinstance(later.__cause__, EventDecodeError)
    assert f"recovery of 'account|{pid}' failed" in str(later)


async def fails_with_future(future: asyncio.Future[object]) -> RecoveryError:
    with pytest.raises(RecoveryError) as info:
        await future
    return info.value


async def test_a_corrupt_journal_fails_asks_with_the_corruption(tmp_path: Path, pid: str) -> None:
    path = tmp_path / "j.db"
    async with ActorSystem("recovery", Settings.testing()) as system:
        Persistence.configure(system, PersistenceSettings(sqlite=SqliteSettings(path=path)))
        ref = system.spawn(lambda: Account(pid))
        await ref.ask(Deposit(1, times=3))
        await ref.stop()
        with sqlite3.connect(path) as conn:
            conn.execute("DELETE FROM journal WHERE sequence_nr = 2")
        error = await fails_with(system.spawn(lambda: Account(pid)), Balance())
    assert isinstance(error.__cause__, JournalCorruptionError)
    assert f"'account|{pid}' at sequence number 2: missing" in str(error)


async def test_first_events_removed_without_a_marker_fail_recovery(
    tmp_path: Path, pid: str
) -> None:
    path = tmp_path / "j.db"
    async with ActorSystem("recovery", Settings.testing()) as system:
        Persistence.configure(system, PersistenceSettings(sqlite=SqliteSettings(path=path)))
        ref = system.spawn(lambda: Account(pid))
        await ref.ask(Deposit(1, times=3))
        await ref.stop()
        with sqlite3.connect(path) as conn:
            conn.execute("DELETE FROM journal WHERE sequence_nr = 1")
        error = await fails_with(system.spawn(lambda: Account(pid)), Balance())
    assert isinstance(error.__cause__, JournalCorruptionError)
    assert f"'account|{pid}' at sequence number 1: missing" in str(error)


async def test_an_unreadable_file_fails_asks_with_the_reason(tmp_path: Path, pid: str) -> None:
    path = tmp_path / "j.db"
    path.write_bytes(b"this is not a database" * 1000)
    async with ActorSystem("recovery", Settings.testing()) as system:
        Persistence.configure(system, PersistenceSettings(sqlite=SqliteSettings(path=path)))
        error = await fails_with(system.spawn(lambda: Account(pid)), Balance())
    assert isinstance(error.__cause__, SnapshotStoreError)
    assert "file is not a database" in str(error)


async def test_a_broken_persistence_id_fails_asks_with_the_error(system: ActorSystem) -> None:
    class Broken(Account):
        @property
        def persistence_id(self) -> str:
            raise KeyError("no id")

    error = await fails_with(system.spawn(lambda: Broken("x")), Balance())
    assert isinstance(error.__cause__, KeyError)
    assert "Broken failed: KeyError: 'no id'" in str(error)


# -- injected faults ------------------------------------------------------------------------


@pytest.fixture
async def faulty() -> AsyncIterator[tuple[ActorSystem, FaultyJournal, FaultySnapshotStore]]:
    journal, store = FaultyJournal(MemoryJournal()), FaultySnapshotStore()
    async with ActorSystem("faulty", Settings.testing()) as sys:
        Persistence.configure(
            sys, PersistenceSettings(journal=lambda: journal, snapshot_store=lambda: store)
        )
        yield sys, journal, store


async def test_asks_sent_while_recovery_waits_get_the_error(
    faulty: tuple[ActorSystem, FaultyJournal, FaultySnapshotStore], pid: str
) -> None:
    system, journal, store = faulty
    held = store.hold("load")
    journal.fail("highest_sequence_nr", persistence_id=f"account|{pid}")
    ref = system.spawn(lambda: Account(pid))
    await held.reached()
    asks = [asked(ref, Deposit(i)) for i in range(5)]
    held.release()
    for ask in asks:
        error = await fails_with_future(ask)
        assert isinstance(error.__cause__, JournalReadError)
        assert "injected fault: highest_sequence_nr" in str(error)


async def test_a_full_mailbox_still_gets_the_error(
    faulty: tuple[ActorSystem, FaultyJournal, FaultySnapshotStore], pid: str
) -> None:
    system, _, store = faulty
    held = store.hold("load")
    store.fail("load", error=SnapshotStoreError("disk on fire"))
    ref = system.spawn(lambda: Account(pid), capacity=2)
    await held.reached()
    asks = [asked(ref, Balance()) for _ in range(2)]
    with pytest.raises(MailboxFullError):
        await asked(ref, Balance())
    probe = watch(system, ref)
    held.release()
    for ask in asks:
        error = await fails_with_future(ask)
        assert "disk on fire" in str(error)
    await probe.receive()  # and it stops


async def test_a_corrupt_replay_is_reported_as_such(
    faulty: tuple[ActorSystem, FaultyJournal, FaultySnapshotStore], pid: str
) -> None:
    system, journal, _ = faulty
    corruption = JournalCorruptionError(f"account|{pid}", 7, "stored twice (by two writers?)")
    journal.fail("replay", error=corruption)
    error = await fails_with(system.spawn(lambda: Account(pid)), Balance())
    assert error.__cause__ is corruption


async def test_recovery_failures_are_logged_at_a_rate_limit(
    pid: str, caplog: pytest.LogCaptureFixture
) -> None:
    journal = FaultyJournal()
    journal.fail("replay")
    clock = ManualClock()
    async with ActorSystem("faulty", Settings.testing(clock=clock)) as system:
        Persistence.configure(system, PersistenceSettings.testing(journal=lambda: journal))
        with caplog.at_level(logging.ERROR, logger="shoal.persistence"):
            for i in range(20):
                await fails_with(system.spawn(lambda i=i: Account(f"{pid}-{i}")), Balance())
            clock.advance(10.0)
            await fails_with(system.spawn(lambda: Account(f"{pid}-last")), Balance())
    lines = [r.getMessage() for r in caplog.records if r.name == "shoal.persistence"]
    assert sum("recovery of" in line for line in lines) == 6
    assert "15 more recovery-failed events in the last 10 s (not logged one by one)" in lines
