"""Cluster benchmark: real ``shoal node`` processes and the simulation; prints one JSON object.

* ``formation_3_nodes_s``: 3 node processes (testing preset) launched at once,
  the first the others' seed; from launching the first process to all three
  reporting three Up members (``GET /cluster/members``, polled every 5 ms).
* ``node_ready_s``: one ``shoal node`` seeding itself (testing preset), from
  launch to ``GET /health/ready`` answering 200.
* ``failure_to_removed_s``: SIGKILL of one of 3 (testing preset) to both
  survivors no longer listing it; ``failure_to_removed_bound_s`` is
  ``acceptable_heartbeat_pause + sbr_stable_after + 2 * gossip_interval`` of
  the preset in use (``ClusterSettings.removal_bound``).
* ``gossip_bytes_per_s_per_node_3`` / ``_20``: steady-state cluster traffic of
  3 and 20 node processes with the production gossip and heartbeat
  intervals: frame bytes sent plus received per node per second
  (``shoal_remote_bytes_sent`` + ``_received``; HTTP/2, TCP and IP headers
  not counted), over ``--window`` seconds once every node sees all Up.
* ``members_endpoint_p99_ms`` / ``_p50_ms``: 1,000 sequential
  ``GET /cluster/members`` on a node of the 20-member cluster (keep-alive).
* ``sim_1000_convergence_rounds``: gossip rounds, in the simulation, from one
  member's status change to every one of 1,000 members having seen it
  (``shoal.cluster.testing.convergence_rounds``).
* ``sim_1000_full_state_bytes``: the encoded full gossip state of 1,000 Up
  members, each with a vector-clock entry, all having seen it, one
  unreachability record (what a push of the whole state costs).

Usage: ``python benchmarks/cluster.py [--runs N] [--window SECONDS] [--skip-20]``
(N > 1 reports medians).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import queue
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import aiohttp

from shoal.cluster import ClusterSettings
from shoal.cluster._codec import encode
from shoal.cluster._gossip import Gossip
from shoal.cluster._messages import Envelope, GossipState
from shoal.cluster._reachability import Reachability
from shoal.cluster._vclock import VectorClock
from shoal.cluster.testing import convergence_rounds, up_gossip

ROOT = Path(__file__).resolve().parents[1]
SHOAL = [sys.executable, "-m", "shoal.cli", "node"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Node:
    """A ``shoal node`` process on loopback with known ports."""

    def __init__(self, preset: str, seed: str | None, env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.http_port = free_port()
        argv = [
            *SHOAL,
            "--preset", preset,
            "--port", str(self.port),
            "--http-port", str(self.http_port),
            "--log-level", "warning",
        ]  # fmt: skip
        if seed is not None:
            argv += ["--seed", seed]
        self.proc = subprocess.Popen(
            argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env={**os.environ, **(env or {})},
        )
        self.events: queue.Queue[dict[str, Any]] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    @property
    def address(self) -> str:
        return f"shoal@127.0.0.1:{self.port}"

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.events.put(json.loads(line))

    def get(self, path: str) -> tuple[int, Any]:
        try:
            with urllib.request.urlopen(self.http + path, timeout=2) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as exc:
            return exc.code, None
        except OSError:
            return 0, None

    def get_text(self, path: str) -> str:
        with urllib.request.urlopen(self.http + path, timeout=5) as response:
            return str(response.read().decode())

    def up_members(self) -> int:
        status, body = self.get("/cluster/members")
        if status != 200:
            return -1
        return sum(1 for m in body["members"] if m["status"] == "Up")

    def members(self) -> int:
        status, body = self.get("/cluster/members")
        return len(body["members"]) if status == 200 else -1

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def wait_for(predicate: Any, timeout: float, poll: float = 0.005) -> float:
    """Poll another process's state until ``predicate()``; returns the time it held."""
    deadline = time.perf_counter() + timeout
    while not predicate():
        if time.perf_counter() > deadline:
            raise TimeoutError("condition not reached")
        time.sleep(poll)
    return time.perf_counter()


def start_cluster(n: int, preset: str) -> list[Node]:
    first = Node(preset, None)
    return [first] + [Node(preset, first.address) for _ in range(n - 1)]


def stop_all(nodes: list[Node]) -> None:
    for node in nodes:
        if node.proc.poll() is None:
            node.proc.kill()
    for node in nodes:
        node.stop()


def formation_3() -> float:
    start = time.perf_counter()
    nodes = start_cluster(3, "testing")
    try:
        end = wait_for(lambda: all(n.up_members() == 3 for n in nodes), 60)
        return end - start
    finally:
        stop_all(nodes)


