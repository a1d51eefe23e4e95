"""Peer connection events, published on the system's event stream."""

from __future__ import annotations

from dataclasses import dataclass

from shoal.runtime import Address, UniqueAddress


def peer_address(address: str, uid: int) -> UniqueAddress:
    """The typed incarnation ``uid`` of the peer at ``address`` (``system@host:port``)."""
    return UniqueAddress(Address.parse(address), uid)


@dataclass(frozen=True, slots=True)
class PeerEvent:
    """Base of the peer events: ``system.event_stream.subscribe(ref, PeerEvent)`` gets all.

    Published on the system's loop, in the order they happen for one peer.
    They describe this node's stream to the peer, not cluster membership: a
    peer whose stream is lost may well come back (a new ``PeerConnected``).
    """

    address: UniqueAddress
    """The peer's incarnation."""


@dataclass(frozen=True, slots=True)
class PeerConnected(PeerEvent):
    """A stream to the peer opened: one this node called, or the peer's call
    that this node writes on."""


@dataclass(frozen=True, slots=True)
class PeerDisconnected(PeerEvent):
    """The open stream to the peer was lost; this node reconnects with backoff
    while it has something to send."""

    reason: str
    """What ended the stream (the error, as text)."""


@dataclass(frozen=True, slots=True)
class PeerQuarantined(PeerEvent):
    """This incarnation of the peer is refused from now on: the cluster layer
    called ``Remoting.quarantine``, or the address answered with a new
    incarnation (``reason`` ``"restarted"``)."""

    reason: str
    """``"quarantined"`` or ``"restarted"``."""
