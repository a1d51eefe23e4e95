"""Member statuses, the transition table, ages and merge priority."""

from __future__ import annotations

import itertools

import pytest

from shoal.cluster import InvalidTransitionError, Member, MemberStatus
from shoal.cluster._member import NOT_UP, by_address, highest_priority, oldest

from ._support import member, node

J, W, U, L, E, D, R = (
    MemberStatus.JOINING,
    MemberStatus.WEAKLY_UP,
    MemberStatus.UP,
    MemberStatus.LEAVING,
    MemberStatus.EXITING,
    MemberStatus.DOWN,
    MemberStatus.REMOVED,
)

ALLOWED = {
    (J, W), (J, U), (J, L), (J, D), (J, R),
    (W, U), (W, L), (W, D), (W, R),
    (U, L), (U, D), (U, R),
    (L, E), (L, D), (L, R),
    (E, D), (E, R),
    (D, R),
}  # fmt: skip


@pytest.mark.parametrize(("current", "requested"), list(itertools.permutations(MemberStatus, 2)))
def test_transition_table(current: MemberStatus, requested: MemberStatus) -> None:
    m = Member(node(1), current)
    if (current, requested) in ALLOWED:
        assert current.can_become(requested)
        assert m.with_status(requested).status is requested
    else:
        assert not current.can_become(requested)
        with pytest.raises(InvalidTransitionError, match=f"from {current} to {requested}"):
            m.with_status(requested)


def test_every_allowed_transition_moves_up_the_rank() -> None:
    for current, requested in ALLOWED:
        assert requested.rank > current.rank


def test_same_status_is_no_change() -> None:
    m = member(1)
    assert m.with_status(U) is m


def test_with_up_assigns_the_age() -> None:
    m = Member(node(1))
    assert m.up_number == NOT_UP
    up = m.with_up(4)
    assert (up.status, up.up_number) == (U, 4)
    with pytest.raises(InvalidTransitionError):
        member(2, L).with_up(5)


def test_age_ordering_by_up_number_then_address() -> None:
    a, b, c = member(3, up_number=1), member(1, up_number=2), member(2, up_number=2)
    assert a.is_older_than(b)
    assert c.is_older_than(b) is False
    assert b.is_older_than(c)  # same up_number: lower address is older
    assert oldest([b, c, a]) == a
    assert oldest([]) is None


def test_address_ordering_is_unique_address_ordering() -> None:
    members = [member(3), member(1, uid=2), member(1, uid=1), member(2)]
    assert [m.unique_address for m in sorted(members, key=by_address)] == [
        node(1, 1),
        node(1, 2),
        node(2),
        node(3),
    ]


@pytest.mark.parametrize(
    ("a", "b", "winner"),
    [
        (J, W, W),
        (W, U, U),
        (U, L, L),
        (L, E, E),
        (E, D, D),
        (D, R, R),
        (J, D, D),
        (U, E, E),
    ],
)
def test_merge_keeps_the_status_furthest_along(
    a: MemberStatus, b: MemberStatus, winner: MemberStatus
) -> None:
    ma, mb = Member(node(1), a), Member(node(1), b)
    assert highest_priority(ma, mb).status is winner
    assert highest_priority(mb, ma).status is winner


def test_merge_of_equal_statuses_keeps_the_older_record() -> None:
    young, old = member(1, up_number=7), member(1, up_number=3)
    assert highest_priority(young, old) == old
    assert highest_priority(old, young) == old
