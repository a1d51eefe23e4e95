"""Rate-limited logging: the one place every layer turns "per event" into "per window"."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._clock import Clock


class RateLimitedLog:
    """Logs at most ``limit`` lines per key per ``interval`` seconds (on the clock).

    Lines past the limit are counted, and the count is logged once, as a
    summary, when the key's next window opens. Anything a peer or a user's
    error can trigger at line rate (bad frames, lost streams, failed asks,
    dead letters) goes through one of these: one log line per event would
    turn a misbehaving peer into a disk-filling one.

    Called on the event loop only; ``report`` never raises and never blocks.
    """

    __slots__ = ("_clock", "_interval", "_level", "_limit", "_logger", "_windows")

    def __init__(
        self,
        logger: logging.Logger,
        clock: Clock,
        limit: int,
        interval: float,
        *,
        level: int = logging.WARNING,
    ) -> None:
        if limit < 0 or interval <= 0:
            raise ValueError("RateLimitedLog needs limit >= 0 and interval > 0")
        self._logger = logger
        self._clock = clock
        self._limit = limit
        self._interval = interval
        self._level = level
        self._windows: dict[str, list[float]] = {}  # key -> [window start, logged, suppressed]

    def report(self, key: str, msg: str, *args: object, exc_info: bool = False) -> bool:
        """Log ``msg % args`` under ``key`` unless the key's window is full.

        Returns whether the line was logged (``False``: it was only counted).
        """
        now = self._clock.now()
        window = self._windows.get(key)
        if window is None or now - window[0] >= self._interval:
            if window is not None and window[2]:
                self._logger.log(
                    self._level,
                    "%d more %s events in the last %.0f s (not logged one by one)",
                    int(window[2]),
                    key,
                    now - window[0],
                )
            if len(self._windows) >= 1024:  # keys may come from the network: bound them
                self._windows.clear()
            window = self._windows[key] = [now, 0.0, 0.0]
        if window[1] < self._limit:
            window[1] += 1
            self._logger.log(self._level, msg, *args, exc_info=exc_info)
            return True
        window[2] += 1
        return False
