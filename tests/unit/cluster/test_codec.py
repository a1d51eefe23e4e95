"""The cluster codec: every message round-trips; bad frames raise ProtocolError; 1,000
members fit in 256 KiB."""

from __future__ import annotations

import pytest

from shoal._proto import cluster_pb2 as pb
from shoal.cluster import MemberStatus, ProtocolError
from shoal.cluster._codec import decode, encode, seen_digest
from shoal.cluster._gossip import Gossip
from shoal.cluster._messages import (
    Body,
    Down,
    Envelope,
    GossipState,
    GossipStatus,
    Heartbeat,
    HeartbeatReply,
    Join,
    Leave,
    Welcome,
)
from shoal.cluster._reachability import Reachability
from shoal.cluster._vclock import VectorClock
from shoal.cluster.testing import up_gossip
from shoal.runtime import Address, UniqueAddress

from ._support import gossip, member, node


def _rich_gossip() -> Gossip:
    a, b, c = member(1, roles=["web", "db"]), member(2, MemberStatus.LEAVING), member(3)
    j = member(4, MemberStatus.JOINING)
    reach = Reachability().unreachable(a.unique_address, c.unique_address)
    reach = reach.terminated(b.unique_address, c.unique_address)
    g = gossip(a, b, c, j, reachability=reach, seen=[a.unique_address, b.unique_address])
    return g.remove(a.unique_address, [node(9, 7)], now=12.5)


def _envelope(body: Body) -> Envelope:
    return Envelope("app", node(1), UniqueAddress(Address("app", "10.0.0.1", 2), 0), body)


@pytest.mark.parametrize(
    "body",
    [
        Join(frozenset({"web", "db"})),
        Join(frozenset()),
        Welcome(_rich_gossip()),
        GossipState(_rich_gossip()),
        GossipState(Gossip()),
        GossipStatus(VectorClock({node(1): 3, node(2): 1}), 2**64 - 1),
        Heartbeat(7),
        HeartbeatReply(2**40),
        Leave(Address("app", "10.0.0.1", 3)),
        Down(Address("app", "::1", 3)),
    ],
)
def test_every_message_round_trips(body: Body) -> None:
    env = _envelope(body)
    assert decode(encode(env)) == env


def test_the_full_state_of_1000_members_fits_in_256_kib() -> None:
    g = up_gossip(1000)
    nodes = [m.unique_address for m in g.members]
    g = g.changed(nodes[0], reachability=Reachability().unreachable(nodes[0], nodes[1]))
    g = Gossip.of(
        g.members,
        version=VectorClock({n: 1000 + i for i, n in enumerate(nodes)}),
        seen=nodes,
        reachability=g.reachability,
    )
    data = encode(Envelope("shoal", nodes[0], nodes[1], GossipState(g)))
    assert len(data) <= 256 * 1024
    assert decode(data).body == GossipState(g)


def _raw(**fields: object) -> bytes:
    msg = pb.ClusterEnvelope(cluster="app", **fields)  # type: ignore[arg-type]
    getattr(msg, "from").CopyFrom(pb.Node(host_port="10.0.0.1:1", uid=5))
    msg.to.CopyFrom(pb.Node(host_port="10.0.0.1:2", uid=6))
    return msg.SerializeToString()


def _state(g: pb.Gossip) -> bytes:
    return _raw(state=pb.GossipState(gossip=g))


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"\xff\xff\xff", "undecodable"),
        (pb.ClusterEnvelope().SerializeToString(), "cluster name"),
        (_raw(), "without a message"),
        (_raw(leave=pb.Leave(host_port="nonsense")), "bad node address"),
        (_state(pb.Gossip(host_ports=["10.0.0.1:1"], uids=[])), "as many uids"),
        (_state(pb.Gossip(host_ports=["10.0.0.1:1"], uids=[0])), "uid 0"),
        (_state(pb.Gossip(host_ports=["10.0.0.1:1"] * 2, uids=[3, 3])), "twice"),
        (_state(pb.Gossip(host_ports=["10.0.0.1:1"], uids=[3], seen=[4])), "node #4"),
        (
            _state(pb.Gossip(host_ports=["10.0.0.1:1"], uids=[3], members=[pb.Member(status=9)])),
            "unknown member status",
        ),
        (
            _state(pb.Gossip(host_ports=["10.0.0.1:1"], uids=[3], members=[pb.Member(roles=[2])])),
            "unknown role",
        ),
        (
            _state(
                pb.Gossip(
                    host_ports=["10.0.0.1:1", "10.0.0.1:1"],
                    uids=[3, 4],
                    members=[pb.Member(), pb.Member()],
                )
            ),
            "two members",
        ),
        (
            _state(pb.Gossip(host_ports=["10.0.0.1:1"], uids=[3], tombstone_times=[1.0, 2.0])),
            "more members and tombstones",
        ),
        (
            _state(pb.Gossip(host_ports=["10.0.0.1:1"], uids=[3], version_nodes=[0])),
            "as many counters",
        ),
    ],
)
def test_bad_frames_raise_protocol_error(data: bytes, match: str) -> None:
    with pytest.raises(ProtocolError, match=match):
        decode(data)


def test_seen_digest_is_stable_and_order_free() -> None:
    assert seen_digest([node(1), node(2)]) == seen_digest([node(2), node(1)])
    assert seen_digest([node(1)]) != seen_digest([node(2)])
    assert seen_digest([]) == seen_digest(())
