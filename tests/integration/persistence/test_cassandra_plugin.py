"""What only the Cassandra plugins do: claims and settling, replay repair, refusals, settings."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import pytest
from cassandra import OperationTimedOut

from shoal.persistence import (
    CassandraJournal,
    CassandraSession,
    CassandraSettings,
    CassandraSnapshotStore,
    EventRejectedError,
    JournalWriteError,
    Persistence,
    PersistenceSettings,
    PersistentActor,
    PersistentRepr,
    SequenceConflictError,
    SnapshotMetadata,
    SnapshotRecord,
)
from shoal.runtime import ActorSystem, Settings, message
from shoal.runtime.testing import quiesce


@pytest.mark.cassandra
async def test_journal_and_snapshots_share_one_session(
    cassandra_settings: CassandraSettings, pid: str
) -> None:
    session = CassandraSession(cassandra_settings)
    journal = CassandraJournal(cassandra_settings, session=session)
    store = CassandraSnapshotStore(cassandra_settings, session=session)
    try:
        await journal.write([PersistentRepr(pid, 1, 1, "", b"e", "w", 0)])
        await store.save(SnapshotRecord(SnapshotMetadata(pid, 1, 5), 1, "", b"s"))
        await journal.close()  # leaves the shared session open
        record = await store.load(pid)
        assert record is not None
        assert record.payload == b"s"
    finally:
        await store.close()
        await session.close()


@pytest.mark.parametrize(
    ("changes", "error"),
    [
        ({"keyspace": "Bad-Name"}, "keyspace"),
        ({"partition_size": 0}, "partition_size"),
        ({"write_consistency": "MOST"}, "consistency"),
        ({"contact_points": ()}, "contact point"),
        ({"replay_chunk_size": 0}, "replay_chunk_size"),
        ({"group_max_partitions": 0}, "group_max"),
        ({"fencing": "paxos"}, "fencing"),
    ],
)
def test_settings_are_validated(changes: dict[str, object], error: str) -> None:
    with pytest.raises(ValueError, match=error):
        CassandraSettings(**changes)  # type: ignore[arg-type]


def test_replication_renders_as_cql() -> None:
    settings = CassandraSettings(replication={"class": "NetworkTopologyStrategy", "dc1": 3})
    assert settings.replication_cql() == "{'class': 'NetworkTopologyStrategy', 'dc1': '3'}"
    with pytest.raises(ValueError, match="replication"):
        CassandraSettings(replication={"class": "x'; DROP"}).replication_cql()


def ev(
    pid: str, seq: int, payload: bytes = b"e", writer: str = "w1", ts: int = 0
) -> PersistentRepr:
    return PersistentRepr(pid, seq, 1, "", payload, writer, ts)


@pytest.fixture
async def journal(cassandra_settings: CassandraSettings) -> AsyncIterator[CassandraJournal]:
    journal = CassandraJournal(cassandra_settings)
    yield journal
    await journal.close()


# -- no duplicate sequence numbers ---------------------------------------------------------


@pytest.mark.cassandra
async def test_a_cancelled_write_keeps_its_claim_until_its_outcome_is_known(
    journal: CassandraJournal, pid: str
) -> None:
    await journal.write([ev(pid, 1)])
    big = bytes(4 * 1024 * 1024)  # long enough in flight for the cancel to come first
    writing = asyncio.ensure_future(journal.write([ev(pid, 2, big)]))
    await quiesce()  # sent
    writing.cancel()
    with pytest.raises(asyncio.CancelledError):
        await writing
    # A new incarnation on this journal: recovery waits for the outcome, then sees it.
    assert await journal.highest_sequence_nr(pid) == 2
    with pytest.raises(SequenceConflictError):
        await journal.write([ev(pid, 2, b"new", writer="w2")])
    assert [(e.sequence_nr, len(e.payload)) for e in await journal.events(pid)] == [
        (1, 1),
        (2, len(big)),
    ]


class _TimesOutOnce:
    """Sends the first write, but reports a client timeout at once: the write lands late."""

    def __init__(self, send: Callable[[Any], asyncio.Future[list[Any]]]) -> None:
        self.send = send
        self.calls = 0

    def __call__(self, statement: Any) -> asyncio.Future[list[Any]]:
        self.calls += 1
        real = self.send(statement)
        if self.calls > 1:
            return real
        real.add_done_callback(lambda f: f.exception())
        failed: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        failed.set_exception(OperationTimedOut("client-side timeout"))
        return failed


@pytest.mark.cassandra
async def test_a_write_with_an_unknown_outcome_is_settled_before_the_id_is_written_again(
    journal: CassandraJournal, pid: str
) -> None:
    await journal.write([ev(pid, 1)])
    fault = _TimesOutOnce(journal._writes._send)
    journal._writes._send = fault
    with pytest.raises(JournalWriteError, match="may or may not be stored"):
        await journal.write([ev(pid, 2, b"late")])
    assert await journal.highest_sequence_nr(pid) == 2  # waited: sent again until known
    assert fault.calls >= 2
    with pytest.raises(SequenceConflictError):
        await journal.write([ev(pid, 2, b"new", writer="w2")])
    await journal.write([ev(pid, 3, writer="w2")])
    assert [e.payload for e in await journal.events(pid)] == [b"e", b"late", b"e"]


@pytest.mark.cassandra
async def test_two_writers_of_one_number_are_repaired_on_replay(
    cassandra_settings: CassandraSettings, pid: str, caplog: pytest.LogCaptureFixture
) -> None:
    """An old writer's write landing after a newer writer wrote the same numbers."""
    old = CassandraJournal(cassandra_settings)
    new = CassandraJournal(cassandra_settings)
    try:
        await old.write([ev(pid, 1, writer="old", ts=100)])
        assert await new.highest_sequence_nr(pid) == 1
        await new.write([ev(pid, 2, b"new-2", writer="new", ts=300), ev(pid, 3, writer="new")])
        await old.write([ev(pid, 2, b"old-2", writer="old", ts=200)])  # fenced per instance only
        reader = CassandraJournal(cassandra_settings)
        try:
            with caplog.at_level(logging.WARNING, "shoal.persistence"):
                replayed = await reader.events(pid)
                assert await reader.events(pid) == replayed  # every replay decides alike
            assert [(e.sequence_nr, e.writer_uuid) for e in replayed] == [
                (1, "old"), (2, "new"), (3, "new")
            ]  # fmt: skip
            assert reader.repaired_events == 1  # counted once per instance
            assert "drops 1 events of the older writer 'old'" in caplog.text
            await quiesce()
            listed = await reader.repairs(pid)
            assert [(r.sequence_nr, r.dropped_writer, r.kept_writer) for r in listed] == [
                (2, "old", "new")
            ]
            assert listed[0].detected_at > 0
            assert any(r.persistence_id == pid for r in await reader.repairs())
        finally:
            await reader.close()
    finally:
        await old.close()
        await new.close()


