"""Property tests: merge is a join (commutative, associative, idempotent); no status goes back.

Replicas start from one formed cluster and each applies a random sequence
of valid operations — joins (new nodes and new incarnations of members),
leaves, downs, reachability observations, acknowledgements by members
without a replica, leader ticks, and gossip from another replica.
"""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from shoal.cluster import MemberStatus
from shoal.cluster._gossip import Gossip, merge
from shoal.cluster._membership import (
    MembershipState,
    down,
    join,
    leader_actions,
    leave,
    observe_reachable,
    observe_unreachable,
    receive_gossip,
)
from shoal.runtime import UniqueAddress

from ._support import SETTINGS, gossip, member, node

REPLICAS = 3
ANCESTOR = gossip(*(member(p) for p in range(1, REPLICAS + 1)))
# joiners: new nodes, and new incarnations at the members' addresses
POOL = [node(p) for p in range(5, 8)] + [node(p, uid=2) for p in range(1, 4)]
# "ack": a member without a replica of its own (a joiner) received this state
OPS = (
    "join",
    "leave",
    "down",
    "unreachable",
    "reachable",
    "ack",
    "tick",
    "tick",
    "gossip",
    "gossip",
)

operation = st.tuples(st.integers(0, REPLICAS - 1), st.sampled_from(OPS), st.integers(0, 63))


def ranks(g: Gossip) -> dict[UniqueAddress, int]:
    """Each incarnation's status rank; removed ones rank as Removed."""
    result = {m.unique_address: m.status.rank for m in g.members}
    for n in g.tombstones:
        result[n] = MemberStatus.REMOVED.rank
    return result


def assert_forward(before: Gossip, after: Gossip) -> None:
    old, new = ranks(before), ranks(after)
    for n, rank in old.items():
        assert n in new, f"{n} vanished without a tombstone"
        assert new[n] >= rank, f"{n} went backwards"
    for m in after.members:
        assert not after.is_tombstoned(m.unique_address)


def apply(
    replicas: list[MembershipState], index: int, op: str, arg: int, now: float
) -> MembershipState:
    s = replicas[index]
    members = s.gossip.members
    target = members[arg % len(members)].unique_address if members else s.self_node
    match op:
        case "join":
            return join(s, POOL[arg % len(POOL)])[0]
        case "leave":
            return leave(s, target)
        case "down":
            return down(s, target)
        case "unreachable":
            return observe_unreachable(s, target)
        case "reachable":
            return observe_reachable(s, target)
        case "ack":
            return replace(s, gossip=s.gossip.with_seen(target))
        case _:
            return receive_gossip(s, replicas[arg % len(replicas)].gossip)[0]


def sync(replicas: list[MembershipState]) -> list[MembershipState]:
    for _ in range(2):  # the second round spreads the seen sets of the first
        merged = replicas[0].gossip
        for s in replicas[1:]:
            merged = merge(merged, s.gossip)
        replicas = [receive_gossip(s, merged)[0] for s in replicas]
    return replicas


def run(ops: list[tuple[int, str, int]]) -> list[MembershipState]:
    replicas = [MembershipState(node(i + 1), ANCESTOR) for i in range(REPLICAS)]
    for step, (index, op, arg) in enumerate(ops):
        if op in ("sync", "tick"):  # every replica gossips, or every replica ticks
            now = float(step)
            if op == "sync":
                changed = sync(replicas)
            else:
                changed = [leader_actions(s, now, SETTINGS)[0] for s in replicas]
            for before, after in zip(replicas, changed, strict=True):
                assert_forward(before.gossip, after.gossip)
            replicas = changed
            continue
        before = replicas[index]
        after = apply(replicas, index, op, arg, now=float(step))
        assert_forward(before.gossip, after.gossip)
        replicas[index] = after
    return replicas


@settings(max_examples=150, deadline=None, database=None)
@given(st.lists(operation, min_size=10, max_size=60))
def test_merge_is_commutative_associative_and_idempotent(ops: list[tuple[int, str, int]]) -> None:
    a, b, c = (s.gossip for s in run(ops))
    assert merge(a, a) == a
    assert merge(a, b) == merge(b, a)
    assert merge(merge(a, b), c) == merge(a, merge(b, c))
    # and merging never moves anyone backwards
    ab = merge(a, b)
    assert_forward(a, ab)
    assert_forward(b, ab)


@settings(max_examples=150, deadline=None, database=None)
@given(st.lists(operation, min_size=10, max_size=60), st.lists(operation, max_size=10))
def test_merging_with_an_ancestor_returns_the_descendant(
    prefix: list[tuple[int, str, int]], suffix: list[tuple[int, str, int]]
) -> None:
    replicas = run(prefix)
    earlier = replicas[0].gossip
    later = replicas[0]
    for step, (_, op, arg) in enumerate(suffix):
        if op == "tick":
            later = leader_actions(later, 1000.0 + step, SETTINGS)[0]
        elif op not in ("gossip", "sync"):  # stay a pure descendant
            later = apply([later, *replicas[1:]], 0, op, arg, now=1000.0 + step)
    assert merge(earlier, later.gossip) == later.gossip
    assert merge(later.gossip, earlier) == later.gossip


@settings(max_examples=100, deadline=None, database=None)
@given(st.lists(operation, min_size=10, max_size=60))
def test_replicas_that_have_seen_the_same_state_agree_on_the_leader(
    ops: list[tuple[int, str, int]],
) -> None:
    replicas = run(ops)
    merged = replicas[0].gossip
    for s in replicas[1:]:
        merged = merge(merged, s.gossip)
    finals = [receive_gossip(s, merged)[0] for s in replicas]
    for s in finals:
        assert s.gossip.version == merged.version
        assert s.gossip.members == merged.members
    if merged.reachability.is_all_reachable:
        assert len({s.leader for s in finals}) == 1
