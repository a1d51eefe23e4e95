"""Sharding acceptance on real ``shoal node --app`` processes under continuous load:
persistent accounts on one shared SQLite journal, and a probe recording every entity start
and stop with its node and time, which must never show one entity active on two nodes.

* a third node joins (rebalance), then leaves gracefully: every ask succeeds, and the
  persisted counts equal the successful asks exactly;
* a SIGKILLed node: its entities come back elsewhere with their persisted state; asks in
  flight fail (with a timeout), later ones succeed;
* the oldest node (the coordinator's) killed: a new coordinator, no shard in two regions;
* a 2|1 network partition (network namespaces): the single node's entities stop there and
  come back on the majority.
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from shoal.persistence import SqliteJournal, SqliteSettings
from tests.integration.cli._nodes import NodeProcess, eventually, members, shoal
from tests.netns import NetnsLab

pytestmark = [pytest.mark.multiprocess, pytest.mark.slow]

APP = "tests.integration.sharding._accounts_app:start"
ENTITIES = 60
WITHIN = 40.0  # seconds, for a loaded 2-core machine
# How an ask in flight to a node that dies fails: the node is declared gone, it is
# unreachable, or the ask times out.
IN_FLIGHT = {"NodeGoneError", "UnreachableError", "AskTimeout"}


class Harness:
    """Nodes of one test sharing a journal, a probe file and the load's control files."""

    def __init__(self, tmp: Path, prefix: Callable[[int], list[str]] | None = None) -> None:
        self.tmp = tmp
        self.db = tmp / "journal.db"
        self.probe = tmp / "probe.jsonl"
        self.stop_file = tmp / "stop"
        self.settled_file = tmp / "settled"
        self.prefix = prefix
        self.nodes: list[NodeProcess] = []
        self.killed: dict[str, float] = {}  # node address -> when it was killed

    def start(self, argv: list[str], *, load: bool, index: int = 0) -> NodeProcess:
        env = {
            "SHARDING_TEST_DB": str(self.db),
            "SHARDING_TEST_PROBE": str(self.probe),
            "SHARDING_TEST_STOP": str(self.stop_file),
            "SHARDING_TEST_SETTLED": str(self.settled_file),
            "SHARDING_TEST_ENTITIES": str(ENTITIES),
            "SHARDING_TEST_LOAD": "1" if load else "0",
            "SHOAL_NODE_SECRET": "sharding-acceptance-secret",
        }
        node = NodeProcess(
            ["--preset", "testing", *argv, "--app", APP],
            self.tmp / f"node{len(self.nodes)}.log",
            env,
            prefix=self.prefix(index) if self.prefix is not None else None,
        )
        self.nodes.append(node)
        node.wait_event("started", WITHIN)
        return node

    def local(self, *, load: bool, seed: NodeProcess | None = None) -> NodeProcess:
        argv = ["--port", "0", "--http-port", "0"]
        if seed is not None:
            argv += ["--seed", seed.address]
        return self.start(argv, load=load)

    def kill(self, node: NodeProcess) -> None:
        self.killed[node.address] = time.time()
        node.kill()

    def events(self) -> list[dict[str, Any]]:
        lines = self.probe.read_text().splitlines() if self.probe.exists() else []
        return sorted((json.loads(line) for line in lines), key=lambda e: e["t"])

    def active(self) -> dict[str, str]:
        where: dict[str, str] = {}
        for e in self.events():
            if e["ev"] == "start":
                where[e["entity"]] = e["node"]
            elif where.get(e["entity"]) == e["node"]:
                del where[e["entity"]]
        return {k: v for k, v in where.items() if v not in self.killed}

    def assert_never_two(self) -> None:
        """No entity started on a node while its incarnation on another had not stopped
        (one killed counts as stopped from the moment of the kill)."""
        active: dict[str, tuple[str, float]] = {}
        starts = 0
        for e in self.events():
            entity, node, t = e["entity"], e["node"], e["t"]
            if e["ev"] == "start":
                starts += 1
                if entity in active:
                    other, since = active[entity]
                    killed = self.killed.get(other)
                    twice = (
                        f"{entity} started on {node} at {t} while active on {other} since {since}"
                    )
                    assert killed is not None, twice
                    assert since <= killed <= t, twice
                active[entity] = (node, t)
            elif entity in active and active[entity][0] == node:
                del active[entity]
        assert starts > 0

    def finish_load(self, loaders: list[NodeProcess]) -> list[dict[str, Any]]:
        self.stop_file.touch()
        return [node.wait_event("load", WITHIN + 30) for node in loaders]

    def persisted(self) -> dict[str, int]:
        async def read() -> dict[str, int]:
            journal = SqliteJournal(SqliteSettings(path=self.db))
            try:
                return {
                    f"a{i}": await journal.highest_sequence_nr(f"account|a{i}")
                    for i in range(ENTITIES)
                }
            finally:
                await journal.close()

        return asyncio.run(read())

    def close(self) -> None:
        for node in self.nodes:
            node.kill()


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[Harness]:
    made = Harness(tmp_path)
    yield made
    made.close()


