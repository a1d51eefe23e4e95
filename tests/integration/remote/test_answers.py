"""Answers to asks travel back on the stream the ask arrived on (in-process nodes,
real gRPC on loopback); when that stream is gone they take the node's own stream."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc
import grpc.aio
import pytest
from prometheus_client import generate_latest

from shoal import Actor
from shoal._proto import remote_pb2 as pb
from shoal.remote import Remoting
from shoal.remote._grpc import SERVICE
from shoal.remote._wire import K_MESSAGE, OutBatch, encode_ack
from shoal.runtime import Reply

from ._actors import Echo
from .conftest import Nodes, eventually


def path(remoting: Remoting, name: str) -> str:
    return f"shoal://{remoting.address}/user/{name}"


class Later(Actor):
    """Holds asks until told "release", then answers them all."""

    def __init__(self) -> None:
        self.held: list[Reply] = []

    def receive(self, msg: object) -> object:
        if msg == "release":
            for reply in self.held:
                reply.send("late answer")
            self.held.clear()
            return "released"
        self.held.append(self.ctx.reply_later())
        return None


async def test_answering_asks_needs_no_stream_back_to_the_asker(nodes: Nodes) -> None:
    a, remote_a = await nodes.start()
    b, remote_b = await nodes.start()
    b.spawn(Echo, name="echo")
    echo = a.resolve(path(remote_b, "echo"))
    assert [await echo.ask(n) for n in range(100)] == list(range(100))
    assert await asyncio.gather(*(echo.ask(n) for n in range(1_000))) == list(range(1_000))
    assert remote_b.peers[remote_a.address].state == "idle"  # B never connected to A
    assert remote_b.metrics.frames_sent > 0  # the answers went out on A's stream
    assert remote_b.inbound.streams == 1
    assert "shoal_remote_inbound_streams" in generate_latest(b.metrics).decode()


async def test_an_answer_after_the_ask_stream_ended_takes_the_nodes_own_stream(
    nodes: Nodes,
) -> None:
    a, remote_a = await nodes.start()
    b, remote_b = await nodes.start()
    b.spawn(Later, name="later")
    later = a.resolve(path(remote_b, "later"))
    asks = [asyncio.ensure_future(later.ask(n)) for n in range(3)]
    await eventually(lambda: remote_b.metrics.envelopes_received >= 3)
    assert remote_b.peers[remote_a.address].state == "idle"

    remote_a.association(remote_b.address).link.abort()  # A's stream to B breaks
    await eventually(lambda: remote_b.inbound.streams == 0)
    b.resolve(path(remote_b, "later")).tell("release")

    assert await asyncio.gather(*asks) == ["late answer"] * 3
    assert remote_b.peers[remote_a.address].state == "connected"


# -- a peer that writes back something other than answers --------------------------------


async def _bad_answers(request_iterator: Any, context: grpc.aio.ServicerContext[Any, Any]) -> None:
    hello = pb.Frame.FromString(await context.read())
    await context.write(encode_ack(hello.handshake.to_address, 77))
    bogus = OutBatch()
    bogus.add(K_MESSAGE, "shoal://t@127.0.0.1:1/user/x", "", 1, "", b"hi", 0, None)
    await context.write(bogus.encode())
    while await context.read() is not grpc.aio.EOF:  # type: ignore[attr-defined]
        pass


@pytest.fixture
async def bad_peer() -> AsyncIterator[int]:
    server = grpc.aio.server()
    handler = grpc.stream_stream_rpc_method_handler(_bad_answers)
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(SERVICE, {"Stream": handler}),)
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    yield port
    await server.stop(None)


async def test_a_peer_writing_back_anything_but_answers_loses_its_stream(
    nodes: Nodes, bad_peer: int
) -> None:
    a, remote_a = await nodes.start()
    a.resolve(f"shoal://t@127.0.0.1:{bad_peer}/user/x").tell("hello")
    await eventually(lambda: remote_a.metrics.bad_input == {"unexpected_frame": 1})
    link = remote_a.association(f"t@127.0.0.1:{bad_peer}").link
    await eventually(lambda: link.state.value == "backoff")
    # The node goes on serving everyone else.
    b, remote_b = await nodes.start()
    b.spawn(Echo, name="echo")
    assert await a.resolve(path(remote_b, "echo")).ask("still fine") == "still fine"
