"""Supervision: what a parent does when a child's ``receive`` raises.

A strategy is plain data (:class:`SupervisorStrategy`), evaluated by the
failing child's cell on the parent's behalf. It is one-for-one, as Akka's
default: only the failing child is affected.
"""

from __future__ import annotations

import enum
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
    """Exponential backoff with downward jitter: the one delay formula of every layer.

    Attempt ``n`` (0-based) waits ``min(max_delay, min_delay * factor**n) *
    (1 - jitter * rand)``, ``rand`` uniform in ``[0, 1)``. The jitter only
    shortens a delay, so ``max_delay`` is a hard bound (documented bounds,
    such as how long a peer may stay unreachable, stay exact) while nodes
    that failed at the same moment spread their retries out. The exponent is
    capped, so a long outage cannot overflow.

    Supervision restarts with it (``SupervisorStrategy.restart(backoff=...)``):
    ``n`` counts consecutive restarts and resets once the actor has run
    ``reset_after`` seconds without failing; while the delay runs the actor
    is suspended and its mailbox keeps accepting (bounded) messages.
    Remoting's reconnects use the same formula (``RemoteSettings.backoff_*``)
    and reset ``n`` when a stream connects; ``reset_after`` is not used there.
    """

    min_delay: float = 0.2
    max_delay: float = 30.0
    factor: float = 2.0
    jitter: float = 0.2
    reset_after: float = 60.0

    def __post_init__(self) -> None:
        if not 0 < self.min_delay <= self.max_delay:
            raise ValueError("Backoff needs 0 < min_delay <= max_delay")
        if self.factor < 1 or not 0 <= self.jitter <= 1:
            raise ValueError("Backoff needs factor >= 1 and 0 <= jitter <= 1")

    def delay(self, attempt: int, rand: float) -> float:
        """Seconds to wait before attempt ``attempt`` (0-based); pure arithmetic.

        ``rand`` (uniform in ``[0, 1)``, e.g. ``system.random.random()``)
        picks how much jitter is taken off. Raises ``ValueError`` for a
        negative ``attempt``.
        """
        if attempt < 0:
            raise ValueError(f"backoff attempt must be >= 0, not {attempt}")
        base = min(self.max_delay, self.min_delay * self.factor ** min(attempt, 64))
        return base * (1.0 - self.jitter * rand)


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
