"""Reconnect delays: exponential, capped, jittered downwards."""

from __future__ import annotations

import pytest

from shoal.remote._backoff import backoff_delay

BASE = {"minimum": 0.1, "maximum": 5.0, "multiplier": 2.0, "jitter": 0.2}


@pytest.mark.parametrize(
    ("attempt", "rand", "expected"),
    [
        (0, 0.0, 0.1),
        (1, 0.0, 0.2),
        (2, 0.0, 0.4),
        (5, 0.0, 3.2),
        (6, 0.0, 5.0),  # capped
        (10_000, 0.0, 5.0),  # a long outage does not overflow
        (0, 0.5, 0.09),  # jitter takes off up to 20 %
        (6, 0.999_999, 4.000_001),
    ],
)
def test_delays(attempt: int, rand: float, expected: float) -> None:
    assert backoff_delay(attempt, rand=rand, **BASE) == pytest.approx(expected)


def test_no_jitter_means_exact_delays() -> None:
    assert backoff_delay(3, minimum=1, maximum=100, multiplier=3, jitter=0, rand=0.7) == 27


def test_negative_attempts_are_a_bug() -> None:
    with pytest.raises(ValueError, match="attempt"):
        backoff_delay(-1, rand=0.0, **BASE)
