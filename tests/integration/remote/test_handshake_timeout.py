"""A peer's call must handshake in time, and only so many may be waiting to (raw gRPC peers)."""

from __future__ import annotations

from collections.abc import Callable

import grpc
import pytest

from shoal import Settings
from shoal.remote import RemoteSettings
from shoal.runtime.testing import ManualClock, settle

from ._actors import Echo
from ._messages import ALL
from .conftest import Nodes, RawPeer, eventually


async def test_a_call_that_sends_nothing_is_closed_after_the_handshake_timeout(
    nodes: Nodes, raw_peer: Callable[[str], RawPeer]
) -> None:
    clock = ManualClock()
    _, remote_a = await nodes.start(
        settings=nodes.remote_settings(handshake_timeout=2.0),
        runtime=Settings.testing(messages=ALL, clock=clock),
    )
    silent = raw_peer(f"127.0.0.1:{remote_a.port}")
    await silent.call.wait_for_connection()
    await eventually(lambda: remote_a.inbound.handshaking == 1)
    clock.advance(1.999)
    await settle()
    assert remote_a.inbound.handshaking == 1
    assert not silent.call.done()
    clock.advance(0.001)
    assert await silent.status() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert remote_a.inbound.handshaking == 0
    assert remote_a.metrics.bad_input == {"handshake_timeout": 1}
    assert "no handshake within 2.0 s" in await silent.call.details()


async def test_calls_beyond_the_pending_handshake_bound_are_closed_at_once(
    nodes: Nodes, raw_peer: Callable[[str], RawPeer]
) -> None:
    clock = ManualClock()
    a, remote_a = await nodes.start(
        settings=nodes.remote_settings(max_pending_handshakes=2, handshake_timeout=5.0),
        runtime=Settings.testing(messages=ALL, clock=clock),
    )
    a.spawn(Echo, name="echo")
    target = f"127.0.0.1:{remote_a.port}"
    first, second = raw_peer(target), raw_peer(target)
    await first.call.wait_for_connection()
    await second.call.wait_for_connection()
    await eventually(lambda: remote_a.inbound.handshaking == 2)
    third = raw_peer(target)
    assert await third.status() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert remote_a.metrics.bad_input == {"handshake_limit": 1}
    # A peer that handshakes gets in once the silent ones are timed out.
    clock.advance(5.0)
    assert await first.status() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert await second.status() == grpc.StatusCode.DEADLINE_EXCEEDED
    b, _ = await nodes.start()
    assert await b.resolve(f"shoal://{remote_a.address}/user/echo").ask("in") == "in"
    assert remote_a.metrics.bad_input == {"handshake_limit": 1, "handshake_timeout": 2}


async def test_a_handshaken_call_is_not_timed_out(nodes: Nodes) -> None:
    clock = ManualClock()
    a, remote_a = await nodes.start(
        settings=nodes.remote_settings(handshake_timeout=1.0),
        runtime=Settings.testing(messages=ALL, clock=clock),
    )
    a.spawn(Echo, name="echo")
    b, remote_b = await nodes.start()
    echo = b.resolve(f"shoal://{remote_a.address}/user/echo")
    assert await echo.ask(1) == 1
    clock.advance(10.0)
    assert await echo.ask(2) == 2
    assert remote_b.metrics.connects == 1
    assert remote_a.metrics.bad_input == {}


def test_the_pending_handshake_bound_is_validated() -> None:
    with pytest.raises(ValueError, match="max_pending_handshakes"):
        RemoteSettings(max_pending_handshakes=0)
