"""Child process of the SIGKILL test: writes bursts to a journal until it is killed.

``python -m tests.integration.persistence._kill_writer CONFIG_JSON``, where
the config names the plugin (``sqlite`` with ``path``, or ``cassandra`` with
``contact_points`` and ``keyspace``), ``ids`` (how many persistence ids write
concurrently), ``prefix`` and ``target`` (``journal`` or ``snapshots``).
Every journal write holds ``EVENTS_PER_WRITE`` events; after each
acknowledged write (or snapshot save) it prints ``ack <persistence id> <last
seq>`` and flushes, so the parent knows exactly what was acknowledged. The
payload of event (or snapshot) ``n`` is ``payload(pid, n)`` so the parent can
check every byte. Snapshots are large (``SNAPSHOT_REPEAT`` payloads), so a
torn one would show.
"""

from __future__ import annotations

import asyncio
import json
import sys

from shoal.persistence import (
    CassandraJournal,
    CassandraSettings,
    CassandraSnapshotStore,
    Journal,
    PersistentRepr,
    SnapshotMetadata,
    SnapshotRecord,
    SnapshotStore,
    SqliteJournal,
    SqliteSnapshotStore,
)

EVENTS_PER_WRITE = 3
SNAPSHOT_REPEAT = 500


def payload(pid: str, seq: int) -> bytes:
    return f"{pid}/{seq}/".encode() * 20


def settings(config: dict[str, object]) -> CassandraSettings:
    points = config["contact_points"]
    assert isinstance(points, list)
    return CassandraSettings(
        contact_points=tuple(str(p) for p in points),
        keyspace=str(config["keyspace"]),
        partition_size=int(str(config.get("partition_size", 500_000))),
    )


def open_snapshots(config: dict[str, object]) -> SnapshotStore:
    if config["plugin"] == "sqlite":
        return SqliteSnapshotStore(str(config["path"]))
    return CassandraSnapshotStore(settings(config))


def open_journal(config: dict[str, object]) -> Journal:
    if config["plugin"] == "sqlite":
        return SqliteJournal(str(config["path"]))
    return CassandraJournal(settings(config))


async def _writer(journal: Journal, pid: str) -> None:
    seq = 0
    while True:
        events = [
            PersistentRepr(pid, n, 1, "", payload(pid, n), "kill-writer", 0)
            for n in range(seq + 1, seq + EVENTS_PER_WRITE + 1)
        ]
        await journal.write(events)
        seq += EVENTS_PER_WRITE
        sys.stdout.write(f"ack {pid} {seq}\n")
        sys.stdout.flush()


async def _saver(store: SnapshotStore, pid: str) -> None:
    seq = 0
    while True:
        seq += 1
        state = payload(pid, seq) * SNAPSHOT_REPEAT
        await store.save(SnapshotRecord(SnapshotMetadata(pid, seq, seq), 1, "", state))
        sys.stdout.write(f"ack {pid} {seq}\n")
        sys.stdout.flush()


async def main(config: dict[str, object]) -> None:
    ids = int(str(config["ids"]))
    prefix = str(config["prefix"])
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    if config.get("target") == "snapshots":
        store = open_snapshots(config)
        await asyncio.gather(*(_saver(store, f"{prefix}-{i}") for i in range(ids)))
    else:
        journal = open_journal(config)
        await asyncio.gather(*(_writer(journal, f"{prefix}-{i}") for i in range(ids)))


if __name__ == "__main__":
    asyncio.run(main(json.loads(sys.argv[1])))
