"""Journal benchmark: persistent actors on SQLite and Cassandra; prints one JSON object.

Measured through :class:`PersistentActor` (on uvloop when installed):

* ``sqlite_events_per_s`` / ``cassandra_events_per_s``: 1,000 persistent
  actors each persist 100 small events (one ``persist`` per command, 100
  commands told to each at once), timed until every command is acknowledged.
  ``*_persist_p50_ms`` / ``*_persist_p99_ms``: the latency of those persists
  (from the write to the event applied), measured inside the actors.
* ``cassandra_fenced_events_per_s``: the same with ``fencing="epoch"`` (each
  actor claims its id once when it starts, before timing; every write is
  checked after it is stored), and ``cassandra_fenced_vs_unfenced`` its ratio
  to ``cassandra_events_per_s`` of the same run. Measured in the order
  unfenced, fenced, fenced, unfenced, each figure the mean of its two (the
  machine drifts); the latencies are the first unfenced measurement's.
* ``sqlite_recovery_events_per_s`` / ``cassandra_recovery_events_per_s``:
  100,000 events of one persistence id replayed into a fresh actor (from
  spawn to its first answer).
* ``sqlite_query_events_per_s`` / ``cassandra_query_events_per_s``: a
  current tag query reading 100,000 events of one tag (100 persistence ids,
  1,000 each), and ``*_query_vs_recovery`` its ratio to the recovery rate of
  the same run.
* ``sqlite_snapshot_recovery_ms``: recovery of an actor from a snapshot plus
  100 later events.

Baselines, measured in the same run: ``sqlite_baseline_rows_per_s`` is a bare
``executemany`` of the same rows (1,000 ids interleaved) into a WAL table
shaped like the journal's (``synchronous=NORMAL``) in 1,000-row
transactions, measured just before and just after the writes and averaged
(the machine drifts), and ``sqlite_vs_baseline`` the ratio. On a shared
machine CPU time is steadier than rates: ``sqlite_cpu_us_per_event`` is the
process CPU time (all threads) per event while the writes are timed,
``sqlite_baseline_cpu_us_per_row`` the baseline's, and
``sqlite_cpu_vs_baseline`` the baseline's CPU per row over the journal's per
event (higher is better, like ``sqlite_vs_baseline``);
``cassandra_baseline_rows_per_s`` is the driver alone sending single-row
INSERTs, 1,000 in flight (what a journal without group commit is capped at),
and ``cassandra_vs_baseline`` the ratio.

Cassandra: ``$SHOAL_CASSANDRA_CONTACT_POINTS`` if set, else a node started with
``scripts/cassandra.py`` (and stopped at the end); ``--no-cassandra`` skips it.

SQLite is measured first, before a Cassandra node is started on the machine.

Usage: ``python benchmarks/journal.py [--runs N] [--no-cassandra | --no-sqlite] [--verbose]``
(N > 1 reports medians; ``--verbose`` prints every run to stderr).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import importlib.util
import json
import os
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile
from cassandra.connection import DefaultEndPoint
from cassandra.policies import DCAwareRoundRobinPolicy, TokenAwarePolicy

from shoal.persistence import (
    CassandraJournal,
    CassandraSettings,
    CassandraSnapshotStore,
    Journal,
    JournalQueries,
    Persistence,
    PersistenceSettings,
    PersistentActor,
    PersistentRepr,
    SqliteSettings,
)
from shoal.runtime import ActorSystem, Settings, message, run

ACTORS = 1_000
EVENTS_PER_ACTOR = 100
RECOVERY_EVENTS = 100_000
SNAPSHOT_BASE_EVENTS = 10_000
SNAPSHOT_TAIL_EVENTS = 100

ROOT = Path(__file__).resolve().parent.parent


@message(manifest="bench.Add")
@dataclass(frozen=True, slots=True)
class Add:
    amount: int


@message(manifest="bench.Added")
@dataclass(frozen=True, slots=True)
class Added:
    amount: int


@message(manifest="bench.Get")
@dataclass(frozen=True, slots=True)
class Get: ...


@message(manifest="bench.Total")
@dataclass(frozen=True, slots=True)
class Total:
    total: int
    count: int


class Account(PersistentActor):
    """Persists one ``Added`` per ``Add``; records each persist's latency."""

    def __init__(self, pid: str, latencies: list[float] | None = None) -> None:
        self.pid = pid
        self.latencies = latencies
        self.total = 0
        self.count = 0

    @property
    def persistence_id(self) -> str:
        return self.pid

    async def on_command(self, command: Add | Get) -> tuple[int, int] | None:
        if isinstance(command, Add):
            start = time.perf_counter()
            await self.persist(Added(command.amount))
            if self.latencies is not None:
                self.latencies.append(time.perf_counter() - start)
            return None
        return (self.total, self.count)

    def on_event(self, event: Added) -> None:
        self.total += event.amount
        self.count += 1

    def snapshot_state(self) -> Total:
        return Total(self.total, self.count)

    def apply_snapshot(self, state: Total) -> None:
        self.total, self.count = state.total, state.count


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _system(settings: PersistenceSettings) -> ActorSystem:
    system = ActorSystem("bench", Settings(ask_timeout=600.0, messages=(Add, Added, Get, Total)))
    Persistence.configure(system, settings)
    return system


