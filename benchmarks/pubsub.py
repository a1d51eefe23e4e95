"""Pub/sub benchmark: 3 real ``shoal node`` processes (testing preset); prints one JSON object.

Every node runs this file as its ``--app`` (``pubsub_bench:start``): a
mediator and a probe actor the driver (this process, an actor system of its
own on loopback, not a cluster member) asks to subscribe and publish. Times
are ``time.time()`` of one host, so latencies span processes.

* ``fanout_1k_p50_ms`` / ``fanout_1k_p99_ms``: a publish on node A, to the
  last of 1,000 subscribers (spread evenly over the 3 nodes) having received
  it; ``--samples`` publishes, 20 ms apart.
* ``fanout_10k_p50_ms``: the same with 10,000 subscribers (publishes 100 ms apart).
* ``deliveries_per_s``: one publisher per node, each on its own topic with
  100 subscribers spread over the 3 nodes, publishing ``--messages`` notes
  as fast as it can (yielding to its loop every 50): deliveries made, from
  the first publish to the last delivery, per second. ``deliveries_lost``
  counts what never arrived (mailbox or outbox overflow).
* ``registry_convergence_ms``: node A publishes on a topic every millisecond;
  from a subscribe on node C to the first of A's publishes reaching it
  (median of 5). ``registry_convergence_bound_ms`` is the issue's bound: one
  gossip interval of the testing preset + 50.

Usage: ``python benchmarks/pubsub.py [--runs N] [--samples N] [--messages N]``
(N > 1 runs report medians).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import queue
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shoal import Actor, ActorRef, ActorSystem, Settings, message
from shoal.cluster import ClusterSettings
from shoal.pubsub import DistributedPubSub
from shoal.remote import RemoteSettings, Remoting

ROOT = Path(__file__).resolve().parents[1]
SHOAL = [sys.executable, "-m", "shoal.cli", "node"]
SAFETY = 120.0


# -- the messages between the driver and the probes (explicit manifests: this file
# -- is ``__main__`` in the driver and ``pubsub_bench`` in the nodes) ----------------


@message(manifest="bench.pubsub.Note")
@dataclass(frozen=True, slots=True)
class Note:
    n: int


@message(manifest="bench.pubsub.Subscribe")
@dataclass(frozen=True, slots=True)
class Subscribe:
    topic: str
    count: int


@message(manifest="bench.pubsub.Paced")
@dataclass(frozen=True, slots=True)
class Paced:
    """Publish ``samples`` notes on ``topic``, ``interval`` seconds apart; answers their times."""

    topic: str
    samples: int
    interval: float


@message(manifest="bench.pubsub.Blast")
@dataclass(frozen=True, slots=True)
class Blast:
    """Publish ``count`` notes on ``topic`` at once; answers the time of the first."""

    topic: str
    count: int


@message(manifest="bench.pubsub.Report")
@dataclass(frozen=True, slots=True)
class Report:
    topic: str


@message(manifest="bench.pubsub.Tallied")
@dataclass(frozen=True, slots=True)
class Tallied:
    complete: dict[int, float]
    """Note -> when the last local subscriber got it."""
    received: int
    last: float
    first: float


@message(manifest="bench.pubsub.Wait")
@dataclass(frozen=True, slots=True)
class Wait:
    topic: str
    count: int


@message(manifest="bench.pubsub.Ticker")
@dataclass(frozen=True, slots=True)
class Ticker:
    """Publish on ``topic`` every millisecond for ``seconds`` (answers at once)."""

    topic: str
    seconds: float


MESSAGES = (Note, Subscribe, Paced, Blast, Report, Tallied, Wait, Ticker)


# -- the node side --------------------------------------------------------------------


@dataclass
class Tally:
    local: int = 0
    counts: dict[int, int] = field(default_factory=dict)
    complete: dict[int, float] = field(default_factory=dict)
    received: int = 0
    first: float = 0.0
    last: float = 0.0

    def hit(self, n: int) -> None:
        now = time.time()
        if not self.received:
            self.first = now
        self.received += 1
        self.last = now
        got = self.counts.get(n, 0) + 1
        self.counts[n] = got
        if got == self.local:
            self.complete[n] = now


class Inbox(Actor):
    def __init__(self, tally: Tally) -> None:
        self.tally = tally

    def receive(self, msg: Note) -> None:
        self.tally.hit(msg.n)


class Probe(Actor):
    def __init__(self, pubsub: DistributedPubSub) -> None:
        self.pubsub = pubsub
        self.tallies: dict[str, Tally] = {}

    async def receive(self, msg: Any) -> Any:
        ps = self.pubsub
        match msg:
            case Subscribe(topic, count):
                tally = self.tallies.setdefault(topic, Tally())
                tally.local += count
                subs = [self.ctx.spawn(lambda: Inbox(tally)) for _ in range(count)]
                await asyncio.gather(*(ps.subscribe(topic, ref) for ref in subs))
                return True
            case Wait(topic, count):
                return await ps.wait_for_subscribers(topic, count, SAFETY)
            case Paced(topic, samples, interval):
                times: list[float] = []
                for n in range(samples):
                    times.append(time.time())
                    ps.publish(topic, Note(n))
                    await asyncio.sleep(interval)
                return times
            case Blast(topic, count):
                start = time.time()
                for n in range(count):
                    ps.publish(topic, Note(n))
                    if n % 50 == 49:
                        await asyncio.sleep(0)
                return start
            case Ticker(topic, seconds):
                self.ctx.pipe_to_self(self._tick(topic, seconds))  # its None comes back
                return True
            case Report(topic):
                t = self.tallies.get(topic, Tally())
                return Tallied(dict(t.complete), t.received, t.last, t.first)
        return None

    async def _tick(self, topic: str, seconds: float) -> None:
        end = time.monotonic() + seconds
        n = 0
        while time.monotonic() < end:
            self.pubsub.publish(topic, Note(n))
            n += 1
            await asyncio.sleep(0.001)


def start(system: ActorSystem) -> None:
    """The nodes' ``--app``: a mediator and ``/user/probe``."""
    system.serialization.register(*MESSAGES)
    pubsub = DistributedPubSub.get(system)  # started by shoal node (its testing preset)
    system.spawn(lambda: Probe(pubsub), name="probe", capacity=100_000)


