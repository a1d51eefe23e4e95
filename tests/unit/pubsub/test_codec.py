"""Pub/sub frames: round trips, and a table of frames that must be refused."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from shoal._proto import pubsub_pb2 as pb
from shoal.pubsub._codec import Deliver, FrameError, Status, decode, encode
from shoal.pubsub._registry import Delta, Entry, KeyKind
from shoal.runtime import Address, UniqueAddress

B = UniqueAddress(Address("s", "10.0.0.2", 2552), 2)
V6 = UniqueAddress(Address("s", "::1", 2552), 7)


def _decode(data: bytes) -> object:
    return decode(data, max_entries=10, max_name_length=20)


@pytest.mark.parametrize(
    ("sender", "body"),
    [
        (B, Status(3, 0)),
        (V6, Status(0, 12)),
        (B, Delta(B, 0, 0, 0, False, ())),
        (
            B,
            Delta(
                B,
                1,
                5,
                9,
                False,
                (
                    ((KeyKind.TOPIC, "x"), Entry(2, (("", 3), ("g", 1)))),
                    ((KeyKind.PATH, "/user/a"), Entry(5, ())),
                ),
            ),
        ),
        (B, Delta(B, 0, 4, 4, True, (((KeyKind.TOPIC, "y"), Entry(4, (("", 1),))),))),
        (B, Deliver(pb.PUBLISH_ONE_PER_GROUP, "t", ("g", "h"), 4, "m:N", b"\x01\x02")),
    ],
)
def test_round_trip(sender: UniqueAddress, body: object) -> None:
    frame = _decode(encode("s", sender, body))  # type: ignore[arg-type]
    assert frame.cluster == "s"  # type: ignore[attr-defined]
    assert frame.sender == sender  # type: ignore[attr-defined]
    assert frame.body == body  # type: ignore[attr-defined]


def _envelope(edit: Callable[[pb.PubSubEnvelope], None]) -> bytes:
    msg = pb.PubSubEnvelope(cluster="s")
    node = getattr(msg, "from")
    node.host_port = "10.0.0.2:2552"
    node.uid = 2
    msg.status.own_version = 1
    edit(msg)
    return msg.SerializeToString()


def _delta(*entries: tuple[int, str, int, list[tuple[str, int]]], **fields: object) -> bytes:
    def edit(msg: pb.PubSubEnvelope) -> None:
        d = msg.delta
        d.to_version = int(fields.get("to", 10))  # type: ignore[call-overload]
        d.bucket_version = int(fields.get("bucket", 10))  # type: ignore[call-overload]
        d.from_version = int(fields.get("frm", 0))  # type: ignore[call-overload]
        d.full = bool(fields.get("full", False))
        for kind, name, version, groups in entries:
            e = d.entries.add(kind=kind, name=name, version=version)  # type: ignore[arg-type]
            for group, count in groups:
                e.groups.add(group=group, count=count)

    return _envelope(edit)


def _set_from(host_port: str, uid: int) -> Callable[[pb.PubSubEnvelope], None]:
    def edit(msg: pb.PubSubEnvelope) -> None:
        getattr(msg, "from").host_port = host_port
        getattr(msg, "from").uid = uid

    return edit


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"\xff\xff\xff", "undecodable"),
        (_envelope(_set_from("nohost", 2)), "bad sender"),
        (_envelope(_set_from("10.0.0.2:2552", 0)), "bad sender"),
        (_envelope(lambda m: m.ClearField("status")), "no body"),
        (_delta((1, "x", 1, [("", 1)]), to=5, bucket=4), "versions out of order"),
        (_delta(frm=3, to=2), "versions out of order"),
        (_delta((1, "x", 1, [("", 1)]), frm=1, to=5, full=True), "full delta starts"),
        (_delta((1, "x", 1, []), full=True, to=1, bucket=1), "live entries only"),
        (_delta((9, "x", 1, [("", 1)])), "unknown key kind"),
        (_delta((1, "", 1, [("", 1)])), "bad key name"),
        (_delta((1, "x" * 21, 1, [("", 1)])), "bad key name"),
        (_delta((1, "a\nb", 1, [("", 1)])), "bad key name"),
        (_delta((1, "x", 2, [("", 1)]), (1, "y", 2, [("", 1)])), "version order"),
        (_delta((1, "x", 1, [("", 1)]), (1, "x", 2, [("", 1)])), "version order"),
        (_delta((1, "x", 11, [("", 1)])), "version order"),
        (_delta((1, "x", 1, [("g", 0)])), "bad group count"),
        (_delta((1, "x", 1, [("g", 1), ("g", 2)])), "listed twice"),
        (_delta(*((1, f"t{i}", i + 1, [("", 1)]) for i in range(11)), to=11, bucket=11), "11"),
        (
            _envelope(lambda m: m.deliver.CopyFrom(pb.Deliver(mode=pb.PUBLISH, key=""))),
            "bad delivery key",
        ),
        (
            _envelope(lambda m: m.deliver.CopyFrom(pb.Deliver(mode=7, key="t"))),  # type: ignore[arg-type]
            "unknown delivery mode",
        ),
        (
            _envelope(
                lambda m: m.deliver.CopyFrom(pb.Deliver(mode=pb.PUBLISH, key="t", groups=[""]))
            ),
            "bad group name",
        ),
    ],
)
def test_bad_frames_are_refused(data: bytes, why: str) -> None:
    with pytest.raises(FrameError, match=why):
        _decode(data)


def test_the_caching_codec_reads_and_writes_the_same_frames() -> None:
    from shoal.pubsub._codec import Codec  # noqa: PLC0415

    codec = Codec(max_entries=10, max_name_length=20)
    body = Deliver(pb.PUBLISH, "t", (), 4, "m:N", b"x")
    for _ in range(2):  # the second time from its caches
        data = codec.encode("s", B, body)
        assert data == encode("s", B, body)
        frame = codec.decode(data)
        assert (frame.sender, frame.body) == (B, body)
    with pytest.raises(FrameError, match="bad sender"):
        codec.decode(_envelope(_set_from("10.0.0.2:2552", 0)))
