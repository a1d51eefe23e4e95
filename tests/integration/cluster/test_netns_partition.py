"""A real 2|1 network partition between three ``shoal node`` processes.

Each node runs in a network namespace of its own (tests/netns.py) and
listens on its lab address (so it needs the cluster secret). The partition
cuts node 3 off while every process keeps running; the split-brain resolver
(keep-majority, the default) must leave exactly one side: the single node
downs itself and exits, the two remove it and go on. After healing, node 3
started again (a new incarnation on the same address) joins again.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.cli._nodes import NodeProcess, eventually, shoal
from tests.netns import NetnsLab

pytestmark = [pytest.mark.netns, pytest.mark.multiprocess, pytest.mark.slow]

SECRET = {"SHOAL_NODE_SECRET": "netns-partition-test-secret"}
PORT, HTTP = 2552, 8558
WITHIN = 30.0  # seconds; the removal bound is 1.7 s, the rest is a loaded 2-core machine


class Lab:
    def __init__(self, lab: NetnsLab, tmp: Path) -> None:
        self.lab = lab
        self.tmp = tmp
        self.nodes: list[NodeProcess] = []

    def address(self, i: int) -> str:
        return f"shoal@{self.lab.hosts[i].ip}:{PORT}"

    def start(self, i: int) -> NodeProcess:
        ip = self.lab.hosts[i].ip
        argv = ["--preset", "testing", "--host", ip, "--port", str(PORT)]
        argv += ["--http-host", ip, "--http-port", str(HTTP), "--seed", self.address(0)]
        node = NodeProcess(
            argv,
            self.tmp / f"node{i}-{len(self.nodes)}.log",
            env=SECRET,
            prefix=self.lab.exec_argv(i),
        )
        self.nodes.append(node)
        node.wait_event("started")
        return node

    def members(self, i: int) -> dict[str, Any] | None:
        """Node ``i``'s view, asked from inside its own namespace; None if it does not answer."""
        url = f"http://{self.lab.hosts[i].ip}:{HTTP}"
        result = shoal("members", "--node", url, "--json", prefix=self.lab.exec_argv(i))
        if result.returncode != 0:
            return None
        body: dict[str, Any] = json.loads(result.stdout)
        return body

    def sees(self, i: int, indexes: list[int]) -> bool:
        body = self.members(i)
        if body is None:
            return False
        expected = sorted(f"shoal://{self.address(j)}" for j in indexes)
        nodes = sorted(m["node"] for m in body["members"])
        return nodes == expected and {m["status"] for m in body["members"]} == {"Up"}

    def close(self) -> None:
        for node in self.nodes:
            node.kill()


@pytest.fixture
def lab(netns_lab: Callable[[int], NetnsLab], tmp_path: Path) -> Iterator[Lab]:
    made = Lab(netns_lab(3), tmp_path)
    yield made
    made.close()


def test_a_2_1_partition_leaves_the_majority_and_the_single_node_stops(lab: Lab) -> None:
    nodes = [lab.start(0), lab.start(1), lab.start(2)]
    for node in nodes:
        node.wait_event("up")
    eventually(lambda: all(lab.sees(i, [0, 1, 2]) for i in range(3)), WITHIN)
    old_uid = nodes[2].started["uid"]

    lab.lab.partition([0, 1], [2])
    # The single node is the losing side: it downs itself and exits with 3.
    assert nodes[2].wait_exit(WITHIN) == 3
    assert nodes[2].wait_event("stopped")["reason"] == "cluster-downed"
    # The two remove it and keep serving.
    eventually(lambda: lab.sees(0, [0, 1]) and lab.sees(1, [0, 1]), WITHIN)
    assert nodes[0].proc.poll() is None
    assert nodes[1].proc.poll() is None

    lab.lab.heal()
    again = lab.start(2)
    assert again.started["uid"] != old_uid
    again.wait_event("up", WITHIN)
    eventually(lambda: all(lab.sees(i, [0, 1, 2]) for i in range(3)), WITHIN)
    body = lab.members(0)
    assert body is not None
    [member] = [m for m in body["members"] if m["node"] == f"shoal://{lab.address(2)}"]
    assert member["nodeUid"] == again.started["uid"]