def successes(loads: list[dict[str, Any]]) -> Counter[str]:
    total: Counter[str] = Counter()
    for load in loads:
        total.update(load["ok"])
    return total


def failures(loads: list[dict[str, Any]]) -> Counter[str]:
    total: Counter[str] = Counter()
    for load in loads:
        total.update(load["errors"])
    return total


def assert_state_recovered(loads: list[dict[str, Any]], persisted: dict[str, int]) -> None:
    """Every account answers with the total its journal holds (one event per deposit)."""
    for load in loads:
        for entity, answer in load["totals"].items():
            assert answer == [persisted[entity], persisted[entity]], (entity, answer)


def allocation(node: NodeProcess) -> dict[str, list[int]]:
    result = shoal("shards", "account", "--node", node.http, "--json")
    assert result.returncode == 0, result.stderr
    body: dict[str, list[int]] | None = json.loads(result.stdout)["allocation"]
    return body or {}


def local_shards(node: NodeProcess) -> set[int]:
    result = shoal("shards", "account", "--node", node.http, "--json")
    assert result.returncode == 0, result.stderr
    return {int(r["shardId"]) for r in json.loads(result.stdout)["regions"]}


def balanced(node: NodeProcess, hosts: int) -> bool:
    sizes = [len(s) for s in allocation(node).values() if s]
    return len(sizes) == hosts and max(sizes) - min(sizes) <= 1


def test_rebalance_on_join_and_a_graceful_leave_under_load_lose_nothing(
    harness: Harness,
) -> None:
    a = harness.local(load=True)
    b = harness.local(load=True, seed=a)
    for node in (a, b):
        node.wait_event("up", WITHIN)
    eventually(lambda: len(harness.active()) == ENTITIES, WITHIN)
    c = harness.local(load=False, seed=a)
    c.wait_event("up", WITHIN)
    eventually(lambda: balanced(a, 3), WITHIN)
    assert c.address in set(harness.active().values())
    c.signal(signal.SIGTERM)  # a graceful leave: its shards are handed off first
    assert c.wait_exit(WITHIN) == 0
    eventually(lambda: balanced(a, 2), WITHIN)
    time.sleep(1.0)  # load on the two after the leave
    loads = harness.finish_load([a, b])
    assert failures(loads) == {}
    persisted = harness.persisted()
    ok = successes(loads)
    assert sum(ok.values()) > 0
    assert {e: n for e, n in persisted.items() if n} == dict(ok)
    assert_state_recovered(loads, persisted)
    harness.assert_never_two()


