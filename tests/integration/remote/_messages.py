"""Message classes the remote tests send between nodes (registered on every node)."""

from __future__ import annotations

from dataclasses import dataclass

from shoal import ActorRef, message


@message(manifest="test.remote.Seq")
@dataclass(frozen=True, slots=True)
class Seq:
    """The ``n``-th message of a stream named ``stream``."""

    stream: str
    n: int


@message(manifest="test.remote.ReplyTo")
@dataclass(frozen=True, slots=True)
class ReplyTo:
    """Ask the receiver to tell ``text`` (transformed) to ``ref``."""

    ref: ActorRef
    text: str


@message(manifest="test.remote.Forward")
@dataclass(frozen=True, slots=True)
class Forward:
    """Ask the receiver to forward ``payload`` to ``to`` (keeping the asker)."""

    to: ActorRef
    payload: str


ALL: tuple[type, ...] = (Seq, ReplyTo, Forward)
