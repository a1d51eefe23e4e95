"""The split-brain resolver: every split of up to six members, indirect connections, stability."""

from __future__ import annotations

import itertools

import pytest

from shoal.cluster import (
    ClusterSettings,
    DownAll,
    KeepMajority,
    KeepOldest,
    MemberStatus,
    StaticQuorum,
    Strategy,
)
from shoal.cluster._member import Member
from shoal.cluster._reachability import Reachability
from shoal.cluster._sbr import (
    DecisionKind,
    SbrView,
    Stability,
    decide,
    strategy_from_settings,
)
from shoal.runtime import UniqueAddress

from ._support import gossip, member, node


def strategies(size: int) -> list[Strategy]:
    return [
        KeepMajority(),
        KeepOldest(down_if_alone=True),
        KeepOldest(down_if_alone=False),
        StaticQuorum(quorum_size=size // 2 + 1),
        DownAll(),
    ]


def splits(size: int) -> list[tuple[tuple[int, ...], tuple[int, ...]]]:
    """Every split of members 0..size-1 into two non-empty sides."""
    everyone = range(size)
    return [
        (side, tuple(i for i in everyone if i not in side))
        for k in range(1, size)
        for side in itertools.combinations(everyone, k)
    ]


def ages(size: int) -> list[list[int]]:
    """A few age assignments per size: oldest first, last, in the middle, and ties."""
    return [
        list(range(1, size + 1)),
        list(range(size, 0, -1)),
        [(i * 3) % size + 1 for i in range(size)],
        [1] * size,  # equal up numbers: the lowest address is the oldest
    ]


def side_decision(
    strategy: Strategy, members: list[Member], side: tuple[int, ...]
) -> frozenset[UniqueAddress]:
    """What the side decides from its own view: it sees the other side as unreachable."""
    here = {members[i].unique_address for i in side}
    there = frozenset(m.unique_address for m in members if m.unique_address not in here)
    observer = members[side[0]].unique_address
    table = Reachability()
    for subject in sorted(there):
        table = table.unreachable(observer, subject)
    view = SbrView.of(gossip(*members, seen=sorted(here), reachability=table), observer)
    decision = decide(strategy, view)
    assert decision is not None
    assert decision.this_side == here
    assert decision.other_side == there
    assert decision.to_down in (here, there, here | there)
    return decision.to_down


CASES = [
    (size, ordering, strategy)
    for size in range(2, 7)
    for ordering in ages(size)
    for strategy in strategies(size)
]


@pytest.mark.parametrize(("size", "age", "strategy"), CASES)
def test_at_most_one_side_survives_every_split(
    size: int, age: list[int], strategy: Strategy
) -> None:
    members = [member(i + 1, up_number=age[i]) for i in range(size)]
    for side_a, side_b in splits(size):
        downed_by_a = side_decision(strategy, members, side_a)
        downed_by_b = side_decision(strategy, members, side_b)
        a_survives = not downed_by_a & {members[i].unique_address for i in side_a}
        b_survives = not downed_by_b & {members[i].unique_address for i in side_b}
        assert not (a_survives and b_survives), (side_a, side_b)
        if isinstance(strategy, (KeepMajority, KeepOldest)):
            # these strategies always keep exactly one side
            assert a_survives or b_survives, (side_a, side_b)
        if a_survives:
            assert downed_by_a == {members[i].unique_address for i in side_b}
        if isinstance(strategy, DownAll):
            assert not a_survives
            assert not b_survives


@pytest.mark.parametrize(
    ("this_side", "other_side", "survives"),
    [
        ((1, 2, 3), (4, 5), True),
        ((4, 5), (1, 2, 3), False),
        ((1, 2), (3, 4), True),  # a tie: the side holding the lowest address survives
        ((3, 4), (1, 2), False),
        ((2, 3), (1, 4), False),
    ],
)
def test_keep_majority(
    this_side: tuple[int, ...], other_side: tuple[int, ...], survives: bool
) -> None:
    members = [member(p) for p in sorted(this_side + other_side)]
    view = SbrView(node(this_side[0]), tuple(members), frozenset(node(p) for p in other_side))
    decision = decide(KeepMajority(), view)
    assert decision is not None
    assert decision.downs_self is not survives


def test_keep_majority_does_not_count_joiners() -> None:
    members = (
        member(1),
        member(2),
        member(3, MemberStatus.JOINING),
        member(4, MemberStatus.JOINING),
        member(5),
    )
    view = SbrView(node(1), members, frozenset({node(5)}))
    # 1 and 2 against 5: the joiners 3 and 4 are not counted, but are kept
    decision = decide(KeepMajority(), view)
    assert decision is not None
    assert decision.to_down == {node(5)}
    view = SbrView(node(3), members, frozenset({node(1), node(2), node(4)}))
    assert decide(KeepMajority(), view).downs_self  # type: ignore[union-attr]


def test_role_filter_counts_only_members_with_the_role() -> None:
    members = (
        member(1),
        member(2),
        member(3, roles=["db"]),
        member(4, roles=["db"]),
        member(5, roles=["db"]),
    )
    view = SbrView(node(1), members, frozenset({node(3), node(4), node(5)}))
    assert decide(KeepMajority(), view).downs_self  # type: ignore[union-attr]
    two_vs_three = SbrView(node(1), members, frozenset({node(2), node(3)}))
    decision = decide(KeepMajority(role="db"), two_vs_three)
    assert decision is not None
    assert decision.to_down == {node(2), node(3)}  # 2 db members here against 1


def test_keep_oldest_down_if_alone() -> None:
    members = (member(1, up_number=1), member(2, up_number=2), member(3, up_number=3))
    alone = SbrView(node(1), members, frozenset({node(2), node(3)}))
    assert decide(KeepOldest(down_if_alone=True), alone).downs_self  # type: ignore[union-attr]
    assert not decide(KeepOldest(down_if_alone=False), alone).downs_self  # type: ignore[union-attr]


def test_static_quorum_downs_everyone_in_a_too_large_cluster() -> None:
    members = tuple(member(p) for p in range(1, 6))
    view = SbrView(node(1), members, frozenset({node(5)}))
    decision = decide(StaticQuorum(quorum_size=2), view)
    assert decision is not None
    assert decision.kind is DecisionKind.DOWN_ALL
    assert decision.to_down == {m.unique_address for m in members}


def test_no_decision_without_unreachable_live_members() -> None:
    members = (member(1), member(2), member(3, MemberStatus.DOWN))
    assert decide(KeepMajority(), SbrView(node(1), members, frozenset())) is None
    assert decide(KeepMajority(), SbrView(node(1), members, frozenset({node(3)}))) is None


def test_indirectly_connected_members_are_downed() -> None:
    # 1 reaches 2, 2 reaches 3, but 1 and 3 observe each other unreachable
    table = Reachability().unreachable(node(1), node(3)).unreachable(node(3), node(1))
    members = (member(1), member(2), member(3))
    view = SbrView.of(gossip(*members, seen=[node(2)], reachability=table), node(2))
    assert view.indirectly_connected() == {node(1), node(3)}
    decision = decide(KeepMajority(), view)
    assert decision is not None
    assert decision.kind is DecisionKind.DOWN_INDIRECTLY_CONNECTED
    assert decision.to_down == {node(1), node(3)}
    assert not decision.downs_self


def test_indirect_connection_is_seen_through_the_seen_set() -> None:
    # 1 observes 3 unreachable, yet 3 has seen the gossip carrying that record
    table = Reachability().unreachable(node(1), node(3))
    view = SbrView.of(
        gossip(member(1), member(2), member(3), seen=[node(1), node(3)], reachability=table),
        node(2),
    )
    assert view.indirectly_connected() == {node(1), node(3)}


def test_indirectly_connected_plus_a_clean_partition() -> None:
    # 4 and 5 are cleanly cut off; 2 and 3 see each other unreachable
    table = Reachability()
    for observer in (node(1), node(2), node(3)):
        for subject in (node(4), node(5)):
            table = table.unreachable(observer, subject)
    table = table.unreachable(node(2), node(3)).unreachable(node(3), node(2))
    members = tuple(member(p) for p in range(1, 6))
    view = SbrView.of(gossip(*members, seen=[node(1)], reachability=table), node(1))
    decision = decide(KeepMajority(), view)
    assert decision is not None
    # 1 against 4 and 5 once 2 and 3 are set aside: the other side wins, and 2, 3 go too
    assert decision.indirectly_connected == {node(2), node(3)}
    assert decision.other_side == {node(4), node(5)}
    assert decision.to_down == {node(1), node(2), node(3)}
    assert decision.downs_self


def test_describe_names_the_decision_and_both_sides() -> None:
    members = (member(1), member(2), member(3))
    decision = decide(KeepMajority(), SbrView(node(1), members, frozenset({node(3)})))
    assert decision is not None
    line = decision.describe()
    assert "keep-majority" in line
    assert "down the other side" in line
    assert f"this side [{node(1)}, {node(2)}]" in line
    assert f"other side [{node(3)}]" in line


def test_stability_tracks_when_the_unreachable_set_last_changed() -> None:
    s = Stability()
    assert not s.is_stable(100.0, 7.0)  # nothing unreachable: nothing to decide
    s = s.observe(frozenset({node(3)}), 10.0)
    assert s.observe(frozenset({node(3)}), 12.0) is s
    assert not s.is_stable(16.999, 7.0)
    assert s.is_stable(17.0, 7.0)
    s = s.observe(frozenset({node(3), node(4)}), 15.0)
    assert s.since == 15.0
    assert not s.is_stable(21.0, 7.0)
    s = s.observe(frozenset({node(3), node(4)}), 16.0, members=frozenset({node(1)}))
    assert s.stable_for(23.0) == 7.0


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        (ClusterSettings(), KeepMajority()),
        (ClusterSettings(sbr_strategy="keep-oldest", sbr_down_if_alone=False), KeepOldest(False)),
        (
            ClusterSettings(sbr_strategy="static-quorum", sbr_quorum_size=3, sbr_role="r"),
            StaticQuorum(3, "r"),
        ),
        (ClusterSettings(sbr_strategy="down-all"), DownAll()),
    ],
)
def test_strategy_from_settings(settings: ClusterSettings, expected: Strategy) -> None:
    assert strategy_from_settings(settings) == expected
