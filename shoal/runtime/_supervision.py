"""Supervision: what a parent does when a child's ``receive`` raises.

A strategy is plain data (:class:`SupervisorStrategy`), evaluated by the
failing child's cell on the parent's behalf. It is one-for-one, as Akka's
default: only the failing child is affected.
"""

from __future__ import annotations

import enum
import random
from collections.abc import Callable
from dataclasses import dataclass


class Directive(enum.Enum):
    """What to do with a failed actor."""

    RESUME = "resume"
    """Keep the instance and its state; drop the failed message (the default)."""
    RESTART = "restart"
    """Replace the instance with a fresh one from its factory; keep the mailbox."""
    STOP = "stop"
    """Stop the actor; queued messages go to dead letters."""
    ESCALATE = "escalate"
    """Fail the parent with the same error; the grandparent decides for it."""


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential restart backoff: ``min(max_delay, min_delay * factor**n) * (1 ± jitter)``.

    ``n`` counts consecutive restarts; it resets once the actor has run
    ``reset_after`` seconds without failing. While the delay runs the actor is
    suspended and its mailbox keeps accepting (bounded) messages.
    """

    min_delay: float = 0.2
    max_delay: float = 30.0
    factor: float = 2.0
    jitter: float = 0.2
    reset_after: float = 60.0

    def __post_init__(self) -> None:
        if not 0 < self.min_delay <= self.max_delay:
            raise ValueError("Backoff needs 0 < min_delay <= max_delay")
        if self.factor < 1 or not 0 <= self.jitter < 1:
            raise ValueError("Backoff needs factor >= 1 and 0 <= jitter < 1")

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """The delay before restart number ``attempt`` (0-based)."""
        base = min(self.max_delay, self.min_delay * self.factor ** min(attempt, 64))
        if not self.jitter:
            return base
        spread = (rng or random).uniform(-self.jitter, self.jitter)
        return max(0.0, base * (1 + spread))


def _always_resume(_: Exception) -> Directive:
    return Directive.RESUME


@dataclass(frozen=True, slots=True)
class SupervisorStrategy:
    """A parent's policy for its failing children.

    ``decider`` maps the error to a :class:`Directive`. With ``max_restarts``
    set, a child restarted more than that many times within ``within``
    seconds is stopped instead. ``backoff`` delays restarts exponentially.

    Set it as the ``supervisor_strategy`` class attribute of the parent actor;
    top-level actors get ``Settings.guardian_strategy``.
    """

    decider: Callable[[Exception], Directive] = _always_resume
    max_restarts: int | None = None
    within: float = 60.0
    backoff: Backoff | None = None

    @classmethod
    def resume(cls) -> SupervisorStrategy:
        """Resume on every error (the default)."""
        return cls()

    @classmethod
    def restart(
        cls,
        *,
        max_restarts: int | None = None,
        within: float = 60.0,
        backoff: Backoff | None = None,
    ) -> SupervisorStrategy:
        """Restart on every error, optionally limited and with backoff."""
        return cls(lambda _: Directive.RESTART, max_restarts, within, backoff)

    @classmethod
    def stop(cls) -> SupervisorStrategy:
        """Stop the child on every error."""
        return cls(lambda _: Directive.STOP)

    @classmethod
    def escalate(cls) -> SupervisorStrategy:
        """Fail the parent on every error of a child."""
        return cls(lambda _: Directive.ESCALATE)


DEFAULT_STRATEGY = SupervisorStrategy()