async def bench_writes(settings: PersistenceSettings) -> dict[str, float]:
    """1,000 actors x 100 persists, concurrently."""
    system = await _system(settings)
    try:
        run_id = uuid.uuid4().hex[:8]
        latencies: list[float] = []
        refs = [
            system.spawn(lambda i=i: Account(f"w-{run_id}-{i}", latencies)) for i in range(ACTORS)
        ]
        await asyncio.gather(*(ref.ask(Get()) for ref in refs))  # recovered, before timing
        start = time.perf_counter()
        cpu = time.process_time()
        for ref in refs:
            for n in range(EVENTS_PER_ACTOR):
                ref.tell(Add(n))
        answers = await asyncio.gather(*(ref.ask(Get()) for ref in refs))
        elapsed = time.perf_counter() - start
        cpu = time.process_time() - cpu
        assert all(count == EVENTS_PER_ACTOR for _, count in answers)
    finally:
        await system.shutdown()
    return {
        "events_per_s": ACTORS * EVENTS_PER_ACTOR / elapsed,
        "cpu_us_per_event": cpu / (ACTORS * EVENTS_PER_ACTOR) * 1e6,
        "persist_p50_ms": _percentile(latencies, 0.50) * 1000,
        "persist_p99_ms": _percentile(latencies, 0.99) * 1000,
    }


async def _fill(journal: Journal, pid: str, count: int, system: ActorSystem) -> None:
    """Write ``count`` real ``Added`` events for ``pid``, 1,000 per write."""
    serialized = system.serialization.serialize(Added(1))
    for first in range(1, count + 1, 1000):
        await journal.write(
            [
                PersistentRepr(
                    pid, n, serialized.serializer_id, serialized.manifest, serialized.payload
                )
                for n in range(first, min(first + 1000, count + 1))
            ]
        )


async def bench_recovery(settings: PersistenceSettings, events: int) -> float:
    """Seconds for a fresh actor to recover ``events`` events."""
    system = await _system(settings)
    try:
        pid = f"r-{uuid.uuid4().hex[:8]}"
        await _fill(system.extension(Persistence).journal, pid, events, system)
        start = time.perf_counter()
        total = await system.spawn(lambda: Account(pid)).ask(Get())
        elapsed = time.perf_counter() - start
        assert total == (events, events), total
    finally:
        await system.shutdown()
    return elapsed


