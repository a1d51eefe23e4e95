"""Bad input against a real node: each case is counted, logged at a rate limit, and
dropped (the envelope, or the whole stream) while the node keeps serving everyone else."""

from __future__ import annotations

import logging
from collections.abc import Callable

import grpc
import pytest

from shoal._proto import remote_pb2 as pb
from shoal.remote import RemoteSettings, Remoting
from shoal.remote._wire import K_MESSAGE, OutBatch, encode_handshake
from shoal.runtime import ActorSystem
from shoal.runtime._serialization import SERIALIZER_MESSAGE

from ._actors import Echo, Recorder
from ._messages import Seq
from .conftest import Nodes, RawPeer

Connect = Callable[[str], RawPeer]


def target(remoting: Remoting) -> str:
    return remoting.address.partition("@")[2]


def batch(*envelopes: tuple[str, int, str, bytes]) -> bytes:
    """A batch frame of user messages: (target path, serializer id, manifest, payload)."""
    out = OutBatch()
    for path, serializer_id, manifest, payload in envelopes:
        out.add(K_MESSAGE, path, "", serializer_id, manifest, payload, 0, None)
    return out.encode()


@pytest.fixture
async def node(nodes: Nodes) -> tuple[ActorSystem, Remoting]:
    system, remoting = await nodes.start(
        settings=RemoteSettings.testing(
            cluster_secret=b"s3cret",
            batch_max_bytes=1024,
            max_frame_bytes=80 * 1024,
            bad_input_log_limit=3,
            bad_input_log_interval=3600.0,
        )
    )
    system.spawn(Recorder, name="recorder")
    system.spawn(Echo, name="echo")
    return system, remoting


async def still_serving(nodes: Nodes, node: tuple[ActorSystem, Remoting]) -> None:
    """A well-behaved peer still gets answers from the node."""
    _, remoting = node
    good, _ = await nodes.start(settings=RemoteSettings.testing(cluster_secret=b"s3cret"))
    echo = good.resolve(f"shoal://{remoting.address}/user/echo")
    assert await echo.ask("still there") == "still there"


async def test_garbage_bytes_drop_the_stream(
    nodes: Nodes, node: tuple[ActorSystem, Remoting], raw_peer: Connect
) -> None:
    _, remoting = node
    peer = raw_peer(target(remoting))
    await peer.send(b"\xff\xff\xff\xff garbage")
    assert await peer.status() == grpc.StatusCode.INVALID_ARGUMENT
    assert remoting.metrics.bad_input == {"malformed_frame": 1}
    await still_serving(nodes, node)


async def test_garbage_after_the_handshake_drops_the_stream(
    nodes: Nodes, node: tuple[ActorSystem, Remoting], raw_peer: Connect
) -> None:
    _, remoting = node
    peer = raw_peer(target(remoting))
    await peer.handshake(remoting.address, secret=b"s3cret")
    await peer.send(b"\x1a\x05abc")  # a batch field whose length runs past the end
    assert await peer.status() == grpc.StatusCode.INVALID_ARGUMENT
    assert remoting.metrics.bad_input == {"malformed_frame": 1}
    await still_serving(nodes, node)


async def test_a_truncated_frame_drops_the_stream(
    nodes: Nodes, node: tuple[ActorSystem, Remoting], raw_peer: Connect
) -> None:
    system, remoting = node
    good = system.serialization.serialize(Seq("s", 1))
    frame = batch((f"shoal://{remoting.address}/user/recorder", *good))
    peer = raw_peer(target(remoting))
    await peer.handshake(remoting.address, secret=b"s3cret")
    await peer.send(frame[: len(frame) - 3])
    assert await peer.status() == grpc.StatusCode.INVALID_ARGUMENT
    assert remoting.metrics.bad_input == {"malformed_frame": 1}
    assert await system.resolve(f"shoal://{remoting.address}/user/recorder").ask("check") == {}


async def test_a_frame_over_the_size_limit_drops_the_stream(
    nodes: Nodes, node: tuple[ActorSystem, Remoting], raw_peer: Connect
) -> None:
    _, remoting = node
    peer = raw_peer(target(remoting))
    await peer.handshake(remoting.address, secret=b"s3cret")
    oversize = batch((f"shoal://{remoting.address}/user/recorder", 1, "", b"x" * (80 * 1024 + 1)))
    await peer.send(oversize)
    assert await peer.status() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert remoting.metrics.bad_input == {"oversize_frame": 1}
    await still_serving(nodes, node)


@pytest.mark.parametrize(
    ("kwargs", "code", "kind"),
    [
        ({"secret": b"wrong"}, grpc.StatusCode.UNAUTHENTICATED, "wrong_secret"),
        ({}, grpc.StatusCode.UNAUTHENTICATED, "wrong_secret"),  # no secret at all
        (
            {"secret": b"s3cret", "cluster": "other"},
            grpc.StatusCode.PERMISSION_DENIED,
            "wrong_cluster",
        ),
        (
            {"secret": b"s3cret", "from_address": "other-system@127.0.0.1:9"},
            grpc.StatusCode.FAILED_PRECONDITION,
            "bad_handshake",
        ),
        ({"secret": b"s3cret", "uid": 0}, grpc.StatusCode.FAILED_PRECONDITION, "bad_handshake"),
    ],
)
async def test_a_refused_handshake_drops_the_stream(
    nodes: Nodes,
    node: tuple[ActorSystem, Remoting],
    raw_peer: Connect,
    kwargs: dict[str, object],
    code: grpc.StatusCode,
    kind: str,
) -> None:
    _, remoting = node
    peer = raw_peer(target(remoting))
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await peer.handshake(remoting.address, **kwargs)  # type: ignore[arg-type]
    assert info.value.code() == code
    assert remoting.metrics.bad_input == {kind: 1}
    await still_serving(nodes, node)


