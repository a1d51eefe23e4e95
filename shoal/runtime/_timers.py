"""Timers: messages an actor sends itself later, keyed for cancellation."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from ._envelope import K_TIMER, Envelope

if TYPE_CHECKING:
    from collections.abc import Hashable

    from ._cell import Context
    from ._clock import Cancellable


@dataclass(slots=True)
class _Timer:
    generation: int
    message: object
    interval: float | None  # None for a single timer
    handle: Cancellable | None


@dataclass(frozen=True, slots=True)
class TimerFire:
    """The mailbox form of a timer's message (private)."""

    key: Hashable
    generation: int
    message: object


_NO_TIMERS: Final[dict[object, _Timer]] = {}


class Timers:
    """An actor's timers, reached as ``self.ctx.timers``.

    A timer delivers its message to the actor itself through the mailbox.
    Starting a timer with a key that is active replaces it; a message of a
    cancelled or replaced timer is never delivered, even if it was already
    enqueued. Timers are cancelled when the actor stops or restarts.
    Intervals are measured on the system's clock.
    """

    __slots__ = ("_cell", "_generation", "_timers")

    def __init__(self, cell: Context) -> None:
        self._cell = cell
        self._timers: dict[Hashable, _Timer] = {}
        self._generation = 0

    def start_single(self, key: Hashable, message: object, delay: float) -> None:
        """Deliver ``message`` once, after ``delay`` seconds."""
        self._start(key, message, delay, None)

    def start_periodic(
        self, key: Hashable, message: object, interval: float, initial_delay: float | None = None
    ) -> None:
        """Deliver ``message`` every ``interval`` seconds (fixed delay)."""
        if interval <= 0:
            raise ValueError("a periodic timer needs a positive interval")
        self._start(key, message, interval if initial_delay is None else initial_delay, interval)

    def cancel(self, key: Hashable) -> None:
        """Cancel the timer ``key`` if it is active; its message will not arrive."""
        timer = self._timers.pop(key, None)
        if timer is not None and timer.handle is not None:
            timer.handle.cancel()

    def cancel_all(self) -> None:
        """Cancel every timer of this actor."""
        for timer in self._timers.values():
            if timer.handle is not None:
                timer.handle.cancel()
        self._timers.clear()

    def is_active(self, key: Hashable) -> bool:
        """Whether timer ``key`` is started and its (last) message not yet handled."""
        return key in self._timers

    def __len__(self) -> int:
        return len(self._timers)

    def _start(self, key: Hashable, message: object, delay: float, interval: float | None) -> None:
        self.cancel(key)
        if not self._cell._accepts_waiting():
            return  # stopping or stopped: nothing would ever be delivered
        self._generation += 1
        timer = _Timer(self._generation, message, interval, None)
        self._timers[key] = timer
        timer.handle = self._cell._clock.call_later(delay, self._fire, key, self._generation)

    def _fire(self, key: Hashable, generation: int) -> None:
        timer = self._timers.get(key)
        if timer is None or timer.generation != generation:
            return
        self._cell._enqueue_signal(
            Envelope(TimerFire(key, generation, timer.message), None, None, K_TIMER)
        )
        if timer.interval is not None:
            timer.handle = self._cell._clock.call_later(timer.interval, self._fire, key, generation)
        else:
            timer.handle = None

    def _take(self, fire: TimerFire) -> bool:
        """Whether a dequeued fire is still current (a single timer ends here)."""
        timer = self._timers.get(fire.key)
        if timer is None or timer.generation != fire.generation:
            return False
        if timer.interval is None:
            del self._timers[fire.key]
        return True