def node_ready() -> float:
    start = time.perf_counter()
    node = Node("testing", None)
    try:
        end = wait_for(lambda: node.get("/health/ready")[0] == 200, 60)
        return end - start
    finally:
        stop_all([node])


def failure_to_removed() -> float:
    nodes = start_cluster(3, "testing")
    try:
        wait_for(lambda: all(n.up_members() == 3 for n in nodes), 60)
        victim = nodes[2]
        start = time.perf_counter()
        victim.proc.kill()
        end = wait_for(lambda: all(n.members() == 2 for n in nodes[:2]), 60)
        return end - start
    finally:
        stop_all(nodes)


def cluster_bytes(node: Node) -> float:
    total = 0.0
    for line in node.get_text("/metrics").splitlines():
        if line.startswith(("shoal_remote_bytes_sent", "shoal_remote_bytes_received")):
            name = line.split("{")[0].split(" ")[0]
            if name in ("shoal_remote_bytes_sent_total", "shoal_remote_bytes_received_total"):
                total += float(line.rsplit(" ", 1)[1])
    return total


async def _members_latency(url: str, n: int) -> list[float]:
    samples = []
    async with aiohttp.ClientSession() as http:
        for _ in range(50):
            async with http.get(url) as r:
                await r.read()
        for _ in range(n):
            t0 = time.perf_counter()
            async with http.get(url) as r:
                await r.read()
                assert r.status == 200
            samples.append(time.perf_counter() - t0)
    samples.sort()
    return samples


def steady_traffic(n: int, window: float, latency: bool) -> dict[str, float]:
    nodes = start_cluster(n, "production")
    try:
        wait_for(lambda: all(node.up_members() == n for node in nodes), 120, poll=0.2)
        time.sleep(2.0)  # let the join traffic drain: steady state only
        before = [cluster_bytes(node) for node in nodes]
        t0 = time.perf_counter()
        time.sleep(window)
        after = [cluster_bytes(node) for node in nodes]
        elapsed = time.perf_counter() - t0
        per_node = statistics.mean(a - b for a, b in zip(after, before, strict=True)) / elapsed
        result = {f"gossip_bytes_per_s_per_node_{n}": per_node}
        if latency:
            samples = asyncio.run(_members_latency(nodes[-1].http + "/cluster/members", 1000))
            result["members_endpoint_p50_ms"] = samples[len(samples) // 2] * 1e3
            result["members_endpoint_p99_ms"] = samples[int(len(samples) * 0.99)] * 1e3
        return result
    finally:
        stop_all(nodes)


def full_state_bytes(n: int) -> int:
    g = up_gossip(n)
    nodes = [m.unique_address for m in g.members]
    g = g.changed(nodes[0], reachability=Reachability().unreachable(nodes[0], nodes[1]))
    g = Gossip.of(
        g.members,
        version=VectorClock({node: 1000 + i for i, node in enumerate(nodes)}),
        seen=nodes,
        reachability=g.reachability,
    )
    return len(encode(Envelope("shoal", nodes[0], nodes[1], GossipState(g))))


def one_run(window: float, skip_20: bool) -> dict[str, float]:
    result: dict[str, float] = {}
    result["formation_3_nodes_s"] = formation_3()
    result["node_ready_s"] = node_ready()
    result["failure_to_removed_s"] = failure_to_removed()
    result["failure_to_removed_bound_s"] = ClusterSettings.testing().removal_bound
    result.update(steady_traffic(3, window, latency=False))
    if not skip_20:
        result.update(steady_traffic(20, window, latency=True))
    result["sim_1000_convergence_rounds"] = convergence_rounds(1000)
    result["sim_1000_full_state_bytes"] = full_state_bytes(1000)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1, help="runs; medians are reported")
    parser.add_argument("--window", type=float, default=10.0, help="traffic window, seconds")
    parser.add_argument("--skip-20", action="store_true", help="no 20-node cluster")
    parser.add_argument("--verbose", action="store_true", help="each run's figures to stderr")
    args = parser.parse_args()
    runs = []
    for _ in range(args.runs):
        run = one_run(args.window, args.skip_20)
        if args.verbose:
            print(json.dumps(run), file=sys.stderr)
        runs.append(run)
    result: dict[str, Any] = {
        key: round(statistics.median(run[key] for run in runs), 3) for key in runs[0]
    }
    result["runs"] = args.runs
    if args.runs > 1:
        result["all_runs"] = runs
    print(json.dumps(result))


if __name__ == "__main__":
    main()
