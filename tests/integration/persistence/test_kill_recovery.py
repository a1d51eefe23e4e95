"""A plugin's process is SIGKILLed during a write burst: everything acknowledged survives.

A real child process (``_kill_writer``) writes 3-event batches (or saves
snapshots) for many persistence ids at once and prints each
acknowledgement. After the parent has read enough of them it kills the child
with SIGKILL, then opens a fresh plugin and checks: every acknowledged event
is there with its exact payload, the events are gap-free from 1, and no
batch is half-written; every acknowledged snapshot (or a newer one) loads,
whole.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import uuid
from pathlib import Path

import pytest

from shoal.persistence import CassandraSettings, Journal, SnapshotStore

from ._kill_writer import (
    EVENTS_PER_WRITE,
    SNAPSHOT_REPEAT,
    open_journal,
    open_snapshots,
    payload,
)

ROOT = Path(__file__).resolve().parents[3]
IDS = 40
ACKS_BEFORE_KILL = 600

pytestmark = pytest.mark.multiprocess


async def _write_and_kill(config: dict[str, object]) -> dict[str, int]:
    """Run the child until ``ACKS_BEFORE_KILL`` acks, SIGKILL it; the acked highest per id."""
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.integration.persistence._kill_writer",
        json.dumps(config),
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert child.stdout is not None
    assert child.stderr is not None
    acked: dict[str, int] = {}
    count = 0
    try:
        while count < ACKS_BEFORE_KILL:
            line = await child.stdout.readline()
            if not line:
                raise AssertionError(f"writer died early: {(await child.stderr.read()).decode()}")
            words = line.decode().split()
            if words[0] == "ack":
                acked[words[1]] = int(words[2])
                count += 1
    finally:
        with contextlib.suppress(ProcessLookupError):  # it may have died by itself
            os.kill(child.pid, signal.SIGKILL)
        await child.wait()
    assert child.returncode == -signal.SIGKILL
    # Lines already in the pipe were acknowledged before the kill too.
    for line in (await child.stdout.read()).decode().splitlines():
        words = line.split()
        if len(words) == 3 and words[0] == "ack":
            acked[words[1]] = int(words[2])
    return acked


async def _check_recovery(journal: Journal, prefix: str, acked: dict[str, int]) -> None:
    assert len(acked) > IDS // 2, "the burst should have reached most ids"
    for i in range(IDS):
        pid = f"{prefix}-{i}"
        events = await journal.events(pid)
        highest = await journal.highest_sequence_nr(pid)
        assert [e.sequence_nr for e in events] == list(range(1, highest + 1)), pid
        assert highest >= acked.get(pid, 0), f"{pid}: acknowledged events lost"
        assert highest % EVENTS_PER_WRITE == 0, f"{pid}: half a batch stored ({highest})"
        assert all(e.payload == payload(pid, e.sequence_nr) for e in events), pid


async def test_sqlite_survives_sigkill(tmp_path: Path) -> None:
    path = tmp_path / "killed.db"
    prefix = "kill"
    acked = await _write_and_kill(
        {"plugin": "sqlite", "path": str(path), "ids": IDS, "prefix": prefix}
    )
    journal = open_journal({"plugin": "sqlite", "path": str(path)})
    try:
        await _check_recovery(journal, prefix, acked)
    finally:
        await journal.close()


@pytest.mark.cassandra
async def test_cassandra_survives_sigkill(cassandra_settings: CassandraSettings) -> None:
    config: dict[str, object] = {
        "plugin": "cassandra",
        "contact_points": list(cassandra_settings.contact_points),
        "keyspace": cassandra_settings.keyspace,
        "partition_size": 10,  # bursts cross partition boundaries too
        "ids": IDS,
        "prefix": f"kill-{uuid.uuid4().hex[:8]}",
    }
    acked = await _write_and_kill(config)
    journal = open_journal(config)
    try:
        await _check_recovery(journal, str(config["prefix"]), acked)
    finally:
        await journal.close()


async def _check_snapshots(store: SnapshotStore, prefix: str, acked: dict[str, int]) -> None:
    assert len(acked) > IDS // 2, "the burst should have reached most ids"
    for i in range(IDS):
        pid = f"{prefix}-{i}"
        record = await store.load(pid)
        if record is None:
            assert pid not in acked, f"{pid}: acknowledged snapshot lost"
            continue
        seq = record.metadata.sequence_nr
        assert seq >= acked.get(pid, 0), f"{pid}: acknowledged snapshot lost"
        assert record.payload == payload(pid, seq) * SNAPSHOT_REPEAT, f"{pid}: torn snapshot"


async def test_sqlite_snapshots_survive_sigkill(tmp_path: Path) -> None:
    config: dict[str, object] = {
        "plugin": "sqlite",
        "path": str(tmp_path / "snapshots.db"),
        "ids": IDS,
        "prefix": "snap",
        "target": "snapshots",
    }
    acked = await _write_and_kill(config)
    store = open_snapshots(config)
    try:
        await _check_snapshots(store, "snap", acked)
    finally:
        await store.close()


@pytest.mark.cassandra
async def test_cassandra_snapshots_survive_sigkill(cassandra_settings: CassandraSettings) -> None:
    config: dict[str, object] = {
        "plugin": "cassandra",
        "contact_points": list(cassandra_settings.contact_points),
        "keyspace": cassandra_settings.keyspace,
        "ids": IDS,
        "prefix": f"snap-{uuid.uuid4().hex[:8]}",
        "target": "snapshots",
    }
    acked = await _write_and_kill(config)
    store = open_snapshots(config)
    try:
        await _check_snapshots(store, str(config["prefix"]), acked)
    finally:
        await store.close()
