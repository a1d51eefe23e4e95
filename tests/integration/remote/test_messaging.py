"""Several nodes in one process (gRPC on loopback, the memory network): tell, ask, order."""

from __future__ import annotations

import asyncio

import pytest
from prometheus_client import generate_latest

from shoal import Actor, ActorSystem, AskTimeout, Settings
from shoal.remote import (
    OutboxFullError,
    RemoteActorRef,
    RemoteAskError,
    RemoteSettings,
    Remoting,
    RemotingStartError,
)
from shoal.runtime import ActorStoppedError, DeadLetter
from shoal.runtime.testing import ManualClock, Probe, quiesce

from ._actors import Boom, Echo, Forwarder, Recorder, Relay, Replier, Sequencer
from ._messages import ALL, Forward, ReplyTo, Seq
from .conftest import Nodes, eventually

TRANSPORTS = ("grpc", "memory")


def path(remoting: Remoting, name: str) -> str:
    return f"shoal://{remoting.address}/user/{name}"


async def test_tell_and_ask_reach_an_actor_of_another_node(nodes: Nodes) -> None:
    a, _ = await nodes.start()
    b, remote_b = await nodes.start()
    probe = Probe(b, "probe")
    b.spawn(Echo, name="echo")
    ref = a.resolve(path(remote_b, "probe"))
    assert isinstance(ref, RemoteActorRef)
    ref.tell("hello")
    assert await probe.receive() == "hello"
    assert await a.resolve(path(remote_b, "echo")).ask({"k": [1, 2]}) == {"k": [1, 2]}
    assert await a.resolve(path(remote_b, "echo")).ask(Seq("s", 7)) == Seq("s", 7)


async def test_system_address_and_local_paths_carry_host_and_port(nodes: Nodes) -> None:
    a, remote_a = await nodes.start("app")
    assert a.address == remote_a.address == f"app@127.0.0.1:{remote_a.port}"
    ref = a.spawn(Echo, name="echo")
    assert str(ref.path) == f"shoal://app@127.0.0.1:{remote_a.port}/user/echo"
    assert a.resolve(str(ref.path)) is ref  # our own address resolves locally


async def test_refs_compare_equal_by_path(nodes: Nodes) -> None:
    a, _ = await nodes.start()
    _, remote_b = await nodes.start()
    first = a.resolve(path(remote_b, "x"))
    second = a.resolve(path(remote_b, "x"))
    assert first == second
    assert hash(first) == hash(second)
    assert first != a.resolve(path(remote_b, "y"))


async def test_refs_inside_messages_resolve_on_arrival_so_replies_work(nodes: Nodes) -> None:
    a, _ = await nodes.start()
    b, remote_b = await nodes.start()
    probe = Probe(a, "probe")
    b.spawn(Replier, name="replier")
    a.resolve(path(remote_b, "replier")).tell(ReplyTo(probe.ref, "hi"))
    assert await probe.receive() == "HI"
    assert probe.sender == a.resolve(path(remote_b, "replier"))
    assert isinstance(probe.sender, RemoteActorRef)


async def test_ctx_sender_of_a_remote_tell_is_a_remote_ref(nodes: Nodes) -> None:
    a, remote_a = await nodes.start()
    b, remote_b = await nodes.start()
    probe = Probe(b, "probe")
    sender = a.spawn(Echo, name="sender")
    a.resolve(path(remote_b, "probe")).tell("x", sender)
    assert await probe.receive() == "x"
    assert isinstance(probe.sender, RemoteActorRef)
    assert str(probe.sender.path) == path(remote_a, "sender")


async def test_forwarding_an_ask_across_three_nodes_keeps_the_asker(nodes: Nodes) -> None:
    a, _ = await nodes.start()
    b, remote_b = await nodes.start()
    c, remote_c = await nodes.start()
    b.spawn(Forwarder, name="forwarder")
    c.spawn(Echo, name="echo")
    forwarder = a.resolve(path(remote_b, "forwarder"))
    echo_on_c = b.resolve(path(remote_c, "echo"))
    # The message is built on A, so the ref inside it is A's view of C's echo.
    answer = await forwarder.ask(Forward(a.resolve(str(echo_on_c.path)), "via b"))
    assert answer == "via b"


async def test_an_ask_chain_through_async_handlers(nodes: Nodes) -> None:
    a, _ = await nodes.start()
    b, remote_b = await nodes.start()
    c, remote_c = await nodes.start()
    c.spawn(Echo, name="echo")
    echo = b.resolve(path(remote_c, "echo"))
    b.spawn(lambda: Relay(echo, "+b"), name="relay")
    assert await a.resolve(path(remote_b, "relay")).ask("x") == "x+b"


