"""The wire format: batches, string and route tables, frames, failures (no I/O)."""

from __future__ import annotations

import pytest

from shoal._proto import remote_pb2 as pb
from shoal.remote import _wire
from shoal.remote._wire import (
    K_MESSAGE,
    K_REPLY,
    K_WATCH,
    FrameError,
    OutBatch,
    decode_failure,
    decode_frame,
    encode_ack,
    encode_failure,
    encode_handshake,
    read_batch,
)

TARGET = "shoal://app@10.0.0.1:2552/user/counter"
OTHER = "shoal://app@10.0.0.1:2552/user/other"
SENDER = "shoal://app@10.0.0.2:2552/user/sender"


def roundtrip(batch: OutBatch) -> _wire.InBatch:
    kind, frame = decode_frame(batch.encode(), 1 << 20)
    assert kind == "batch"
    return read_batch(frame.batch)


def test_route_kinds_match_the_proto_enum() -> None:
    names = {
        "MESSAGE": _wire.K_MESSAGE,
        "REPLY": _wire.K_REPLY,
        "FAILURE": _wire.K_FAILURE,
        "WATCH": _wire.K_WATCH,
        "UNWATCH": _wire.K_UNWATCH,
        "TERMINATED": _wire.K_TERMINATED,
        "TERMINATED_UNCONFIRMED": _wire.K_TERMINATED_UNCONFIRMED,
        "STOP": _wire.K_STOP,
    }
    assert {name: pb.RouteKind.Value(f"ROUTE_KIND_{name}") for name in names} == names
    assert max(names.values()) == _wire.MAX_KIND


def test_an_empty_batch_is_just_the_empty_string() -> None:
    batch = OutBatch()
    assert len(batch) == 0
    assert batch.strings == [""]


def test_paths_and_manifests_are_written_once_per_batch() -> None:
    batch = OutBatch()
    for n in range(100):
        batch.add(K_MESSAGE, TARGET, SENDER, 4, "app.Add", bytes([n]), 0, n)
    batch.add(K_MESSAGE, OTHER, "", 4, "app.Add", b"x", 0, "last")
    assert batch.strings == ["", TARGET, SENDER, "app.Add", OTHER]
    assert batch.flat_routes == [K_MESSAGE, 1, 2, 4, 3, K_MESSAGE, 4, 0, 4, 3]
    assert batch.routes == [0] * 100 + [1]
    received = roundtrip(batch)
    assert received.routes == [
        (K_MESSAGE, TARGET, SENDER, 4, "app.Add"),
        (K_MESSAGE, OTHER, "", 4, "app.Add"),
    ]
    assert received.route == [0] * 100 + [1]
    assert received.payloads == [bytes([n]) for n in range(100)] + [b"x"]
    assert received.correlations is None


def test_small_messages_cost_a_few_bytes_beyond_their_payload() -> None:
    batch = OutBatch()
    for _ in range(1000):
        batch.add(K_MESSAGE, TARGET, SENDER, 4, "app.Tick", b"0123456789", 0, None)
    per_message = len(batch.encode()) / 1000
    assert per_message < 15  # 10 payload bytes + tag, length and route index


def test_correlation_ids_are_only_sent_when_a_batch_has_asks() -> None:
    batch = OutBatch()
    batch.add(K_MESSAGE, TARGET, "", 2, "", b"a", 0, None)
    batch.add(K_MESSAGE, TARGET, "", 2, "", b"b", 7, None)
    batch.add(K_MESSAGE, TARGET, "", 2, "", b"c", 0, None)
    batch.add(K_REPLY, "", "", 2, "", b"d", 9, None)
    received = roundtrip(batch)
    assert received.correlations == [0, 7, 0, 9]
    kinds = [received.routes[r][0] for r in received.route]
    assert kinds == [K_MESSAGE, K_MESSAGE, K_MESSAGE, K_REPLY]


def test_envelopes_are_listed_with_their_originals_for_dead_letters() -> None:
    batch = OutBatch()
    batch.add(K_MESSAGE, TARGET, SENDER, 2, "", b"a", 0, "first")
    batch.add(K_WATCH, TARGET, SENDER, 0, "", b"", 0, None)
    batch.add(K_MESSAGE, OTHER, "", 2, "", b"b", 5, "asked")
    assert list(batch.envelopes()) == [
        (K_MESSAGE, TARGET, SENDER, 0, "first"),
        (K_WATCH, TARGET, SENDER, 0, None),
        (K_MESSAGE, OTHER, "", 5, "asked"),
    ]


