"""Sharding benchmark: three ``shoal node --app`` processes on loopback; prints one JSON object.

Every node runs this module's :func:`app` (sharding of ``bench``, an entity
that answers a ping) and takes commands, one JSON line each, on its stdin;
it answers with a ``{"event": "result", ...}`` line on stdout. Figures:

* ``rebalance_s``: two nodes are under load (asks from both) when the third
  starts; from launching it until the coordinator's allocation, polled on
  ``GET /cluster/shards/bench`` every 20 ms, spreads all 100 shards within
  one of each other over the three nodes (testing preset: rebalance every
  0.5 s, at most 10 shards per round).
* ``handoff_lost_messages``: while that rebalance runs, the first node tells
  numbered messages to 1,000 entities (each answers every one with an
  acknowledgement to the sender); those never acknowledged once all is
  settled (must be 0).
* ``sharded_asks_per_s``, ``sharded_ask_p50_us``, ``sharded_ask_p99_us``:
  then (once every node asked each of the entities, so those whose shard
  moved run at their home before the timing starts) askers on every node
  ask entities chosen uniformly at random among 10,000, so about two thirds
  of the asks cross a node, for ``--seconds``;
  the sum over the nodes, and the percentiles of every ask's latency. This
  runs once per window in ``--windows`` (asks in flight per node); the
  figures are those of the window with the most asks per second among those
  whose p99 is at most 5 ms (``sharded_p99_target_met``; if none is, the
  window with the lowest p99), and ``sharded_window_per_node`` says which.
  ``sharded_windows`` has every window's figures. ``sharded_cpu_us_per_ask``:
  CPU time of the three processes (all threads) per ask in that phase; on a
  shared machine it is steadier than the rate.
* ``sharded_frames_per_ask``, ``sharded_envelopes_per_frame``: gRPC frames
  the nodes wrote per ask in that phase, and envelopes per frame (each
  window's row also has ``bytes_per_frame``). With fewer asks in flight a
  frame carries fewer envelopes: that, more than the Python work per ask,
  is why the CPU time per ask grows at small windows.
* ``baseline_grpc_frames_per_s``, ``baseline_grpc_cpu_us_per_frame``: the
  natural baseline of that cost, measured in the same run once the nodes
  are stopped: a bare grpc.aio stream between two processes, one writing
  frames of 1 KiB back to back (each write awaited, as Shoal's writer
  does), the other reading them; CPU time of both per frame.
  ``sharded_grpc_frame_cpu_share`` is ``sharded_frames_per_ask`` times that,
  over ``sharded_cpu_us_per_ask``: the part of each ask's CPU time that
  gRPC's own cost per frame explains.
* ``local_entity_asks_per_s``: the same at the chosen window, each node
  asking only entities of shards it hosts (the overhead of sharding over a
  plain ask, same run).
* ``entity_activations_per_s``: one node asks 5,000 new entities of its own
  shards, all at once; entities started per second.
* ``persistent_activations_per_s``: the same node asks 2,000 new persistent
  entities of its own shards (``pbench``), all at once, each recovering 10
  events from the nodes' shared SQLite journal (written beforehand straight
  to the journal, in a temporary directory); entities recovered per second.

Askers keep a window of asks in flight per node, each answer issuing the
next from its callback (no task per asker, entities picked from a table of
random indices made beforehand). Nodes run with gRPC's
previous socket layer (``GRPC_EXPERIMENTS``, as ``benchmarks/remote.py``)
and the ``testing`` preset (``BENCH_PRESET=production`` for the other).

Usage: ``python benchmarks/sharding.py [--runs N] [--seconds S] [--windows 32,64,...]``
(N > 1 reports medians; each run starts fresh processes).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import queue
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shoal.persistence import (
    Persistence,
    PersistenceSettings,
    PersistentActor,
    PersistentRepr,
    SqliteSettings,
)
from shoal.remote import Remoting
from shoal.runtime import Actor, ActorRef, ActorSystem, message
from shoal.sharding import (
    EntityRef,
    RebalanceLimits,
    Sharding,
    ShardingSettings,
    ShardRegion,
    shard_id,
)
from shoal.sharding._inspection import ShardsQuery

ROOT = Path(__file__).resolve().parents[1]
SHOAL = [sys.executable, "-m", "shoal.cli", "node"]
ENTITIES = 10_000
_PICKS = 1 << 16  # random entity indices drawn before an ask phase
P99_TARGET_US = 5_000
PRESET = os.environ.get("BENCH_PRESET", "testing")
_TASKS: set[asyncio.Task[None]] = set()
SHARDS = 100
SETTINGS = ShardingSettings.testing(
    number_of_shards=SHARDS, rebalance_limits=RebalanceLimits(absolute=10, relative=0.1)
)


# -- the application every node runs ------------------------------------------------------


@message
@dataclass(frozen=True, slots=True)
class Ping:
    seq: int = 0


@message
@dataclass(frozen=True, slots=True)
class Ack:
    entity_id: str
    seq: int


class Bench(Actor):
    def __init__(self, entity_id: str) -> None:
        self.entity_id = entity_id

    def receive(self, msg: Ping) -> int:
        sender = self.ctx.sender
        if msg.seq and sender is not None:
            sender.tell(Ack(self.entity_id, msg.seq))
        return msg.seq


@message
@dataclass(frozen=True, slots=True)
class Added:
    value: int


class PBench(PersistentActor):
    def __init__(self, entity_id: str) -> None:
        self.entity_id = entity_id
        self.total = 0

    @property
    def persistence_id(self) -> str:
        return f"pbench|{self.entity_id}"

    def on_command(self, msg: Ping) -> int:
        return self.total

    def on_event(self, event: Added) -> None:
        self.total += event.value


class Acks(Actor):
    def __init__(self, got: set[tuple[str, int]]) -> None:
        self.got = got

    def receive(self, msg: Ack) -> None:
        self.got.add((msg.entity_id, msg.seq))


async def app(system: ActorSystem) -> None:
    """``shoal node --app benchmarks.sharding:app``: sharding of ``bench``, commands on stdin."""
    db = os.environ.get("BENCH_DB")
    if db is not None:
        Persistence.configure(system, PersistenceSettings(sqlite=SqliteSettings(path=db)))
    region = await Sharding.get(system).start("bench", Bench, SETTINGS)
    persistent = await Sharding.get(system).start("pbench", PBench, SETTINGS)
    _TASKS.add(system.loop.create_task(_commands(system, region, persistent)))  # tasks are weak


async def _commands(system: ActorSystem, region: ShardRegion, persistent: ShardRegion) -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    acked: set[tuple[str, int]] = set()
    acks = system.spawn(lambda: Acks(acked))
    tells: dict[str, Any] = {"sent": 0}
    while line := await reader.readline():
        command = json.loads(line)
        name = command["cmd"]
        if name == "ready":
            await region.wait_registered()
            result: dict[str, Any] = {}
        elif name == "load":
            result = await _load(
                system, region, command["seconds"], command["concurrency"], command["local"]
            )
        elif name == "tell":
            result = {}
            _TASKS.add(system.loop.create_task(_tell(region, acks, command["seconds"], tells)))
        elif name == "acks":
            result = {"sent": tells["sent"], "acked": len(acked)}
        elif name == "warm":
            result = await _warm(region)
        elif name == "activate":
            result = await _activate(region, command["n"])
        elif name == "activate_persistent":
            result = await _activate_persistent(system, persistent, command["n"])
        else:
            result = {"error": f"unknown command {name}"}
        print(json.dumps({"event": "result", **result}), flush=True)


async def _local_ids(region: ShardRegion, n: int, prefix: str) -> list[str]:
    local = set(await region.ref.ask(ShardsQuery(), timeout=5))
    if not local:
        raise RuntimeError(f"no shard of {region.type_name} is hosted here yet")
    ids: list[str] = []
    i = 0
    while len(ids) < n:
        candidate = f"{prefix}{i}"
        if shard_id(candidate, SHARDS) in local:
            ids.append(candidate)
        i += 1
    return ids


_TABLES: dict[bool, tuple[list[EntityRef], list[int]]] = {}


async def _table(region: ShardRegion, local: bool) -> tuple[list[EntityRef], list[int]]:
    """The entities to ask and random indices into them, made once per process (the
    other nodes are asking meanwhile: making them inside a timed window would slow them)."""
    table = _TABLES.get(local)
    if table is None:
        ids = await _local_ids(region, 2000, "e") if local else [f"e{i}" for i in range(ENTITIES)]
        rng = random.Random(os.getpid())
        picks = [rng.randrange(len(ids)) for _ in range(_PICKS)]
        table = _TABLES[local] = [region.entity(e) for e in ids], picks
    return table


async def _load(
    system: ActorSystem, region: ShardRegion, seconds: float, concurrency: int, local: bool
) -> dict[str, Any]:
    entities, picks = await _table(region, local)
    pick = 0
    latencies: list[float] = []
    errors = 0
    clock = time.perf_counter
    deadline = clock() + seconds

    # ``concurrency`` asks in flight, each answer issuing the next from its
    # done-callback: no task per asker, as in benchmarks/remote.py.
    ping = Ping()
    finished: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    outstanding = concurrency

    def launch() -> None:
        nonlocal pick
        pick = (pick + 1) % _PICKS
        start = clock()
        future = entities[picks[pick]].ask(ping, timeout=5.0)
        future.add_done_callback(lambda f: done(f, start))

    def done(future: asyncio.Future[Any], start: float) -> None:
        nonlocal errors, outstanding
        now = clock()
        if future.cancelled() or future.exception() is not None:
            errors += 1
        else:
            latencies.append(now - start)
        if now < deadline:
            launch()
            return
        outstanding -= 1
        if outstanding == 0:
            finished.set_result(None)

    gc.collect()
    gc.freeze()  # the entities and refs of the warm-up stay out of every collection
    wire = Remoting.get(system).metrics
    frames, envelopes, sent = wire.frames_sent, wire.envelopes_sent, wire.bytes_sent
    started = clock()
    cpu = time.process_time()
    for _ in range(concurrency):
        launch()
    await finished
    elapsed = clock() - started
    cpu = time.process_time() - cpu
    sample = latencies[:: max(1, len(latencies) // 20_000)]
    return {
        "asks": len(latencies),
        "seconds": elapsed,
        "cpu_s": cpu,
        "errors": errors,
        "sample": sample,
        "frames": wire.frames_sent - frames,
        "envelopes": wire.envelopes_sent - envelopes,
        "bytes": wire.bytes_sent - sent,
    }


async def _tell(region: ShardRegion, acks: ActorRef, seconds: float, tells: dict[str, Any]) -> None:
    ids = [f"t{i}" for i in range(1000)]
    deadline = time.perf_counter() + seconds
    seq = 0
    while time.perf_counter() < deadline:
        seq += 1
        for entity_id in ids:
            region.entity(entity_id).tell(Ping(seq), acks)
        tells["sent"] += len(ids)
        await asyncio.sleep(0.02)


async def _warm(region: ShardRegion) -> dict[str, Any]:
    """Ask every entity of the ask phases once: those whose shard moved start at their home now,
    not in the first timed window (activations are measured on their own)."""
    ids = [f"e{i}" for i in range(ENTITIES)]
    for i in range(0, len(ids), 500):
        await asyncio.gather(*(region.entity(e).ask(Ping(), timeout=30) for e in ids[i : i + 500]))
    return {"warmed": len(ids)}


async def _activate(region: ShardRegion, n: int) -> dict[str, Any]:
    ids = await _local_ids(region, n, f"fresh{os.getpid()}-")
    start = time.perf_counter()
    await asyncio.gather(*(region.entity(e).ask(Ping(), timeout=30) for e in ids))
    return {"activations": n, "seconds": time.perf_counter() - start}


async def _activate_persistent(system: ActorSystem, region: ShardRegion, n: int) -> dict[str, Any]:
    await region.wait_registered()
    # Place every shard first (an entity in each), so this node hosts its share.
    warm = {shard_id(f"w{i}", SHARDS): f"w{i}" for i in range(20 * SHARDS)}
    await asyncio.gather(*(region.entity(e).ask(Ping(), timeout=30) for e in warm.values()))
    ids = await _local_ids(region, n, f"p{os.getpid()}-")
    journal = system.extension(Persistence).journal
    event = system.serialization.serialize(Added(1))
    await asyncio.gather(
        *(
            journal.write(
                [
                    PersistentRepr(
                        f"pbench|{e}", seq, event.serializer_id, event.manifest, event.payload
                    )
                    for seq in range(1, 11)
                ]
            )
            for e in ids
        )
    )
    start = time.perf_counter()
    totals = await asyncio.gather(*(region.entity(e).ask(Ping(), timeout=60) for e in ids))
    seconds = time.perf_counter() - start
    assert set(totals) == {10}, f"recovered totals {sorted(set(totals))}"
    return {"activations": n, "seconds": seconds}


# -- the driver ---------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Node:
    """A ``shoal node --app benchmarks.sharding:app`` process with a command pipe."""

    def __init__(self, seed: str | None, db: Path) -> None:
        self.port = free_port()
        self.http_port = free_port()
        argv = [
            *SHOAL,
            "--preset", PRESET,
            "--port", str(self.port),
            "--http-port", str(self.http_port),
            "--log-level", "error",
            "--app", "benchmarks.sharding:app",
        ]  # fmt: skip
        if seed is not None:
            argv += ["--seed", seed]
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            cwd=ROOT,
            # gRPC's previous socket layer: ~30 us less per round trip on a small
            # machine (see benchmarks/remote.py --grpc-io).
            env={
                **os.environ,
                "GRPC_EXPERIMENTS": "-event_engine_client,-event_engine_listener",
                "BENCH_DB": str(db),
            },
        )
        self.events: queue.Queue[dict[str, Any]] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    @property
    def address(self) -> str:
        return f"shoal@127.0.0.1:{self.port}"

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.events.put(json.loads(line))

    def wait(self, event: str, timeout: float = 60) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            got = self.events.get(timeout=max(0.0, deadline - time.monotonic()))
            if got["event"] == event:
                return got

    def send(self, **command: Any) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(command) + "\n")
        self.proc.stdin.flush()

    def call(self, timeout: float = 120, **command: Any) -> dict[str, Any]:
        self.send(**command)
        return self.wait("result", timeout)

    def allocation(self) -> dict[str, list[int]] | None:
        url = f"http://127.0.0.1:{self.http_port}/cluster/shards/bench"
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                body = json.loads(response.read())
        except OSError:
            return None
        allocation: dict[str, list[int]] | None = body.get("allocation")
        return allocation

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def _balanced(allocation: dict[str, list[int]] | None, regions: int) -> bool:
    if not allocation or len(allocation) < regions:
        return False
    sizes = [len(s) for s in allocation.values()]
    return sum(sizes) == SHARDS and max(sizes) - min(sizes) <= 1


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _asks(results: list[dict[str, Any]]) -> tuple[float, list[float], int]:
    rate = sum(r["asks"] / r["seconds"] for r in results)
    sample = [x for r in results for x in r["sample"]]
    return rate, sample, sum(r["errors"] for r in results)


def _ask_phase(nodes: list[Node], seconds: float, window: int, local: bool) -> dict[str, Any]:
    for node in nodes:
        node.send(cmd="load", seconds=seconds, concurrency=window, local=local)
    results = [node.wait("result") for node in nodes]
    rate, sample, errors = _asks(results)
    asks = sum(r["asks"] for r in results)
    frames = sum(r["frames"] for r in results)
    return {
        "window": window,
        "asks_per_s": round(rate),
        "p50_us": round(_percentile(sample, 0.5) * 1e6),
        "p99_us": round(_percentile(sample, 0.99) * 1e6),
        "cpu_us_per_ask": round(sum(r["cpu_s"] for r in results) / max(1, asks) * 1e6, 1),
        "errors": errors,
        "frames_per_ask": round(frames / max(1, asks), 4),
        "envelopes_per_frame": round(sum(r["envelopes"] for r in results) / max(1, frames), 1),
        "bytes_per_frame": round(sum(r["bytes"] for r in results) / max(1, frames)),
    }


def _chosen(phases: list[dict[str, Any]]) -> dict[str, Any]:
    """The fastest window whose p99 meets the target, else the one with the lowest p99."""
    meeting = [p for p in phases if p["p99_us"] <= P99_TARGET_US]
    if meeting:
        return max(meeting, key=lambda p: p["asks_per_s"])
    return min(phases, key=lambda p: p["p99_us"])


def one_run(seconds: float, concurrency: int, windows: list[int]) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="shoal-bench-") as tmp:
        figures = _one_run(seconds, concurrency, windows, Path(tmp) / "journal.db")
    # Measured once the nodes are gone, so that neither slows the other.
    baseline = _grpc_frame_baseline()
    figures.update(baseline)
    figures["sharded_grpc_frame_cpu_share"] = round(
        figures["sharded_frames_per_ask"]
        * baseline["baseline_grpc_cpu_us_per_frame"]
        / figures["sharded_cpu_us_per_ask"],
        3,
    )
    return figures


# -- the baseline: bare grpc.aio frames between two processes -----------------------------

_BASELINE_FRAMES = 10_000
_BASELINE_FRAME_BYTES = 1024
_BASELINE_WARMUP = 1000
_GRPC_ENV = {"GRPC_EXPERIMENTS": "-event_engine_client,-event_engine_listener"}


def _grpc_frame_baseline() -> dict[str, float]:
    """A bare grpc.aio bidi stream between two processes (no Shoal): the client writes
    frames of 1 KiB back to back, awaiting each write as a Shoal writer does, and the
    server reads them; frames per second and CPU time of both processes per frame,
    medians of three (the figure depends a lot on whether the scheduler keeps each
    process's threads on one CPU: 35 to 100 us per frame on a 2-CPU VM)."""
    runs = [_grpc_frames_once() for _ in range(3)]
    return {key: statistics.median(run[key] for run in runs) for key in runs[0]}


def _grpc_frames_once() -> dict[str, float]:
    env = {**os.environ, **_GRPC_ENV}
    script = [sys.executable, str(Path(__file__).resolve())]
    server = subprocess.Popen(
        [*script, "--role", "grpc-server"], stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        assert server.stdout is not None
        port = server.stdout.readline().strip()
        client = subprocess.run(
            [*script, "--role", "grpc-client", "--port", port],
            capture_output=True,
            text=True,
            env=env,
            timeout=300,
            check=True,
        )
        server_cpu = float(server.stdout.readline())
    finally:
        server.kill()
        server.wait()
    figures = json.loads(client.stdout)
    return {
        "baseline_grpc_frames_per_s": round(_BASELINE_FRAMES / figures["seconds"]),
        "baseline_grpc_cpu_us_per_frame": round(
            (figures["cpu_s"] + server_cpu) / _BASELINE_FRAMES * 1e6, 1
        ),
    }


async def _grpc_server() -> None:
    import grpc.aio  # noqa: PLC0415 - only the baseline's processes use gRPC directly

    reads: asyncio.Future[float] = asyncio.get_running_loop().create_future()

    async def stream(requests: Any, context: Any) -> None:
        cpu = time.process_time()
        count = 0
        while await context.read() is not grpc.aio.EOF:  # type: ignore[attr-defined]
            count += 1
            if count == _BASELINE_WARMUP:
                cpu = time.process_time()
        reads.set_result(time.process_time() - cpu)
        await context.write(b"done")

    server = grpc.aio.server()
    handler = grpc.stream_stream_rpc_method_handler(stream)
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler("bench.Frames", {"Stream": handler}),)
    )
    print(server.add_insecure_port("127.0.0.1:0"), flush=True)
    await server.start()
    print(await reads, flush=True)
    await server.wait_for_termination()


