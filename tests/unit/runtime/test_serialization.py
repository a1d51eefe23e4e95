"""The serialization registry: round trips, refs, and every kind of bad input."""

from __future__ import annotations

import asyncio
import enum
from dataclasses import dataclass, field

import msgspec
import pytest
from google.protobuf import struct_pb2, timestamp_pb2

from shoal.runtime import (
    Actor,
    ActorRef,
    ActorSystem,
    SerializationError,
    UnknownManifestError,
    manifest_of,
    message,
)
from shoal.runtime._serialization import (
    SERIALIZER_BYTES,
    SERIALIZER_MESSAGE,
    SERIALIZER_PRIMITIVE,
    SERIALIZER_PROTOBUF,
)


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


@message
@dataclass(frozen=True, slots=True)
class Point:
    x: int
    y: int


@message(manifest="test.Shape.v1")
@dataclass(frozen=True, slots=True)
class Shape:
    name: str
    points: tuple[Point, ...]
    color: Color = Color.RED
    tags: dict[str, float] = field(default_factory=dict)
    owner: ActorRef | None = None


@message
class Struct(msgspec.Struct, frozen=True):
    value: int
    label: str = ""


@dataclass(frozen=True)
class Unmarked:
    value: int


class Echo(Actor):
    def receive(self, msg: object) -> object:
        return msg


@pytest.mark.parametrize(
    "value",
    [
        None,
        True,
        42,
        -(2**63),
        3.5,
        "text ✓",
        [1, "two", None],
        {"a": [1, 2], "b": {"c": None}},
    ],
)
def test_primitives_round_trip(system: ActorSystem, value: object) -> None:
    s = system.serialization.serialize(value)
    assert s.serializer_id == SERIALIZER_PRIMITIVE
    assert system.serialization.deserialize(*s) == value


def test_bytes_travel_unchanged(system: ActorSystem) -> None:
    s = system.serialization.serialize(b"\x00\xffraw")
    assert s == (SERIALIZER_BYTES, "", b"\x00\xffraw")
    assert system.serialization.deserialize(*s) == b"\x00\xffraw"


def test_message_classes_round_trip_with_nested_types(system: ActorSystem) -> None:
    shape = Shape("tri", (Point(0, 0), Point(1, 0), Point(0, 1)), Color.BLUE, {"w": 0.5})
    s = system.serialization.serialize(shape)
    assert s.serializer_id == SERIALIZER_MESSAGE
    assert s.manifest == "test.Shape.v1"
    assert system.serialization.deserialize(*s) == shape
    assert system.serialization.deserialize(*system.serialization.serialize(Struct(7, "x"))) == (
        Struct(7, "x")
    )


def test_default_manifest_is_module_and_qualname() -> None:
    assert manifest_of(Point) == f"{__name__}:Point"
    assert manifest_of(Unmarked) is None


async def test_refs_inside_messages_resolve_on_arrival(system: ActorSystem) -> None:
    ref = system.spawn(Echo, name="owner")
    s = system.serialization.serialize(Shape("s", (), owner=ref))
    decoded = system.serialization.deserialize(*s)
    assert isinstance(decoded, Shape)
    assert decoded.owner is ref
    listed = system.serialization.deserialize(*system.serialization.serialize([ref]))
    assert listed == [ref]


def test_protobuf_messages_by_full_name(system: ActorSystem) -> None:
    stamp = timestamp_pb2.Timestamp(seconds=10, nanos=5)
    s = system.serialization.serialize(stamp)
    assert s.serializer_id == SERIALIZER_PROTOBUF
    assert s.manifest == "google.protobuf.Timestamp"
    assert system.serialization.deserialize(*s) == stamp


def test_unregistered_types_are_refused_never_pickled(system: ActorSystem) -> None:
    with pytest.raises(SerializationError, match="not a registered message type"):
        system.serialization.serialize(Unmarked(1))
    with pytest.raises(SerializationError, match="not a message class"):
        system.serialization.register(Unmarked)
    with pytest.raises(SerializationError):
        system.serialization.serialize(object())


def test_unknown_manifests_and_serializers_are_clear_errors(system: ActorSystem) -> None:
    with pytest.raises(UnknownManifestError, match="unknown manifest"):
        system.serialization.deserialize(SERIALIZER_MESSAGE, "nope.Missing", b"\x80")
    with pytest.raises(UnknownManifestError, match="unknown manifest"):
        # a module that is not imported is never imported because of a manifest
        system.serialization.deserialize(SERIALIZER_MESSAGE, "antigravity:Fly", b"\x80")
    with pytest.raises(UnknownManifestError, match="serializer id 99"):
        system.serialization.deserialize(99, "", b"")
    with pytest.raises(UnknownManifestError, match="protobuf"):
        system.serialization.deserialize(SERIALIZER_PROTOBUF, "no.Such", b"")


def test_a_class_reachable_by_name_but_not_marked_is_refused(system: ActorSystem) -> None:
    manifest = f"{__name__}:Unmarked"
    with pytest.raises(UnknownManifestError):
        system.serialization.deserialize(SERIALIZER_MESSAGE, manifest, b"\x81\xa5value\x01")


def test_explicit_manifests_need_registration_on_the_receiver() -> None:
    @message(manifest="only.registered.v1")
    @dataclass(frozen=True)
    class Private:
        n: int

    async def check() -> None:
        async with ActorSystem("sender") as sender, ActorSystem("receiver") as receiver:
            s = sender.serialization.serialize(Private(1))
            with pytest.raises(UnknownManifestError):
                receiver.serialization.deserialize(*s)
            receiver.serialization.register(Private)
            assert receiver.serialization.deserialize(*s) == Private(1)

    asyncio.run(check())


@pytest.mark.parametrize(
    "payload",
    [b"", b"\xc1", b"\x82\xa1x\x01", b"\x82\xa1x\xa3bad\xa1y\x01", b"\x81\xa1x"],
    ids=["empty", "invalid-byte", "missing-field", "wrong-type", "truncated"],
)
def test_corrupt_payloads_fail_with_a_serialization_error(
    system: ActorSystem, payload: bytes
) -> None:
    with pytest.raises(SerializationError, match="does not decode"):
        system.serialization.deserialize(SERIALIZER_MESSAGE, f"{__name__}:Point", payload)


def test_corrupt_protobuf_and_primitive_payloads(system: ActorSystem) -> None:
    with pytest.raises(SerializationError):
        system.serialization.deserialize(
            SERIALIZER_PROTOBUF, "google.protobuf.Struct", b"\xff\xff\xff"
        )
    with pytest.raises(SerializationError):
        system.serialization.deserialize(SERIALIZER_PRIMITIVE, "", b"\x92\x01")
    assert struct_pb2.Struct  # the Struct type is in the default pool


def test_two_classes_cannot_share_a_manifest(system: ActorSystem) -> None:
    @message(manifest="test.Shape.v1")
    @dataclass(frozen=True)
    class Impostor:
        name: str

    system.serialization.register(Shape)
    with pytest.raises(SerializationError, match="already registered"):
        system.serialization.register(Impostor)


def test_invalid_manifests_are_refused() -> None:
    with pytest.raises(ValueError, match="invalid manifest"):
        message(manifest="bad\nname")(Unmarked)
