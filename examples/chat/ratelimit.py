"""A token bucket: ``rate`` frames per second on average, bursts of ``burst``."""

from __future__ import annotations

import math


class TokenBucket:
    """Refills ``rate`` tokens per second up to ``burst``; :meth:`take` spends one."""

    __slots__ = ("_burst", "_last", "_rate", "_tokens")

    def __init__(self, rate: float, burst: int, now: float) -> None:
        if not rate > 0 or not math.isfinite(rate) or burst < 1:
            raise ValueError(f"a bucket needs rate > 0 and burst >= 1, not {rate}, {burst}")
        self._rate = rate
        self._burst = float(burst)
        self._tokens = float(burst)
        self._last = now

    def take(self, now: float) -> float:
        """Spend a token: 0.0 if one was there, else the seconds until there is one."""
        elapsed = max(0.0, now - self._last)
        self._last = now
        self._tokens = min(self._burst, self._tokens + elapsed * self._rate)
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return 0.0
        return (1.0 - self._tokens) / self._rate
