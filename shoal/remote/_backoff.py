"""Reconnect delays: exponential backoff with jitter (pure arithmetic)."""

from __future__ import annotations


def backoff_delay(
    attempt: int,
    *,
    minimum: float,
    maximum: float,
    multiplier: float,
    jitter: float,
    rand: float,
) -> float:
    """Seconds to wait before reconnect attempt ``attempt`` (0 = the first retry).

    ``min(maximum, minimum * multiplier ** attempt)``, minus up to ``jitter``
    of it: ``rand`` (uniform in [0, 1)) picks how much, so nodes that lost a
    peer at the same moment spread their reconnects out instead of arriving
    together ("decorrelated" enough for a handful of peers, and bounded, which
    full jitter is not at its low end).
    """
    if attempt < 0:
        raise ValueError("attempt must be >= 0")
    # Cap the exponent so a long outage cannot overflow the float.
    base = minimum * multiplier ** min(attempt, 64)
    delay = min(maximum, base)
    return delay * (1.0 - jitter * rand)
