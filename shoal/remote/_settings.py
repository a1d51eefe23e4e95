"""The remote transport's settings: one typed object, production defaults, a testing preset."""

from __future__ import annotations

import random
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._transport import Transport

_WILDCARDS = frozenset({"0.0.0.0", "::", ""})


@dataclass(frozen=True, slots=True)
class TlsSettings:
    """Mutual TLS: every node presents ``cert_file`` and accepts peers signed by ``ca_file``.

    Files are PEM and read once, when remoting starts. ``server_name``
    overrides the name checked against the peer's certificate (by default the
    peer's host from its address, which must then be in the certificate's
    subject alternative names).
    """

    cert_file: str | Path
    key_file: str | Path
    ca_file: str | Path
    server_name: str | None = None


@dataclass(frozen=True, slots=True)
class RemoteSettings:
    """How a node's remoting behaves. Every field has a production default.

    ``RemoteSettings.testing()`` is the fast preset for tests; the injection
    point of the backoff jitter (``rng``) is a plain field.
    """

    host: str = "127.0.0.1"
    """Interface to listen on. A wildcard (``0.0.0.0``, ``::``) needs ``advertised_host``."""

    port: int = 0
    """Port to listen on; ``0`` picks a free one (read it back from ``Remoting.port``)."""

    advertised_host: str | None = None
    """Host other nodes use to reach this one, if not ``host`` (NAT, containers)."""

    cluster_name: str = "shoal"
    """Peers with another cluster name are refused at the handshake."""

    cluster_secret: bytes | None = None
    """Shared secret every peer must present in its handshake (compared in
    constant time). It travels in the handshake: configure ``tls`` too on an
    untrusted network. It admits a node to the cluster but does not bind it to
    the address it claims: whoever holds it (or a valid certificate) can speak
    as, and be written to as, any member. Give it to cluster nodes only."""

    tls: TlsSettings | None = None
    """Mutual TLS for every stream; ``None`` means plaintext."""

    batch_max_envelopes: int = 1_000
    """Envelopes per batch. A batch is flushed at the end of the loop turn in
    which its first envelope was queued, or as soon as it holds this many."""

    batch_max_bytes: int = 256 * 1024
    """Payload bytes per batch before it is flushed early (same rule)."""

    max_frame_bytes: int = 4 * 1024 * 1024
    """Largest frame a node accepts; a peer sending more loses its stream. A
    single message larger than ``max_frame_bytes - 64 KiB`` cannot be sent
    and goes to dead letters. Must exceed ``batch_max_bytes`` by that margin."""

    outbox_capacity: int = 100_000
    """Envelopes queued per peer (not yet written, e.g. while the peer is
    unreachable). Beyond it, ``tell`` goes to dead letters and ``ask`` fails
    with ``OutboxFullError``; ``await ref.send()`` waits while the outbox
    is half full or more. Memory bound per peer ~ capacity x (message size +
    ~100 bytes)."""

    handshake_timeout: float = 5.0
    """Seconds (on the system clock) to connect and get the peer's handshake
    answer; also how long a peer's call may stay silent before its handshake
    arrives (the server closes it then, counted as bad input
    ``handshake_timeout``)."""

    backoff_min: float = 0.1
    """First reconnect delay in seconds. Attempt ``n`` (from 0) waits
    ``min(backoff_max, backoff_min * backoff_multiplier ** n)``, reduced by a
    random fraction of up to ``backoff_jitter`` so peers do not reconnect in step."""

    backoff_max: float = 5.0
    """Upper bound of the reconnect delay in seconds."""

    backoff_multiplier: float = 2.0
    """Growth of the reconnect delay per failed attempt."""

    backoff_jitter: float = 0.2
    """Fraction (0..1) of a delay that is randomly taken off it."""

    unreachable_drop_after: float = 30.0
    """Seconds a peer may stay unreachable before what is buffered for it goes
    to dead letters (checked at each failed reconnect attempt)."""

    shutdown_flush_timeout: float = 2.0
    """Seconds ``aclose()`` waits for queued envelopes to be written."""

    bad_input_log_limit: int = 5
    """Log lines per kind of bad input per interval; the rest are counted and summarised."""

    bad_input_log_interval: float = 10.0
    """The bad-input logging interval in seconds."""

    rng: random.Random | None = None
    """Random source of the backoff jitter; ``None`` means a fresh ``random.Random()``."""

    transport: Transport | None = None
    """The network nodes talk over; ``None`` means gRPC (:class:`GrpcTransport`).
    Tests and simulations pass a :class:`shoal.remote.testing.MemoryNetwork`."""

    max_pending_handshakes: int = 128
    """Peers' calls that may wait for their handshake at once; a call beyond
    is closed at once (``RESOURCE_EXHAUSTED``, counted as bad input
    ``handshake_limit``). With ``handshake_timeout`` this bounds what silent
    callers hold: at most this many calls, each for at most that long."""

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ValueError(f"invalid port {self.port}")
        if self.host in _WILDCARDS and not self.advertised_host:
            raise ValueError("listening on a wildcard host needs advertised_host")
        if self.batch_max_envelopes < 1 or self.batch_max_bytes < 1 or self.outbox_capacity < 1:
            raise ValueError("batch limits and outbox_capacity must be >= 1")
        if self.max_frame_bytes < self.batch_max_bytes + 64 * 1024:
            raise ValueError("max_frame_bytes must exceed batch_max_bytes by at least 64 KiB")
        if self.handshake_timeout <= 0 or self.shutdown_flush_timeout <= 0:
            raise ValueError("timeouts must be positive")
        if not 0 < self.backoff_min <= self.backoff_max or self.backoff_multiplier < 1:
            raise ValueError("need 0 < backoff_min <= backoff_max and backoff_multiplier >= 1")
        if not 0 <= self.backoff_jitter <= 1:
            raise ValueError("backoff_jitter must be within 0..1")
        if self.max_pending_handshakes < 1:
            raise ValueError("max_pending_handshakes must be >= 1")

    @property
    def public_host(self) -> str:
        """The host in this node's address."""
        return self.advertised_host or self.host

    @classmethod
    def testing(cls, **overrides: Any) -> RemoteSettings:
        """Fast reconnects and short timeouts for tests; every field can be overridden."""
        base = cls(
            backoff_min=0.01,
            backoff_max=0.2,
            handshake_timeout=2.0,
            unreachable_drop_after=2.0,
            shutdown_flush_timeout=1.0,
            bad_input_log_interval=1.0,
        )
        return replace(base, **overrides)
