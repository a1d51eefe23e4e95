"""Sharding across three real ``shoal node --app`` processes over gRPC on loopback:
entities reachable from every node and running once, ``shoal shards``, a SIGKILLed
node's shards placed again elsewhere, and a graceful leave handing its shards off."""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shoal.sharding import shard_id
from tests.integration.cli._nodes import NodeProcess, Nodes, eventually, members, shoal

pytestmark = [pytest.mark.multiprocess, pytest.mark.slow]

APP = ["--app", "tests.integration.sharding._app:start"]


@pytest.fixture
def nodes(tmp_path: Path) -> Iterator[Nodes]:
    lab = Nodes(tmp_path)
    yield lab
    lab.close()


def cluster(nodes: Nodes, n: int) -> list[NodeProcess]:
    first = nodes.start(*APP)
    first.wait_event("started")
    rest = [nodes.start(*APP, "--seed", first.address) for _ in range(n - 1)]
    for node in rest:
        node.wait_event("started")
    for node in [first, *rest]:
        node.wait_event("up")
    return [first, *rest]


def full_round(node: NodeProcess, hosts: set[str], timeout: float = 60) -> dict[str, Any]:
    """The next round of ``node`` in which every entity answered, from ``hosts`` only."""

    def good(event: dict[str, Any]) -> bool:
        return (
            not event["errors"]
            and len(event["answers"]) == 30
            and set(event["answers"].values()) <= hosts
        )

    for _ in range(int(timeout / 0.5)):
        event = node.wait_event("round", timeout=timeout)
        if good(event):
            return event
    raise AssertionError(f"no complete round from {sorted(hosts)} on {node.address}")


def shards(node: NodeProcess) -> dict[str, Any]:
    result = shoal("shards", "counter", "--node", node.http, "--json")
    assert result.returncode == 0, result.stderr
    body: dict[str, Any] = json.loads(result.stdout)
    return body


def test_three_processes_share_the_entities_and_survive_a_kill_and_a_leave(nodes: Nodes) -> None:
    a, b, c = cluster(nodes, 3)
    everyone = {a.address, b.address, c.address}
    # Every node reaches every entity; once the rebalance after the joins is
    # over, all agree where each one runs, spread over the three.

    def agreed() -> bool:
        answers = [full_round(node, everyone)["answers"] for node in (a, b, c)]
        return answers[0] == answers[1] == answers[2] and len(set(answers[0].values())) == 3

    eventually(agreed, timeout=60)
    view = shards(a)
    assert view["typeName"] == "counter"
    assert set(view["allocation"]) == {f"shoal://{n.address}" for n in (a, b, c)}
    used = sorted({shard_id(f"e{i}", 30) for i in range(30)})
    assert sorted(s for v in view["allocation"].values() for s in v) == used
    table = shoal("shards", "counter", "--node", b.http)
    assert table.returncode == 0, table.stderr
    assert table.stdout.startswith("SHARD")

    # A SIGKILL: once it is downed and removed, its shards come back on the others.
    c.kill()
    eventually(lambda: len(members(a)["members"]) == 2, timeout=60)
    survivors = {a.address, b.address}
    full_round(a, survivors)
    full_round(b, survivors)

    # A graceful leave (SIGTERM): its shards move to the last node, which keeps answering.
    b.signal(signal.SIGTERM)
    assert b.wait_exit(60) == 0
    final = full_round(a, {a.address})
    assert set(final["answers"].values()) == {a.address}
