"""One backoff for every layer: pure delays, downward jitter, injectable randomness."""

from __future__ import annotations

import random

import pytest

from shoal.runtime import Actor, ActorSystem, Backoff, Settings, SupervisorStrategy
from shoal.runtime.testing import ManualClock, settle


@pytest.mark.parametrize(
    ("attempt", "rand", "expected"),
    [
        (0, 0.0, 0.5),
        (1, 0.0, 1.0),
        (3, 0.0, 4.0),
        (4, 0.0, 4.0),  # capped at max_delay
        (100_000, 0.0, 4.0),  # the exponent is capped: no overflow
        (0, 0.5, 0.45),  # jitter 0.2: rand 0.5 takes 10 % off
        (4, 0.999, 4.0 * (1 - 0.2 * 0.999)),
    ],
)
def test_delay_formula(attempt: int, rand: float, expected: float) -> None:
    backoff = Backoff(min_delay=0.5, max_delay=4.0, factor=2.0, jitter=0.2)
    assert backoff.delay(attempt, rand) == pytest.approx(expected)


def test_max_delay_is_a_hard_bound_whatever_the_draw() -> None:
    backoff = Backoff(min_delay=1.0, max_delay=2.0, jitter=1.0)
    rng = random.Random(7)
    delays = [backoff.delay(n, rng.random()) for n in range(200)]
    assert all(0.0 < d <= 2.0 for d in delays)


@pytest.mark.parametrize(
    "kwargs",
    [{"min_delay": 0}, {"min_delay": 2.0, "max_delay": 1.0}, {"factor": 0.5}, {"jitter": 1.5}],
)
def test_invalid_backoffs_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="Backoff needs"):
        Backoff(**kwargs)


def test_a_negative_attempt_is_a_bug() -> None:
    with pytest.raises(ValueError, match="attempt must be >= 0"):
        Backoff().delay(-1, 0.0)


async def test_a_seed_in_the_settings_fixes_the_systems_random_source() -> None:
    async with ActorSystem("a", Settings.testing(rng=42)) as a:
        draws_a = [a.random.random() for _ in range(3)]
    async with ActorSystem("b", Settings.testing(rng=42)) as b:
        draws_b = [b.random.random() for _ in range(3)]
    assert draws_a == draws_b
    shared = random.Random(1)
    async with ActorSystem("c", Settings.testing(rng=shared)) as c:
        assert c.random is shared


class _Flaky(Actor):
    def receive(self, message: object) -> None:
        raise RuntimeError("boom")


class _Parent(Actor):
    supervisor_strategy = SupervisorStrategy.restart(
        backoff=Backoff(min_delay=10.0, max_delay=10.0, jitter=0.5)
    )

    def __init__(self, restarted: list[float], clock: ManualClock) -> None:
        self.restarted = restarted
        self.clock = clock

    def receive(self, message: object) -> None:
        self.ctx.spawn(lambda: _Child(self.restarted, self.clock), name="child").tell(message)


class _Child(_Flaky):
    def __init__(self, restarted: list[float], clock: ManualClock) -> None:
        restarted.append(clock.now())


async def test_restart_jitter_is_drawn_from_the_systems_random_source() -> None:
    clock = ManualClock()
    restarted: list[float] = []
    expected = 10.0 * (1 - 0.5 * random.Random(3).random())
    async with ActorSystem("t", Settings.testing(clock=clock, rng=3)) as system:
        system.spawn(lambda: _Parent(restarted, clock)).tell("fail")
        await settle()
        clock.advance(expected - 1e-9)
        await settle()
        assert restarted == [0.0], "restarted before the jittered delay"
        clock.advance(2e-9)
        await settle()
        assert restarted == [0.0, pytest.approx(expected)]