async def test_a_failing_remote_handler_fails_the_ask_with_its_type_and_message(
    nodes: Nodes,
) -> None:
    a, _ = await nodes.start()
    b, remote_b = await nodes.start()
    b.spawn(Boom, name="boom")
    with pytest.raises(RemoteAskError, match="boom: 1") as info:
        await a.resolve(path(remote_b, "boom")).ask(1)
    assert info.value.error_type == "ValueError"
    assert info.value.error_message == "boom: 1"


async def test_asking_a_missing_remote_actor_raises_actor_stopped(nodes: Nodes) -> None:
    a, _ = await nodes.start()
    _, remote_b = await nodes.start()
    with pytest.raises(ActorStoppedError, match="no actor at"):
        await a.resolve(path(remote_b, "nobody")).ask("x")


async def test_ask_timeouts_run_on_the_system_clock(nodes: Nodes) -> None:
    clock = ManualClock()
    a, _ = await nodes.start(runtime=Settings.testing(messages=ALL, clock=clock))
    b, remote_b = await nodes.start()

    class Silent(Actor):
        def receive(self, msg: object) -> None:
            self.ctx.reply_later()  # and never answer
            probe.ref.tell(msg)

    probe = Probe(b)
    b.spawn(Silent, name="silent")
    ask = asyncio.ensure_future(a.resolve(path(remote_b, "silent")).ask("q", timeout=3.0))
    assert await probe.receive() == "q"  # delivered: only the answer is missing
    clock.advance(2.9)
    await quiesce()
    assert not ask.done()
    clock.advance(0.1)
    with pytest.raises(AskTimeout):
        await ask


async def test_unserializable_messages_go_to_dead_letters_and_asks_fail_at_once(
    nodes: Nodes,
) -> None:
    a, remote_a = await nodes.start()
    _, remote_b = await nodes.start()
    probe = Probe(a)
    a.event_stream.subscribe(probe.ref, DeadLetter)

    class NotAMessage:
        pass

    ref = a.resolve(path(remote_b, "x"))
    ref.tell(NotAMessage())  # never raises
    letter = await probe.receive()
    assert isinstance(letter, DeadLetter)
    assert letter.reason == "remote-unserializable"
    with pytest.raises(Exception, match="not a registered message type"):
        await ref.ask(NotAMessage())
    assert remote_a.metrics.dead_letters["unserializable"] == 2


async def test_order_is_kept_per_sender_under_load(nodes: Nodes) -> None:
    a, _ = await nodes.start()
    b, remote_b = await nodes.start()
    b.spawn(Recorder, name="recorder", capacity=100_000)
    recorder = a.resolve(path(remote_b, "recorder"))
    senders = [a.spawn(Sequencer, name=f"seq{i}") for i in range(3)]
    counts = await asyncio.gather(
        *(s.ask([recorder, f"stream{i}", 20_000]) for i, s in enumerate(senders))
    )
    assert counts == [20_000] * 3
    while True:  # wait until all arrived, then check order
        check = await recorder.ask("check")
        if sum(n for n, _ in check.values()) == 60_000:
            break
    assert check == {f"stream{i}": [20_000, True] for i in range(3)}


async def test_replies_and_tells_travel_in_batches(nodes: Nodes) -> None:
    a, remote_a = await nodes.start()
    b, remote_b = await nodes.start()
    b.spawn(Recorder, name="recorder", capacity=10_000)
    recorder = a.resolve(path(remote_b, "recorder"))
    await recorder.ask("get")  # connected
    frames = remote_a.metrics.frames_sent
    for n in range(5_000):
        recorder.tell(Seq("s", n))
    assert await recorder.ask("check") == {"s": [5_000, True]}
    # 5,000 tells and one ask in one loop turn: a handful of frames, not thousands.
    assert remote_a.metrics.frames_sent - frames <= 10


async def test_a_remote_stop_completes_once_the_actor_stopped(nodes: Nodes) -> None:
    a, _ = await nodes.start()
    b, remote_b = await nodes.start()
    local = b.spawn(Echo, name="echo")
    await a.resolve(path(remote_b, "echo")).stop()
    assert not local.is_alive


async def test_send_waits_for_room_and_an_ask_to_a_full_outbox_fails_fast(nodes: Nodes) -> None:
    a, remote_a = await nodes.start(settings=RemoteSettings.testing(outbox_capacity=10))
    # Nothing listens there: everything stays queued in the outbox.
    ref = a.resolve("shoal://t@127.0.0.1:1/user/x")
    for n in range(10):
        ref.tell(n)
    ref.tell("overflow")
    assert remote_a.metrics.dead_letters["outbox-full"] == 1
    with pytest.raises(OutboxFullError):
        await ref.ask("q")
    send = asyncio.ensure_future(ref.send("waits"))
    await quiesce()
    assert not send.done()
    send.cancel()