async def bench_tag_query(
    settings: PersistenceSettings, events: int, per_write: int = 1000
) -> float:
    """Seconds for a current tag query to read ``events`` events of one tag (100 ids).

    The events are written ``per_write`` to a write, the 100 ids at once.
    """
    system = await _system(settings)
    try:
        journal = system.extension(Persistence).journal
        tag = f"t-{uuid.uuid4().hex[:8]}"
        serialized = system.serialization.serialize(Added(1))
        per_id = events // 100

        async def fill(pid: str) -> None:
            for first in range(1, per_id + 1, per_write):
                await journal.write(
                    [
                        PersistentRepr(
                            pid,
                            n,
                            serialized.serializer_id,
                            serialized.manifest,
                            serialized.payload,
                            tags=(tag,),
                        )
                        for n in range(first, min(first + per_write, per_id + 1))
                    ]
                )

        await asyncio.gather(*(fill(f"q-{tag}-{i}") for i in range(100)))
        queries = JournalQueries(journal)
        start = time.perf_counter()
        count = 0
        async for _ in queries.current_events_by_tag(tag):
            count += 1
        elapsed = time.perf_counter() - start
        assert count == per_id * 100, count
    finally:
        await system.shutdown()
    return elapsed


async def bench_snapshot_recovery(settings: PersistenceSettings) -> float:
    """Seconds for a fresh actor to recover from a snapshot plus 100 events."""
    system = await _system(settings)
    try:
        pid = f"s-{uuid.uuid4().hex[:8]}"
        ext = system.extension(Persistence)
        await _fill(ext.journal, pid, SNAPSHOT_BASE_EVENTS, system)

        class Snapshotting(Account):
            async def on_command(self, command: Add | Get) -> tuple[int, int] | None:
                if isinstance(command, Get) and self.count == SNAPSHOT_BASE_EVENTS:
                    await self.save_snapshot()
                return await super().on_command(command)

        snap = system.spawn(lambda: Snapshotting(pid))
        await snap.ask(Get())
        for n in range(SNAPSHOT_TAIL_EVENTS):
            snap.tell(Add(n))
        await snap.ask(Get())
        await snap.stop()
        start = time.perf_counter()
        total = await system.spawn(lambda: Account(pid)).ask(Get())
        elapsed = time.perf_counter() - start
        assert total[1] == SNAPSHOT_BASE_EVENTS + SNAPSHOT_TAIL_EVENTS, total
    finally:
        await system.shutdown()
    return elapsed