async def test_a_handshake_for_another_address_is_refused(
    node: tuple[ActorSystem, Remoting], raw_peer: Connect
) -> None:
    _, remoting = node
    peer = raw_peer(target(remoting))
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await peer.handshake("t@10.9.9.9:1", secret=b"s3cret")
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert remoting.metrics.bad_input == {"bad_handshake": 1}


async def test_a_batch_without_a_handshake_drops_the_stream(
    nodes: Nodes, node: tuple[ActorSystem, Remoting], raw_peer: Connect
) -> None:
    system, remoting = node
    good = system.serialization.serialize(Seq("s", 0))
    peer = raw_peer(target(remoting))
    await peer.send(batch((f"shoal://{remoting.address}/user/recorder", *good)))
    assert await peer.status() == grpc.StatusCode.INVALID_ARGUMENT
    assert remoting.metrics.bad_input == {"no_handshake": 1}
    assert await system.resolve(f"shoal://{remoting.address}/user/recorder").ask("check") == {}
    await still_serving(nodes, node)


async def test_a_second_handshake_drops_the_stream(
    node: tuple[ActorSystem, Remoting], raw_peer: Connect
) -> None:
    _, remoting = node
    peer = raw_peer(target(remoting))
    await peer.handshake(remoting.address, secret=b"s3cret")
    await peer.send(encode_handshake("t@127.0.0.1:9", 1, remoting.address, "shoal", b"s3cret"))
    assert await peer.status() == grpc.StatusCode.INVALID_ARGUMENT
    assert remoting.metrics.bad_input == {"unexpected_frame": 1}


async def test_a_route_out_of_range_drops_the_stream(
    node: tuple[ActorSystem, Remoting], raw_peer: Connect
) -> None:
    _, remoting = node
    frame = pb.Frame()
    frame.batch.strings.extend(["", f"shoal://{remoting.address}/user/recorder"])
    frame.batch.routes.extend([0, 7, 0, 1, 0])  # target index 7: no such string
    frame.batch.route.append(0)
    frame.batch.payload.append(b"x")
    peer = raw_peer(target(remoting))
    await peer.handshake(remoting.address, secret=b"s3cret")
    await peer.send(frame.SerializeToString())
    assert await peer.status() == grpc.StatusCode.INVALID_ARGUMENT
    assert remoting.metrics.bad_input == {"malformed_frame": 1}


@pytest.mark.parametrize(
    ("make_bad", "kind"),
    [
        (lambda path, good: (path.replace("recorder", "nobody"), *good), "unknown_target"),
        (
            lambda path, good: (path.replace("127.0.0.1", "10.1.1.1"), *good),
            "unknown_target",  # a path of another node: never relayed
        ),
        (
            lambda path, good: (path, SERIALIZER_MESSAGE, "no.such.Manifest", good[2]),
            "unknown_manifest",
        ),
        (lambda path, good: (path, 99, "", good[2]), "unknown_manifest"),  # unknown serializer id
        (lambda path, good: (path, good[0], good[1], good[2][:-2]), "undecodable_payload"),
        (lambda path, good: (path, good[0], good[1], b"\xa3abc"), "undecodable_payload"),
    ],
    ids=[
        "unknown-target",
        "other-nodes-target",
        "unknown-manifest",
        "unknown-serializer",
        "truncated-payload",
        "payload-of-the-wrong-shape",
    ],
)
async def test_a_bad_envelope_is_dropped_alone(
    node: tuple[ActorSystem, Remoting],
    raw_peer: Connect,
    make_bad: Callable[[str, tuple[int, str, bytes]], tuple[str, int, str, bytes]],
    kind: str,
) -> None:
    system, remoting = node
    recorder = f"shoal://{remoting.address}/user/recorder"
    good = tuple(system.serialization.serialize(Seq("s", 0)))
    good_1 = tuple(system.serialization.serialize(Seq("s", 1)))
    peer = raw_peer(target(remoting))
    await peer.handshake(remoting.address, secret=b"s3cret")
    # A bad envelope between two good ones: only it is lost, the stream goes on.
    await peer.send(batch((recorder, *good), make_bad(recorder, good), (recorder, *good_1)))  # type: ignore[arg-type]
    await peer.send(batch((recorder, *system.serialization.serialize(Seq("s", 2)))))
    ref = system.resolve(recorder)
    while (check := await ref.ask("check")) != {"s": [3, True]}:
        assert check.get("s", [0])[0] < 3, check
    assert remoting.metrics.bad_input == {kind: 1}


async def test_bad_input_is_logged_at_a_rate_limit(
    node: tuple[ActorSystem, Remoting], raw_peer: Connect, caplog: pytest.LogCaptureFixture
) -> None:
    _, remoting = node
    caplog.set_level(logging.WARNING, logger="shoal.remote")
    for _ in range(10):
        peer = raw_peer(target(remoting))
        await peer.send(b"\xff\xff garbage")
        assert await peer.status() == grpc.StatusCode.INVALID_ARGUMENT
    assert remoting.metrics.bad_input == {"malformed_frame": 10}
    lines = [r for r in caplog.records if "dropping stream" in r.getMessage()]
    assert len(lines) == 3  # bad_input_log_limit within one interval
