"""What only the Cassandra plugins do: a shared session, settings validation."""

from __future__ import annotations

import pytest

from shoal.persistence import (
    CassandraJournal,
    CassandraSession,
    CassandraSettings,
    CassandraSnapshotStore,
    PersistentRepr,
    SnapshotMetadata,
    SnapshotRecord,
)


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
