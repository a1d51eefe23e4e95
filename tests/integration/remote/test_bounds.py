"""Bounded resources against a misbehaving peer, and asks that fail fast when a peer
stays unreachable. Timing is asserted on a manual clock."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import pytest

from shoal import ActorSystem, Settings
from shoal.remote import OutboxFullError, RemoteSettings, Remoting, UnreachableError
from shoal.remote._wire import K_MESSAGE, OutBatch
from shoal.runtime import DeadLetter
from shoal.runtime.testing import ManualClock, Probe, quiesce

from ._actors import Recorder, Replier
from ._messages import ALL, ReplyTo
from .conftest import SAFETY, Nodes, RawPeer, eventually

Connect = Callable[[str], RawPeer]
NOWHERE = "127.0.0.1:9"  # nothing listens there: connecting is refused


async def manual_node(
    nodes: Nodes, **settings: object
) -> tuple[ActorSystem, Remoting, ManualClock]:
    clock = ManualClock()
    system, remoting = await nodes.start(
        settings=RemoteSettings.testing(unreachable_drop_after=10.0, **settings),
        runtime=Settings.testing(messages=ALL, clock=clock),
    )
    return system, remoting, clock


# -- asks to a peer that stays unreachable -----------------------------------------------------


async def test_asks_fail_with_unreachable_once_reconnecting_failed_for_the_set_time(
    nodes: Nodes,
) -> None:
    system, remoting, clock = await manual_node(nodes)
    address = f"{system.name}@{NOWHERE}"
    ref = system.resolve(f"shoal://{address}/user/x")
    ask = asyncio.ensure_future(ref.ask("anyone?", timeout=3600.0))
    await eventually(lambda: address in remoting.peers)
    await eventually(lambda: remoting.peers[address].state == "backoff")
    clock.advance(9.9)
    await quiesce()
    assert not ask.done()
    clock.advance(0.1)
    with pytest.raises(UnreachableError, match=f"{address} unreachable for 10 s") as info:
        await asyncio.wait_for(ask, SAFETY)
    assert "last error" in str(info.value)
    assert "refused" in str(info.value).lower() or "UNAVAILABLE" in str(info.value)
    assert remoting.metrics.unreachable_give_ups == 1
    # From then on, asks fail at once and tells go to dead letters.
    with pytest.raises(UnreachableError, match="unreachable for 10 s"):
        await ref.ask("again?", timeout=3600.0)
    ref.tell("lost")
    assert remoting.metrics.dead_letters["unreachable"] == 2


# -- bounded queues --------------------------------------------------------------------------


async def test_the_user_outbox_is_bounded_in_bytes(nodes: Nodes) -> None:
    system, remoting, _ = await manual_node(nodes, outbox_max_bytes=1000)
    address = f"{system.name}@{NOWHERE}"
    ref = system.resolve(f"shoal://{address}/user/x")
    ref.tell(bytes(400))
    ref.tell(bytes(400))
    ref.tell(bytes(400))  # over the byte bound
    assert remoting.peers[address].queued == 2
    assert remoting.metrics.dead_letters == {"outbox-full": 1}
    with pytest.raises(OutboxFullError, match="bytes queued"):
        await ref.ask(bytes(400))
    assert 800 <= remoting.association(address).queued_bytes <= 1000


# -- state created by peers ----------------------------------------------------------------------


async def test_refs_named_by_a_peer_create_no_state_and_are_never_dialed(
    nodes: Nodes, raw_peer: Connect
) -> None:
    system, remoting, clock = await manual_node(nodes)
    system.spawn(Replier, name="replier")
    system.spawn(Recorder, name="recorder")
    other, _ = await nodes.start()
    third = other.resolve("shoal://t@10.9.9.8:1/user/y")  # serialised by another node
    reply_to = other.serialization.serialize(ReplyTo(third, "hi"))
    peer = raw_peer(f"127.0.0.1:{remoting.port}")
    await peer.handshake(remoting.address)
    out = OutBatch()
    recorder = f"shoal://{remoting.address}/user/recorder"
    named = "shoal://t@10.9.9.9:1/user/x"  # a sender only named by the peer
    out.add(K_MESSAGE, recorder, named, *system.serialization.serialize("x"), 0, None)
    replier = f"shoal://{remoting.address}/user/replier"
    out.add(K_MESSAGE, replier, "", *reply_to, 0, None)
    await peer.send(out.encode())
    # The replier answers the third node: state for it is made, but never a call.
    await eventually(lambda: "t@10.9.9.8:1" in remoting.peers)
    assert set(remoting.peers) == {"t@127.0.0.1:9", "t@10.9.9.8:1"}  # not 10.9.9.9
    assert remoting.peers["t@10.9.9.8:1"].state == "backoff"
    assert remoting.metrics.connects == 0
    clock.advance(10.0)
    await eventually(lambda: remoting.metrics.dead_letters.get("remote-unreachable") == 1)
    assert remoting.metrics.connects == 0


async def test_idle_peers_are_forgotten_beyond_the_bound(nodes: Nodes) -> None:
    system, remoting, _ = await manual_node(nodes, max_idle_associations=2)
    refs = [system.resolve(f"shoal://{system.name}@10.0.0.{n}:1/user/x") for n in (1, 2, 3)]
    assert not remoting.peers  # refs alone keep no state
    first = [ref.bound() for ref in refs[:2]]  # type: ignore[attr-defined]
    refs[2].bound()  # type: ignore[attr-defined]
    assert remoting.metrics.associations_evicted == 1
    assert first[0].retired
    assert set(remoting.peers) == {f"{system.name}@10.0.0.{n}:1" for n in (2, 3)}
    again = refs[0].bound()  # type: ignore[attr-defined]
    assert again is not first[0]
    assert not again.retired


async def test_busy_peers_are_not_forgotten(nodes: Nodes) -> None:
    system, remoting, _ = await manual_node(nodes, max_idle_associations=1)
    busy = system.resolve(f"shoal://{system.name}@{NOWHERE}/user/x")
    busy.tell("queued")  # the link tries to connect: not idle
    system.resolve(f"shoal://{system.name}@10.0.0.1:1/user/x").bound()  # type: ignore[attr-defined]
    system.resolve(f"shoal://{system.name}@10.0.0.2:1/user/x").bound()  # type: ignore[attr-defined]
    assert f"{system.name}@{NOWHERE}" in remoting.peers
    assert remoting.metrics.associations_evicted == 1


async def test_the_quarantine_list_is_bounded_and_aged(nodes: Nodes) -> None:
    _, remoting, clock = await manual_node(nodes, quarantine_max_entries=3, quarantine_max_age=60)
    for uid in range(1, 6):
        remoting.quarantine("t@10.0.0.1:1", uid)
        clock.advance(1.0)
    assert [uid for _, uid in remoting.quarantined] == [3, 4, 5]
    assert remoting.metrics.quarantine_evicted == 2
    assert remoting.is_quarantined("t@10.0.0.1:1", 5)
    clock.advance(60.0)
    assert not remoting.is_quarantined("t@10.0.0.1:1", 5)
    remoting.quarantine("t@10.0.0.1:1", 6)  # sweeps what aged out
    assert list(remoting.quarantined) == [("t@10.0.0.1:1", 6)]


# -- error messages that say what happened ---------------------------------------------------


async def test_a_remote_path_resolved_before_remoting_started_says_so() -> None:
    async with ActorSystem("t", Settings.testing()) as system:
        probe = Probe(system, "probe")
        system.event_stream.subscribe(probe.ref, DeadLetter)
        system.resolve("shoal://t@127.0.0.1:2552/user/x").tell("hello")
        letter = await probe.receive()
        assert isinstance(letter, DeadLetter)
        assert letter.reason.startswith("no-remoting: a remote path resolved before remoting")


async def test_a_path_of_another_system_name_says_so(nodes: Nodes) -> None:
    system, _ = await nodes.start("app")
    probe = Probe(system, "probe")
    system.event_stream.subscribe(probe.ref, DeadLetter)
    system.resolve("shoal://other@127.0.0.1:2552/user/x").tell("hello")
    letter = await probe.receive()
    assert isinstance(letter, DeadLetter)
    assert letter.reason == "other-system: this system is app"


async def test_an_ask_to_a_peer_that_refuses_this_node_says_why(nodes: Nodes) -> None:
    a, _ = await nodes.start()
    _, remote_b = await nodes.start(settings=RemoteSettings.testing(cluster_secret=b"s"))
    ref = a.resolve(f"shoal://{remote_b.address}/user/x")
    with pytest.raises(UnreachableError, match="refused this node: UNAUTHENTICATED"):
        await ref.ask("hello", timeout=SAFETY)


async def test_lines_a_peer_can_trigger_are_rate_limited(
    nodes: Nodes, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="shoal.remote")
    system, remoting, _ = await manual_node(
        nodes, bad_input_log_limit=2, bad_input_log_interval=3600.0
    )
    for port in range(1, 6):  # five unreachable peers, each failing its first attempt
        system.resolve(f"shoal://{system.name}@127.0.0.1:{port}/user/x").tell("hello")
    await eventually(lambda: all(p.state == "backoff" for p in remoting.peers.values()))
    assert len(remoting.peers) == 5
    lines = [r for r in caplog.records if "cannot reach" in r.getMessage()]
    assert len(lines) == 2
