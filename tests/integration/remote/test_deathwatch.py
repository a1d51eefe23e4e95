"""Remote death watch, node loss, quarantine and restarts, with nodes in one process."""

from __future__ import annotations

import asyncio

import pytest

from shoal import Actor, ActorRef, Terminated
from shoal.remote import NodeGoneError, RemoteSettings, Remoting, UnreachableError
from shoal.runtime import DeadLetter
from shoal.runtime.testing import Probe, settle

from ._actors import Echo
from .conftest import Nodes, eventually

TRANSPORTS = ("grpc", "memory")


def path(remoting: Remoting, name: str) -> str:
    return f"shoal://{remoting.address}/user/{name}"


def watcher(target: ActorRef, probe: Probe) -> type[Actor]:
    class Watcher(Actor):
        def __init__(self) -> None:
            self.ctx.watch(target)
            self.ctx.watch(target)  # twice: still one Terminated

        def receive(self, msg: object) -> None:
            if msg == "unwatch":
                self.ctx.unwatch(target)
                probe.ref.tell("unwatched")
            else:
                probe.ref.tell(msg)

    return Watcher


async def round_trip(a: Remoting, b: Remoting) -> None:
    """Ask B's ``rt-echo`` from A: whatever either node sent the other before has arrived."""
    assert await a.system.resolve(path(b, "rt-echo")).ask("sync") == "sync"


async def test_terminated_when_a_watched_remote_actor_stops(nodes: Nodes) -> None:
    a, _ = await nodes.start()
    b, remote_b = await nodes.start()
    target = b.spawn(Echo, name="target")
    remote_target = a.resolve(path(remote_b, "target"))
    probe = Probe(a)
    a.spawn(watcher(remote_target, probe))
    assert await remote_target.ask("ready") == "ready"  # the watch went out before the ask
    await target.stop()
    message = await probe.receive()
    assert message == Terminated(remote_target, existence_confirmed=True)
    await settle()
    assert probe.pending() == 0


async def test_watching_a_missing_remote_actor_gives_unconfirmed_terminated(
    nodes: Nodes,
) -> None:
    a, _ = await nodes.start()
    _, remote_b = await nodes.start()
    missing = a.resolve(path(remote_b, "missing"))
    probe = Probe(a)
    a.spawn(watcher(missing, probe))
    assert await probe.receive() == Terminated(missing, existence_confirmed=False)


async def test_unwatch_means_no_terminated(nodes: Nodes) -> None:
    a, remote_a = await nodes.start()
    b, remote_b = await nodes.start()
    target = b.spawn(Echo, name="target")
    b.spawn(Echo, name="rt-echo")
    remote_target = a.resolve(path(remote_b, "target"))
    probe = Probe(a)
    watching = a.spawn(watcher(remote_target, probe))
    watching.tell("unwatch")
    assert await probe.receive() == "unwatched"
    await round_trip(remote_a, remote_b)  # the unwatch reached B
    assert remote_b.peers[remote_a.address].watched_by == 0
    await target.stop()
    await round_trip(remote_a, remote_b)  # a Terminated would have arrived by now
    await settle()
    assert probe.pending() == 0


async def test_a_stopped_local_watcher_unwatches_on_the_remote_node(nodes: Nodes) -> None:
    a, remote_a = await nodes.start()
    b, remote_b = await nodes.start()
    b.spawn(Echo, name="target")
    b.spawn(Echo, name="rt-echo")
    remote_target = a.resolve(path(remote_b, "target"))
    probe = Probe(a)
    watching = a.spawn(watcher(remote_target, probe))
    await round_trip(remote_a, remote_b)
    assert remote_b.peers[remote_a.address].watched_by == 1
    assert remote_a.peers[remote_b.address].watching == 1
    await watching.stop()
    await round_trip(remote_a, remote_b)
    assert remote_b.peers[remote_a.address].watched_by == 0
    assert remote_a.peers[remote_b.address].watching == 0


async def test_node_gone_terminates_every_watch_and_fails_waiting_asks(nodes: Nodes) -> None:
    a, remote_a = await nodes.start()
    b, remote_b = await nodes.start()
    b.spawn(Echo, name="x")
    b.spawn(Echo, name="y")

    class Silent(Actor):
        def receive(self, msg: object) -> None:
            self.ctx.reply_later()

    b.spawn(Silent, name="silent")
    probe = Probe(a)
    refs = [a.resolve(path(remote_b, name)) for name in ("x", "y")]
    for ref in refs:
        a.spawn(watcher(ref, probe))
    waiting = asyncio.ensure_future(a.resolve(path(remote_b, "silent")).ask("q"))
    await refs[0].ask("sync")
    remote_a.node_gone(remote_b.address)
    got = {await probe.receive(), await probe.receive()}
    assert got == {Terminated(ref, existence_confirmed=False) for ref in refs}
    with pytest.raises(NodeGoneError):
        await waiting
    assert remote_a.peers[remote_b.address].watching == 0