def test_nbytes_counts_payloads_and_new_strings() -> None:
    batch = OutBatch()
    batch.add(K_MESSAGE, TARGET, "", 1, "", b"12345", 0, None)
    assert batch.nbytes == 5 + len(TARGET)
    batch.add(K_MESSAGE, TARGET, "", 1, "", b"123", 0, None)
    assert batch.nbytes == 8 + len(TARGET)


def test_handshake_and_ack_frames() -> None:
    kind, frame = decode_frame(encode_handshake("a@h:1", 42, "a@h:2", "prod", b"s"), 1024)
    assert kind == "handshake"
    hs = frame.handshake
    assert (hs.protocol_version, hs.from_address, hs.from_uid) == (
        _wire.PROTOCOL_VERSION,
        "a@h:1",
        42,
    )
    assert (hs.to_address, hs.cluster_name, hs.cluster_secret) == ("a@h:2", "prod", b"s")
    kind, frame = decode_frame(encode_ack("a@h:2", 7), 1024)
    assert kind == "handshake_ack"
    assert (frame.handshake_ack.address, frame.handshake_ack.uid) == ("a@h:2", 7)


@pytest.mark.parametrize(
    ("data", "kind"),
    [
        (b"\xff\xff\xff\xff", "malformed_frame"),
        (b"\x1a\x09truncated", "malformed_frame"),
        (b"", "malformed_frame"),  # parses, but carries nothing
        (b"\x78\x01", "malformed_frame"),  # only an unknown field
        (b"\x1a" + b"\x00" * 40, "oversize_frame"),
    ],
)
def test_frames_that_are_not_frames_are_rejected(data: bytes, kind: str) -> None:
    with pytest.raises(FrameError) as info:
        decode_frame(data, 32)
    assert info.value.kind == kind


def _batch(**fields: list[object]) -> pb.Batch:
    batch = pb.Batch()
    batch.strings.extend(fields.get("strings", ["", TARGET]))  # type: ignore[arg-type]
    batch.routes.extend(fields.get("routes", [0, 1, 0, 2, 0]))  # type: ignore[arg-type]
    batch.route.extend(fields.get("route", [0]))  # type: ignore[arg-type]
    batch.payload.extend(fields.get("payload", [b"x"]))  # type: ignore[arg-type]
    batch.correlation.extend(fields.get("correlation", []))  # type: ignore[arg-type]
    return batch


def test_a_well_formed_batch_reads() -> None:
    assert read_batch(_batch()).routes == [(0, TARGET, "", 2, "")]
    two = read_batch(
        _batch(routes=[0, 1, 0, 2, 0, 1, 0, 0, 1, 0], route=[1, 0], payload=[b"", b""])
    )
    assert two.routes == [(0, TARGET, "", 2, ""), (1, "", "", 1, "")]
    assert two.route == [1, 0]


@pytest.mark.parametrize(
    "fields",
    [
        {"strings": []},
        {"strings": ["not empty", TARGET]},
        {"routes": [0, 1, 0, 2]},  # not a multiple of five
        {"routes": [99, 1, 0, 2, 0]},  # unknown kind
        {"routes": [0, 5, 0, 2, 0]},  # target out of range
        {"routes": [0, 1, 5, 2, 0]},  # sender out of range
        {"routes": [0, 1, 0, 2, 5]},  # manifest out of range
        {"route": [1]},  # no such route
        {"route": [0, 0]},  # more routes than payloads
        {"correlation": [1, 2]},  # more ids than envelopes
        # The same checks when a batch has several routes:
        {"routes": [0, 1, 0, 2, 0, 99, 1, 0, 2, 0]},
        {"routes": [0, 1, 0, 2, 0, 0, 5, 0, 2, 0]},
        {"routes": [0, 1, 0, 2, 0, 0, 1, 0, 2, 5]},
        {"routes": [0, 1, 0, 2, 0, 0, 1, 0, 2, 0], "route": [2]},
    ],
)
def test_batches_with_bad_indexes_or_lengths_are_rejected(fields: dict[str, list[object]]) -> None:
    with pytest.raises(FrameError) as info:
        read_batch(_batch(**fields))
    assert info.value.kind == "malformed_frame"


def test_failures_travel_as_type_and_message() -> None:
    assert decode_failure(encode_failure("ValueError", "bad")) == ("ValueError", "bad")
    assert decode_failure(b"\xff\xff")[0] == "UndecodableFailure"