# -- refusals --------------------------------------------------------------------------------


@pytest.mark.cassandra
async def test_writes_over_the_limits_are_rejected_and_nothing_is_stored(
    journal: CassandraJournal, pid: str
) -> None:
    too_long = pid + "x" * 65_520
    with pytest.raises(EventRejectedError, match="at most 65521"):
        await journal.write([ev(too_long, 1)])
    with pytest.raises(EventRejectedError, match="writer id"):
        await journal.write([ev(pid, 1, writer="w" * 70_000)])
    with pytest.raises(EventRejectedError, match="nothing stored"):
        await journal.write([ev(pid, 1, bytes(20 * 1024 * 1024))])  # over the server's limit
    assert await journal.highest_sequence_nr(pid) == 0
    await journal.write([ev(pid, 1)])  # the numbers were never taken
    assert await journal.highest_sequence_nr(pid) == 1


@pytest.mark.cassandra
async def test_a_row_that_cannot_be_bound_fails_only_its_own_write(
    journal: CassandraJournal, pid: str
) -> None:
    await journal.start()
    outcomes = await asyncio.gather(
        journal.write([ev(f"{pid}-a", 1)]),
        journal.write([PersistentRepr(f"{pid}-b", 1, 1, "lone-\udc80", b"e", "w", 0)]),
        journal.write([ev(f"{pid}-c", 1, ts=2**70)]),
        journal.write([ev(f"{pid}-d", 1), ev(f"{pid}-d", 2)]),
        return_exceptions=True,
    )
    assert outcomes[0] is None
    assert isinstance(outcomes[1], EventRejectedError)
    assert isinstance(outcomes[2], EventRejectedError)
    assert outcomes[3] is None
    highs = [await journal.highest_sequence_nr(f"{pid}-{k}") for k in "abcd"]
    assert highs == [1, 0, 0, 2]


@pytest.mark.cassandra
async def test_a_batch_the_server_refuses_fails_only_the_offending_write(
    cassandra_settings: CassandraSettings, pid: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Without the journal's own key check, the server refuses the whole batch.
    monkeypatch.setattr("shoal.persistence._cassandra.check_key_sizes", lambda pid, events: None)
    settings = dataclasses.replace(cassandra_settings, group_max_bytes=1 << 20)
    journal = CassandraJournal(settings)
    try:
        await journal.start()
        outcomes = await asyncio.gather(
            journal.write([ev(f"{pid}-a", 1)]),
            journal.write([ev(pid, 1, writer="w" * 70_000)]),
            journal.write([ev(f"{pid}-c", 1)]),
            return_exceptions=True,
        )
        assert outcomes[0] is None
        assert isinstance(outcomes[1], EventRejectedError)
        assert "Key length" in str(outcomes[1])
        assert outcomes[2] is None
        assert await journal.highest_sequence_nr(pid) == 0
    finally:
        await journal.close()


@message(manifest="tck.Blob")
@dataclass(frozen=True, slots=True)
class Blob:
    data: bytes


class Blobs(PersistentActor):
    def __init__(self, pid: str) -> None:
        self.pid = pid
        self.sizes: list[int] = []

    @property
    def persistence_id(self) -> str:
        return self.pid

    async def on_command(self, size: int) -> list[int]:
        await self.persist(Blob(bytes(size)))
        return self.sizes

    def on_event(self, event: Blob) -> None:
        self.sizes.append(len(event.data))


@pytest.mark.cassandra
async def test_an_event_over_the_server_limit_fails_only_that_persist(
    cassandra_settings: CassandraSettings, pid: str
) -> None:
    async with ActorSystem("refusals", Settings.testing()) as system:
        system.serialization.register(Blob)
        Persistence.configure(
            system,
            PersistenceSettings(
                journal=lambda: CassandraJournal(cassandra_settings),
                snapshot_store=lambda: CassandraSnapshotStore(cassandra_settings),
            ),
        )
        ref = system.spawn(lambda: Blobs(pid))
        assert await ref.ask(10) == [10]
        with pytest.raises(EventRejectedError, match="nothing stored"):
            await ref.ask(20 * 1024 * 1024)
        assert await ref.ask(20) == [10, 20]  # the actor went on, numbering unchanged
        journal = system.extension(Persistence).journal
        assert [e.sequence_nr for e in await journal.events(pid)] == [1, 2]
