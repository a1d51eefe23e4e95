"""Real node processes on loopback: messaging, chains, order, SIGKILL and restarts, bad input."""

from __future__ import annotations

import grpc
import pytest

from shoal import ActorRef
from shoal.remote._wire import K_MESSAGE, OutBatch
from shoal.runtime import Serialization

from ._messages import ALL, Seq
from .conftest import NodeError, NodeProcess, RawPeer, StartNode

pytestmark = pytest.mark.multiprocess


def ref(path: str) -> dict[str, str]:
    return {"$ref": path}


async def test_two_nodes_tell_ask_and_reply(start_node: StartNode) -> None:
    n1 = await start_node("n1")
    n2 = await start_node("n2")
    await n2.spawn("echo", "echo")
    await n2.spawn("replier", "replier")
    await n1.spawn("recorder", "recorder")
    assert await n1.request("ask", to=n2.path("echo"), msg=[1, "two", {"3": 4}]) == [
        1,
        "two",
        {"3": 4},
    ]
    # A ref inside a message, resolved on arrival; the reply goes back to it.
    await n1.request("tell", to=n2.path("replier"), msg={"$replyto": [n1.path("recorder"), "hi"]})
    while not (items := await n1.request("ask", to=n1.path("recorder"), msg="get")):
        pass
    assert items == ["HI"]
    # A ref inside a message goes to n2 and back as the same ref.
    echoed = await n1.request("ask", to=n2.path("echo"), msg=[ref(n1.path("recorder"))])
    assert echoed == [ref(n1.path("recorder"))]


async def test_three_nodes_forward_and_ask_chains(start_node: StartNode) -> None:
    n1, n2, n3 = [await start_node(name) for name in ("n1", "n2", "n3")]
    await n3.spawn("echo", "echo")
    await n2.spawn("forwarder", "forwarder")
    await n2.spawn("relay", "relay", target=n3.path("echo"), suffix="+n2")
    await n1.spawn("relay", "relay", target=n2.path("relay"), suffix="+n1")
    # n1 asks n2, which forwards to n3: n3's answer reaches n1's asker.
    forward = {"$forward": [n3.path("echo"), "via n2"]}
    assert await n1.request("ask", to=n2.path("forwarder"), msg=forward) == "via n2"
    # n3 asks n1's relay -> n2's relay -> n3's echo: three nodes, both directions.
    assert await n3.request("ask", to=n1.path("relay"), msg="x") == "x+n2+n1"
    with pytest.raises(NodeError) as info:
        await n1.request("ask", to=n3.path("nobody"), msg="x")
    assert info.value.error_type == "ActorStoppedError"
    await n2.spawn("boom", "boom")
    with pytest.raises(NodeError, match="boom: 5") as info:
        await n3.request("ask", to=n2.path("boom"), msg=5)
    assert info.value.error_type == "RemoteAskError"


async def test_order_is_kept_per_sender_under_load(start_node: StartNode) -> None:
    n1 = await start_node("n1")
    n2 = await start_node("n2")
    await n2.spawn("recorder", "recorder", capacity=200_000)
    for i in range(3):
        await n1.spawn("sequencer", f"seq{i}")
    total = 0
    for i in range(3):
        msg = [ref(n2.path("recorder")), f"from-seq{i}", 30_000]
        total += await n1.request("ask", to=n1.path(f"seq{i}"), msg=msg)
    while True:
        check = await n1.request("ask", to=n2.path("recorder"), msg="check")
        if sum(count for count, _ in check.values()) == total:
            break
    assert check == {f"from-seq{i}": [30_000, True] for i in range(3)}


async def test_death_watch_on_stop(start_node: StartNode) -> None:
    n1 = await start_node("n1")
    n2 = await start_node("n2")
    await n2.spawn("echo", "target")
    await n1.spawn("watcher", "watcher", target=n2.path("target"))
    await n1.request("ask", to=n2.path("target"), msg="sync")
    await n2.request("stop", path=n2.path("target"))
    event = await n1.event("terminated")
    assert event == {
        "event": "terminated",
        "watcher": "watcher",
        "ref": n2.path("target"),
        "confirmed": True,
    }


async def test_death_watch_on_peer_loss(start_node: StartNode) -> None:
    n1 = await start_node("n1")
    n2 = await start_node("n2")
    await n2.spawn("echo", "x")
    await n2.spawn("echo", "y")
    for name in ("x", "y"):
        await n1.spawn("watcher", f"w-{name}", target=n2.path(name))
    await n1.request("ask", to=n2.path("x"), msg="sync")
    await n2.kill()
    # The cluster layer declares the node gone; until then the watches stay.
    await n1.request("node_gone", address=n2.address)
    events = [await n1.event("terminated"), await n1.event("terminated")]
    assert sorted((e["ref"], e["confirmed"]) for e in events) == [
        (n2.path("x"), False),
        (n2.path("y"), False),
    ]


