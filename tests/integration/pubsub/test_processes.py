"""Three real ``shoal node --app`` processes: publish, groups, send, unsubscribe, stopped
subscribers, a SIGKILL pruning a bucket, a restart as a new incarnation, 10,000 topics.

The test process drives each node's ``/user/probe`` (``_app.py``) over remoting
from an actor system of its own (not a cluster member).
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from shoal import ActorRef, ActorSystem, Settings
from shoal.remote import RemoteSettings, Remoting
from tests.integration.cli._nodes import NodeProcess, Nodes

from ._app import (
    Count,
    Note,
    Pub,
    Received,
    Register,
    Seen,
    Send,
    StopInbox,
    Sub,
    SubMany,
    Topics,
    Wait,
)

pytestmark = [pytest.mark.multiprocess, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[3]
APP = "tests.integration.pubsub._app:start"
ENV = {"PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
SAFETY = 30.0  # seconds; only reached when something hangs


def start_cluster(nodes: Nodes, n: int, *extra: str) -> list[NodeProcess]:
    first = nodes.start("--app", APP, *extra, env=ENV)
    first.wait_event("started")
    rest = [nodes.start("--app", APP, "--seed", first.address, env=ENV) for _ in range(n - 1)]
    for node in rest:
        node.wait_event("started")
    for node in [first, *rest]:
        node.wait_event("up")
    return [first, *rest]


@pytest.fixture(scope="module")
def three(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[NodeProcess]]:
    nodes = Nodes(tmp_path_factory.mktemp("pubsub"))
    try:
        yield start_cluster(nodes, 3)
    finally:
        nodes.close()


class Driver:
    """Asks the probes of the node processes."""

    def __init__(self, system: ActorSystem, nodes: list[NodeProcess]) -> None:
        self.system = system
        self.nodes = nodes

    def probe(self, node: NodeProcess) -> ActorRef:
        return self.system.resolve(f"shoal://{node.address}/user/probe")

    async def ask(self, node: NodeProcess, msg: object) -> Any:
        return await self.probe(node).ask(msg, timeout=SAFETY)

    async def seen(self, node: NodeProcess, inbox: str) -> list[tuple[str, int]]:
        got = await self.ask(node, Seen(inbox))
        assert isinstance(got, Received)
        return [(o, n) for o, n in got.notes]

    async def until(self, node: NodeProcess, msg: object, expected: object) -> None:
        """Ask ``msg`` until the answer is ``expected`` (polled: another process's state)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + SAFETY
        while True:
            got = await self.ask(node, msg)
            if got == expected:
                return
            assert loop.time() < deadline, f"{msg} answered {got}, never {expected}"
            await asyncio.sleep(0.02)

    async def until_seen(self, node: NodeProcess, inbox: str, n: int) -> list[tuple[str, int]]:
        """What ``inbox`` received once it has ``n`` notes (polled: another process)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + SAFETY
        while True:
            notes = await self.seen(node, inbox)
            if len(notes) >= n or loop.time() > deadline:
                return notes
            await asyncio.sleep(0.02)


@pytest.fixture
async def client() -> AsyncIterator[ActorSystem]:
    system = ActorSystem("shoal", Settings.testing())
    system.serialization.register(Note, Received)
    await Remoting.start(system, RemoteSettings.testing(port=0))
    try:
        yield system
    finally:
        await system.shutdown()


async def test_publish_on_a_reaches_a_b_and_c_once_in_order(
    three: list[NodeProcess], client: ActorSystem
) -> None:
    d = Driver(client, three)
    a, b, c = three
    topic = f"room-{client.loop.__class__.__name__}"
    for i, node in enumerate(three):
        assert await d.ask(node, Sub(topic, f"in-{topic}-{i}")) is True
    assert await d.ask(a, Wait(topic, 3, SAFETY)) == 3
    assert await d.ask(a, Pub(topic, 0, 50)) == [3] * 50
    for i, node in enumerate(three):
        notes = await d.until_seen(node, f"in-{topic}-{i}", 50)
        assert notes == [(a.address, n) for n in range(50)]
    await asyncio.sleep(0.2)  # nothing more arrives
    for i, node in enumerate(three):
        assert len(await d.seen(node, f"in-{topic}-{i}")) == 50
    # unsubscribe on b: a's publishes reach a and c only
    await d.ask(b, Sub(topic, f"in-{topic}-1", unsubscribe=True))
    await d.until(a, Count(topic), 2)
    assert await d.ask(a, Pub(topic, 50, 1)) == [2]
    assert (await d.until_seen(c, f"in-{topic}-2", 51))[-1] == (a.address, 50)
    # a stopped subscriber on c is removed: only a is left
    await d.ask(c, StopInbox(f"in-{topic}-2"))
    await d.until(a, Count(topic), 1)
    assert await d.ask(a, Pub(topic, 1000, 1)) == [1]
    assert len(await d.seen(b, f"in-{topic}-1")) == 50


async def test_groups_send_and_send_to_all(three: list[NodeProcess], client: ActorSystem) -> None:
    d = Driver(client, three)
    a, b, c = three
    tag = client.loop.__class__.__name__.lower()
    topic = f"jobs-{tag}"
    for i, node in enumerate(three):
        await d.ask(node, Sub(topic, f"w-{tag}-{i}", group="workers"))
    await d.ask(c, Wait(topic, 3, SAFETY))
    await d.ask(c, Pub(topic, 0, 60, one_per_group=True))
    totals = 0
    for _ in range(int(SAFETY / 0.05)):
        counts = [len(await d.seen(node, f"w-{tag}-{i}")) for i, node in enumerate(three)]
        totals = sum(counts)
        if totals >= 60:
            break
        await asyncio.sleep(0.05)
    assert totals == 60
    assert sum(1 for n in counts if n) >= 2  # spread over the nodes
    # send with local affinity, and to all
    inbox = f"svc-{tag}"
    path = f"/user/probe/{inbox}"
    for node in (b, c):
        await d.ask(node, Register(inbox))
    await d.until(a, Count(path, path=True), 2)
    assert await d.ask(a, Send(path, 0, to_all=True)) == 2
    assert await d.ask(b, Send(path, 1)) == 1  # b's own
    assert await d.ask(c, Send(path, 2, to_all=True, all_but_self=True)) == 1  # b's
    assert await d.until_seen(b, inbox, 3) == [(a.address, 0), (b.address, 1), (c.address, 2)]
    assert await d.seen(c, inbox) == [(a.address, 0)]


async def test_ten_thousand_topics(three: list[NodeProcess], client: ActorSystem) -> None:
    d = Driver(client, three)
    a, b, c = three
    prefix = f"many-{client.loop.__class__.__name__}-"
    base = await d.ask(a, Topics())
    assert await d.ask(b, SubMany(prefix, 10_000, f"many-{prefix}")) is True
    assert await d.ask(a, Wait(f"{prefix}9999", 1, SAFETY)) == 1
    assert await d.ask(c, Wait(f"{prefix}9999", 1, SAFETY)) == 1
    assert await d.ask(a, Topics()) >= base + 10_000
    assert await d.ask(a, Pub(f"{prefix}1234", 0, 1)) == [1]
    assert await d.until_seen(b, f"many-{prefix}", 1) == [(a.address, 0)]


async def test_sigkill_prunes_the_bucket_and_a_restart_is_a_new_incarnation(
    tmp_path: Path, client: ActorSystem
) -> None:
    nodes = Nodes(tmp_path)
    try:
        a, b, c = start_cluster(nodes, 3)
        d = Driver(client, [a, b, c])
        await d.ask(c, Sub("gone", "x"))
        await d.ask(c, Sub("both", "y"))
        await d.ask(b, Sub("both", "z"))
        assert await d.ask(a, Wait("both", 2, SAFETY)) == 2
        c_address, c_uid = c.address, c.started["uid"]
        c.proc.send_signal(signal.SIGKILL)
        c.proc.wait()
        await d.until(a, Count("gone"), 0)  # c's bucket pruned
        assert await d.ask(a, Pub("gone", 0, 1)) == [0]
        assert await d.ask(a, Pub("both", 0, 1)) == [1]  # b only
        # c again at the same address: a new incarnation, an empty bucket
        port = c_address.rpartition(":")[2]
        c2 = nodes.start("--app", APP, "--seed", a.address, "--port", port, env=ENV)
        c2.wait_event("started")
        c2.wait_event("up")
        assert c2.address == c_address
        assert c2.started["uid"] != c_uid
        await d.ask(c2, Sub("both", "w"))
        assert await d.ask(a, Wait("both", 2, SAFETY)) == 2
        assert await d.ask(a, Pub("gone", 1, 1)) == [0]  # the old bucket never came back
        assert await d.ask(a, Pub("both", 1, 1)) == [2]
        assert await d.until_seen(c2, "w", 1) == [(a.address, 1)]
    finally:
        nodes.close()