async def _grpc_client(port: int) -> None:
    import grpc.aio  # noqa: PLC0415

    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        call = channel.stream_stream("/bench.Frames/Stream")()
        frame = bytes(_BASELINE_FRAME_BYTES)
        for _ in range(_BASELINE_WARMUP):
            await call.write(frame)
        start, cpu = time.perf_counter(), time.process_time()
        for _ in range(_BASELINE_FRAMES):
            await call.write(frame)
        await call.done_writing()
        await call.read()
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    print(json.dumps({"seconds": seconds, "cpu_s": cpu}))


def _one_run(seconds: float, concurrency: int, windows: list[int], db: Path) -> dict[str, Any]:
    nodes: list[Node] = []
    try:
        a = Node(None, db)
        nodes.append(a)
        a.wait("up")
        b = Node(a.address, db)
        nodes.append(b)
        b.wait("up")
        for node in (a, b):
            node.call(cmd="ready")
        # Load on the two, then the third joins: time to a balanced allocation.
        load_time = 10.0
        for node in (a, b):
            node.send(cmd="load", seconds=load_time, concurrency=concurrency // 2, local=False)
        a.call(cmd="tell", seconds=load_time / 3)
        time.sleep(1.0)
        joined = time.perf_counter()
        c = Node(a.address, db)
        nodes.append(c)
        while not _balanced(a.allocation(), 3):
            if time.perf_counter() - joined > load_time - 2:
                raise RuntimeError(f"no balanced allocation: {a.allocation()}")
            time.sleep(0.02)
        rebalance_s = time.perf_counter() - joined
        c.wait("up")
        c.call(cmd="ready")
        for node in (a, b):
            node.wait("result", timeout=load_time + 30)  # the background load
        time.sleep(2.0)  # the acknowledgements of the last tells
        tells = a.call(cmd="acks")
        lost = tells["sent"] - tells["acked"]

        for node in nodes:
            node.send(cmd="warm")
        for node in nodes:
            node.wait("result")
        phases = [_ask_phase(nodes, seconds, window, False) for window in windows]
        best = _chosen(phases)
        local = _ask_phase(nodes, seconds, best["window"], True)
        activation = a.call(cmd="activate", n=5000)
        persistent = a.call(cmd="activate_persistent", n=2000)
        return {
            "sharded_asks_per_s": best["asks_per_s"],
            "sharded_ask_p50_us": best["p50_us"],
            "sharded_ask_p99_us": best["p99_us"],
            "sharded_ask_errors": best["errors"],
            "sharded_window_per_node": best["window"],
            "sharded_p99_target_met": best["p99_us"] <= P99_TARGET_US,
            "sharded_cpu_us_per_ask": best["cpu_us_per_ask"],
            "sharded_frames_per_ask": best["frames_per_ask"],
            "sharded_envelopes_per_frame": best["envelopes_per_frame"],
            "sharded_windows": phases,
            "local_entity_asks_per_s": local["asks_per_s"],
            "local_entity_ask_errors": local["errors"],
            "entity_activations_per_s": round(activation["activations"] / activation["seconds"]),
            "persistent_activations_per_s": round(
                persistent["activations"] / persistent["seconds"]
            ),
            "rebalance_s": round(rebalance_s, 3),
            "handoff_lost_messages": lost,
            "handoff_messages_sent": tells["sent"],
        }
    finally:
        for node in reversed(nodes):
            node.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1, help="runs; medians are reported")
    parser.add_argument("--seconds", type=float, default=5.0, help="each load phase, seconds")
    parser.add_argument(
        "--concurrency", type=int, default=200, help="asks in flight per node while rebalancing"
    )
    parser.add_argument(
        "--windows",
        default="32,64,128,256",
        help="asks in flight per node to try in the sharded ask phase, comma-separated",
    )
    parser.add_argument("--verbose", action="store_true", help="each run's figures to stderr")
    parser.add_argument("--role", choices=["grpc-server", "grpc-client"], help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.role is not None:
        import uvloop  # noqa: PLC0415 - the nodes' loop

        uvloop.run(_grpc_server() if args.role == "grpc-server" else _grpc_client(args.port))
        return
    windows = [int(w) for w in args.windows.split(",")]
    if not windows or min(windows) < 1:
        parser.error("--windows: one or more positive integers, comma-separated")
    runs = []
    for _ in range(args.runs):
        figures = one_run(args.seconds, args.concurrency, windows)
        if args.verbose:
            print(json.dumps(figures), file=sys.stderr)
        runs.append(figures)
    result: dict[str, Any] = {}
    for key in runs[0]:
        values = [r[key] for r in runs]
        if values[0] is None:
            result[key] = None
        elif isinstance(values[0], bool):
            result[key] = all(values)
        elif isinstance(values[0], int | float):
            result[key] = statistics.median(values)
        else:
            result[key] = values  # every run's table
    result["runs"] = args.runs
    result["concurrency_per_node"] = args.concurrency
    print(json.dumps(result))


if __name__ == "__main__":
    main()