# -- the driver -----------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Node:
    def __init__(self, app_dir: Path, seed: str | None) -> None:
        self.port = free_port()
        argv = [
            *SHOAL,
            "--preset", "testing",
            "--port", str(self.port),
            "--http-port", "0",
            "--log-level", "warning",
            "--app", "pubsub_bench:start",
        ]  # fmt: skip
        if seed is not None:
            argv += ["--seed", seed]
        path = os.pathsep.join([str(app_dir), str(ROOT), os.environ.get("PYTHONPATH", "")])
        self.proc = subprocess.Popen(
            argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env={**os.environ, "PYTHONPATH": path},
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

    def wait(self, name: str) -> None:
        deadline = time.monotonic() + SAFETY
        while True:
            event = self.events.get(timeout=max(0.0, deadline - time.monotonic()))
            if event.get("event") == name:
                return

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait()


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def run_once(nodes: list[Node], samples: int, messages: int) -> dict[str, float]:
    system = ActorSystem("shoal", Settings(ask_timeout=SAFETY))
    system.serialization.register(*MESSAGES)
    await Remoting.start(system, RemoteSettings(port=0))
    try:
        probes = [system.resolve(f"shoal://{n.address}/user/probe") for n in nodes]
        result: dict[str, float] = {}
        result.update(await fanout(probes, "f1k", 1_000, samples, 0.02, "fanout_1k"))
        result.update(
            await fanout(probes, "f10k", 10_000, max(10, samples // 4), 0.1, "fanout_10k")
        )
        del result["fanout_10k_p99_ms"]
        result.update(await deliveries(probes, messages))
        result.update(await convergence(probes))
        return result
    finally:
        await system.shutdown()


async def ask(ref: ActorRef, msg: object) -> Any:
    return await ref.ask(msg, timeout=SAFETY)


async def fanout(
    probes: list[ActorRef], topic: str, subscribers: int, samples: int, interval: float, name: str
) -> dict[str, float]:
    share = [subscribers // 3 + (1 if i < subscribers % 3 else 0) for i in range(3)]
    await asyncio.gather(*(ask(p, Subscribe(topic, k)) for p, k in zip(probes, share, strict=True)))
    await ask(probes[0], Wait(topic, subscribers))
    sent: list[float] = await ask(probes[0], Paced(topic, samples, interval))
    await asyncio.sleep(0.5)
    reports: list[Tallied] = [await ask(p, Report(topic)) for p in probes]
    latencies = [
        (max(r.complete[n] for r in reports) - at) * 1000
        for n, at in enumerate(sent)
        if all(n in r.complete for r in reports)
    ]
    return {
        f"{name}_p50_ms": round(statistics.median(latencies), 3),
        f"{name}_p99_ms": round(pct(latencies, 0.99), 3),
    }


async def deliveries(probes: list[ActorRef], messages: int) -> dict[str, float]:
    topics = [f"d{i}" for i in range(3)]
    for topic in topics:
        share = [34, 33, 33]
        await asyncio.gather(
            *(ask(p, Subscribe(topic, k)) for p, k in zip(probes, share, strict=True))
        )
    for p, topic in zip(probes, topics, strict=True):
        await ask(p, Wait(topic, 100))
    starts: list[float] = await asyncio.gather(
        *(ask(p, Blast(topic, messages)) for p, topic in zip(probes, topics, strict=True))
    )
    expected = 3 * messages * 100
    deadline = time.monotonic() + SAFETY
    while True:
        reports = [await ask(p, Report(t)) for p in probes for t in topics]
        received = sum(r.received for r in reports)
        if received >= expected or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.2)
        again = sum(r.received for r in [await ask(p, Report(t)) for p in probes for t in topics])
        if again == received:  # nothing more is coming
            break
    last = max(r.last for r in reports)
    return {
        "deliveries_per_s": round(received / (last - min(starts))),
        "deliveries_lost": expected - received,
    }


async def convergence(probes: list[ActorRef]) -> dict[str, float]:
    took: list[float] = []
    for k in range(5):
        topic = f"conv{k}"
        await ask(probes[0], Ticker(topic, 5.0))
        await asyncio.sleep(0.05)
        subscribed = time.time()
        await ask(probes[2], Subscribe(topic, 1))
        deadline = time.monotonic() + 5.0
        while True:
            report: Tallied = await ask(probes[2], Report(topic))
            if report.received or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.01)
        took.append((report.first - subscribed) * 1000)
        await asyncio.sleep(5.0 - 0.05)  # the ticker ends
    bound = ClusterSettings.testing().gossip_interval * 1000 + 50
    return {
        "registry_convergence_ms": round(statistics.median(took), 3),
        "registry_convergence_bound_ms": bound,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--messages", type=int, default=10_000)
    args = parser.parse_args()
    runs: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory() as tmp:
        app_dir = Path(tmp)
        shutil.copy(__file__, app_dir / "pubsub_bench.py")
        for _ in range(args.runs):
            first = Node(app_dir, None)
            nodes = [first]
            try:
                first.wait("started")
                nodes += [Node(app_dir, first.address) for _ in range(2)]
                for node in nodes:
                    node.wait("up")
                runs.append(asyncio.run(run_once(nodes, args.samples, args.messages)))
            finally:
                for node in nodes:
                    node.stop()
            if args.runs > 1:
                print(json.dumps(runs[-1]), file=sys.stderr)
    result = {key: round(statistics.median(run[key] for run in runs), 3) for key in runs[0]}
    result["runs"] = args.runs
    print(json.dumps(result))


if __name__ == "__main__":
    main()
