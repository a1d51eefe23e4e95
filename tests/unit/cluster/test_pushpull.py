"""Push-pull decisions: whom to gossip to and what to answer; convergence in rounds."""

from __future__ import annotations

import random

import pytest

from shoal.cluster._pushpull import (
    Answer,
    answer_state,
    answer_status,
    gossip_targets,
    select_peer,
    unseen_peers,
)
from shoal.cluster._reachability import Reachability
from shoal.cluster._vclock import VectorClock
from shoal.cluster.testing import convergence_rounds

from ._support import gossip, member, node

A, B, C, D = (member(p) for p in (1, 2, 3, 4))


@pytest.mark.parametrize(
    ("local", "remote", "same_seen", "answer"),
    [
        ({1: 1}, {1: 1}, True, Answer.NOTHING),
        ({1: 1}, {1: 1}, False, Answer.STATE),
        ({1: 1}, {1: 2}, True, Answer.STATUS),
        ({1: 2}, {1: 1}, True, Answer.STATE),
        ({1: 1, 2: 1}, {1: 2}, True, Answer.STATE),
    ],
)
def test_answer_to_a_status(
    local: dict[int, int], remote: dict[int, int], same_seen: bool, answer: Answer
) -> None:
    g = gossip(A, B).changed(node(1))
    g = type(g)(g.members, VectorClock({node(p): c for p, c in local.items()}), g.seen)
    version = VectorClock({node(p): c for p, c in remote.items()})
    assert answer_status(g, version, 5 if same_seen else 6, 5) is answer


def test_answer_to_a_state() -> None:
    g = gossip(A, B, seen=[node(1)])
    assert answer_state(g, g) is Answer.NOTHING
    assert answer_state(g, g.with_seen(node(2))) is Answer.STATE
    assert answer_state(g, g.changed(node(2))) is Answer.STATE
    assert answer_state(g.with_seen(node(2)), g) is Answer.NOTHING


def test_targets_leave_out_self_and_what_it_finds_unreachable() -> None:
    reach = Reachability().unreachable(node(1), node(3)).unreachable(node(2), node(4))
    g = gossip(A, B, C, D, reachability=reach)
    assert gossip_targets(g, node(1)) == [node(2), node(4)]


def test_select_peer_prefers_those_that_have_not_seen() -> None:
    g = gossip(A, B, C, D, seen=[node(1), node(2), node(3)])
    rng = random.Random(3)
    picks = [select_peer(g, node(1), rng) for _ in range(1000)]
    assert 750 < picks.count(node(4)) < 900
    assert select_peer(gossip(A), node(1), rng) is None
    assert unseen_peers(g, node(1)) == [node(4)]


def test_a_change_converges_among_100_members_in_few_rounds() -> None:
    assert convergence_rounds(100) <= 12