async def test_a_peer_killed_and_restarted_is_a_new_incarnation(start_node: StartNode) -> None:
    n1 = await start_node("n1")
    n2 = await start_node("n2")
    await n2.spawn("echo", "echo")
    await n1.spawn("watcher", "watcher", target=n2.path("echo"))
    assert await n1.request("ask", to=n2.path("echo"), msg="before") == "before"
    old_uid = n2.uid

    await n2.kill()
    while (await n1.request("peers"))[n2.address]["state"] == "connected":
        pass  # n1 notices the reset stream and starts reconnecting

    restarted = await start_node("n2-again", "--port", str(n2.port))
    assert restarted.address == n2.address
    assert restarted.uid != old_uid
    # n1 keeps reconnecting (it watches an actor there) and meets the new
    # incarnation: the old one's actors are gone, existence unconfirmed.
    event = await n1.event("terminated")
    assert (event["ref"], event["confirmed"]) == (n2.path("echo"), False)
    await restarted.spawn("echo", "echo")
    assert await n1.request("ask", to=n2.path("echo"), msg="after") == "after"
    peers = await n1.request("peers")
    assert peers[n2.address]["uid"] == restarted.uid
    assert (await n1.metrics())["incarnations_replaced"] == 1
    # And the new incarnation talks back.
    await n1.spawn("echo", "echo")
    assert await restarted.request("ask", to=n1.path("echo"), msg="back") == "back"


async def test_nodes_on_asyncio_and_uvloop_talk(start_node: StartNode) -> None:
    n1 = await start_node("n1", "--loop", "asyncio")
    n2 = await start_node("n2", "--loop", "uvloop")
    await n1.spawn("echo", "echo")
    await n2.spawn("echo", "echo")
    assert await n1.request("ask", to=n2.path("echo"), msg="a") == "a"
    assert await n2.request("ask", to=n1.path("echo"), msg="b") == "b"


def _serialization() -> Serialization:
    serialization = Serialization(ActorRef, lambda path: None)
    serialization.register(*ALL)
    return serialization


async def _expect_dropped(node: NodeProcess, data: bytes, handshake: bool) -> grpc.StatusCode:
    peer = RawPeer(f"127.0.0.1:{node.port}")
    try:
        if handshake:
            await peer.handshake(node.address, secret=b"s3cret")
        await peer.send(data)
        return await peer.status()
    finally:
        await peer.close()


async def test_bad_input_against_a_node_process(start_node: StartNode) -> None:
    node = await start_node("target", "--secret", "s3cret")
    good = await start_node("good", "--secret", "s3cret")
    await node.spawn("recorder", "recorder")
    await node.spawn("echo", "echo")
    recorder = node.path("recorder")
    ser = _serialization()
    seq = ser.serialize(Seq("s", 0))

    def batch(*envelopes: tuple[str, int, str, bytes]) -> bytes:
        out = OutBatch()
        for path, serializer_id, manifest, payload in envelopes:
            out.add(K_MESSAGE, path, "", serializer_id, manifest, payload, 0, None)
        return out.encode()

    # Whole streams dropped: garbage, oversize, no handshake, wrong secret.
    code = await _expect_dropped(node, b"\xff\xfe garbage", handshake=False)
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    code = await _expect_dropped(node, b"\x1a\x09truncated", handshake=True)
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    oversize = batch((recorder, 1, "", b"x" * (4 * 1024 * 1024 + 1)))
    assert await _expect_dropped(node, oversize, handshake=True) == (
        grpc.StatusCode.RESOURCE_EXHAUSTED
    )
    code = await _expect_dropped(node, batch((recorder, *seq)), handshake=False)
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    peer = RawPeer(f"127.0.0.1:{node.port}")
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await peer.handshake(node.address, secret=b"wrong")
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
    await peer.close()

    # Single envelopes dropped, the stream goes on: each bad one sits between
    # good ones, and every good one arrives in order.
    bad = [
        (node.path("nobody"), *seq),
        (recorder, 4, "no.such.Manifest", seq.payload),
        (recorder, seq.serializer_id, seq.manifest, seq.payload[:-2]),
        (recorder, seq.serializer_id, seq.manifest, b"\xa3abc"),
    ]
    peer = RawPeer(f"127.0.0.1:{node.port}")
    await peer.handshake(node.address, secret=b"s3cret")
    n = 0
    for envelope in bad:
        first, second = ser.serialize(Seq("s", n)), ser.serialize(Seq("s", n + 1))
        await peer.send(batch((recorder, *first), envelope, (recorder, *second)))
        n += 2
    while (check := await node.request("ask", to=recorder, msg="check")) != {"s": [n, True]}:
        assert check.get("s", [0])[0] < n, check
    await peer.close()

    metrics = await node.metrics()
    assert metrics["bad_input"] == {
        "malformed_frame": 2,
        "oversize_frame": 1,
        "no_handshake": 1,
        "wrong_secret": 1,
        "unknown_target": 1,
        "unknown_manifest": 1,
        "undecodable_payload": 2,
    }
    # The node kept serving everyone else all along.
    assert await good.request("ask", to=node.path("echo"), msg="ok") == "ok"