def baseline_sqlite(path: Path, rows: int = ACTORS * EVENTS_PER_ACTOR) -> tuple[float, float]:
    """Rows/s of a bare ``executemany`` into a WAL table, 1,000-row transactions, and the
    process CPU microseconds per row."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute(  # the journal's own table shape, unique index included
        "CREATE TABLE t (pid TEXT NOT NULL, seq INTEGER NOT NULL, ser INTEGER NOT NULL, "
        "manifest TEXT NOT NULL, payload BLOB NOT NULL, writer TEXT NOT NULL, "
        "ts INTEGER NOT NULL, UNIQUE (pid, seq)) STRICT"
    )
    payload = b"\xa6amount\x01"
    batch = [
        (f"w-{i % ACTORS}", i // ACTORS + 1, 4, "bench.Added", payload, "0" * 32, 0)
        for i in range(rows)
    ]
    start = time.perf_counter()
    cpu = time.process_time()
    for first in range(0, rows, 1000):
        conn.execute("BEGIN")
        conn.executemany("INSERT INTO t VALUES (?, ?, ?, ?, ?, ?, ?)", batch[first : first + 1000])
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - start
    cpu = time.process_time() - cpu
    conn.close()
    return rows / elapsed, cpu / rows * 1e6


def baseline_cassandra(settings: CassandraSettings, rows: int = 50_000) -> float:
    """Rows/s of single-row INSERTs through the driver alone, 1,000 in flight."""
    host, _, port = settings.contact_points[0].rpartition(":")
    profile = ExecutionProfile(load_balancing_policy=TokenAwarePolicy(DCAwareRoundRobinPolicy()))
    cluster = Cluster(
        [DefaultEndPoint(host, int(port))],
        protocol_version=settings.protocol_version,
        execution_profiles={EXEC_PROFILE_DEFAULT: profile},
        compression=False,
    )
    try:
        session = cluster.connect()
        ks = settings.keyspace
        session.execute(f"DROP TABLE IF EXISTS {ks}.baseline")
        session.execute(
            f"CREATE TABLE {ks}.baseline (pid text, pnr bigint, seq bigint, writer text, "
            "ts bigint, ser int, manifest text, payload blob, "
            "PRIMARY KEY ((pid, pnr), seq, writer))"
        )
        insert = session.prepare(f"INSERT INTO {ks}.baseline (pid, pnr, seq, writer, ts, ser, "
                                 "manifest, payload) VALUES (?, ?, ?, ?, ?, ?, ?, ?)")  # fmt: skip
        window = threading.Semaphore(1000)
        done = threading.Event()
        lock = threading.Lock()
        completed = [0]

        def finished(_: object) -> None:
            window.release()
            with lock:
                completed[0] += 1
                if completed[0] == rows:
                    done.set()

        start = time.perf_counter()
        for i in range(rows):
            window.acquire()
            future = session.execute_async(
                insert, (f"b-{i % ACTORS}", 0, i, "0" * 32, 0, 4, "bench.Added", b"\xa6amount\x01")
            )
            future.add_callbacks(finished, finished)
        done.wait()
        return rows / (time.perf_counter() - start)
    finally:
        cluster.shutdown()


def _launcher() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "shoal_bench_cassandra", ROOT / "scripts/cassandra.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["shoal_bench_cassandra"] = module
    spec.loader.exec_module(module)
    return module


def sqlite_run(tmp: Path) -> dict[str, float]:
    result: dict[str, float] = {}
    settings = PersistenceSettings(sqlite=SqliteSettings(path=tmp / f"{uuid.uuid4().hex}.db"))
    # The baseline just before and just after the writes, averaged: fair to the machine's drift.
    before = baseline_sqlite(tmp / f"{uuid.uuid4().hex}.db")
    writes = run(bench_writes(settings))
    after = baseline_sqlite(tmp / f"{uuid.uuid4().hex}.db")
    result["sqlite_events_per_s"] = writes["events_per_s"]
    result["sqlite_cpu_us_per_event"] = writes["cpu_us_per_event"]
    result["sqlite_persist_p50_ms"] = writes["persist_p50_ms"]
    result["sqlite_persist_p99_ms"] = writes["persist_p99_ms"]
    result["sqlite_recovery_events_per_s"] = RECOVERY_EVENTS / run(
        bench_recovery(settings, RECOVERY_EVENTS)
    )
    result["sqlite_query_events_per_s"] = RECOVERY_EVENTS / run(
        bench_tag_query(settings, RECOVERY_EVENTS)
    )
    result["sqlite_query_vs_recovery"] = (
        result["sqlite_query_events_per_s"] / result["sqlite_recovery_events_per_s"]
    )
    result["sqlite_snapshot_recovery_ms"] = run(bench_snapshot_recovery(settings)) * 1000
    result["sqlite_baseline_rows_per_s"] = (before[0] + after[0]) / 2
    result["sqlite_vs_baseline"] = (
        result["sqlite_events_per_s"] / result["sqlite_baseline_rows_per_s"]
    )
    result["sqlite_baseline_cpu_us_per_row"] = (before[1] + after[1]) / 2
    result["sqlite_cpu_vs_baseline"] = (
        result["sqlite_baseline_cpu_us_per_row"] / result["sqlite_cpu_us_per_event"]
    )
    return result


def cassandra_run(cassandra: CassandraSettings) -> dict[str, float]:
    result: dict[str, float] = {}
    plugins = PersistenceSettings(
        journal=lambda: CassandraJournal(cassandra),
        snapshot_store=lambda: CassandraSnapshotStore(cassandra),
    )
    fenced_settings = dataclasses.replace(cassandra, fencing="epoch")
    fenced = PersistenceSettings(
        journal=lambda: CassandraJournal(fenced_settings),
        snapshot_store=lambda: CassandraSnapshotStore(fenced_settings),
    )
    # Unfenced, fenced, fenced, unfenced: the ratio is fair to the machine's drift.
    writes = run(bench_writes(plugins))
    fenced_rates = [run(bench_writes(fenced))["events_per_s"] for _ in range(2)]
    second = run(bench_writes(plugins))
    result["cassandra_events_per_s"] = (writes["events_per_s"] + second["events_per_s"]) / 2
    result["cassandra_persist_p50_ms"] = writes["persist_p50_ms"]
    result["cassandra_persist_p99_ms"] = writes["persist_p99_ms"]
    result["cassandra_fenced_events_per_s"] = sum(fenced_rates) / 2
    result["cassandra_fenced_vs_unfenced"] = (
        result["cassandra_fenced_events_per_s"] / result["cassandra_events_per_s"]
    )
    result["cassandra_recovery_events_per_s"] = RECOVERY_EVENTS / run(
        bench_recovery(plugins, RECOVERY_EVENTS)
    )
    # Tagged writes are LOGGED batches, which the server refuses over 50 KiB: 100 events each.
    result["cassandra_query_events_per_s"] = RECOVERY_EVENTS / run(
        bench_tag_query(plugins, RECOVERY_EVENTS, per_write=100)
    )
    result["cassandra_query_vs_recovery"] = (
        result["cassandra_query_events_per_s"] / result["cassandra_recovery_events_per_s"]
    )
    result["cassandra_baseline_rows_per_s"] = baseline_cassandra(cassandra)
    result["cassandra_vs_baseline"] = (
        result["cassandra_events_per_s"] / result["cassandra_baseline_rows_per_s"]
    )
    return result


def _medians(runs: list[dict[str, float]]) -> dict[str, float]:
    return {key: round(statistics.median(r[key] for r in runs), 3) for key in runs[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=1, help="runs; medians are reported")
    parser.add_argument("--no-cassandra", action="store_true", help="measure SQLite only")
    parser.add_argument("--no-sqlite", action="store_true", help="measure Cassandra only")
    parser.add_argument("--verbose", action="store_true", help="each run's figures to stderr")
    args = parser.parse_args()
    report: dict[str, Any] = {}
    # SQLite first, before any Cassandra node runs on this machine and competes for CPU.
    if not args.no_sqlite:
        with tempfile.TemporaryDirectory(prefix="shoal-journal-bench-") as tmp:
            runs = [sqlite_run(Path(tmp)) for _ in range(args.runs)]
        report.update(_medians(runs))
        if args.verbose:
            print(json.dumps(runs), file=sys.stderr)
    source = "skipped"
    if not args.no_cassandra:
        launcher: ModuleType | None = None
        handle: Any = None
        points = os.environ.get("SHOAL_CASSANDRA_CONTACT_POINTS", "").strip()
        source = "external"
        if not points:
            launcher = _launcher()
            handle = launcher.start(heap="1G", initial_heap="1G")
            points = handle.contact_point
            source = "scripts/cassandra.py"
        settings = CassandraSettings(
            contact_points=tuple(p.strip() for p in points.split(",")),
            keyspace=f"shoal_bench_{uuid.uuid4().hex[:8]}",
            request_timeout_s=60.0,
            tag_delay_s=0.0,  # one writer instance: tag queries may read up to the present
        )
        try:
            runs = [cassandra_run(settings) for _ in range(args.runs)]
        finally:
            if launcher is not None and handle is not None:
                launcher.stop(handle)
        report.update(_medians(runs))
        if args.verbose:
            print(json.dumps(runs), file=sys.stderr)
    report["loop"] = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    report["runs"] = args.runs
    report["actors"] = ACTORS
    report["events_per_actor"] = EVENTS_PER_ACTOR
    report["recovery_events"] = RECOVERY_EVENTS
    report["cassandra"] = source
    print(json.dumps(report))


if __name__ == "__main__":
    main()
