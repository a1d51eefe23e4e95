"""One call carries the traffic of two nodes both ways: a node whose peer has a call
open to it writes there instead of opening its own (in-process nodes, gRPC and memory)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
import grpc.aio
import pytest

from shoal import Actor
from shoal._proto import remote_pb2 as pb
from shoal.remote import RemoteSettings, Remoting
from shoal.remote._grpc import SERVICE
from shoal.remote._wire import encode_ack
from shoal.runtime import DeadLetter
from shoal.runtime.testing import Probe

from ._actors import Echo, Recorder, Replier
from ._messages import ReplyTo, Seq
from .conftest import SAFETY, Nodes, RawPeer, eventually

TRANSPORTS = ("grpc", "memory")


def path(remoting: Remoting, name: str) -> str:
    return f"shoal://{remoting.address}/user/{name}"


async def test_a_node_answers_and_tells_on_the_call_its_peer_opened(nodes: Nodes) -> None:
    a, remote_a = await nodes.start()
    b, remote_b = await nodes.start()
    a.spawn(Recorder, name="recorder")
    b.spawn(Echo, name="echo")
    echo = a.resolve(path(remote_b, "echo"))
    assert [await echo.ask(n) for n in range(100)] == list(range(100))

    received = remote_a.metrics.envelopes_received
    b.resolve(path(remote_a, "recorder")).tell("from b")
    await eventually(lambda: remote_a.metrics.envelopes_received > received)
    assert await a.resolve(path(remote_a, "recorder")).ask("get") == ["from b"]
    assert remote_b.peers[remote_a.address].state == "connected"
    assert (remote_a.metrics.connects, remote_b.metrics.connects) == (1, 0)
    assert (remote_a.inbound.streams, remote_b.inbound.streams) == (0, 1)


class Sink(Actor):
    """Appends what it receives to a list the test also writes to."""

    def __init__(self, seen: list[object]) -> None:
        self.seen = seen

    def receive(self, msg: object) -> None:
        self.seen.append(msg)


async def test_what_a_handler_tells_before_answering_arrives_before_the_answer(
    nodes: Nodes,
) -> None:
    a, remote_a = await nodes.start()
    b, remote_b = await nodes.start()
    seen: list[object] = []
    a.spawn(lambda: Sink(seen), name="sink")
    b.spawn(Replier, name="replier")
    replier = a.resolve(path(remote_b, "replier"))
    sink = b.resolve(path(remote_a, "sink"))
    for n in range(50):
        # The handler tells the sink, then answers. On one stream the tell is
        # delivered first, so the sink has run before the asker resumes.
        assert await replier.ask(ReplyTo(sink, f"m{n}")) is None
        seen.append(f"answer {n}")
    assert seen == [x for n in range(50) for x in (f"M{n}", f"answer {n}")]


async def test_when_the_peers_call_ends_a_node_opens_its_own(nodes: Nodes) -> None:
    a, remote_a = await nodes.start()
    b, remote_b = await nodes.start()
    a.spawn(Recorder, name="recorder", capacity=10_000)
    b.spawn(Echo, name="echo")
    assert await a.resolve(path(remote_b, "echo")).ask("hello") == "hello"
    assert remote_b.metrics.connects == 0

    remote_a.association(remote_b.address).link.abort()  # A's call to B ends
    await eventually(lambda: remote_b.inbound.streams == 0)
    recorder = b.resolve(path(remote_a, "recorder"))
    received = remote_a.metrics.envelopes_received
    for n in range(1_000):
        recorder.tell(Seq("s", n))
    await eventually(lambda: remote_a.metrics.envelopes_received >= received + 1_000)
    assert await a.resolve(path(remote_a, "recorder")).ask("check") == {"s": [1_000, True]}
    assert remote_b.metrics.connects == 1


async def test_a_reply_larger_than_a_mebibyte_travels_back_on_the_askers_call(
    nodes: Nodes,
) -> None:
    a, remote_a = await nodes.start()
    b, remote_b = await nodes.start()
    b.spawn(Echo, name="echo")
    echo = a.resolve(path(remote_b, "echo"))
    big = bytes(2 * 1024 * 1024)
    assert await echo.ask(big) == big
    assert await echo.ask("after") == "after"
    assert (remote_a.metrics.connects, remote_b.metrics.connects) == (1, 0)
    assert remote_a.metrics.bad_input == {}


async def test_nothing_is_written_to_a_quarantined_incarnation_on_its_call(
    nodes: Nodes,
) -> None:
    a, remote_a = await nodes.start()
    b, remote_b = await nodes.start(settings=RemoteSettings.testing(unreachable_drop_after=0.0))
    a.spawn(Recorder, name="recorder")
    b.spawn(Echo, name="echo")
    assert await a.resolve(path(remote_b, "echo")).ask("hello") == "hello"
    dead = Probe(b)
    b.event_stream.subscribe(dead.ref, DeadLetter)

    assert remote_b.peers[remote_a.address].uid == remote_a.uid
    remote_b.quarantine(remote_a.address, remote_a.uid)
    b.resolve(path(remote_a, "recorder")).tell("must not arrive")
    letter = await dead.receive()
    assert isinstance(letter, DeadLetter)
    assert letter.message == "must not arrive"
    assert await a.resolve(path(remote_a, "recorder")).ask("get") == []


async def test_nothing_from_a_quarantined_incarnation_is_delivered_from_a_call(
    nodes: Nodes,
) -> None:
    a, remote_a = await nodes.start()
    b, remote_b = await nodes.start()
    recorder = a.spawn(Recorder, name="recorder")
    b.spawn(Echo, name="echo")
    assert await a.resolve(path(remote_b, "echo")).ask("hello") == "hello"
    remote_a.quarantine(remote_b.address, remote_b.uid)
    # B loses the call it wrote on; A refuses the call B opens instead.
    await eventually(lambda: remote_b.peers[remote_a.address].state != "connected")
    b.resolve(path(remote_a, "recorder")).tell("must not arrive")
    await eventually(lambda: remote_a.metrics.bad_input.get("quarantined_peer", 0) >= 1)
    assert await recorder.ask("get") == []


async def test_nothing_is_written_on_the_call_of_a_replaced_incarnation(
    nodes: Nodes, raw_peer: Callable[[str], RawPeer]
) -> None:
    a, remote_a = await nodes.start()
    old, new = raw_peer(f"127.0.0.1:{remote_a.port}"), raw_peer(f"127.0.0.1:{remote_a.port}")
    peer = f"{a.name}@127.0.0.1:9"  # where the raw peers claim to be
    await old.handshake(remote_a.address, uid=1)
    target = a.resolve(f"shoal://{peer}/user/x")
    target.tell("before")
    assert b"before" in await asyncio.wait_for(old.call.read(), SAFETY)  # on uid 1's call
    # While uid 1's call is healthy, a claim of its address is held off...
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await new.handshake(remote_a.address, uid=2)
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    # ...until the cluster layer decides that uid 1 is gone.
    remote_a.quarantine(peer, 1)
    new = raw_peer(f"127.0.0.1:{remote_a.port}")
    await new.handshake(remote_a.address, uid=2)  # the peer restarted
    assert remote_a.is_quarantined(peer, 1)
    target.tell("after")
    # Straight on the new incarnation's call:
    assert b"after" in await asyncio.wait_for(new.call.read(), SAFETY)
    assert remote_a.metrics.connects == 0


async def test_closing_does_not_wait_on_a_peer_that_stopped_reading_its_call(
    nodes: Nodes, raw_peer: Callable[[str], RawPeer]
) -> None:
    a, remote_a = await nodes.start(settings=RemoteSettings.testing(shutdown_flush_timeout=0.05))
    stuck = raw_peer(f"127.0.0.1:{remote_a.port}")
    await stuck.handshake(remote_a.address)  # then never reads again
    target = a.resolve(f"shoal://{a.name}@127.0.0.1:9/user/x")
    for _ in range(200):
        target.tell(bytes(256 * 1024))  # far more than the call's flow-control window
    await eventually(lambda: remote_a.metrics.frames_sent > 0)
    await asyncio.wait_for(remote_a.aclose(), SAFETY)  # a hang would end the test here
    assert remote_a.peers[f"{a.name}@127.0.0.1:9"].state == "closed"


# -- a peer that writes back garbage on the call this node opened -----------------------


async def _garbage_after_ack(
    request_iterator: Any, context: grpc.aio.ServicerContext[Any, Any]
) -> None:
    hello = pb.Frame.FromString(await context.read())
    await context.write(encode_ack(hello.handshake.to_address, 77))
    await context.write(b"\xff\xff\xff\xff garbage")
    while await context.read() is not grpc.aio.EOF:  # type: ignore[attr-defined]
        pass


@pytest.fixture
async def garbage_peer() -> AsyncIterator[int]:
    server = grpc.aio.server()
    handler = grpc.stream_stream_rpc_method_handler(_garbage_after_ack)
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(SERVICE, {"Stream": handler}),)
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    yield port
    await server.stop(None)


async def test_garbage_written_back_on_a_call_ends_it_and_is_counted(
    nodes: Nodes, garbage_peer: int
) -> None:
    a, remote_a = await nodes.start()
    a.resolve(f"shoal://t@127.0.0.1:{garbage_peer}/user/x").tell("hello")
    await eventually(lambda: remote_a.metrics.bad_input == {"malformed_frame": 1})
    link = remote_a.association(f"t@127.0.0.1:{garbage_peer}").link
    await eventually(lambda: link.state.value != "connected")
    # The node goes on serving everyone else.
    b, remote_b = await nodes.start()
    b.spawn(Echo, name="echo")
    assert await a.resolve(path(remote_b, "echo")).ask("still fine") == "still fine"
