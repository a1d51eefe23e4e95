"""The phi-accrual failure detector's arithmetic (Hayashibara et al., as Akka computes it)."""

from __future__ import annotations

import math
from collections import deque
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._settings import ClusterSettings

_LN10 = math.log(10.0)


def phi(time_diff: float, mean: float, std_deviation: float) -> float:
    """Suspicion that a heartbeat ``time_diff`` after the last one is still to come.

    ``phi = -log10(1 - F(y))`` with ``y = (time_diff - mean) / std_deviation``
    and ``F`` the logistic approximation of the standard normal CDF Akka
    uses, ``F(y) = 1 / (1 + exp(-y * (1.5976 + 0.070566 * y**2)))``
    (maximum error about 0.00014). So ``phi = log10(1 + exp(z))`` with
    ``z = y * (1.5976 + 0.070566 * y**2)``; computed here without overflow
    for any ``y``. ``phi`` is 0.30 at the mean and grows without bound; a
    value of ``p`` means a 10**-p chance that the heartbeat is merely late.
    """
    y = (time_diff - mean) / std_deviation
    z = y * (1.5976 + 0.070566 * y * y)
    if z > 0:
        return (z + math.log1p(math.exp(-z))) / _LN10
    return math.log1p(math.exp(z)) / _LN10


def suspicion_y(threshold: float) -> float:
    """The ``y`` (standard deviations past the mean) at which :func:`phi` reaches ``threshold``.

    Inverts ``phi = log10(1 + exp(z))``: ``z = ln(10**threshold - 1)``, then
    solves ``y * (1.5976 + 0.070566 * y**2) = z`` (increasing in ``y``) by
    Newton's method. For threshold 8, ``y ~= 5.226``.
    """
    # Past 15, 10**threshold - 1 == 10**threshold in floating point.
    z = threshold * _LN10 if threshold > 15 else math.log(10.0**threshold - 1.0)
    y = z / 1.5976 if z > 0 else 0.0
    for _ in range(50):
        f = y * (1.5976 + 0.070566 * y * y) - z
        step = f / (1.5976 + 3 * 0.070566 * y * y)
        y -= step
        if abs(step) < 1e-12:
            break
    return y


class HeartbeatHistory:
    """The last ``max_sample_size`` heartbeat intervals, with their running mean and variance."""

    __slots__ = ("_intervals", "_squares", "_sum")

    def __init__(self, max_sample_size: int) -> None:
        self._intervals: deque[float] = deque(maxlen=max_sample_size)
        self._sum = 0.0
        self._squares = 0.0

    def add(self, interval: float) -> None:
        """Record one interval, dropping the oldest when the window is full."""
        if len(self._intervals) == self._intervals.maxlen:
            dropped = self._intervals[0]
            self._sum -= dropped
            self._squares -= dropped * dropped
        self._intervals.append(interval)
        self._sum += interval
        self._squares += interval * interval

    def __len__(self) -> int:
        return len(self._intervals)

    @property
    def mean(self) -> float:
        """Mean interval (0 when empty)."""
        return self._sum / len(self._intervals) if self._intervals else 0.0

    @property
    def std_deviation(self) -> float:
        """Population standard deviation of the intervals (0 when empty)."""
        if not self._intervals:
            return 0.0
        mean = self.mean
        return math.sqrt(max(0.0, self._squares / len(self._intervals) - mean * mean))


class PhiAccrualFailureDetector:
    """Decides from one node's heartbeat arrival times whether it is still available.

    Times are seconds on any monotonic clock, passed in; nothing here reads
    a clock. Before the first heartbeat the node counts as available
    (``phi`` 0). The first heartbeat seeds the history with two intervals
    around ``first_heartbeat_estimate`` (mean that estimate, standard
    deviation a quarter of it); later heartbeats add their interval,
    except the first one after the node was unavailable, which would skew
    the statistics. The distribution's mean is the observed mean plus
    ``acceptable_heartbeat_pause``, and its standard deviation never less
    than ``min_std_deviation`` (Akka's ``PhiAccrualFailureDetector``).

    Not thread-safe; one instance per monitored node.
    """

    __slots__ = (
        "_first_estimate",
        "_history",
        "_last",
        "_y",
        "acceptable_heartbeat_pause",
        "max_sample_size",
        "min_std_deviation",
        "threshold",
    )

    def __init__(
        self,
        *,
        threshold: float = 8.0,
        max_sample_size: int = 1000,
        min_std_deviation: float = 0.1,
        acceptable_heartbeat_pause: float = 3.0,
        first_heartbeat_estimate: float = 1.0,
    ) -> None:
        if threshold <= 0 or min_std_deviation <= 0 or first_heartbeat_estimate <= 0:
            raise ValueError(
                "threshold, min_std_deviation and first_heartbeat_estimate must be positive"
            )
        if acceptable_heartbeat_pause < 0 or max_sample_size < 2:
            raise ValueError("need acceptable_heartbeat_pause >= 0 and max_sample_size >= 2")
        self.threshold = threshold
        self.max_sample_size = max_sample_size
        self.min_std_deviation = min_std_deviation
        self.acceptable_heartbeat_pause = acceptable_heartbeat_pause
        self._first_estimate = first_heartbeat_estimate
        self._history = HeartbeatHistory(max_sample_size)
        self._last: float | None = None
        self._y = suspicion_y(threshold)

    @classmethod
    def from_settings(cls, settings: ClusterSettings) -> PhiAccrualFailureDetector:
        """A detector configured by ``settings`` (first estimate: the heartbeat interval)."""
        return cls(
            threshold=settings.phi_threshold,
            max_sample_size=settings.max_sample_size,
            min_std_deviation=settings.min_std_deviation,
            acceptable_heartbeat_pause=settings.acceptable_heartbeat_pause,
            first_heartbeat_estimate=settings.heartbeat_interval,
        )

    @property
    def is_monitoring(self) -> bool:
        """Whether a heartbeat has arrived yet."""
        return self._last is not None

    @property
    def history(self) -> HeartbeatHistory:
        """The intervals observed so far (read-only use)."""
        return self._history

    def heartbeat(self, now: float) -> None:
        """A heartbeat arrived at ``now``."""
        last = self._last
        if last is None:
            std = self._first_estimate / 4
            self._history.add(self._first_estimate - std)
            self._history.add(self._first_estimate + std)
        elif self.is_available(now):
            self._history.add(now - last)
        self._last = now

    def phi(self, now: float) -> float:
        """The suspicion level at ``now`` (see :func:`phi`); 0 before any heartbeat."""
        last = self._last
        if last is None:
            return 0.0
        history = self._history
        return phi(
            now - last,
            history.mean + self.acceptable_heartbeat_pause,
            max(history.std_deviation, self.min_std_deviation),
        )

    def is_available(self, now: float) -> bool:
        """Whether ``phi(now)`` is below the threshold."""
        return self.phi(now) < self.threshold

    def suspected_at(self) -> float | None:
        """When ``phi`` reaches the threshold if no heartbeat arrives before; ``None`` before
        the first heartbeat.

        ``last + mean + acceptable_heartbeat_pause + y * max(stddev, min_std_deviation)``
        with ``y = suspicion_y(threshold)``: checking then, rather than on the
        next tick, detects a crash without a tick's delay.
        """
        last = self._last
        if last is None:
            return None
        history = self._history
        std = max(history.std_deviation, self.min_std_deviation)
        return last + history.mean + self.acceptable_heartbeat_pause + self._y * std