async def test_starting_remoting_twice_fails(nodes: Nodes) -> None:
    a, _ = await nodes.start()
    with pytest.raises(RemotingStartError, match="already runs"):
        await Remoting.start(a, nodes.remote_settings())
    assert Remoting.get(a).address == a.address


async def test_a_port_in_use_fails_start(nodes: Nodes) -> None:
    _, remote_a = await nodes.start()
    async with ActorSystem("t") as other:
        with pytest.raises(RemotingStartError):
            await Remoting.start(other, nodes.remote_settings(port=remote_a.port))


async def test_counters_are_exposed_in_the_systems_prometheus_registry(nodes: Nodes) -> None:
    a, remote_a = await nodes.start()
    b, remote_b = await nodes.start()
    b.spawn(Echo, name="echo")
    await a.resolve(path(remote_b, "echo")).ask(1)
    text = generate_latest(a.metrics).decode()
    assert f'shoal_remote_frames_sent_total{{address="{remote_a.address}"}}' in text
    assert "shoal_remote_peers_connected" in text


async def test_messages_for_a_peer_not_up_yet_are_buffered_then_delivered_in_order(
    nodes: Nodes,
) -> None:
    a, remote_a = await nodes.start()
    _, remote_b = await nodes.start()
    port = remote_b.port
    await remote_b.aclose()  # nothing listens at B's address now
    recorder = a.resolve(path(remote_b, "recorder"))
    for n in range(100):
        recorder.tell(Seq("buffered", n))
    await eventually(lambda: remote_a.peers[remote_b.address].state == "backoff")
    assert remote_a.peers[remote_b.address].queued == 100
    # The node comes up (reconnects back off exponentially until it does).
    c, _ = await nodes.start(settings=RemoteSettings.testing(port=port))
    c.spawn(Recorder, name="recorder")
    while (check := await recorder.ask("check")) != {"buffered": [100, True]}:
        assert check == {}, check  # all or nothing: they travel as one batch


async def test_buffered_messages_go_to_dead_letters_when_the_peer_stays_unreachable(
    nodes: Nodes,
) -> None:
    clock = ManualClock()
    a, remote_a = await nodes.start(
        settings=RemoteSettings.testing(unreachable_drop_after=5.0, backoff_max=1.0),
        runtime=Settings.testing(messages=ALL, clock=clock),
    )
    probe = Probe(a)
    a.event_stream.subscribe(probe.ref, DeadLetter)
    ref = a.resolve("shoal://t@127.0.0.1:1/user/x")  # nothing ever listens on port 1
    ref.tell("kept for a while")
    attempts = 0
    while remote_a.peers["t@127.0.0.1:1"].queued:
        # Wait for the attempt to fail (a backoff timer is set), then let it fire.
        await eventually(lambda: clock.pending > 0)
        attempts += 1
        clock.advance(clock.next_deadline() - clock.now())  # type: ignore[operator]
        await eventually(
            lambda: remote_a.peers["t@127.0.0.1:1"].state == "backoff" and clock.pending > 0
        )
    letter = await probe.receive()
    assert isinstance(letter, DeadLetter)
    assert (letter.message, letter.reason) == ("kept for a while", "remote-unreachable")
    assert letter.recipient == ref
    assert clock.now() >= 5.0  # not before unreachable_drop_after
    assert attempts >= 3  # backing off: 0.01, 0.02, 0.04, ... capped at 1 s
    assert remote_a.metrics.dead_letters == {"remote-unreachable": 1}


async def test_a_payload_larger_than_a_batch_travels_in_a_frame_of_its_own(nodes: Nodes) -> None:
    small = RemoteSettings.testing(batch_max_bytes=1024, max_frame_bytes=80 * 1024)
    a, _ = await nodes.start(settings=small)
    b, remote_b = await nodes.start(settings=small)
    probe = Probe(b, "probe")
    dead = Probe(a)
    a.event_stream.subscribe(dead.ref, DeadLetter)
    ref = a.resolve(path(remote_b, "probe"))
    # Frames keep 64 KiB for tables: payloads up to 16 KiB fit here.
    big = bytes(12 * 1024)  # fits a frame, not a batch
    too_big = bytes(20 * 1024)  # fits no frame
    ref.tell("before")
    ref.tell(big)
    ref.tell(too_big)
    ref.tell("after")
    assert await probe.receive() == "before"
    assert await probe.receive() == big
    assert await probe.receive() == "after"
    letter = await dead.receive()
    assert isinstance(letter, DeadLetter)
    assert (letter.message, letter.reason) == (too_big, "remote-unserializable")
    assert remote_b.metrics.bad_input == {}
