"""A peer's large frame is delivered over several loop turns, in order."""

from __future__ import annotations

import asyncio

from shoal import Settings

from ._actors import Echo, Recorder
from ._messages import ALL, Seq
from .conftest import Nodes, eventually

TRANSPORTS = ("grpc", "memory")


def path(address: str, name: str) -> str:
    return f"shoal://{address}/user/{name}"


async def test_a_frame_larger_than_throughput_arrives_whole_and_in_order(nodes: Nodes) -> None:
    a, remote_a = await nodes.start()
    b, remote_b = await nodes.start(runtime=Settings.testing(messages=ALL, throughput=7))
    b.spawn(Recorder, name="recorder", capacity=10_000)
    b.spawn(Echo, name="echo", capacity=10_000)
    recorder = a.resolve(path(remote_b.address, "recorder"))
    echo = a.resolve(path(remote_b.address, "echo"))
    for n in range(500):  # one loop turn: one frame of 500 tells
        recorder.tell(Seq("s", n))
    answers = [echo.ask(n) for n in range(500)]  # and one of 500 asks
    assert await asyncio.gather(*answers) == list(range(500))
    await eventually(lambda: remote_b.metrics.envelopes_received >= 1_000)
    assert await recorder.ask("check") == {"s": [500, True]}
    assert remote_a.metrics.link_crashes == remote_b.metrics.link_crashes == 0
