"""Remoting that is safe by default: authentication beyond loopback, what a peer may
address, and who decides that an incarnation replaced another."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import grpc
import grpc.aio
import pytest

from shoal import Actor, ActorSystem
from shoal.remote import RemoteSettings, Remoting, RemotingStartError
from shoal.remote._wire import (
    K_FAILURE,
    K_MESSAGE,
    K_REPLY,
    K_STOP,
    K_TERMINATED,
    K_TERMINATED_UNCONFIRMED,
    K_UNWATCH,
    K_WATCH,
    OutBatch,
    decode_batch,
    decode_failure,
)
from shoal.runtime.testing import Probe

from ._actors import Echo
from .conftest import SAFETY, Nodes, RawPeer, eventually

Connect = Callable[[str], RawPeer]

# -- listening beyond loopback -------------------------------------------------------------


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "10.1.2.3", "node-1.example"])
async def test_listening_beyond_loopback_without_authentication_fails(
    nodes: Nodes, host: str
) -> None:
    with pytest.raises(RemotingStartError, match="cluster_secret=") as info:
        await nodes.start(settings=RemoteSettings.testing(host=host, advertised_host="n1"))
    assert "allow_unauthenticated" in str(info.value)
    assert "tls=TlsSettings" in str(info.value)


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1"])
def test_loopback_hosts_are_recognised(host: str) -> None:
    assert RemoteSettings(host=host).loopback


def test_other_hosts_are_not_loopback() -> None:
    for host in ("0.0.0.0", "::", "10.0.0.1", "example.org"):
        assert not RemoteSettings(host=host, advertised_host="x").loopback


async def test_a_cluster_secret_allows_listening_on_a_wildcard(nodes: Nodes) -> None:
    _, remoting = await nodes.start(
        settings=RemoteSettings.testing(
            host="0.0.0.0", advertised_host="127.0.0.1", cluster_secret=b"s"
        )
    )
    assert remoting.port > 0


async def test_the_explicit_opt_out_listens_and_warns(
    nodes: Nodes, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="shoal.remote")
    _, remoting = await nodes.start(
        settings=RemoteSettings.testing(
            host="0.0.0.0", advertised_host="127.0.0.1", allow_unauthenticated=True
        )
    )
    assert remoting.port > 0
    assert any("allow_unauthenticated=True" in r.getMessage() for r in caplog.records)


async def test_loopback_needs_no_authentication(
    nodes: Nodes, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="shoal.remote")
    await nodes.start()
    assert not caplog.records


# -- what a peer may address -----------------------------------------------------------------


def envelope(kind: int, target: str, sender: str = "", correlation: int = 0) -> bytes:
    out = OutBatch()
    out.add(kind, target, sender, 0, "", b"", correlation, None)
    return out.encode()


@pytest.fixture
async def node(nodes: Nodes) -> tuple[ActorSystem, Remoting]:
    system, remoting = await nodes.start()
    system.spawn(Echo, name="echo")
    return system, remoting


async def peer_of(node: tuple[ActorSystem, Remoting], raw_peer: Connect) -> tuple[RawPeer, str]:
    """A raw peer handshaken with the node, and its address."""
    system, remoting = node
    peer = raw_peer(f"127.0.0.1:{remoting.port}")
    await peer.handshake(remoting.address)
    return peer, f"{system.name}@127.0.0.1:9"


async def echo_answers(system: ActorSystem) -> None:
    assert await system.resolve(f"shoal://{system.address}/user/echo").ask("ok") == "ok"


@pytest.mark.parametrize("path", ["user", "system", "system/daemon"])
async def test_a_peer_cannot_stop_guardians_or_system_actors(
    node: tuple[ActorSystem, Remoting], raw_peer: Connect, path: str
) -> None:
    system, remoting = node
    daemon = system.spawn_system_actor(Echo, name="daemon")
    peer, _ = await peer_of(node, raw_peer)
    await peer.send(envelope(K_STOP, f"shoal://{remoting.address}/{path}", correlation=1))
    await eventually(lambda: sum(remoting.metrics.bad_input.values()) >= 1)
    assert daemon.is_alive
    await echo_answers(system)
    assert remoting.metrics.bad_input == {"forbidden_target": 1}
    answer = decode_batch(await asyncio.wait_for(peer.call.read(), SAFETY), 1 << 20)
    assert answer.routes[0][0] == K_FAILURE
    assert decode_failure(answer.payloads[0])[0] == "PermissionError"


async def test_a_peer_cannot_message_system_actors_unless_exposed(
    node: tuple[ActorSystem, Remoting], raw_peer: Connect
) -> None:
    system, remoting = node
    inbox: asyncio.Queue[object] = asyncio.Queue()

    class Daemon(Actor):
        def receive(self, msg: object) -> None:
            inbox.put_nowait(msg)

    hidden = system.spawn_system_actor(Daemon, name="hidden")
    exposed = system.spawn_system_actor(Daemon, name="exposed")
    remoting.accept_control(exposed)
    peer, _ = await peer_of(node, raw_peer)
    sid, manifest, payload = system.serialization.serialize("hello")
    out = OutBatch()
    for ref in (hidden, system.resolve(f"shoal://{remoting.address}/user"), exposed):
        out.add(K_MESSAGE, str(ref.path), "", sid, manifest, payload, 0, None)
    await peer.send(out.encode())
    assert await asyncio.wait_for(inbox.get(), SAFETY) == "hello"
    assert inbox.empty()
    assert remoting.metrics.bad_input == {"forbidden_target": 2}


async def test_a_peer_can_still_stop_a_user_actor(
    node: tuple[ActorSystem, Remoting], raw_peer: Connect
) -> None:
    system, _ = node
    victim = system.spawn(Echo, name="victim")
    peer, _ = await peer_of(node, raw_peer)
    await peer.send(envelope(K_STOP, str(victim.path), correlation=1))
    answer = decode_batch(await asyncio.wait_for(peer.call.read(), SAFETY), 1 << 20)
    assert answer.routes[0][0] == K_REPLY
    assert not victim.is_alive


async def test_terminated_and_unwatch_without_a_watch_are_dropped(
    node: tuple[ActorSystem, Remoting], raw_peer: Connect
) -> None:
    system, remoting = node
    probe = Probe(system, "probe")
    peer, address = await peer_of(node, raw_peer)
    out = OutBatch()
    out.add(K_TERMINATED, str(probe.ref.path), f"shoal://{address}/user/x", 0, "", b"", 0, None)
    out.add(K_UNWATCH, str(probe.ref.path), f"shoal://{address}/user/x", 0, "", b"", 0, None)
    await peer.send(out.encode())
    await eventually(lambda: sum(remoting.metrics.bad_input.values()) == 2)
    assert remoting.metrics.bad_input == {"unexpected_terminated": 1, "unexpected_unwatch": 1}
    assert probe.pending() == 0
    await echo_answers(system)


async def test_a_watch_by_a_watcher_of_another_node_is_refused(
    node: tuple[ActorSystem, Remoting], raw_peer: Connect
) -> None:
    _, remoting = node
    peer, _ = await peer_of(node, raw_peer)
    echo = f"shoal://{remoting.address}/user/echo"
    await peer.send(envelope(K_WATCH, echo, "shoal://t@10.9.9.9:1/user/w"))
    await eventually(lambda: remoting.metrics.bad_input == {"forbidden_watcher": 1})
    assert sum(p.watched_by for p in remoting.peers.values()) == 0
    assert "t@10.9.9.9:1" not in remoting.peers


async def test_a_watch_of_no_actor_is_answered_at_once_and_keeps_no_state(
    node: tuple[ActorSystem, Remoting], raw_peer: Connect
) -> None:
    _, remoting = node
    peer, address = await peer_of(node, raw_peer)
    watcher = f"shoal://{address}/user/w"
    await peer.send(envelope(K_WATCH, f"shoal://{remoting.address}/user/nobody", watcher))
    answer = decode_batch(await asyncio.wait_for(peer.call.read(), SAFETY), 1 << 20)
    assert answer.routes[0][:2] == (K_TERMINATED_UNCONFIRMED, watcher)
    assert remoting.peers[address].watched_by == 0


# -- who replaces an incarnation ----------------------------------------------------------------


async def test_a_handshake_claiming_a_connected_peers_address_is_held_off(
    nodes: Nodes, raw_peer: Connect
) -> None:
    a, remote_a = await nodes.start()
    b, remote_b = await nodes.start()
    b.spawn(Echo, name="echo")
    a.spawn(Echo, name="echo")
    echo_on_b = a.resolve(f"shoal://{remote_b.address}/user/echo")
    echo_on_a = b.resolve(f"shoal://{remote_a.address}/user/echo")
    assert await echo_on_b.ask("hi") == "hi"
    assert await echo_on_a.ask("hi") == "hi"
    impostor = raw_peer(f"127.0.0.1:{remote_a.port}")
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await impostor.handshake(remote_a.address, from_address=remote_b.address, uid=7)
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    assert remote_a.metrics.incarnations_held == 1
    assert not remote_a.is_quarantined(remote_b.address, remote_b.uid)
    assert remote_a.peers[remote_b.address].uid == remote_b.uid
    assert await echo_on_b.ask("still") == "still"
    assert await echo_on_a.ask("still") == "still"


async def test_a_new_incarnation_is_accepted_once_the_old_ones_streams_are_gone(
    nodes: Nodes, raw_peer: Connect
) -> None:
    a, remote_a = await nodes.start()
    b, remote_b = await nodes.start()
    a.spawn(Echo, name="echo")
    address, old_uid = remote_b.address, remote_b.uid
    assert await b.resolve(f"shoal://{remote_a.address}/user/echo").ask("hi") == "hi"
    await b.shutdown()
    await eventually(lambda: remote_a.peers[address].state != "connected")
    await eventually(lambda: remote_a.inbound.streams == 0)
    newcomer = raw_peer(f"127.0.0.1:{remote_a.port}")
    await newcomer.handshake(remote_a.address, from_address=address, uid=old_uid + 1)
    assert remote_a.is_quarantined(address, old_uid)
    assert remote_a.metrics.incarnations_replaced == 1
