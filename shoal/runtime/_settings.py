"""The runtime's settings: one typed object, production defaults, a testing preset."""

from __future__ import annotations

import enum
import random
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from ._shutdown import ShutdownPhase
from ._supervision import SupervisorStrategy

if TYPE_CHECKING:
    from ._clock import Clock


class MailboxOverflow(enum.Enum):
    """What a full mailbox does with one more message (``tell`` never raises)."""

    DEAD_LETTER = "dead-letter"
    """Refuse the new message: it becomes a dead letter (the default). An
    ``ask`` fails at once with :class:`MailboxFullError`."""
    DROP_OLDEST = "drop-oldest"
    """Evict the oldest queued message to dead letters and enqueue the new one:
    for streams where only recent messages matter (readings, UI updates)."""


@dataclass(frozen=True, slots=True)
class Settings:
    """How an :class:`ActorSystem` behaves. Every field has a production default.

    ``Settings.testing()`` gives the fast preset for tests; injection points
    (``clock``) are plain fields.
    """

    mailbox_capacity: int = 10_000
    """Messages a mailbox holds before ``tell`` sends to dead letters and
    ``send`` waits. Memory bound per actor = capacity x message size."""

    mailbox_overflow: MailboxOverflow = MailboxOverflow.DEAD_LETTER
    """The overflow policy of mailboxes that do not choose their own."""

    throughput: int = 300
    """Messages an actor handles per turn before yielding to others. Higher
    is faster for busy actors; lower is fairer. Latency bound for a peer
    actor ~ throughput x per-message cost of every busy actor ahead of it."""

    ask_timeout: float = 5.0
    """Default ``ask`` timeout in seconds (on the system's clock)."""

    stash_capacity: int = 10_000
    """Messages one actor may stash before ``stash()`` raises."""

    guardian_strategy: SupervisorStrategy = field(default_factory=SupervisorStrategy)
    """How failures of top-level actors (spawned by the system) are handled."""

    shutdown_timeout: float = 30.0
    """The default time box, in seconds, of each phase of the coordinated
    shutdown (a phase without tasks takes none): when it runs out, the
    phase's unfinished tasks (actors that did not stop, an extension that
    did not close) are logged and cancelled and the next phase starts."""

    shutdown_phase_timeouts: Mapping[str, float] = field(default_factory=dict)
    """Time boxes of particular phases (a :class:`ShutdownPhase` or its name),
    overriding ``shutdown_timeout``, e.g.
    ``{ShutdownPhase.CLUSTER_SHARDING_SHUTDOWN_REGION: 10.0}``. A shutdown
    takes at most the sum of the time boxes of the phases that have tasks."""

    dead_letter_log_limit: int = 10
    """Dead letters logged per interval; the rest are counted, and summarised."""

    dead_letter_log_interval: float = 10.0
    """The dead-letter logging interval in seconds."""

    failure_log_limit: int = 10
    """Actor failures (handler errors, failed hooks and restarts) logged per
    interval for each kind of failure and actor class; the rest are counted,
    and summarised. A handler failing on every message logs at most
    ``failure_log_limit / failure_log_interval`` lines per second."""

    failure_log_interval: float = 10.0
    """The actor-failure logging interval in seconds."""

    clock: Clock | None = None
    """The clock; ``None`` means the running event loop's."""

    rng: random.Random | int | None = None
    """The random source of everything random in the system (backoff jitter
    of restarts, and of layers that use ``system.random``): a
    ``random.Random``, an ``int`` seed for a fresh one, or ``None`` for an
    unseeded one. Fix it in tests to make jitter reproducible. A
    ``random.Random`` given here is shared by every system built from these
    settings."""

    messages: tuple[type, ...] = ()
    """Message classes (``@message``) and protobuf classes registered at start."""

    def __post_init__(self) -> None:
        if self.mailbox_capacity < 1 or self.throughput < 1 or self.stash_capacity < 0:
            raise ValueError("mailbox_capacity and throughput must be >= 1")
        if self.failure_log_limit < 0 or self.failure_log_interval <= 0:
            raise ValueError("failure_log_limit must be >= 0 and failure_log_interval > 0")
        if self.ask_timeout <= 0 or self.shutdown_timeout <= 0:
            raise ValueError("timeouts must be positive")
        phases = {p.value for p in ShutdownPhase}
        for phase, timeout in self.shutdown_phase_timeouts.items():
            if phase not in phases:
                raise ValueError(f"not a shutdown phase: {phase!r} (see ShutdownPhase)")
            if not timeout > 0:
                raise ValueError(f"the time box of shutdown phase {phase} must be positive")

    @classmethod
    def testing(cls, **overrides: Any) -> Settings:
        """Short timeouts for tests; every field can still be overridden."""
        base = cls(ask_timeout=2.0, shutdown_timeout=5.0, dead_letter_log_interval=1.0)
        return replace(base, **overrides)
