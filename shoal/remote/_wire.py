"""The wire format of ``proto/remote.proto``: frames, batches, string tables (pure).

No I/O and no event loop here: an :class:`OutBatch` collects envelopes and
encodes them into one frame; :func:`decode_frame` and :func:`read_batch`
turn bytes back into validated parallel arrays. Bad input raises
:class:`FrameError` naming its kind (the counter it is reported under).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Final, NamedTuple

from google.protobuf.message import DecodeError

from shoal._proto import remote_pb2 as pb

PROTOCOL_VERSION: Final = 2

# Route kinds, as in the RouteKind enum of remote.proto (a unit test pins them).
K_MESSAGE: Final = 0
K_REPLY: Final = 1
K_FAILURE: Final = 2
K_WATCH: Final = 3
K_UNWATCH: Final = 4
K_TERMINATED: Final = 5
K_TERMINATED_UNCONFIRMED: Final = 6
K_STOP: Final = 7
MAX_KIND: Final = K_STOP

ROUTE_WIDTH: Final = 5  # kind, target, sender, serializer id, manifest

# Bad-input kinds: each is a counter label and a log line.
BAD_MALFORMED: Final = "malformed_frame"
BAD_OVERSIZE: Final = "oversize_frame"
BAD_NO_HANDSHAKE: Final = "no_handshake"
BAD_UNEXPECTED: Final = "unexpected_frame"
BAD_HANDSHAKE: Final = "bad_handshake"
BAD_SECRET: Final = "wrong_secret"
BAD_CLUSTER: Final = "wrong_cluster"
BAD_QUARANTINED: Final = "quarantined_peer"
BAD_UNKNOWN_TARGET: Final = "unknown_target"
BAD_UNKNOWN_MANIFEST: Final = "unknown_manifest"
BAD_PAYLOAD: Final = "undecodable_payload"
BAD_FORBIDDEN_TARGET: Final = "forbidden_target"
BAD_FORBIDDEN_WATCHER: Final = "forbidden_watcher"
BAD_UNEXPECTED_UNWATCH: Final = "unexpected_unwatch"
BAD_UNEXPECTED_TERMINATED: Final = "unexpected_terminated"
BAD_INCARNATION_IN_USE: Final = "incarnation_in_use"
BAD_INTERNAL: Final = "internal_error"


class FrameError(Exception):
    """A frame that breaks the protocol; ``kind`` is one of the ``BAD_*`` labels."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(detail)
        self.kind = kind


class OutBatch:
    """Envelopes bound for one peer, not yet written (the open end of an outbox).

    ``add`` appends one envelope; paths and manifests go into the string
    table once, and each distinct (kind, target, sender, serializer,
    manifest) into the route table once. ``originals`` keeps the messages
    themselves so an undeliverable batch can still go to dead letters.

    Not thread-safe; owned by one association on the event loop.
    """

    __slots__ = (
        "correlations",
        "flat_routes",
        "nbytes",
        "originals",
        "payloads",
        "route_keys",
        "route_map",
        "routes",
        "string_map",
        "strings",
    )

    def __init__(self) -> None:
        self.strings: list[str] = [""]
        self.string_map: dict[str, int] = {"": 0}
        self.route_map: dict[tuple[int, str, str, int, str], int] = {}
        self.route_keys: list[tuple[int, str, str, int, str]] = []
        self.flat_routes: list[int] = []
        self.routes: list[int] = []
        self.payloads: list[bytes] = []
        self.correlations: list[int] | None = None
        self.originals: list[object] = []
        self.nbytes = 0

    def __len__(self) -> int:
        return len(self.routes)

    def add(
        self,
        kind: int,
        target: str,
        sender: str,
        serializer_id: int,
        manifest: str,
        payload: bytes,
        correlation: int,
        original: object,
    ) -> None:
        key = (kind, target, sender, serializer_id, manifest)
        route = self.route_map.get(key)
        if route is None:
            route = self.add_route(key)
        routes = self.routes
        routes.append(route)
        self.payloads.append(payload)
        self.originals.append(original)
        self.nbytes += len(payload)
        if correlation:
            correlations = self.correlations
            if correlations is None:
                # Most batches carry no asks: the array only exists when needed.
                correlations = self.correlations = [0] * (len(routes) - 1)
            elif len(correlations) < len(routes) - 1:
                correlations.extend([0] * (len(routes) - 1 - len(correlations)))
            correlations.append(correlation)  # one append per ask, no list made

    def add_route(self, key: tuple[int, str, str, int, str]) -> int:
        """Add a route (and its strings) to the tables; returns its index."""
        route = len(self.route_keys)
        self.route_map[key] = route
        self.route_keys.append(key)
        kind, target, sender, serializer_id, manifest = key
        index = self.string_map
        # Three interns written out: this runs for most envelopes of small batches.
        t = index.get(target)
        if t is None:
            t = self.intern(target)
        s = index.get(sender)
        if s is None:
            s = self.intern(sender)
        m = index.get(manifest)
        if m is None:
            m = self.intern(manifest)
        self.flat_routes += (kind, t, s, serializer_id, m)
        return route

    def intern(self, text: str) -> int:
        """The index of ``text`` in the string table, adding it if new."""
        index = self.string_map.get(text)
        if index is None:
            index = self.string_map[text] = len(self.strings)
            self.strings.append(text)
            self.nbytes += len(text)
        return index

    def encode(self) -> bytes:
        """The batch as one serialized ``Frame``."""
        frame = pb.Frame()
        batch = frame.batch
        batch.strings.extend(self.strings)
        batch.routes.extend(self.flat_routes)
        batch.route.extend(self.routes)
        batch.payload.extend(self.payloads)
        correlations = self.correlations
        if correlations is not None:
            correlations += [0] * (len(self.routes) - len(correlations))
            batch.correlation.extend(correlations)
        return frame.SerializeToString()

    def envelopes(self) -> Iterator[tuple[int, str, str, int, object]]:
        """``(kind, target, sender, correlation, original)`` of each envelope, in order."""
        correlations = self.correlations or ()
        for i, route in enumerate(self.routes):
            kind, target, sender, _, _ = self.route_keys[route]
            correlation = correlations[i] if i < len(correlations) else 0
            yield kind, target, sender, correlation, self.originals[i]


