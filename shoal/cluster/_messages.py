"""The cluster protocol's messages, as typed values (the wire form is ``proto/cluster.proto``)."""

from __future__ import annotations

from dataclasses import dataclass

from shoal.runtime import Address, UniqueAddress

from ._gossip import Gossip
from ._vclock import VectorClock


@dataclass(frozen=True, slots=True)
class Join:
    """The sender asks to join the cluster with ``roles``."""

    roles: frozenset[str]


@dataclass(frozen=True, slots=True)
class Welcome:
    """An admitted join's answer: the state that lists the joiner."""

    gossip: Gossip


@dataclass(frozen=True, slots=True)
class GossipStatus:
    """A gossip round's digest: the sender's version and a hash of its seen set."""

    version: VectorClock
    seen_digest: int


@dataclass(frozen=True, slots=True)
class GossipState:
    """The sender's full state."""

    gossip: Gossip


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """A failure-detector probe; answered by :class:`HeartbeatReply` with the same sequence."""

    sequence: int


@dataclass(frozen=True, slots=True)
class HeartbeatReply:
    """The answer to a :class:`Heartbeat`."""

    sequence: int


@dataclass(frozen=True, slots=True)
class Leave:
    """Ask the receiver to start the graceful leave of the member at ``address``."""

    address: Address


@dataclass(frozen=True, slots=True)
class Down:
    """Ask the receiver to mark the member at ``address`` Down."""

    address: Address


@dataclass(frozen=True, slots=True)
class ExitingConfirmed:
    """The sender, a leaving member, has finished its exit: it may be removed."""


Body = (
    Join
    | Welcome
    | GossipStatus
    | GossipState
    | Heartbeat
    | HeartbeatReply
    | Leave
    | Down
    | ExitingConfirmed
)


@dataclass(frozen=True, slots=True)
class Envelope:
    """One protocol message: from incarnation ``sender`` to ``recipient`` of ``cluster``.

    ``recipient.uid`` is 0 when the sender does not know the incarnation
    yet (a join to a seed).
    """

    cluster: str
    sender: UniqueAddress
    recipient: UniqueAddress
    body: Body
