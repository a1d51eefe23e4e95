"""The Cassandra write phase of ``benchmarks/journal.py``, this checkout against another.

``journal.py`` run in two checkouts is not a like-for-like comparison when
their benchmarks differ (a newer one measures more phases, which leave the
Cassandra node busier for the next run). This script times only the write
phase: 1,000 persistent actors, 100 events each, every checkout with its own
``Account`` actor and journal code, one process per measurement, the two
checkouts alternating, against one Cassandra node (warmed up first by one
write phase that is not counted).

Prints one JSON object: for each checkout (``current``, ``base``) the median
over the rounds of ``events_per_s``, ``persist_p50_ms``, ``persist_mean_ms``,
``persist_p99_ms`` and ``cpu_us_per_event`` (the process's CPU time, all
threads, while the writes are timed), and ``paired``: the median over the
rounds of current/base for each of them.

Usage: ``python benchmarks/journal_ab.py --base DIR [--rounds 4] [--runs 3]``
(``DIR`` a checkout of the commit to compare with, e.g. made with
``git worktree add``). Cassandra: ``$SHOAL_CASSANDRA_CONTACT_POINTS`` if set,
else a node started with ``scripts/cassandra.py`` for the run.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from types import ModuleType
from typing import Any

from shoal.persistence import (
    CassandraJournal,
    CassandraSettings,
    CassandraSnapshotStore,
    PersistenceSettings,
)

# The child processes run with PYTHONPATH set to their checkout: ``shoal`` is its own.
ROOT = Path(__file__).resolve().parent.parent
KEYS = ("events_per_s", "persist_p50_ms", "persist_mean_ms", "persist_p99_ms", "cpu_us_per_event")


def _load(path: Path, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


async def _writes(bench: ModuleType, settings: Any) -> dict[str, float]:
    """The timed write phase of ``bench`` (a checkout's ``journal.py``), with CPU time."""
    system = await bench._system(settings)
    try:
        run_id = uuid.uuid4().hex[:8]
        latencies: list[float] = []
        refs = [
            system.spawn(lambda i=i: bench.Account(f"ab-{run_id}-{i}", latencies))
            for i in range(bench.ACTORS)
        ]
        await asyncio.gather(*(ref.ask(bench.Get()) for ref in refs))  # recovered first
        start, cpu = time.perf_counter(), time.process_time()
        for ref in refs:
            for n in range(bench.EVENTS_PER_ACTOR):
                ref.tell(bench.Add(n))
        await asyncio.gather(*(ref.ask(bench.Get()) for ref in refs))
        elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    finally:
        await system.shutdown()
    events = bench.ACTORS * bench.EVENTS_PER_ACTOR
    latencies.sort()
    return {
        "events_per_s": events / elapsed,
        "persist_p50_ms": latencies[len(latencies) // 2] * 1000,
        "persist_mean_ms": statistics.fmean(latencies) * 1000,
        "persist_p99_ms": latencies[int(len(latencies) * 0.99)] * 1000,
        "cpu_us_per_event": cpu / events * 1e6,
    }


def _measure(tree: Path, points: str, runs: int) -> None:
    """In a child whose ``sys.path`` starts with ``tree``: ``runs`` write phases, medians."""
    bench = _load(tree / "benchmarks" / "journal.py", "shoal_journal_bench")
    cassandra = CassandraSettings(
        contact_points=tuple(p.strip() for p in points.split(",")),
        keyspace=f"shoal_ab_{uuid.uuid4().hex[:8]}",
        request_timeout_s=60.0,
    )
    plugins = PersistenceSettings(
        journal=lambda: CassandraJournal(cassandra),
        snapshot_store=lambda: CassandraSnapshotStore(cassandra),
    )
    results = [bench.run(_writes(bench, plugins)) for _ in range(runs)]
    print(json.dumps({k: statistics.median(r[k] for r in results) for k in KEYS}))


def _child(tree: Path, points: str, runs: int) -> dict[str, float]:
    env = dict(os.environ, PYTHONPATH=str(tree))
    argv = [sys.executable, __file__, "--role", "measure", "--tree", str(tree)]
    argv += ["--contact-points", points, "--runs", str(runs)]
    out = subprocess.run(argv, env=env, cwd=tree, check=True, capture_output=True, text=True)
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--base", type=Path, help="a checkout of the commit to compare with")
    parser.add_argument("--rounds", type=int, default=4, help="measurements of each checkout")
    parser.add_argument("--runs", type=int, default=3, help="write phases per measurement")
    parser.add_argument("--role", default="compare", choices=("compare", "measure"))
    parser.add_argument("--tree", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--contact-points", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.role == "measure":
        _measure(args.tree, args.contact_points, args.runs)
        return
    if args.base is None or not (args.base / "benchmarks" / "journal.py").is_file():
        parser.error("--base must name a checkout with benchmarks/journal.py")
    points = os.environ.get("SHOAL_CASSANDRA_CONTACT_POINTS", "").strip()
    launcher: Any = None
    handle: Any = None
    if not points:
        launcher = _load(ROOT / "scripts" / "cassandra.py", "shoal_cassandra_launcher")
        handle = launcher.start(heap="1G", initial_heap="1G")
        points = handle.contact_point
    trees = {"current": ROOT, "base": args.base.resolve()}
    rounds: dict[str, list[dict[str, float]]] = {"current": [], "base": []}
    try:
        _child(ROOT, points, 1)  # warms the node up (a fresh one is slow at first): not counted
        for i in range(args.rounds):
            order = ("base", "current") if i % 2 == 0 else ("current", "base")
            for name in order:
                rounds[name].append(_child(trees[name], points, args.runs))
    finally:
        if launcher is not None:
            launcher.stop(handle)
    report: dict[str, Any] = {"rounds": args.rounds, "runs": args.runs}
    for name, results in rounds.items():
        report[name] = {k: round(statistics.median(r[k] for r in results), 3) for k in KEYS}
    report["paired"] = {
        k: round(
            statistics.median(
                c[k] / b[k] for c, b in zip(rounds["current"], rounds["base"], strict=True)
            ),
            3,
        )
        for k in KEYS
    }
    print(json.dumps(report))


if __name__ == "__main__":
    main()
