"""What a node does with each frame peers send it: check it, then handle the message.

A frame is refused (counted in ``shoal_cluster_bad_input`` by kind, logged
at a rate limit, the state untouched) when it is not bytes, does not
decode (``undecodable``), comes from another cluster (``other-cluster``),
is meant for another incarnation of this address (``wrong-incarnation``),
names a sender other than the node it came through (``spoofed-sender``),
comes from a removed or quarantined incarnation (``quarantined``), or is
gossip from a node that is not a member (``unknown-sender``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from shoal.runtime import Actor, ActorRef, UniqueAddress

from ._codec import decode
from ._errors import ProtocolError
from ._gossip import Gossip, forbidden_claims
from ._member import MemberStatus
from ._membership import (
    Admitted,
    AlreadyMember,
    ReplacingIncarnation,
    confirm_exiting,
    down,
    join,
    leave,
    receive_gossip,
)
from ._messages import (
    Body,
    Down,
    ExitingConfirmed,
    GossipState,
    GossipStatus,
    Heartbeat,
    HeartbeatReply,
    Join,
    Leave,
    Welcome,
)
from ._node import Node
from ._pushpull import Answer, answer_state, answer_status

_ADMITTING: Final = frozenset({MemberStatus.JOINING, MemberStatus.WEAKLY_UP, MemberStatus.UP})


class Daemon(Actor):
    """The ``/system/cluster`` actor: hands each frame peers send to :func:`on_frame`."""

    def __init__(self, on_frame: Callable[[object, ActorRef | None], None]) -> None:
        self._on_frame = on_frame

    def receive(self, message: object) -> None:
        self._on_frame(message, self.ctx.sender)


def refuse(node: Node, kind: str, detail: str, *, expected: bool = False) -> None:
    """Count and log (rate-limited) a refused frame of ``kind``.

    ``expected`` refusals (the last frames of a member just removed) are
    logged at INFO rather than WARNING.
    """
    node.metrics.count_bad(kind)
    log = node.info_log if expected else node.bad_log
    log.report(
        f"cluster-{kind}", "[%s] refused a cluster frame (%s): %s", node.self_node, kind, detail
    )


def on_frame(node: Node, data: object, sender: ActorRef | None) -> None:
    """Check one frame from a peer and handle its message (see the module docstring)."""
    if node.closed:
        return
    if not isinstance(data, bytes):
        refuse(node, "not-bytes", f"a {type(data).__name__}")
        return
    node.metrics.messages_received += 1
    node.metrics.bytes_received += len(data)
    try:
        envelope = decode(data, node.node_cache)
    except ProtocolError as error:
        refuse(node, "undecodable", str(error))
        return
    me, frm, to = node.self_node, envelope.sender, envelope.recipient
    if envelope.cluster != node.system.name:
        refuse(node, "other-cluster", f"from cluster {envelope.cluster!r} ({frm})")
    elif to.address != me.address or to.uid not in (0, me.uid):
        refuse(node, "wrong-incarnation", f"{frm} wrote to {to}, this node is {me}")
    elif to.uid == 0 and not isinstance(envelope.body, Join):
        refuse(node, "wrong-incarnation", f"{frm} sent {type(envelope.body).__name__} to uid 0")
    elif sender is not None and sender.path.node != frm.address:
        refuse(node, "spoofed-sender", f"{frm} sent through {sender.path.node}")
    elif node.membership.gossip.is_tombstoned(frm):
        refuse(node, "quarantined", f"from removed incarnation {frm}", expected=True)
    elif node.remoting.is_quarantined(str(frm.address), frm.uid):
        refuse(node, "quarantined", f"from quarantined incarnation {frm}")
    else:
        _dispatch(node, frm, envelope.body)


def _dispatch(node: Node, frm: UniqueAddress, body: Body) -> None:
    match body:
        case Heartbeat(sequence=seq):
            if node.membership.self_member is not None or not node.was_member:
                node.send(frm, HeartbeatReply(seq))  # a removed node stays silent
        case HeartbeatReply():
            node.heartbeat.reply(frm, node.system.clock.now())
        case GossipStatus():
            _on_status(node, frm, body)
        case GossipState(gossip=gossip):
            _on_state(node, frm, gossip)
        case Join(roles=roles):
            _on_join(node, frm, roles)
        case Welcome(gossip=gossip):
            on_welcome(node, frm, gossip)
        case Leave(address=address):
            if _is_member(node, frm):
                node.apply(leave(node.membership, address), push=True)
        case Down(address=address):
            if _is_member(node, frm):
                node.apply(down(node.membership, address), push=True)
        case ExitingConfirmed():
            if _is_member(node, frm):
                node.apply(confirm_exiting(node.membership, frm), push=False)
                node.leader_step()


def _is_member(node: Node, frm: UniqueAddress) -> bool:
    if node.membership.gossip.has_member(frm):
        return True
    refuse(node, "unknown-sender", f"{frm} is not a member")
    return False


def _on_status(node: Node, frm: UniqueAddress, status: GossipStatus) -> None:
    if node.membership.self_member is None or not _is_member(node, frm):
        return
    gossip = node.membership.gossip
    answer = answer_status(gossip, status.version, status.seen_digest, node.seen_digest(gossip))
    if answer is Answer.STATE:
        node.send_state(frm)
    elif answer is Answer.STATUS:
        node.send_status(frm)


def _on_state(node: Node, frm: UniqueAddress, remote: Gossip) -> None:
    state = node.membership
    if state.self_member is None:
        if not node.was_member and remote.has_member(node.self_node):
            on_welcome(node, frm, remote)  # the welcome was lost; this says the same
        return
    if not state.gossip.has_member(frm) and not remote.has_member(frm):
        refuse(node, "unknown-sender", f"gossip from {frm}, not a member")
        return
    for known, claimed in forbidden_claims(state.gossip, remote):
        node.metrics.forbidden_claims += 1
        node.bad_log.report(
            "cluster-forbidden-claim",
            "[%s] ignored %s's claim that %s is %s (it is %s)",
            node.self_node,
            frm,
            known.unique_address,
            claimed.status,
            known.status,
        )
    merged, _ = receive_gossip(state, remote)
    node.apply(merged, push=False)
    node.leader_step()
    if answer_state(remote, node.membership.gossip) is Answer.STATE:
        node.send_state(frm)


def _on_join(node: Node, frm: UniqueAddress, roles: frozenset[str]) -> None:
    me = node.membership.self_member
    if me is None or me.status not in _ADMITTING or frm.address == node.self_node.address:
        return  # not in a cluster yet: the joiner asks the other seeds
    state, decision = join(node.membership, frm, roles)
    # Not pushed to other peers: the welcome and the joiner's answer carry
    # it, gossip spreads it; pushing every admission of a mass join would
    # multiply full states (200 joiners: 40% fewer bytes without).
    node.apply(state, push=False)
    match decision:
        case Admitted() | AlreadyMember():
            node.send(frm, Welcome(node.membership.gossip))
        case ReplacingIncarnation(old=old):
            node.remoting.quarantine(str(old.address), old.unique_address.uid)
            # Not admitted yet; a welcome without it says a cluster exists: retry.
            node.send(frm, Welcome(node.membership.gossip))
            node.leader_step()
        case _:
            node.bad_log.report(
                "cluster-join-refused", "[%s] refused the join of %s", node.self_node, frm
            )


def on_welcome(node: Node, frm: UniqueAddress, gossip: Gossip) -> None:
    """A member answered this node's join with ``gossip``: adopt it if it lists this node."""
    if node.membership.self_member is not None or node.was_member:
        return
    if node.seed_join is not None:
        node.seed_join.answered = True
    if not gossip.has_member(node.self_node) or not gossip.has_member(frm):
        return  # a cluster exists but does not admit this node yet: keep trying
    if node.seed_join is not None:
        node.seed_join.stop()
    merged, _ = receive_gossip(node.membership, gossip)
    node.apply(merged, push=False)
    node.send_state(frm)  # it learns this node has seen the state
