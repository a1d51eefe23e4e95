"""A real network partition between node processes in network namespaces,
and the keepalive pings that notice it.

Each node runs in a namespace of its own (tests/netns.py) and listens on its
lab address, so it needs the cluster secret (remoting refuses a
non-loopback address without one). A partition cuts one node off while every
process keeps running: no connection is reset, the two sides only stop
hearing from each other, which keepalive pings notice.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from shoal.remote import PeerConnected, PeerEvent, RemoteSettings
from shoal.runtime.testing import Probe
from tests.netns import NetnsLab

from ._actors import Echo
from .conftest import SAFETY, NodeError, NodeProcess, Nodes, StartNode

SECRET = "partition-test-secret"
TESTING = RemoteSettings.testing()  # what the node processes run with (_node.py)
DETECT = TESTING.keepalive_interval + TESTING.keepalive_timeout
"""A silent peer's stream is lost within this (RemoteSettings.keepalive_interval)."""
UNREACHABLE_BOUND = DETECT + TESTING.unreachable_drop_after
"""An ask to a partitioned peer fails with UnreachableError within this."""
SLACK = 1.5  # seconds for processes and timers on a loaded 2-core machine
ASK_TIMEOUT = UNREACHABLE_BOUND + 10  # the ask's own timeout must not be what ends it
IDLE_WINDOW = 4.0  # seconds; see test_an_idle_stream_is_pinged_without_being_dropped


async def next_peer_event(
    node: NodeProcess, kind: str, peer: NodeProcess | None = None
) -> dict[str, Any]:
    """The node's next ``kind`` peer event (about ``peer`` if given); a death-watch
    notification on the way fails."""
    while True:
        event = await asyncio.wait_for(node.events.get(), SAFETY)
        if event["event"] == "terminated":
            raise AssertionError(f"death watch fired on {node.name}: {event}")
        if event["event"] == "eof":
            raise AssertionError(f"{node.name} exited:\n{node.tail()}")
        if event["event"] != "peer" or event["kind"] != kind:
            continue
        if peer is None or event["address"] == peer.address:
            return event


