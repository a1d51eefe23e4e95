"""Fixtures of the persistence compliance suites: one parameter per plugin.

``journal_kit`` / ``snapshot_kit`` build plugin instances over one storage
(an SQLite file, a Cassandra keyspace, or a memory store), so tests can open
a second instance on the same data. Cassandra runs in a keyspace unique to
the session, dropped at its end.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile
from cassandra.connection import DefaultEndPoint
from cassandra.policies import RoundRobinPolicy

from shoal.persistence import (
    CassandraJournal,
    CassandraSettings,
    CassandraSnapshotStore,
    Journal,
    MemoryJournal,
    MemorySnapshotStore,
    SnapshotStore,
    SqliteJournal,
    SqliteSettings,
    SqliteSnapshotStore,
)

PLUGINS = ["memory", "sqlite", pytest.param("cassandra", marks=pytest.mark.cassandra)]


@dataclasses.dataclass
class JournalKit:
    """Makes journals of one plugin over one storage; closes them at the end of the test."""

    kind: str
    make_journal: Callable[..., Journal]
    opened: list[Journal] = dataclasses.field(default_factory=list)

    @property
    def durable(self) -> bool:
        """Whether a second instance sees the first one's data (not so for memory)."""
        return self.kind != "memory"

    def open(self, *, partition_size: int | None = None, chunk_size: int | None = None) -> Journal:
        """A new journal instance on the kit's storage."""
        journal = self.make_journal(partition_size=partition_size, chunk_size=chunk_size)
        self.opened.append(journal)
        return journal


@dataclasses.dataclass
class SnapshotKit:
    kind: str
    make_store: Callable[[], SnapshotStore]
    opened: list[SnapshotStore] = dataclasses.field(default_factory=list)

    @property
    def durable(self) -> bool:
        return self.kind != "memory"

    def open(self) -> SnapshotStore:
        store = self.make_store()
        self.opened.append(store)
        return store


@pytest.fixture(scope="session")
def cassandra_settings(cassandra_contact_points: list[str]) -> Iterator[CassandraSettings]:
    """Settings for a keyspace of this session's own; dropped afterwards."""
    settings = CassandraSettings(
        contact_points=tuple(cassandra_contact_points),
        keyspace=f"shoal_tck_{uuid.uuid4().hex[:12]}",
        request_timeout_s=30.0,
        tag_delay_s=0.0,  # one writer instance at a time: tag queries read up to the present
    )
    yield settings
    _drop_keyspace(settings)


def _drop_keyspace(settings: CassandraSettings) -> None:
    # Blocking driver calls are fine here: session teardown runs on no event loop.
    endpoints = [
        DefaultEndPoint(host, int(port))
        for host, _, port in (p.rpartition(":") for p in settings.contact_points)
    ]
    profile = ExecutionProfile(load_balancing_policy=RoundRobinPolicy())
    cluster = Cluster(
        endpoints,
        protocol_version=settings.protocol_version,
        execution_profiles={EXEC_PROFILE_DEFAULT: profile},
    )
    try:
        session = cluster.connect()
        session.execute(f"DROP KEYSPACE IF EXISTS {settings.keyspace}", timeout=60)
    finally:
        cluster.shutdown()


@pytest.fixture
def pid() -> str:
    """A persistence id unique to the test (Cassandra's keyspace is shared by the session)."""
    return f"tck-{uuid.uuid4().hex[:12]}"


@pytest.fixture(params=PLUGINS)
async def journal_kit(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[JournalKit]:
    kind: str = request.param
    if kind == "memory":
        shared = MemoryJournal()

        def make(partition_size: int | None, chunk_size: int | None) -> Journal:
            if chunk_size is not None:
                return MemoryJournal(replay_chunk_size=chunk_size)
            return shared

    elif kind == "sqlite":
        path = tmp_path / "journal.db"

        def make(partition_size: int | None, chunk_size: int | None) -> Journal:
            return SqliteJournal(SqliteSettings(path=path, replay_chunk_size=chunk_size or 4096))

    else:
        base: CassandraSettings = request.getfixturevalue("cassandra_settings")

        def make(partition_size: int | None, chunk_size: int | None) -> Journal:
            settings = dataclasses.replace(
                base,
                partition_size=partition_size or base.partition_size,
                replay_chunk_size=chunk_size or base.replay_chunk_size,
            )
            return CassandraJournal(settings)

    kit = JournalKit(kind, make)
    yield kit
    for journal in kit.opened:
        await journal.close()


@pytest.fixture
async def journal(journal_kit: JournalKit) -> Journal:
    return journal_kit.open()


@pytest.fixture(params=PLUGINS)
async def snapshot_kit(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[SnapshotKit]:
    kind: str = request.param
    make: Callable[[], SnapshotStore]
    if kind == "memory":
        shared = MemorySnapshotStore()
        make = lambda: shared  # noqa: E731
    elif kind == "sqlite":
        path = tmp_path / "snapshots.db"
        make = lambda: SqliteSnapshotStore(path)  # noqa: E731
    else:
        settings: CassandraSettings = request.getfixturevalue("cassandra_settings")
        make = lambda: CassandraSnapshotStore(settings)  # noqa: E731
    kit = SnapshotKit(kind, make)
    yield kit
    for store in kit.opened:
        await store.close()


@pytest.fixture
async def snapshots(snapshot_kit: SnapshotKit) -> SnapshotStore:
    return snapshot_kit.open()
