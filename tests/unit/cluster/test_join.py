"""Joining through seeds on a manual clock: who is asked, when, and when the first seed
forms alone."""

from __future__ import annotations

import itertools
import random

import pytest

from shoal.cluster import ClusterSettings
from shoal.cluster._join import SeedJoin
from shoal.runtime import Address
from shoal.runtime.testing import ManualClock

S1, S2, OTHER = (Address("app", "10.0.0.1", p) for p in (1, 2, 3))
SETTINGS = ClusterSettings.testing(seed_nodes=(str(S1), str(S2)))


def _process(
    me: Address, settings: ClusterSettings = SETTINGS
) -> tuple[ManualClock, SeedJoin, list[tuple[float, Address]], list[float]]:
    clock = ManualClock()
    sent: list[tuple[float, Address]] = []
    formed: list[float] = []
    join = SeedJoin(
        me,
        settings,
        clock,
        random.Random(1),
        lambda seed: sent.append((clock.now(), seed)),
        lambda: formed.append(clock.now()),
    )
    join.start()
    return clock, join, sent, formed


def test_the_first_seed_forms_alone_after_the_timeout() -> None:
    clock, join, sent, formed = _process(S1)
    assert join.is_first_seed
    assert sent == [(0.0, S2)]
    clock.advance(SETTINGS.seed_node_timeout)
    assert formed == [pytest.approx(SETTINGS.seed_node_timeout)]
    count = len(sent)
    clock.advance(10.0)
    assert len(sent) == count  # stopped


def test_the_first_seed_does_not_form_once_a_seed_answered() -> None:
    clock, join, _, formed = _process(S1)
    join.answered = True
    clock.advance(5.0)
    assert formed == []


def test_a_lone_first_seed_forms_at_once() -> None:
    _, _, sent, formed = _process(S1, ClusterSettings.testing(seed_nodes=(str(S1),)))
    assert sent == []
    assert formed == [0.0]


def test_other_nodes_ask_every_seed_with_backoff_and_never_form() -> None:
    clock, join, sent, formed = _process(OTHER)
    clock.advance(2.0)
    assert formed == []
    times = sorted({t for t, _ in sent})
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert gaps[0] <= SETTINGS.join_retry_min
    assert max(gaps) <= SETTINGS.join_retry_max
    assert max(gaps) > SETTINGS.join_retry_max * 0.7  # backed off up to the bound
    assert {seed for _, seed in sent} == {S1, S2}
    join.stop()
    count = len(sent)
    clock.advance(5.0)
    assert len(sent) == count
