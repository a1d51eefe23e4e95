"""The remote transport's settings: one typed object, production defaults, a testing preset."""

from __future__ import annotations

import ipaddress
import random
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._transport import Transport

_WILDCARDS = frozenset({"0.0.0.0", "::", ""})
_MAX_KEEPALIVE = (2**31 - 1) / 1000  # seconds: gRPC's millisecond options are 32-bit ints


@dataclass(frozen=True, slots=True)
class TlsSettings:
    """Mutual TLS: every node presents ``cert_file`` and accepts peers signed by ``ca_file``.

    Files are PEM and read once, when remoting starts. ``server_name``
    overrides the name checked against the peer's certificate (by default the
    peer's host from its address, which must then be in the certificate's
    subject alternative names).
    """

    cert_file: str | Path
    """This node's certificate (PEM), presented to every peer."""

    key_file: str | Path
    """The private key of ``cert_file`` (PEM)."""

    ca_file: str | Path
    """The certificate authority (PEM) that must have signed every peer's certificate."""

    server_name: str | None = None
    """Name checked against peers' certificates instead of their host."""


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

    cluster_secret: bytes | None = field(default=None, repr=False)
    """Shared secret every peer must present in its handshake (compared in
    constant time). It travels in the handshake: configure ``tls`` too on an
    untrusted network. It admits a node to the cluster but does not bind it to
    the address it claims: whoever holds it (or a valid certificate) can speak
    as, and be written to as, any member. Give it to cluster nodes only. It
    is left out of the settings' ``repr``."""

    tls: TlsSettings | None = None
    """Mutual TLS for every stream; ``None`` means plaintext."""

    batch_max_envelopes: int = 1_000
    """Envelopes per batch. A batch is flushed at the end of the loop turn in
    which its first envelope was queued (a small one still growing then waits
    a few turns more), or as soon as it holds this many."""

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

    # -- safety and resource bounds ------------------------------------------------------

    allow_unauthenticated: bool = False
    """Listening on anything but a loopback address (a wildcard included) needs
    ``cluster_secret`` or ``tls``, or ``Remoting.start`` fails. ``True`` opts out
    (a trusted private network); it is logged as a warning at start."""

    outbox_max_bytes: int = 64 * 1024 * 1024
    """Payload bytes queued per peer (user lane), the byte bound beside
    ``outbox_capacity``: beyond it ``tell`` goes to dead letters
    (``shoal_remote_dead_letters{reason="outbox-full"}``) and ``ask`` fails with
    ``OutboxFullError``. Gauge: ``shoal_remote_outbox_bytes``."""

    control_outbox_capacity: int = 200_000
    """Envelopes queued per peer on the control lane (death watch, ``Terminated``,
    remote stop, ``Remoting.send_control``). The control lane is written before
    user batches and is not bounded by the user outbox, so a full user outbox
    never drops a ``Terminated``. Beyond this bound control envelopes go to dead
    letters (``reason="control-outbox-full"``). Gauge: ``shoal_remote_control_queued``."""

    max_idle_associations: int = 1_000
    """Peers kept in memory with nothing going on (no stream, nothing queued, no
    asks, no watches). State for a peer is created on first send, not when a
    ref to it arrives in a message; beyond this bound the oldest idle peers are
    forgotten (a later send starts afresh). Counter:
    ``shoal_remote_associations_evicted``; gauge: ``shoal_remote_associations``."""

    quarantine_max_entries: int = 10_000
    """Quarantined incarnations remembered; beyond it the oldest are forgotten.
    Gauge: ``shoal_remote_quarantined``; counter: ``shoal_remote_quarantine_evicted``."""

    quarantine_max_age: float = 5 * 24 * 3600.0
    """Seconds (system clock) a quarantined incarnation is remembered. Incarnation
    uids are random 63-bit numbers, so one that is forgotten does not come back."""

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
    """Seconds (system clock) a peer may stay unreachable -- reconnecting keeps
    failing, or it is an address this node may not dial and the peer has no call
    open to it -- before this node gives up on what waits for it: the user outbox
    goes to dead letters and every ask waiting for the peer fails with
    :class:`UnreachableError` (naming the last connect error) instead of its own
    timeout. From then until a stream is established again, a ``tell`` goes to
    dead letters and an ``ask`` fails at once. A peer that goes silent without
    closing the connection (a partition) counts from when keepalive notices it
    (``keepalive_interval``). Counter: ``shoal_remote_unreachable_give_ups``."""

    keepalive_interval: float = 10.0
    """Seconds between HTTP/2 keepalive pings on every connection, sent by both
    ends (gRPC transport). A peer that went silent without closing the
    connection (a network partition, its host gone) is noticed within
    ``keepalive_interval + keepalive_timeout``; its stream is then lost, and
    what waits for the peer fails ``unreachable_drop_after`` later at most. So
    an ask to a partitioned peer fails with :class:`UnreachableError` within
    ``keepalive_interval + keepalive_timeout + unreachable_drop_after``. A node
    refuses pings arriving more often than every ``keepalive_interval / 2``
    (gRPC's ping-abuse rule): give every node of a cluster the same value."""

    keepalive_timeout: float = 5.0
    """Seconds a keepalive ping may go unanswered before the connection is
    considered dead (see ``keepalive_interval``)."""

    shutdown_flush_timeout: float = 2.0
    """Seconds ``aclose()`` waits for queued envelopes to be written."""

    bad_input_log_limit: int = 5
    """Log lines per kind of bad input per interval; the rest are counted and summarised."""

    bad_input_log_interval: float = 10.0
    """The bad-input logging interval in seconds."""

    rng: random.Random | None = None
    """Random source of the backoff jitter; ``None`` means the system's (``system.random``)."""

    uid: int | None = None
    """This node's incarnation uid (``1 <= uid < 2**63``), told to peers in
    every handshake; ``None`` (the default) draws a random one at start. Fix
    it only in tests: a node restarted with the same uid is not recognised as
    a new incarnation by its peers."""

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
        if min(self.outbox_max_bytes, self.control_outbox_capacity) < 1:
            raise ValueError("outbox_max_bytes and control_outbox_capacity must be >= 1")
        if self.max_idle_associations < 0 or self.quarantine_max_entries < 1:
            raise ValueError("need max_idle_associations >= 0 and quarantine_max_entries >= 1")
        if self.quarantine_max_age <= 0 or self.unreachable_drop_after < 0:
            raise ValueError("need quarantine_max_age > 0 and unreachable_drop_after >= 0")
        if self.max_frame_bytes < self.batch_max_bytes + 64 * 1024:
            raise ValueError("max_frame_bytes must exceed batch_max_bytes by at least 64 KiB")
        if self.handshake_timeout <= 0 or self.shutdown_flush_timeout <= 0:
            raise ValueError("timeouts must be positive")
        # gRPC takes whole milliseconds in a 32-bit int; 0 would turn its pings off.
        for name in ("keepalive_interval", "keepalive_timeout"):
            value = getattr(self, name)
            if not 0.001 <= value <= _MAX_KEEPALIVE:
                raise ValueError(
                    f"{name} must be within 0.001..{_MAX_KEEPALIVE:g} s, not {value!r}"
                )
        if not 0 < self.backoff_min <= self.backoff_max or self.backoff_multiplier < 1:
            raise ValueError("need 0 < backoff_min <= backoff_max and backoff_multiplier >= 1")
        if not 0 <= self.backoff_jitter <= 1:
            raise ValueError("backoff_jitter must be within 0..1")
        if self.uid is not None and not 0 < self.uid < 2**63:
            raise ValueError(f"uid must be within 1..2**63-1, not {self.uid}")

        if self.max_pending_handshakes < 1:
            raise ValueError("max_pending_handshakes must be >= 1")

    @property
    def loopback(self) -> bool:
        """Whether ``host`` is a loopback address (only this machine can connect)."""
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host.strip("[]")).is_loopback
        except ValueError:
            return False  # a host name other than localhost, or a wildcard

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
            # A partitioned stream is noticed within 2 s; a ping answered late on
            # a loaded machine must not cost a test its stream, hence not less.
            keepalive_interval=1.0,
            keepalive_timeout=1.0,
            shutdown_flush_timeout=1.0,
            bad_input_log_interval=1.0,
        )
        return replace(base, **overrides)
