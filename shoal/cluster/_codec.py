"""Protocol messages <-> bytes (``proto/cluster.proto``); every frame checked on the way in.

Addresses are written as ``host:port`` and the incarnation uid; the system
name is the envelope's ``cluster``. A gossip state writes each incarnation
it mentions once (the members in order, then the tombstones, then anything
else its clock or tables name) and refers to them by index, so 1,000
members take about 40 bytes each.

:func:`decode` raises :class:`ProtocolError` for anything that is not a
valid message: the caller refuses the frame and keeps its state.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Sequence
from typing import Final

from google.protobuf.message import DecodeError

from shoal._proto import cluster_pb2 as pb
from shoal.runtime import Address, UniqueAddress

from ._errors import ProtocolError
from ._gossip import Gossip
from ._member import Member, MemberStatus
from ._messages import (
    Body,
    Down,
    Envelope,
    ExitingConfirmed,
    GossipState,
    GossipStatus,
    Heartbeat,
    HeartbeatReply,
    Join,
    Leave,
    Welcome,
)
from ._reachability import Reachability, ReachabilityStatus, Record
from ._vclock import VectorClock

_STATUS_TO_PB: Final = {
    MemberStatus.JOINING: pb.JOINING,
    MemberStatus.WEAKLY_UP: pb.WEAKLY_UP,
    MemberStatus.UP: pb.UP,
    MemberStatus.LEAVING: pb.LEAVING,
    MemberStatus.EXITING: pb.EXITING,
    MemberStatus.DOWN: pb.DOWN,
}
_STATUS_FROM_PB: Final = {v: k for k, v in _STATUS_TO_PB.items()}
_REACH_TO_PB: Final = {
    ReachabilityStatus.REACHABLE: pb.REACHABLE,
    ReachabilityStatus.UNREACHABLE: pb.UNREACHABLE,
    ReachabilityStatus.TERMINATED: pb.TERMINATED,
}
_REACH_FROM_PB: Final = {v: k for k, v in _REACH_TO_PB.items()}
_MAX_ROLES: Final = 64
_MAX_ROLE_LENGTH: Final = 256
_CACHE_LIMIT: Final = 100_000


def host_port(address: Address) -> str:
    """``host:port`` of ``address`` (IPv6 hosts in brackets)."""
    return str(address).partition("@")[2]


def parse_host_port(cluster: str, text: str) -> Address:
    """The address ``cluster@text``; :class:`ProtocolError` when it does not parse."""
    try:
        address = Address.parse(f"{cluster}@{text}")
    except ValueError as error:
        raise ProtocolError(f"bad node address {text!r}: {error}") from None
    if not address.has_host:
        raise ProtocolError(f"bad node address {text!r}")
    return address


def seen_digest(seen: Iterable[UniqueAddress]) -> int:
    """A stable 64-bit hash of a seen set (the same in every process)."""
    text = ";".join(sorted(str(node) for node in seen))  # strings sort in C
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")


# -- encoding ------------------------------------------------------------------------------


def _node(node: UniqueAddress) -> pb.Node:
    return pb.Node(host_port=host_port(node.address), uid=node.uid)


def encode_gossip(gossip: Gossip, out: pb.Gossip) -> None:
    """Write ``gossip`` into ``out`` (an empty ``Gossip`` message)."""
    table = list(gossip.address_table())
    index = {node: i for i, node in enumerate(table)}

    def at(node: UniqueAddress) -> int:
        i = index.get(node)
        if i is None:  # named by the clock or a table but neither member nor tombstone
            i = index[node] = len(table)
            table.append(node)
        return i

    roles: dict[str, int] = {}
    for m in gossip.members:
        out.members.add(
            status=_STATUS_TO_PB[m.status],
            up_number=m.up_number,
            roles=[roles.setdefault(r, len(roles)) for r in sorted(m.roles)],
        )
    out.roles.extend(roles)
    for node, count in gossip.version.counters.items():
        if count:
            out.version_nodes.append(at(node))
            out.version_counters.append(count)
    out.seen.extend(sorted(at(n) for n in gossip.seen))
    reach = gossip.reachability
    rows: dict[UniqueAddress, pb.ObserverRows] = {}
    for observer, version in sorted(reach.versions.items()):
        rows[observer] = out.reachability.add(observer=at(observer), version=version)
    for r in reach.records:
        rows[r.observer].records.add(
            subject=at(r.subject), status=_REACH_TO_PB[r.status], version=r.version
        )
    out.tombstone_times.extend(gossip.tombstones[n] for n in sorted(gossip.tombstones))
    out.host_ports.extend(host_port(n.address) for n in table)
    out.uids.extend(n.uid for n in table)


def encode(envelope: Envelope) -> bytes:
    """The wire form of ``envelope``."""
    msg = pb.ClusterEnvelope(cluster=envelope.cluster)
    getattr(msg, "from").CopyFrom(_node(envelope.sender))
    msg.to.CopyFrom(_node(envelope.recipient))
    body = envelope.body
    match body:
        case Join(roles=roles):
            msg.join.roles.extend(sorted(roles))
        case Welcome(gossip=gossip):
            encode_gossip(gossip, msg.welcome.gossip)
        case GossipStatus(version=version, seen_digest=digest):
            for node, count in version.counters.items():
                if count:
                    msg.status.nodes.append(_node(node))
                    msg.status.counters.append(count)
            msg.status.seen_digest = digest
        case GossipState(gossip=gossip):
            encode_gossip(gossip, msg.state.gossip)
        case Heartbeat(sequence=seq):
            msg.heartbeat.sequence = seq
        case HeartbeatReply(sequence=seq):
            msg.heartbeat_reply.sequence = seq
        case Leave(address=address):
            msg.leave.host_port = host_port(address)
        case Down(address=address):
            msg.down.host_port = host_port(address)
        case ExitingConfirmed():
            msg.exiting_confirmed.SetInParent()
    return msg.SerializeToString()


# -- decoding ------------------------------------------------------------------------------


def _unique(cluster: str, node: pb.Node) -> UniqueAddress:
    return UniqueAddress(parse_host_port(cluster, node.host_port), node.uid)


def _pick(table: Sequence[UniqueAddress], i: int, what: str) -> UniqueAddress:
    if not 0 <= i < len(table):
        raise ProtocolError(f"{what} refers to node #{i}, the state lists {len(table)}")
    return table[i]


class NodeCache:
    """Incarnations already parsed, by ``(host_port, uid)``; one per node, bounded.

    Every gossip state lists every member again; parsing each address
    anew would dominate decoding. Cleared when full (misses only cost a parse).
    """

    __slots__ = ("_cluster", "_nodes")

    def __init__(self, cluster: str) -> None:
        self._cluster = cluster
        self._nodes: dict[tuple[str, int], UniqueAddress] = {}

    @property
    def cluster(self) -> str:
        """The cluster (system) name the cached addresses belong to."""
        return self._cluster

    def get(self, host_port: str, uid: int) -> UniqueAddress:
        """The incarnation ``uid`` at ``host_port``; :class:`ProtocolError` if invalid."""
        key = (host_port, uid)
        node = self._nodes.get(key)
        if node is None:
            if uid == 0:
                raise ProtocolError(f"node {host_port} has uid 0")
            if len(self._nodes) >= _CACHE_LIMIT:
                self._nodes.clear()
            node = self._nodes[key] = UniqueAddress(parse_host_port(self._cluster, host_port), uid)
        return node


def decode_gossip(cluster: str, g: pb.Gossip, cache: NodeCache | None = None) -> Gossip:
    """The state ``g`` describes; :class:`ProtocolError` when it is inconsistent."""
    if len(g.host_ports) != len(g.uids):
        raise ProtocolError("node table: as many uids as addresses are needed")
    nodes = cache if cache is not None and cache.cluster == cluster else NodeCache(cluster)
    table = [nodes.get(hp, uid) for hp, uid in zip(g.host_ports, g.uids, strict=True)]
    # Compared as (host_port, uid): strings hash once, addresses on every call.
    if len(set(zip(g.host_ports, g.uids, strict=True))) != len(table):
        raise ProtocolError("node table lists a node twice")
    n_members = len(g.members)
    n_tombs = len(g.tombstone_times)
    if n_members + n_tombs > len(table):
        raise ProtocolError("more members and tombstones than nodes in the table")
    if len(g.roles) > _MAX_ROLES * max(1, n_members) or any(
        not r or len(r) > _MAX_ROLE_LENGTH for r in g.roles
    ):
        raise ProtocolError("bad role names")
    members: list[Member] = []
    addresses: set[str] = set()
    for i, m in enumerate(g.members):
        status = _STATUS_FROM_PB.get(m.status)
        if status is None:
            raise ProtocolError(f"unknown member status {m.status}")
        node, where = table[i], g.host_ports[i]
        if where in addresses:
            raise ProtocolError(f"two members at {node.address}")
        addresses.add(where)
        roles = frozenset(g.roles[r] for r in m.roles if 0 <= r < len(g.roles))
        if len(roles) != len(m.roles):
            raise ProtocolError("a member names an unknown role")
        members.append(Member(node, status, roles, m.up_number))
    tombstones: dict[UniqueAddress, float] = {}
    for i, at in enumerate(g.tombstone_times):
        if not math.isfinite(at):
            raise ProtocolError("a tombstone time is not finite")
        tombstones[table[n_members + i]] = at
    if len(g.version_nodes) != len(g.version_counters):
        raise ProtocolError("version: as many counters as nodes are needed")
    counters: dict[UniqueAddress, int] = {}
    for i, count in zip(g.version_nodes, g.version_counters, strict=True):
        counters[_pick(table, i, "version")] = count
    # Only members can have seen a state (a peer's other entries are dropped).
    picked = [_pick(table, i, "seen") for i in g.seen]  # range-checked
    seen = frozenset(node for i, node in zip(g.seen, picked, strict=True) if i < n_members)
    versions: dict[UniqueAddress, int] = {}
    records: list[Record] = []
    for rows in g.reachability:
        observer = _pick(table, rows.observer, "reachability")
        if observer in versions:
            raise ProtocolError("reachability lists an observer twice")
        versions[observer] = rows.version
        for r in rows.records:
            status_r = _REACH_FROM_PB.get(r.status)
            if status_r is None:
                raise ProtocolError(f"unknown reachability status {r.status}")
            records.append(Record(observer, _pick(table, r.subject, "record"), status_r, r.version))
    records.sort(key=lambda r: (r.observer, r.subject))
    return Gossip.of(
        members,
        version=VectorClock(counters),
        seen=seen,
        reachability=Reachability(tuple(records), versions),
        tombstones=tombstones,
    )


def decode(data: bytes, cache: NodeCache | None = None) -> Envelope:
    """The envelope ``data`` holds; :class:`ProtocolError` for anything else.

    ``cache`` (of the receiving node) saves parsing the addresses of a
    state's members again; it is used only for its own cluster name.
    """
    msg = pb.ClusterEnvelope()
    try:
        msg.ParseFromString(data)
    except (DecodeError, ValueError, RuntimeError) as error:
        raise ProtocolError(f"undecodable cluster frame: {error}") from None
    cluster = msg.cluster
    if not cluster:
        raise ProtocolError("cluster frame without a cluster name")
    sender_pb = getattr(msg, "from")
    if not msg.HasField("from") or not msg.HasField("to"):
        raise ProtocolError("cluster frame without sender or recipient")
    sender = _unique(cluster, sender_pb)
    if sender.uid == 0:
        raise ProtocolError("cluster frame from uid 0")
    recipient = _unique(cluster, msg.to)
    kind = msg.WhichOneof("body")
    body: Body
    match kind:
        case "join":
            roles = frozenset(msg.join.roles)
            if len(roles) > _MAX_ROLES or any(not r or len(r) > _MAX_ROLE_LENGTH for r in roles):
                raise ProtocolError("bad role names in a join")
            body = Join(roles)
        case "welcome":
            body = Welcome(decode_gossip(cluster, msg.welcome.gossip, cache))
        case "status":
            status = msg.status
            if len(status.nodes) != len(status.counters):
                raise ProtocolError("status: as many counters as nodes are needed")
            version = VectorClock(
                {_unique(cluster, n): c for n, c in zip(status.nodes, status.counters, strict=True)}
            )
            body = GossipStatus(version, status.seen_digest)
        case "state":
            body = GossipState(decode_gossip(cluster, msg.state.gossip, cache))
        case "heartbeat":
            body = Heartbeat(msg.heartbeat.sequence)
        case "heartbeat_reply":
            body = HeartbeatReply(msg.heartbeat_reply.sequence)
        case "leave":
            body = Leave(parse_host_port(cluster, msg.leave.host_port))
        case "down":
            body = Down(parse_host_port(cluster, msg.down.host_port))
        case "exiting_confirmed":
            body = ExitingConfirmed()
        case _:
            raise ProtocolError("cluster frame without a message")
    return Envelope(cluster, sender, recipient, body)
