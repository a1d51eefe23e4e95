"""Child process of the SIGKILL test: writes bursts to a journal until it is killed.

``python -m tests.integration.persistence._kill_writer CONFIG_JSON``, where
the config names the plugin (``sqlite`` with ``path``, or ``cassandra`` with
``contact_points`` and ``keyspace``), ``ids`` (how many persistence ids write
concurrently) and ``prefix``. Every write holds ``EVENTS_PER_WRITE`` events;
after each acknowledged write it prints ``ack <persistence id> <last seq>``
and flushes, so the parent knows exactly what was acknowledged. The payload
of event ``n`` is ``payload(pid, n)`` so the parent can check every byte.
"""

from __future__ import annotations

import asyncio
import json
import sys

from shoal.persistence import (
    CassandraJournal,
    CassandraSettings,
    Journal,
    PersistentRepr,
    SqliteJournal,
)

EVENTS_PER_WRITE = 3


def payload(pid: str, seq: int) -> bytes:
    return f"{pid}/{seq}/".encode() * 20


def open_journal(config: dict[str, object]) -> Journal:
    if config["plugin"] == "sqlite":
        return SqliteJournal(str(config["path"]))
    points = config["contact_points"]
    assert isinstance(points, list)
    return CassandraJournal(
        CassandraSettings(
            contact_points=tuple(str(p) for p in points),
            keyspace=str(config["keyspace"]),
            partition_size=int(str(config.get("partition_size", 500_000))),
        )
    )


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


async def main(config: dict[str, object]) -> None:
    journal = open_journal(config)
    ids = int(str(config["ids"]))
    prefix = str(config["prefix"])
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    await asyncio.gather(*(_writer(journal, f"{prefix}-{i}") for i in range(ids)))


if __name__ == "__main__":
    asyncio.run(main(json.loads(sys.argv[1])))
