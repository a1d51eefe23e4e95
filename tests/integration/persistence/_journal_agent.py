"""Child process of the multi-process journal tests: one "node" driving a journal.

``python -m tests.integration.persistence._journal_agent CONFIG_JSON`` opens
the journal the config names (``sqlite`` with ``path``, or ``cassandra`` with
``contact_points``, ``keyspace`` and optionally ``fencing``), prints
``{"ready": true}``, then answers one JSON line per command line on stdin:

* ``{"op": "writes", "writes": [[pid, first, count], ...], "writer": w}``:
  every write issued in one event-loop turn (so they share a group commit);
  answers ``{"outcomes": [null | [error class name, message], ...]}``;
* ``{"op": "claim", "pid": p, "writer": w}``: :meth:`Journal.claim_writer`;
* ``{"op": "highest", "pid": p}``; ``{"op": "events", "pid": p}`` (``[[seq,
  writer], ...]``);
* ``{"op": "burst", "prefix": p, "ids": n, "events": m, "writer": w}``: ``n``
  writers at once, each appending ``m`` one-event writes to ``prefix-i``
  (continuing from the highest stored), and with ``snapshot_every`` k > 0
  saving a ~10 KB snapshot (SQLite: in the same file) after every k-th event;
  answers the number of acknowledged events, the failures by error class,
  and the slowest write in seconds;
* ``{"op": "quit"}``.

A command that raises answers ``{"error": [class name, message]}``. Commands run concurrently: each
carries an ``"id"``, and its answer carries the same. Only
JSON crosses the process boundary.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections import Counter

from shoal.persistence import (
    CassandraJournal,
    CassandraSettings,
    Journal,
    PersistentRepr,
    SnapshotMetadata,
    SnapshotRecord,
    SnapshotStore,
    SqliteJournal,
    SqliteSettings,
    SqliteSnapshotStore,
)


def payload(pid: str, seq: int, writer: str) -> bytes:
    return f"{pid}/{seq}/{writer}".encode()


def open_journal(config: dict[str, object]) -> Journal:
    if config["plugin"] == "sqlite":
        return SqliteJournal(
            SqliteSettings(
                path=str(config["path"]), busy_timeout_s=float(str(config.get("busy", 5.0)))
            )
        )
    points = config["contact_points"]
    assert isinstance(points, list)
    extra: dict[str, object] = {}
    if "fencing" in config:
        extra["fencing"] = config["fencing"]
    return CassandraJournal(
        CassandraSettings(
            contact_points=tuple(str(p) for p in points),
            keyspace=str(config["keyspace"]),
            **extra,  # type: ignore[arg-type]
        )
    )


def _events(pid: str, first: int, count: int, writer: str) -> list[PersistentRepr]:
    return [
        PersistentRepr(pid, n, 1, "", payload(pid, n, writer), writer, int(time.time() * 1000))
        for n in range(first, first + count)
    ]


def _failure(exc: BaseException) -> list[str]:
    return [type(exc).__name__, str(exc)]


async def _burst(
    journal: Journal, snapshots: SnapshotStore | None, command: dict[str, object]
) -> dict[str, object]:
    prefix, writer = str(command["prefix"]), str(command["writer"])
    ids, events = int(str(command["ids"])), int(str(command["events"]))
    snapshot_every = int(str(command.get("snapshot_every", 0)))
    failures: Counter[str] = Counter()
    acked = 0
    slowest = 0.0

    async def one(pid: str) -> None:
        nonlocal acked, slowest
        seq = await journal.highest_sequence_nr(pid)
        for _ in range(events):
            began = time.monotonic()
            try:
                await journal.write(_events(pid, seq + 1, 1, writer))
            except Exception as exc:
                failures[type(exc).__name__] += 1
                seq = await journal.highest_sequence_nr(pid)
            else:
                acked += 1
                seq += 1
                if snapshots is not None and snapshot_every and seq % snapshot_every == 0:
                    state = payload(pid, seq, writer) * 500  # about 10 KB
                    try:
                        await snapshots.save(
                            SnapshotRecord(SnapshotMetadata(pid, seq, seq), 1, "", state)
                        )
                    except Exception as exc:
                        failures[type(exc).__name__] += 1
            slowest = max(slowest, time.monotonic() - began)

    await asyncio.gather(*(one(f"{prefix}-{i}") for i in range(ids)))
    return {"acked": acked, "failures": dict(failures), "slowest_s": slowest}


async def _handle(
    journal: Journal, snapshots: SnapshotStore | None, command: dict[str, object]
) -> dict[str, object]:
    op = command["op"]
    if op == "writes":
        writer = str(command["writer"])
        specs = command["writes"]
        assert isinstance(specs, list)
        outcomes = await asyncio.gather(
            *(journal.write(_events(str(p), int(f), int(c), writer)) for p, f, c in specs),
            return_exceptions=True,
        )
        return {"outcomes": [None if o is None else _failure(o) for o in outcomes]}
    if op == "claim":
        await journal.claim_writer(str(command["pid"]), str(command["writer"]))
        return {"ok": True}
    if op == "highest":
        return {"highest": await journal.highest_sequence_nr(str(command["pid"]))}
    if op == "events":
        stored = await journal.events(str(command["pid"]))
        return {"events": [[e.sequence_nr, e.writer_uuid] for e in stored]}
    if op == "burst":
        return await _burst(journal, snapshots, command)
    raise ValueError(f"unknown op {op!r}")


async def _answer(
    journal: Journal, snapshots: SnapshotStore | None, command: dict[str, object]
) -> None:
    try:
        answer = await _handle(journal, snapshots, command)
    except Exception as exc:
        answer = {"error": _failure(exc)}
    answer["id"] = command["id"]
    print(json.dumps(answer), flush=True)


async def main(config: dict[str, object]) -> None:
    journal = open_journal(config)
    # Snapshots in the journal's file, as the Persistence extension keeps them by default.
    snapshots = SqliteSnapshotStore(str(config["path"])) if config["plugin"] == "sqlite" else None
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    print(json.dumps({"ready": True}), flush=True)
    running: set[asyncio.Task[None]] = set()
    try:
        while line := await reader.readline():
            command = json.loads(line)
            if command["op"] == "quit":
                break
            task = asyncio.create_task(
                _answer(journal, snapshots, command)
            )  # commands run concurrently
            running.add(task)
            task.add_done_callback(running.discard)
        await asyncio.gather(*running)
    finally:
        await journal.close()
        if snapshots is not None:
            await snapshots.close()


if __name__ == "__main__":
    asyncio.run(main(json.loads(sys.argv[1])))