async def test_node_gone_on_the_watched_side_forgets_the_remote_watchers(nodes: Nodes) -> None:
    a, remote_a = await nodes.start()
    b, remote_b = await nodes.start()
    b.spawn(Echo, name="x")
    b.spawn(Echo, name="rt-echo")
    probe = Probe(a)
    a.spawn(watcher(a.resolve(path(remote_b, "x")), probe))
    await round_trip(remote_a, remote_b)
    assert remote_b.peers[remote_a.address].watched_by == 1
    remote_b.node_gone(remote_a.address)
    assert remote_b.peers[remote_a.address].watched_by == 0


async def test_a_quarantined_incarnation_is_refused(nodes: Nodes) -> None:
    a, remote_a = await nodes.start()
    b, remote_b = await nodes.start()
    a.spawn(Echo, name="echo")
    b.spawn(Echo, name="echo")
    probe_b = Probe(b)
    b.event_stream.subscribe(probe_b.ref, DeadLetter)
    # B talks to A, and A to B: both directions are connected.
    assert await b.resolve(path(remote_a, "echo")).ask(1) == 1
    assert await a.resolve(path(remote_b, "echo")).ask(2) == 2
    watched = a.resolve(path(remote_b, "echo"))
    probe_a = Probe(a)
    a.spawn(watcher(watched, probe_a))
    await watched.ask("sync")

    remote_a.quarantine(remote_b.address, remote_b.uid)
    assert await probe_a.receive() == Terminated(watched, existence_confirmed=False)
    # A no longer accepts that incarnation's streams: it ends B's open stream at
    # B's next frame (that frame is lost, as at most once allows)...
    echo_on_a = b.resolve(path(remote_a, "echo"))
    echo_on_a.tell("lost")
    await eventually(lambda: remote_b.peers[remote_a.address].state != "connected")
    # ...and refuses B's next handshakes: what B queues for A goes to dead letters.
    echo_on_a.tell("refused")
    while True:
        letter = await probe_b.receive()
        assert isinstance(letter, DeadLetter)
        assert letter.reason in {"remote-connection-lost", "remote-refused"}
        if letter.message == "refused":
            break
    assert letter.reason == "remote-refused"
    with pytest.raises(UnreachableError, match="remote-refused"):
        await echo_on_a.ask("refused too")
    assert remote_a.metrics.bad_input["quarantined_peer"] >= 1
    with pytest.raises(NodeGoneError, match="quarantined"):
        await a.resolve(path(remote_b, "echo")).ask("no")


async def test_a_graceful_shutdown_flushes_terminated_to_remote_watchers(nodes: Nodes) -> None:
    a, _ = await nodes.start()
    b, remote_b = await nodes.start()
    b.spawn(Echo, name="echo")
    echo = a.resolve(path(remote_b, "echo"))
    probe = Probe(a)
    a.spawn(watcher(echo, probe))
    assert await echo.ask("sync") == "sync"
    await b.shutdown()  # actors stop first, remoting flushes, then closes
    assert await probe.receive() == Terminated(echo, existence_confirmed=True)


async def test_terminated_travels_back_on_the_watchers_own_call(nodes: Nodes) -> None:
    a, remote_a = await nodes.start()
    b, remote_b = await nodes.start()
    b.spawn(Echo, name="echo")
    echo = a.resolve(path(remote_b, "echo"))
    probe = Probe(a)
    a.spawn(watcher(echo, probe))
    await eventually(lambda: remote_b.peers.get(remote_a.address, None) is not None)
    await eventually(lambda: remote_b.peers[remote_a.address].watched_by == 1)
    await b.shutdown()  # B writes Terminated on A's call while closing
    assert await probe.receive() == Terminated(echo, existence_confirmed=True)
    assert remote_b.metrics.connects == 0  # B never opened a call of its own


async def test_a_restarted_peer_is_a_new_incarnation(nodes: Nodes) -> None:
    a, remote_a = await nodes.start()
    b, remote_b = await nodes.start()
    b.spawn(Echo, name="echo")
    old_uid, port = remote_b.uid, remote_b.port
    echo = a.resolve(path(remote_b, "echo"))
    probe = Probe(a)
    a.spawn(watcher(echo, probe))
    assert await echo.ask("before") == "before"

    await remote_b.aclose()  # B vanishes from the network, its actors never say goodbye
    # The same address again, a new incarnation: A notices at its reconnect.
    b2, remote_b2 = await nodes.start(settings=RemoteSettings.testing(port=port))
    assert remote_b2.address == remote_b.address
    assert remote_b2.uid != old_uid
    assert await probe.receive(timeout=30) == Terminated(echo, existence_confirmed=False)
    b2.spawn(Echo, name="echo")
    assert await echo.ask("after") == "after"
    assert remote_a.peers[remote_b.address].uid == remote_b2.uid
    assert remote_a.metrics.incarnations_replaced == 1
    assert remote_a.is_quarantined(remote_b.address, old_uid)
