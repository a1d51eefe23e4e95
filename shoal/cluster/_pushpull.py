"""Push-pull gossip, as pure decisions: whom to gossip to, and what to answer.

A round: each node picks one peer (:func:`select_peer`) and sends it its
full state if the peer is not in its seen set (it most likely lacks the
latest version), or else only its digest (version and a hash of the seen
set). The receiver of a digest answers (:func:`answer_status`) with its
full state when it has something the sender lacks, with its own digest
when it lacks something (the sender then sends its state), and not at all
when both are the same. The receiver of a state merges it and answers
with the merged state when that differs from what it received
(:func:`answer_state`), so one exchange leaves both sides with the union.
Full states only travel to a peer that lacks them.
"""

from __future__ import annotations

import enum
import random

from shoal.runtime import UniqueAddress

from ._gossip import Gossip
from ._member import MemberStatus
from ._reachability import ReachabilityStatus
from ._vclock import Ordering, VectorClock

PREFER_UNSEEN = 0.8
"""Chance that a round picks its peer among those that have not seen the
latest version (when there are some), as in Akka: spreading a change fast
without starving the others of seen-set updates."""


class Answer(enum.Enum):
    """What to send back to a gossip message."""

    NOTHING = "nothing"
    STATE = "state"
    STATUS = "status"


def self_unreachable(gossip: Gossip, self_node: UniqueAddress) -> frozenset[UniqueAddress]:
    """The members ``self_node`` itself observes as unreachable (or terminated)."""
    return frozenset(
        r.subject
        for r in gossip.reachability.records
        if r.observer == self_node and r.status is not ReachabilityStatus.REACHABLE
    )


def gossip_targets(gossip: Gossip, self_node: UniqueAddress) -> list[UniqueAddress]:
    """Members a node may gossip to: all but itself and those it finds unreachable."""
    mine = self_unreachable(gossip, self_node)
    return [
        m.unique_address
        for m in gossip.members
        if m.unique_address != self_node and m.unique_address not in mine
    ]


def select_peer(
    gossip: Gossip, self_node: UniqueAddress, rng: random.Random
) -> UniqueAddress | None:
    """The peer of this round: preferably (:data:`PREFER_UNSEEN`) one that has not seen."""
    targets = gossip_targets(gossip, self_node)
    if not targets:
        return None
    unseen = [n for n in targets if n not in gossip.seen]
    if unseen and (len(unseen) == len(targets) or rng.random() < PREFER_UNSEEN):
        return rng.choice(unseen)
    return rng.choice(targets)


def unseen_peers(gossip: Gossip, self_node: UniqueAddress) -> list[UniqueAddress]:
    """Reachable members that have not seen this version (for pushing a change at once)."""
    return [
        n
        for n in gossip_targets(gossip, self_node)
        if n not in gossip.seen
        and (m := gossip.member(n)) is not None
        and m.status is not MemberStatus.DOWN
    ]


def answer_status(local: Gossip, version: VectorClock, digest: int, local_digest: int) -> Answer:
    """How to answer a peer's digest (``version``, seen ``digest``)."""
    match local.version.compare(version):
        case Ordering.SAME:
            return Answer.NOTHING if digest == local_digest else Answer.STATE
        case Ordering.BEFORE:
            return Answer.STATUS
        case Ordering.AFTER | Ordering.CONCURRENT:
            return Answer.STATE


def answer_state(received: Gossip, merged: Gossip) -> Answer:
    """Whether to send the merged state back to the peer whose state was ``received``."""
    if received.version.compare(merged.version) is not Ordering.SAME:
        return Answer.STATE
    return Answer.NOTHING if received.seen >= merged.seen else Answer.STATE
