"""The control lane: death watch and the system's own messages never wait behind,
nor are dropped with, user traffic; a crash of a link's task restarts the link."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from shoal import Actor, ActorSystem
from shoal.remote import RemoteSettings, Remoting
from shoal.remote._inbound import Inbound
from shoal.remote._wire import (
    K_MESSAGE,
    K_TERMINATED,
    K_WATCH,
    OutBatch,
    decode_batch,
)
from shoal.runtime.testing import Probe

from ._actors import Echo
from .conftest import SAFETY, Nodes, RawPeer, eventually

Connect = Callable[[str], RawPeer]
BIG = 512 * 1024  # one frame each; far beyond the call's flow-control window together


class Idle(Actor):
    def receive(self, msg: object) -> None:
        pass


def control(kind: int, target: str, sender: str) -> bytes:
    out = OutBatch()
    out.add(kind, target, sender, 0, "", b"", 0, None)
    return out.encode()


async def frames(peer: RawPeer, until: Callable[[list[tuple[int, str, str]]], bool]) -> list:
    """Read envelopes ``(kind, target, sender)`` the node writes on the peer's call."""
    seen: list[tuple[int, str, str]] = []
    while not until(seen):
        data = await asyncio.wait_for(peer.call.read(), SAFETY)
        assert isinstance(data, bytes)
        batch = decode_batch(data, 64 * 1024 * 1024)
        seen += [batch.routes[i][:3] for i in batch.route]
    return seen


async def stalled_peer(
    nodes: Nodes, raw_peer: Connect
) -> tuple[ActorSystem, Remoting, RawPeer, str]:
    """A node whose user outbox to a raw peer that stopped reading is full."""
    system, remoting = await nodes.start(settings=RemoteSettings.testing(outbox_capacity=12))
    peer = raw_peer(f"127.0.0.1:{remoting.port}")
    await peer.handshake(remoting.address)  # the node writes to it on this call
    address = f"{system.name}@127.0.0.1:9"
    sink = system.resolve(f"shoal://{address}/user/sink")
    for _ in range(40):
        sink.tell(bytes(BIG))
    assert remoting.metrics.dead_letters["outbox-full"] > 0  # the user lane is full
    await eventually(lambda: remoting.metrics.frames_sent > 0)  # and the writer is stuck
    return system, remoting, peer, address


async def test_watch_and_terminated_pass_a_full_user_outbox(
    nodes: Nodes, raw_peer: Connect
) -> None:
    system, remoting, peer, address = await stalled_peer(nodes, raw_peer)
    # The peer watches a local actor; a local actor watches one of the peer's.
    watched = system.spawn(Idle, name="watched")
    await peer.send(control(K_WATCH, str(watched.path), f"shoal://{address}/user/w"))
    await eventually(lambda: remoting.peers[address].watched_by == 1)
    watcher = system.spawn(Idle, name="watcher")
    system.resolve(f"shoal://{address}/user/r").add_watcher(watcher)
    await watched.stop()
    sent = remoting.metrics.envelopes_sent
    seen = await frames(peer, lambda seen: sum(k != K_MESSAGE for k, _, _ in seen) == 2)
    assert (K_WATCH, f"shoal://{address}/user/r", str(watcher.path)) in seen
    assert (K_TERMINATED, f"shoal://{address}/user/w", str(watched.path)) in seen
    # Both were written before the user envelopes queued ahead of them: on the
    # wire, fewer user envelopes precede them than the full outbox held (the
    # writer's metrics would also count what it wrote after them meanwhile).
    last_control = max(i for i, (kind, _, _) in enumerate(seen) if kind != K_MESSAGE)
    assert sum(kind == K_MESSAGE for kind, _, _ in seen[:last_control]) < 12
    assert remoting.metrics.envelopes_sent > sent
    assert "control-outbox-full" not in remoting.metrics.dead_letters


async def test_terminated_follows_the_last_messages_of_the_terminated_actor(
    nodes: Nodes, raw_peer: Connect
) -> None:
    system, remoting, peer, address = await stalled_peer(nodes, raw_peer)
    remoting.metrics.dead_letters.clear()
    sink = system.resolve(f"shoal://{address}/user/sink")
    # Room for a few more: the writer took some batches since.
    await eventually(lambda: remoting.peers[address].queued < 12)
    actor = system.spawn(Idle, name="last-words")
    await peer.send(control(K_WATCH, str(actor.path), f"shoal://{address}/user/w"))
    await eventually(lambda: remoting.peers[address].watched_by == 1)
    sink.tell("last words", actor)  # queued behind the stuck user batches
    assert not remoting.metrics.dead_letters
    await actor.stop()
    seen = await frames(peer, lambda seen: any(k == K_TERMINATED for k, _, _ in seen))
    words = seen.index((K_MESSAGE, str(sink.path), str(actor.path)))
    assert words < seen.index((K_TERMINATED, f"shoal://{address}/user/w", str(actor.path)))


async def test_send_control_reaches_an_exposed_system_actor_past_a_full_outbox(
    nodes: Nodes,
) -> None:
    a, remote_a = await nodes.start(settings=RemoteSettings.testing(outbox_capacity=1))
    b, remote_b = await nodes.start()
    inbox: asyncio.Queue[object] = asyncio.Queue()

    class Daemon(Actor):
        def receive(self, msg: object) -> None:
            inbox.put_nowait(msg)

    daemon = b.spawn_system_actor(Daemon, name="daemon")
    remote_b.accept_control(daemon)
    target = a.resolve(str(daemon.path))
    echo = a.resolve(f"shoal://{remote_b.address}/user/echo")
    echo.tell("fills the user outbox")
    remote_a.send_control(target, "heartbeat")
    assert await asyncio.wait_for(inbox.get(), SAFETY) == "heartbeat"
    with pytest.raises(ValueError, match="only system actors"):
        remote_b.accept_control(b.spawn(Echo, name="echo"))


async def test_a_crash_of_the_writer_restarts_the_link(
    nodes: Nodes, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, remote_a = await nodes.start()
    b, _ = await nodes.start()
    probe = Probe(b, "probe")
    target = a.resolve(str(probe.ref.path))
    target.tell("first")
    assert await probe.receive() == "first"
    encode = OutBatch.encode
    calls = 0

    def fails_once(self: OutBatch) -> bytes:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("injected encoder failure")
        return encode(self)

    monkeypatch.setattr(OutBatch, "encode", fails_once)
    target.tell("lost with the crash")
    await eventually(lambda: remote_a.metrics.link_crashes == 1)
    target.tell("after the restart")
    assert await probe.receive(SAFETY) == "after the restart"
    assert remote_a.metrics.dead_letters.get("remote-link-failed") == 1


async def test_a_crash_while_delivering_restarts_the_stream(
    nodes: Nodes, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, remote_a = await nodes.start()
    b, remote_b = await nodes.start()
    b.spawn(Echo, name="echo")
    echo = a.resolve(f"shoal://{remote_b.address}/user/echo")
    assert await echo.ask("warm up") == "warm up"
    deliver = Inbound.deliver
    calls = 0

    def fails_once(self: Inbound, *args: object) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("injected delivery failure")
        deliver(self, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(Inbound, "deliver", fails_once)
    echo.tell("lost with the crash")
    await eventually(lambda: remote_b.metrics.link_crashes == 1)
    await eventually(lambda: remote_a.peers[remote_b.address].state != "connected")
    assert await echo.ask("after the restart", timeout=SAFETY) == "after the restart"
    assert remote_b.metrics.bad_input.get("internal_error") == 1
