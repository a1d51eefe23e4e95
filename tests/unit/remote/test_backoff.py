"""Reconnect delays: the runtime's Backoff with remoting's settings (capped, jittered down)."""

from __future__ import annotations

import pytest

from shoal.remote import RemoteSettings
from shoal.remote._backoff import reconnect_backoff

SETTINGS = RemoteSettings(
    backoff_min=0.1, backoff_max=5.0, backoff_multiplier=2.0, backoff_jitter=0.2
)


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
    assert reconnect_backoff(SETTINGS).delay(attempt, rand) == pytest.approx(expected)


def test_no_jitter_means_exact_delays() -> None:
    settings = RemoteSettings(
        backoff_min=1, backoff_max=100, backoff_multiplier=3, backoff_jitter=0
    )
    assert reconnect_backoff(settings).delay(3, 0.7) == 27


def test_negative_attempts_are_a_bug() -> None:
    with pytest.raises(ValueError, match="attempt"):
        reconnect_backoff(SETTINGS).delay(-1, 0.0)
