"""Pub/sub frames <-> bytes (``proto/pubsub.proto``); every frame checked on the way in.

:func:`decode` raises :class:`FrameError` for anything that is not a valid
frame (the mediator refuses it, counts it and keeps its state): bytes that do
not parse, an address that does not parse, a uid of 0, an entry of an unknown
kind, a name that is empty, too long or not printable, a negative or
duplicate group count, versions out of order, or more entries than allowed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Union

from google.protobuf.message import DecodeError

from shoal._proto import pubsub_pb2 as pb
from shoal.runtime import Address, UniqueAddress

from ._registry import Delta, Entry, Key, KeyKind

_KIND_TO_PB: Final = {KeyKind.TOPIC: pb.TOPIC, KeyKind.PATH: pb.PATH}
_KIND_FROM_PB: Final = {v: k for k, v in _KIND_TO_PB.items()}
_CACHE_LIMIT: Final = 4_096
"""Parsed senders and encoded headers kept (a miss costs a parse; the cache is then cleared)."""


class FrameError(Exception):
    """A frame that is not a valid pub/sub frame (internal: the mediator refuses it)."""


@dataclass(frozen=True, slots=True)
class Status:
    own_version: int
    your_version: int


@dataclass(frozen=True, slots=True)
class Deliver:
    mode: int
    """A ``pubsub_pb2.DeliverMode`` value."""
    key: str
    groups: tuple[str, ...]
    serializer_id: int
    manifest: str
    payload: bytes


Body = Union[Status, Delta, Deliver]  # noqa: UP007 - a runtime alias


@dataclass(frozen=True, slots=True)
class Frame:
    cluster: str
    sender: UniqueAddress
    body: Body


def _host_port(address: Address) -> str:
    return str(address).partition("@")[2]


class Codec:
    """Encodes and decodes one node's frames, keeping what repeats (one per mediator).

    The envelope's cluster and sender are encoded once per sender (protobuf
    reads two concatenated encodings of a message as one message with the
    fields of both), and a peer's address is parsed once, not per frame.
    """

    __slots__ = ("_headers", "_senders", "max_entries", "max_name_length")

    def __init__(self, *, max_entries: int, max_name_length: int) -> None:
        self.max_entries = max_entries
        self.max_name_length = max_name_length
        self._headers: dict[tuple[str, UniqueAddress], bytes] = {}
        self._senders: dict[tuple[str, str, int], UniqueAddress] = {}

    def encode(self, cluster: str, sender: UniqueAddress, body: Body) -> bytes:
        """The wire form of one frame from ``sender``."""
        key = (cluster, sender)
        header = self._headers.get(key)
        if header is None:
            if len(self._headers) >= _CACHE_LIMIT:
                self._headers.clear()
            header = self._headers[key] = _header(cluster, sender)
        return header + _body(body).SerializeToString()

    def decode(self, data: bytes) -> Frame:
        """The frame ``data`` holds; :class:`FrameError` for anything else."""
        return _decode(data, self.max_entries, self.max_name_length, self._sender)

    def _sender(self, cluster: str, host_port: str, uid: int) -> UniqueAddress:
        key = (cluster, host_port, uid)
        sender = self._senders.get(key)
        if sender is None:
            if len(self._senders) >= _CACHE_LIMIT:
                self._senders.clear()
            sender = self._senders[key] = _parse_sender(cluster, host_port, uid)
        return sender


def encode(cluster: str, sender: UniqueAddress, body: Body) -> bytes:
    """The wire form of one frame from ``sender`` (no cache)."""
    return _header(cluster, sender) + _body(body).SerializeToString()


def _header(cluster: str, sender: UniqueAddress) -> bytes:
    msg = pb.PubSubEnvelope(cluster=cluster)
    node = getattr(msg, "from")
    node.host_port = _host_port(sender.address)
    node.uid = sender.uid
    return msg.SerializeToString()


def _body(body: Body) -> pb.PubSubEnvelope:
    msg = pb.PubSubEnvelope()
    match body:
        case Status():
            msg.status.own_version = body.own_version
            msg.status.your_version = body.your_version
        case Delta():
            d = msg.delta
            d.from_version = body.from_version
            d.to_version = body.to_version
            d.bucket_version = body.bucket_version
            d.full = body.full
            for (kind, name), entry in body.entries:
                e = d.entries.add(kind=_KIND_TO_PB[kind], name=name, version=entry.version)
                for group, count in entry.groups:
                    e.groups.add(group=group, count=count)
        case Deliver():
            msg.deliver.mode = body.mode  # type: ignore[assignment]
            msg.deliver.key = body.key
            msg.deliver.groups.extend(body.groups)
            msg.deliver.serializer_id = body.serializer_id
            msg.deliver.manifest = body.manifest
            msg.deliver.payload = body.payload
    return msg


def valid_name(name: str, max_length: int) -> bool:
    """Whether ``name`` may be a topic, group or path: non-empty, printable, short enough."""
    return 0 < len(name) <= max_length and name.isprintable()


def decode(data: bytes, *, max_entries: int, max_name_length: int) -> Frame:
    """The frame ``data`` holds; :class:`FrameError` for anything else (no cache)."""
    return _decode(data, max_entries, max_name_length, _parse_sender)


def _decode(
    data: bytes,
    max_entries: int,
    max_name_length: int,
    parse_sender: Callable[[str, str, int], UniqueAddress],
) -> Frame:
    msg = pb.PubSubEnvelope()
    try:
        msg.ParseFromString(data)
    except (DecodeError, ValueError, RuntimeError) as error:
        raise FrameError(f"undecodable: {error}") from None
    node = getattr(msg, "from")
    sender = parse_sender(msg.cluster, node.host_port, node.uid)
    which = msg.WhichOneof("body")
    body: Body
    if which == "status":
        body = Status(msg.status.own_version, msg.status.your_version)
    elif which == "delta":
        body = _delta(sender, msg.delta, max_entries, max_name_length)
    elif which == "deliver":
        d = msg.deliver
        if d.mode not in (pb.PUBLISH, pb.PUBLISH_ONE_PER_GROUP, pb.SEND):
            raise FrameError(f"unknown delivery mode {d.mode}")
        if not valid_name(d.key, max_name_length):
            raise FrameError("bad delivery key")
        if any(not valid_name(g, max_name_length) for g in d.groups):
            raise FrameError("bad group name")
        body = Deliver(
            d.mode, d.key, tuple(d.groups), d.serializer_id, d.manifest, bytes(d.payload)
        )
    else:
        raise FrameError("no body")
    return Frame(msg.cluster, sender, body)


def _parse_sender(cluster: str, host_port: str, uid: int) -> UniqueAddress:
    try:
        address = Address.parse(f"{cluster}@{host_port}")
    except ValueError as error:
        raise FrameError(f"bad sender address {host_port!r}: {error}") from None
    if not address.has_host or uid == 0:
        raise FrameError(f"bad sender {host_port!r} uid {uid}")
    return UniqueAddress(address, uid)


def _delta(owner: UniqueAddress, d: pb.Delta, max_entries: int, max_name_length: int) -> Delta:
    if len(d.entries) > max_entries:
        raise FrameError(f"{len(d.entries)} entries, more than {max_entries}")
    if not d.from_version <= d.to_version <= d.bucket_version:
        raise FrameError("versions out of order")
    if d.full and d.from_version != 0:
        raise FrameError("a full delta starts at version 0")
    entries: list[tuple[Key, Entry]] = []
    seen: set[Key] = set()
    last = d.from_version
    for e in d.entries:
        kind = _KIND_FROM_PB.get(e.kind)
        if kind is None:
            raise FrameError(f"unknown key kind {e.kind}")
        if not valid_name(e.name, max_name_length):
            raise FrameError("bad key name")
        key = (kind, e.name)
        if key in seen or not last < e.version <= d.to_version:
            raise FrameError("entries out of version order")
        seen.add(key)
        last = e.version
        groups: list[tuple[str, int]] = []
        for g in e.groups:
            if g.count < 1 or (g.group and not valid_name(g.group, max_name_length)):
                raise FrameError("bad group count")
            groups.append((g.group, g.count))
        groups.sort()
        if len({g for g, _ in groups}) != len(groups):
            raise FrameError("a group listed twice")
        if d.full and not groups:
            raise FrameError("a full delta lists live entries only")
        entries.append((key, Entry(e.version, tuple(groups))))
    return Delta(owner, d.from_version, d.to_version, d.bucket_version, d.full, tuple(entries))