# (kind, target path, sender path, serializer id, manifest)
Route = tuple[int, str, str, int, str]


class InBatch(NamedTuple):
    """A received batch, validated: every index is in range."""

    routes: list[Route]
    route: list[int]
    payloads: list[bytes]
    correlations: list[int] | None


def encode_handshake(
    from_address: str, from_uid: int, to_address: str, cluster_name: str, secret: bytes | None
) -> bytes:
    frame = pb.Frame()
    hs = frame.handshake
    hs.protocol_version = PROTOCOL_VERSION
    hs.from_address = from_address
    hs.from_uid = from_uid
    hs.to_address = to_address
    hs.cluster_name = cluster_name
    if secret:
        hs.cluster_secret = secret
    return frame.SerializeToString()


def encode_ack(address: str, uid: int) -> bytes:
    frame = pb.Frame()
    frame.handshake_ack.address = address
    frame.handshake_ack.uid = uid
    return frame.SerializeToString()


def decode_frame(data: bytes, max_bytes: int) -> tuple[str, pb.Frame]:
    """Parse one frame into (kind, frame); raises :class:`FrameError` if it is
    too big or not a frame."""
    if len(data) > max_bytes:
        raise FrameError(BAD_OVERSIZE, f"frame of {len(data)} bytes exceeds {max_bytes}")
    try:
        frame = pb.Frame.FromString(data)
    except DecodeError as exc:
        raise FrameError(BAD_MALFORMED, f"frame does not parse: {exc}") from None
    kind = frame.WhichOneof("kind")
    if kind is None:
        raise FrameError(BAD_MALFORMED, f"frame of {len(data)} bytes carries nothing known")
    return kind, frame


def decode_batch(data: bytes, max_bytes: int) -> InBatch:
    """Parse a frame that must be a batch, and check its indexes and lengths.

    This runs for every frame received, usually with cold CPU caches (gRPC's
    threads ran just before), so it is one function with few calls into the
    protobuf runtime rather than a composition of helpers.
    """
    if len(data) > max_bytes:
        raise FrameError(BAD_OVERSIZE, f"frame of {len(data)} bytes exceeds {max_bytes}")
    try:
        frame = pb.Frame.FromString(data)
    except DecodeError as exc:
        raise FrameError(BAD_MALFORMED, f"frame does not parse: {exc}") from None
    if not frame.HasField("batch"):
        kind = frame.WhichOneof("kind")
        if kind is None:
            raise FrameError(BAD_MALFORMED, f"frame of {len(data)} bytes carries nothing known")
        raise FrameError(BAD_UNEXPECTED, f"a {kind} frame after the handshake")
    return read_batch(frame.batch)


def read_batch(batch: pb.Batch) -> InBatch:
    """Check a batch's indexes and lengths; return its parallel arrays."""
    # Slicing a protobuf repeated field copies it to a list faster than list().
    strings: list[str] = batch.strings[:]
    flat: list[int] = batch.routes[:]
    route: list[int] = batch.route[:]
    payloads: list[bytes] = batch.payload[:]
    correlations: list[int] | None = batch.correlation[:] or None
    nstrings = len(strings)
    if not nstrings or strings[0] or len(flat) % ROUTE_WIDTH or len(payloads) != len(route):
        raise FrameError(BAD_MALFORMED, "malformed string, route or envelope table")
    if correlations is not None and len(correlations) != len(route):
        raise FrameError(BAD_MALFORMED, f"{len(correlations)} correlation ids for {len(route)}")
    if len(flat) == ROUTE_WIDTH:
        # One route (an ask, its reply, most small batches): the checks below, unrolled.
        kind, target, sender, serializer_id, manifest = flat
        if kind > MAX_KIND or target >= nstrings or sender >= nstrings or manifest >= nstrings:
            raise FrameError(BAD_MALFORMED, "route 0 is out of range")
        if any(route):
            raise FrameError(BAD_MALFORMED, "an envelope refers to a missing route")
        one: Route = (kind, strings[target], strings[sender], serializer_id, strings[manifest])
        return InBatch([one], route, payloads, correlations)
    routes: list[Route] = []
    for i in range(0, len(flat), ROUTE_WIDTH):
        kind, target, sender, serializer_id, manifest = flat[i : i + ROUTE_WIDTH]
        if kind > MAX_KIND or target >= nstrings or sender >= nstrings or manifest >= nstrings:
            raise FrameError(BAD_MALFORMED, f"route {i // ROUTE_WIDTH} is out of range")
        routes.append((kind, strings[target], strings[sender], serializer_id, strings[manifest]))
    if route and max(route) >= len(routes):
        raise FrameError(BAD_MALFORMED, "an envelope refers to a missing route")
    return InBatch(routes, route, payloads, correlations)


def encode_failure(error_type: str, message: str) -> bytes:
    return pb.Failure(type=error_type, message=message).SerializeToString()


def decode_failure(payload: bytes) -> tuple[str, str]:
    failure = pb.Failure()
    try:
        failure.ParseFromString(payload)
    except DecodeError:
        return "UndecodableFailure", repr(payload[:64])
    return failure.type, failure.message