async def timed(awaitable: Awaitable[Any]) -> tuple[float, Any]:
    """Seconds until ``awaitable`` ends, and its result (or the NodeError it raised)."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    try:
        result = await awaitable
    except NodeError as exc:
        result = exc
    return loop.time() - start, result


async def ask_once_back(node: NodeProcess, peer: NodeProcess) -> Any:
    """Ask ``peer``'s echo from ``node`` once the stream between them is back.

    Until then (the verdict of the partition stands) an ask fails at once
    with UnreachableError; each such failure waits for the node's next
    ``PeerConnected`` about ``peer`` before trying again.
    """
    while True:
        try:
            return await node.request("ask", to=peer.path("echo"), msg="after")
        except NodeError as exc:
            if exc.error_type != "UnreachableError":
                raise
        await next_peer_event(node, "PeerConnected", peer)


# The nodes run their own event loops (asyncio in ``a``, uvloop in the others,
# so both are covered); the test's loop only feeds their pipes: one is enough.
@pytest.mark.multiprocess
@pytest.mark.asyncio(loop_factories=["asyncio"])
async def test_partition_fails_asks_in_bounded_time_and_heal_restores_messaging(
    netns_lab: Callable[[int], NetnsLab], start_node: StartNode
) -> None:
    lab = netns_lab(3)

    def start(name: str, host: int, loop: str) -> Awaitable[NodeProcess]:
        options = ["--host", lab.hosts[host].ip, "--secret", SECRET, "--loop", loop]
        return start_node(name, *options, prefix=lab.exec_argv(host))

    a, b, c = await asyncio.gather(
        start("a", 0, "asyncio"), start("b", 1, "uvloop"), start("c", 2, "uvloop")
    )
    assert a.address.endswith(f"@{lab.hosts[0].ip}:{a.port}")
    await asyncio.gather(*(node.spawn("echo", "echo") for node in (a, b, c)))
    # a and c watch an actor of each other: a partition must not fire those
    # watches (only the cluster layer declares a node gone).
    await a.spawn("watcher", "watcher", target=c.path("echo"))
    await c.spawn("watcher", "watcher", target=a.path("echo"))
    for x, y in ((a, b), (b, a), (a, c), (c, a)):
        assert await x.request("ask", to=y.path("echo"), msg="before") == "before"
    await asyncio.gather(
        next_peer_event(a, "PeerConnected", c), next_peer_event(c, "PeerConnected", a)
    )

    lab.partition([2])  # c | a b
    ask_a, ask_c, lost_a, lost_c, *within = await asyncio.gather(
        timed(a.request("ask", to=c.path("echo"), msg="during", timeout=ASK_TIMEOUT)),
        timed(c.request("ask", to=a.path("echo"), msg="during", timeout=ASK_TIMEOUT)),
        timed(next_peer_event(a, "PeerDisconnected", c)),
        timed(next_peer_event(c, "PeerDisconnected", a)),
        a.request("ask", to=b.path("echo"), msg="during"),
        b.request("ask", to=a.path("echo"), msg="during"),
    )
    assert within == ["during", "during"]  # a and b go on talking
    for node, (lost, _), (elapsed, error) in ((a, lost_a, ask_a), (c, lost_c, ask_c)):
        # Keepalive notices the silent stream (no watch fires meanwhile) ...
        assert lost <= DETECT + SLACK, f"{node.name} lost its stream after {lost:.2f} s"
        # ... and unreachable_drop_after later the ask fails, not at its own timeout.
        assert isinstance(error, NodeError), f"{node.name}'s ask crossed the partition"
        assert error.error_type == "UnreachableError", error
        assert "unreachable for" in str(error)
        assert TESTING.unreachable_drop_after <= elapsed <= UNREACHABLE_BOUND + SLACK, (
            f"{node.name}: UnreachableError after {elapsed:.2f} s, bound {UNREACHABLE_BOUND} s"
        )

    lab.heal()
    # The watches keep both links reconnecting: messages flow again.
    assert await asyncio.gather(ask_once_back(a, c), ask_once_back(c, a)) == ["after", "after"]

    # The watches survived the partition: a stop on c still reaches a's watcher.
    assert [e for e in _drain(a) + _drain(c) if e["event"] == "terminated"] == []
    await c.request("stop", path=c.path("echo"))
    event = await a.event("terminated")
    assert (event["ref"], event["confirmed"]) == (c.path("echo"), True)


def _drain(node: NodeProcess) -> list[dict[str, Any]]:
    events = []
    while not node.events.empty():
        events.append(node.events.get_nowait())
    return events


# gRPC in the nodes is the same on both loops; one is enough for a test that
# must wait seconds for nothing to happen.
@pytest.mark.slow
@pytest.mark.asyncio(loop_factories=["uvloop"])
async def test_an_idle_stream_is_pinged_without_being_dropped(nodes: Nodes) -> None:
    settings = RemoteSettings.testing(keepalive_interval=0.2, keepalive_timeout=1.0)
    a, remote_a = await nodes.start("n", settings)
    b, remote_b = await nodes.start("n", settings)
    b.spawn(Echo, name="echo")
    on_a, on_b = Probe(a), Probe(b)
    a.event_stream.subscribe(on_a.ref, PeerEvent)
    b.event_stream.subscribe(on_b.ref, PeerEvent)
    echo = a.resolve(f"shoal://{remote_b.address}/user/echo")
    assert await echo.ask("hi") == "hi"
    assert await on_a.receive() == PeerConnected(remote_b.unique_address)
    assert await on_b.receive() == PeerConnected(remote_a.unique_address)
    # Nothing is sent now, and no peer event may come: a node that refused
    # its peer's pings as too frequent would end the stream (GOAWAY
    # "too_many_pings") at the third early one, about 3 s in, as gRPC sends
    # at most about one ping a second. A stream that is kept is an absence
    # of events: only waiting past that shows it.
    results = await asyncio.gather(
        on_a.receive(timeout=IDLE_WINDOW), on_b.receive(timeout=IDLE_WINDOW), return_exceptions=True
    )
    assert all(isinstance(result, TimeoutError) for result in results), results
    assert await echo.ask("still there") == "still there"
    assert (remote_a.metrics.connects, remote_b.metrics.connects) == (1, 0)