def test_a_sigkilled_nodes_entities_come_back_with_their_state(harness: Harness) -> None:
    a = harness.local(load=True)
    b = harness.local(load=True, seed=a)
    c = harness.local(load=False, seed=a)
    for node in (a, b, c):
        node.wait_event("up", WITHIN)
    eventually(lambda: c.address in set(harness.active().values()), WITHIN)
    on_c = {e for e, node in harness.active().items() if node == c.address}
    harness.kill(c)
    eventually(lambda: len(members(a)["members"]) == 2, WITHIN)
    eventually(lambda: on_c <= set(harness.active()), WITHIN)
    harness.settled_file.touch()
    time.sleep(1.5)  # asks sent from now on all succeed
    loads = harness.finish_load([a, b])
    assert set(failures(loads)) <= IN_FLIGHT
    assert all(load["late_errors"] == 0 for load in loads)
    persisted = harness.persisted()
    ok = successes(loads)
    failed = sum(failures(loads).values())
    for entity, n in persisted.items():
        # Each success persisted once; a timed-out ask may or may not have been.
        assert ok[entity] <= n <= ok[entity] + failed, entity
    assert_state_recovered(loads, persisted)
    harness.assert_never_two()


def test_killing_the_coordinators_node_leaves_no_shard_in_two_regions(harness: Harness) -> None:
    a = harness.local(load=False)  # the oldest: it runs the coordinator
    b = harness.local(load=True, seed=a)
    c = harness.local(load=True, seed=a)
    for node in (a, b, c):
        node.wait_event("up", WITHIN)
    eventually(lambda: len(set(harness.active().values())) == 3, WITHIN)
    harness.kill(a)
    eventually(lambda: len(members(b)["members"]) == 2, WITHIN)

    def new_coordinator_placed_all() -> bool:
        placed = allocation(b)
        return set(placed) == {f"shoal://{n.address}" for n in (b, c)} and a.address not in set(
            harness.active().values()
        )

    eventually(new_coordinator_placed_all, WITHIN)
    eventually(lambda: len(harness.active()) == ENTITIES, WITHIN)
    harness.settled_file.touch()
    time.sleep(1.0)
    placed = allocation(c)
    shards = [s for region in placed.values() for s in region]
    assert len(shards) == len(set(shards))  # no shard in two regions
    assert not local_shards(b) & local_shards(c)
    loads = harness.finish_load([b, c])
    assert set(failures(loads)) <= IN_FLIGHT
    assert all(load["late_errors"] == 0 for load in loads)
    persisted = harness.persisted()
    assert_state_recovered(loads, persisted)
    harness.assert_never_two()


PORT, HTTP = 2552, 8558


def test_a_2_1_partition_moves_the_single_nodes_entities_to_the_majority(
    netns_lab: Callable[[int], NetnsLab], tmp_path: Path
) -> None:
    lab = netns_lab(3)
    harness = Harness(tmp_path, prefix=lab.exec_argv)
    try:

        def start(i: int, load: bool) -> NodeProcess:
            ip = lab.hosts[i].ip
            argv = ["--host", ip, "--port", str(PORT), "--http-host", ip]
            argv += ["--http-port", str(HTTP), "--seed", f"shoal@{lab.hosts[0].ip}:{PORT}"]
            return harness.start(argv, load=load, index=i)

        a, b, c = start(0, True), start(1, True), start(2, False)
        for node in (a, b, c):
            node.wait_event("up", WITHIN)
        eventually(lambda: c.address in set(harness.active().values()), WITHIN)
        on_c = {e for e, node in harness.active().items() if node == c.address}
        lab.partition([0, 1], [2])
        # The single node downs itself: its entities stop there (recorded by the probe)...
        assert c.wait_exit(WITHIN) == 3
        assert not {e for e, node in harness.active().items() if node == c.address}
        # ... and come back on the majority.
        eventually(lambda: on_c <= set(harness.active()), WITHIN)
        harness.settled_file.touch()
        time.sleep(1.0)
        loads = harness.finish_load([a, b])
        assert set(failures(loads)) <= IN_FLIGHT
        assert all(load["late_errors"] == 0 for load in loads)
        assert_state_recovered(loads, harness.persisted())
        harness.assert_never_two()
    finally:
        harness.close()
