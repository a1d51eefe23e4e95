"""The in-memory network's faults, asserted in exact virtual time on one manual clock."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from shoal import AskTimeout, Settings, Terminated
from shoal.remote import RemoteSettings, Remoting
from shoal.remote._wire import encode_handshake
from shoal.remote.testing import MemoryNetwork
from shoal.runtime.testing import ManualClock, Probe, settle

from ._actors import Echo, Recorder, Watcher
from ._messages import ALL, Seq
from .conftest import eventually


def path(remoting: Remoting, name: str) -> str:
    return f"shoal://{remoting.address}/user/{name}"


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
async def net(clock: ManualClock) -> AsyncIterator[MemoryNetwork]:
    async with MemoryNetwork(clock=clock) as network:
        yield network


async def start(net: MemoryNetwork, clock: ManualClock, **remote: object) -> Remoting:
    return await net.start_node(
        "t",
        RemoteSettings.testing(**remote),
        Settings.testing(messages=ALL, clock=clock),
    )


async def connected(a: Remoting, b: Remoting) -> None:
    """A asks B's echo (both connected, one call each way's traffic): no clock needed."""
    b.system.spawn(Echo, name="echo")
    assert await a.system.resolve(path(b, "echo")).ask("sync") == "sync"


async def test_nodes_have_virtual_addresses_and_talk_like_real_ones(
    net: MemoryNetwork, clock: ManualClock
) -> None:
    a = await start(net, clock)
    b = await start(net, clock)
    assert (a.address, b.address) == ("t@127.0.0.1:2552", "t@127.0.0.1:2553")
    await connected(a, b)
    assert (a.metrics.connects, b.inbound.streams) == (1, 1)


async def test_delay_holds_each_frame_for_exact_virtual_time(
    net: MemoryNetwork, clock: ManualClock
) -> None:
    a = await start(net, clock)
    b = await start(net, clock)
    await connected(a, b)
    probe = Probe(b.system, "probe")
    net.delay(0.5, a, b)
    a.system.resolve(path(b, "probe")).tell("late")
    await settle()  # written at the end of this loop turn, at t=0
    clock.advance(0.499)
    await settle()
    assert probe.pending() == 0
    clock.advance(0.001)
    assert await probe.receive() == "late"

    # A round trip pays both directions: 0.5 there, 0.2 back.
    net.delay(0.2, b, a)
    start_time = clock.now()
    ask = asyncio.ensure_future(a.system.resolve(path(b, "echo")).ask("q"))
    await settle()
    clock.advance(0.5)
    await settle()
    clock.advance(0.199)
    await settle()
    assert not ask.done()
    clock.advance(0.001)
    assert await ask == "q"
    assert clock.now() - start_time == pytest.approx(0.7)


async def test_a_global_delay_applies_where_no_pair_is_set(
    net: MemoryNetwork, clock: ManualClock
) -> None:
    a = await start(net, clock)
    b = await start(net, clock)
    await connected(a, b)
    net.delay(1.0)
    net.delay(0.25, a, b)
    host_a, host_b = a.address.partition("@")[2], b.address.partition("@")[2]
    assert (net.latency(host_a, host_b), net.latency(host_b, host_a)) == (0.25, 1.0)
    probe = Probe(b.system, "probe")
    a.system.resolve(path(b, "probe")).tell("x")
    await settle()
    clock.advance(0.25)
    assert await probe.receive() == "x"
    net.delay(0, a, b)
    net.delay(0)
    a.system.resolve(path(b, "probe")).tell("y")
    assert await probe.receive() == "y"


async def test_lowering_a_delay_never_reorders_frames(
    net: MemoryNetwork, clock: ManualClock
) -> None:
    a = await start(net, clock)
    b = await start(net, clock)
    await connected(a, b)
    probe = Probe(b.system, "probe")
    target = a.system.resolve(path(b, "probe"))
    net.delay(1.0, a, b)
    target.tell("first")
    await settle()
    net.delay(0.1, a, b)
    target.tell("second")
    await settle()
    clock.advance(0.5)
    await settle()
    assert probe.pending() == 0  # "second" waits behind "first"
    clock.advance(0.5)
    assert [await probe.receive(), await probe.receive()] == ["first", "second"]


async def test_drop_discards_one_direction_until_healed(
    net: MemoryNetwork, clock: ManualClock
) -> None:
    a = await start(net, clock)
    b = await start(net, clock)
    await connected(a, b)
    on_a, on_b = Probe(a.system, "probe"), Probe(b.system, "probe")
    net.drop(a, b)
    a.system.resolve(path(b, "probe")).tell("lost")
    b.system.resolve(path(a, "probe")).tell("kept")
    assert await on_a.receive() == "kept"
    ask = asyncio.ensure_future(a.system.resolve(path(b, "echo")).ask("q", timeout=1.0))
    await settle()
    clock.advance(0.999)
    await settle()
    assert not ask.done()
    clock.advance(0.001)
    with pytest.raises(AskTimeout):
        await ask
    assert on_b.pending() == 0
    assert net.dropped_frames == 2
    net.heal()
    a.system.resolve(path(b, "probe")).tell("after")
    assert await on_b.receive() == "after"  # the same stream, still open
    assert a.metrics.connects == 1


async def test_a_partition_stalls_both_ways_and_heal_delivers_in_order(
    net: MemoryNetwork, clock: ManualClock
) -> None:
    a = await start(net, clock)
    b = await start(net, clock)
    await connected(a, b)
    rec_a = a.system.spawn(Recorder, name="recorder")
    rec_b = b.system.spawn(Recorder, name="recorder")
    net.partition({a}, {b})
    for n in range(100):
        a.system.resolve(path(b, "recorder")).tell(Seq("a", n))
        b.system.resolve(path(a, "recorder")).tell(Seq("b", n))
    clock.advance(14.0)  # within the stall timeout
    await settle()
    assert await rec_a.ask("check") == {}
    assert await rec_b.ask("check") == {}
    net.heal()
    await eventually(lambda: b.metrics.envelopes_received >= 101)
    await eventually(lambda: a.metrics.envelopes_received >= 101)
    assert await rec_b.ask("check") == {"a": [100, True]}
    assert await rec_a.ask("check") == {"b": [100, True]}
    assert (a.metrics.connects, b.metrics.connects) == (1, 0)  # the call survived


async def test_a_partition_longer_than_the_stall_timeout_ends_the_call(
    net: MemoryNetwork, clock: ManualClock
) -> None:
    a = await start(
        net,
        clock,
        backoff_min=1.0,
        backoff_max=1.0,
        backoff_jitter=0.0,
        unreachable_drop_after=10.0,  # keep what waits through the partition
    )
    b = await start(net, clock)
    await connected(a, b)
    probe = Probe(b.system, "probe")
    net.partition({a}, {b})
    a.system.resolve(path(b, "probe")).tell("held, then lost")
    clock.advance(14.999)
    await settle()
    assert a.peers[b.address].state == "connected"
    clock.advance(0.001)
    await eventually(lambda: a.peers[b.address].state == "backoff")
    # Reconnecting fails while the partition lasts.
    a.system.resolve(path(b, "probe")).tell("queued")
    clock.advance(1.0)
    await eventually(lambda: a.peers[b.address].state == "backoff" and clock.pending > 0)
    assert a.metrics.connects == 1
    net.heal()
    clock.advance(1.0)
    assert await probe.receive() == "queued"
    assert a.metrics.connects == 2
    assert probe.pending() == 0


async def test_connecting_across_a_partition_fails_at_once(
    net: MemoryNetwork, clock: ManualClock
) -> None:
    a = await start(net, clock)
    b = await start(net, clock)
    net.partition([a.address], [b.address])
    a.system.resolve(path(b, "x")).tell("hello")
    await eventually(lambda: a.peers[b.address].state == "backoff")
    assert (a.metrics.connects, b.inbound.streams) == (0, 0)
    with pytest.raises(ValueError, match="two sets"):
        net.partition({a}, {a})


async def test_a_killed_node_stops_answering_and_node_gone_terminates_its_watches(
    net: MemoryNetwork, clock: ManualClock
) -> None:
    a = await start(net, clock)
    b = await start(net, clock)
    await connected(a, b)
    echo = a.system.resolve(path(b, "echo"))
    terminated: list[Terminated] = []
    a.system.spawn(lambda: Watcher(echo, terminated.append))
    assert await echo.ask("watched") == "watched"
    net.kill(b)
    await eventually(lambda: a.peers[b.address].state == "backoff")
    assert b.inbound.streams == 0
    echo.tell("queued for a dead node")
    clock.advance(0.2)
    await eventually(lambda: a.peers[b.address].state == "backoff")
    assert a.metrics.connects == 1  # refused: it answers no more
    b.system.resolve(path(a, "x")).tell("from the dead")
    await eventually(lambda: b.peers[a.address].state == "backoff")
    assert (b.metrics.connects, a.inbound.streams) == (0, 0)  # nor does it dial
    assert terminated == []  # a lost stream alone is not a death
    a.node_gone(b.address)
    await eventually(lambda: len(terminated) == 1)
    assert terminated == [Terminated(echo, existence_confirmed=False)]


async def test_restart_is_a_new_incarnation_and_the_old_one_is_refused(
    net: MemoryNetwork, clock: ManualClock
) -> None:
    a = await start(net, clock)
    b = await start(net, clock)
    await connected(a, b)
    echo = a.system.resolve(path(b, "echo"))
    terminated: list[Terminated] = []
    a.system.spawn(lambda: Watcher(echo, terminated.append))
    assert await echo.ask("before") == "before"
    old_uid = b.uid

    b2 = await net.restart(b)
    assert b2.address == b.address
    assert b2.uid != old_uid
    b2.system.spawn(Echo, name="echo")
    answer = asyncio.ensure_future(echo.ask("after"))
    await eventually(lambda: a.peers[b.address].state == "backoff")
    clock.advance(0.2)  # the reconnect backoff (testing preset: at most 0.2 s)
    assert await answer == "after"
    assert terminated == [Terminated(echo, existence_confirmed=False)]
    assert a.peers[b.address].uid == b2.uid
    assert a.is_quarantined(b.address, old_uid)

    # A handshake in the old incarnation's name is refused.
    ghost = await net.bind(RemoteSettings.testing(), clock, _refuse_all)
    await ghost.start()
    stream = await ghost.connect(a.address)
    await stream.write(encode_handshake(b.address, old_uid, a.address, "shoal", None))
    assert await stream.read() is None
    code, details = await stream.end_status()
    assert (code, details) == ("PERMISSION_DENIED", f"{b.address} uid {old_uid} is quarantined")
    assert a.metrics.bad_input["quarantined_peer"] == 1
    await ghost.close()


async def _refuse_all(call: object) -> None:
    """An accept handler for a test endpoint that only dials."""


async def test_a_silent_connection_is_closed_after_the_handshake_timeout(
    net: MemoryNetwork, clock: ManualClock
) -> None:
    a = await start(net, clock, handshake_timeout=2.0)
    silent = await net.bind(RemoteSettings.testing(), clock, _refuse_all)
    await silent.start()
    stream = await silent.connect(a.address)
    await settle()
    assert a.inbound.handshaking == 1
    clock.advance(1.999)
    await settle()
    assert not stream.finished
    clock.advance(0.001)
    assert await stream.read() is None
    assert await stream.end_status() == ("DEADLINE_EXCEEDED", "no handshake within 2.0 s")
    assert (a.inbound.handshaking, a.metrics.bad_input) == (0, {"handshake_timeout": 1})
    await silent.close()


async def test_restart_needs_a_node_started_by_the_network(
    net: MemoryNetwork, clock: ManualClock
) -> None:
    with pytest.raises(ValueError, match="not started by start_node"):
        await net.restart("t@127.0.0.1:9")


async def test_a_graceful_shutdown_still_delivers_what_was_written_under_delay(
    net: MemoryNetwork, clock: ManualClock
) -> None:
    a = await start(net, clock)
    b = await start(net, clock)
    await connected(a, b)
    echo = a.system.resolve(path(b, "echo"))
    terminated: list[Terminated] = []
    a.system.spawn(lambda: Watcher(echo, terminated.append))
    assert await echo.ask("watched") == "watched"
    net.delay(0.5, b, a)
    await b.system.shutdown()  # writes Terminated on A's call, then closes its endpoint
    await settle()
    assert terminated == []
    clock.advance(0.5)
    await eventually(lambda: len(terminated) == 1)
    assert terminated == [Terminated(echo, existence_confirmed=True)]


async def test_a_writer_waits_for_the_window_while_the_reader_is_cut_off(
    clock: ManualClock,
) -> None:
    async with MemoryNetwork(clock=clock, window_bytes=64 * 1024) as net:
        a = await start(net, clock)
        b = await start(net, clock)
        await connected(a, b)
        net.partition({a}, {b})
        recorder = b.system.spawn(Recorder, name="recorder")
        target = a.system.resolve(path(b, "recorder"))
        sent = [bytes([n]) * 1024 for n in range(200)]
        for n, payload in enumerate(sent):
            target.tell(payload)
            if n % 10 == 9:
                await settle(2)  # a frame of 10 KiB per few loop turns
        await settle()
        assert a.peers[b.address].queued > 0  # held back by the window, not lost
        net.heal()
        await eventually(lambda: b.metrics.envelopes_received >= 201)
        assert await recorder.ask("get") == sent


async def test_two_hundred_nodes_in_a_ring(net: MemoryNetwork, clock: ManualClock) -> None:
    nodes = [await start(net, clock) for _ in range(200)]
    for node in nodes:
        node.system.spawn(Echo, name="echo")
    answers = await asyncio.gather(
        *(
            node.system.resolve(path(nodes[(i + 1) % len(nodes)], "echo")).ask(i)
            for i, node in enumerate(nodes)
        )
    )
    assert answers == list(range(200))
    assert sum(node.metrics.connects for node in nodes) == 200


async def test_asks_that_end_without_an_answer_do_not_pile_up(
    net: MemoryNetwork, clock: ManualClock
) -> None:
    a = await start(net, clock)
    b = await start(net, clock)
    await connected(a, b)
    echo = a.system.resolve(path(b, "echo"))
    assoc = a.association(b.address)
    net.partition({a}, {b})

    # Cancelled by their askers: the table is swept as it grows, never past its floor.
    largest = 0
    for i in range(5000):
        echo.ask(i, timeout=1.0).cancel()
        largest = max(largest, len(assoc.pending))
    assert 0 < largest <= 1024

    # Timed out: swept when the association is checked for idleness.
    timed_out = [echo.ask(i, timeout=1.0) for i in range(100)]
    clock.advance(1.0)
    await settle()
    assert all(isinstance(f.exception(), AskTimeout) for f in timed_out)
    assoc.is_idle()
    assert len(assoc.pending) == 0

    # An answer that arrives still completes its ask.
    net.heal()
    assert await echo.ask("after") == "after"
