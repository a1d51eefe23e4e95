"""Peer connection events on the event stream; typed, injectable node identity."""

from __future__ import annotations

import pytest

from shoal.remote import (
    PeerConnected,
    PeerDisconnected,
    PeerEvent,
    PeerQuarantined,
    RemoteSettings,
    Remoting,
)
from shoal.runtime import ActorSystem, Address, UniqueAddress
from shoal.runtime.testing import Probe

from ._actors import Echo
from .conftest import Nodes


def path(remoting: Remoting, name: str) -> str:
    return f"shoal://{remoting.address}/user/{name}"


def events_of(system: ActorSystem) -> Probe:
    probe = Probe(system)
    system.event_stream.subscribe(probe.ref, PeerEvent)
    return probe


async def test_an_injected_uid_is_the_nodes_incarnation(nodes: Nodes) -> None:
    _, remoting = await nodes.start("app", RemoteSettings.testing(uid=77))
    unique = remoting.unique_address
    assert unique == UniqueAddress(Address("app", "127.0.0.1", remoting.port), 77)
    assert str(unique.address) == remoting.address
    assert remoting.uid == 77


def test_an_out_of_range_uid_is_refused() -> None:
    with pytest.raises(ValueError, match="uid must be within"):
        RemoteSettings(uid=0)


async def test_connecting_and_losing_a_peer_are_published(nodes: Nodes) -> None:
    a, remote_a = await nodes.start(settings=RemoteSettings.testing(uid=1))
    b, remote_b = await nodes.start(settings=RemoteSettings.testing(uid=2))
    b.spawn(Echo, name="echo")
    on_a, on_b = events_of(a), events_of(b)
    assert await a.resolve(path(remote_b, "echo")).ask("hi") == "hi"
    assert await on_a.receive() == PeerConnected(remote_b.unique_address)
    # B answered on A's call: B adopted it, which is a connection too.
    assert await on_b.receive() == PeerConnected(remote_a.unique_address)

    await remote_b.aclose()  # B leaves the network; A's stream to it ends
    lost = await on_a.receive()
    assert isinstance(lost, PeerDisconnected)
    assert lost.address == remote_b.unique_address
    assert lost.reason


async def test_quarantining_a_peer_is_published(nodes: Nodes) -> None:
    a, remote_a = await nodes.start(settings=RemoteSettings.testing(uid=1))
    b, remote_b = await nodes.start(settings=RemoteSettings.testing(uid=2))
    b.spawn(Echo, name="echo")
    assert await a.resolve(path(remote_b, "echo")).ask("hi") == "hi"
    on_a = events_of(a)
    remote_a.quarantine(remote_b.address, 2)
    remote_a.quarantine(remote_b.address, 2)  # idempotent: one event
    event = await on_a.receive()
    while not isinstance(event, PeerQuarantined):  # the stream's loss may come first
        assert isinstance(event, PeerDisconnected)
        event = await on_a.receive()
    assert event == PeerQuarantined(remote_b.unique_address, "quarantined")


async def test_a_restarted_peer_quarantines_its_old_incarnation(nodes: Nodes) -> None:
    a, _ = await nodes.start(settings=RemoteSettings.testing(uid=1))
    b, remote_b = await nodes.start(settings=RemoteSettings.testing(uid=2))
    b.spawn(Echo, name="echo")
    echo = a.resolve(path(remote_b, "echo"))
    assert await echo.ask("before") == "before"
    on_a = events_of(a)
    await remote_b.aclose()
    b2, remote_b2 = await nodes.start(settings=RemoteSettings.testing(port=remote_b.port, uid=3))
    b2.spawn(Echo, name="echo")
    assert await echo.ask("after", timeout=30) == "after"
    seen = []
    while (event := await on_a.receive()) != PeerConnected(remote_b2.unique_address):
        seen.append(event)
    assert PeerQuarantined(remote_b.unique_address, "restarted") in seen
