"""Coordinated shutdown: a node stops in named phases, in a fixed order, each time-boxed.

Akka's ``CoordinatedShutdown``, adapted: the layers of a node register async
tasks in the phase where they belong, so that, say, a sharding region hands
its entities off while remoting still runs, and journals close only after the
persistent actors using them stopped.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import Awaitable, Callable
from functools import partial
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from ._clock import Cancellable
    from ._system import ActorSystem

_log: Final = logging.getLogger("shoal.runtime")


class ShutdownPhase(enum.StrEnum):
    """The phases of a coordinated shutdown, in the order they run.

    Each value is the phase's name, as used in ``Settings.shutdown_phase_timeouts``
    and in log lines. A phase without tasks takes no time.
    """

    BEFORE_SERVICE_UNBIND = "before-service-unbind"
    """First: stop accepting new work (e.g. mark the node not ready)."""
    SERVICE_UNBIND = "service-unbind"
    """Stop listening for external requests (HTTP servers, sockets)."""
    SERVICE_REQUESTS_DONE = "service-requests-done"
    """Wait for requests in progress to complete."""
    CLUSTER_SHARDING_SHUTDOWN_REGION = "cluster-sharding-shutdown-region"
    """Hand sharded entities off to other nodes."""
    CLUSTER_LEAVE = "cluster-leave"
    """Leave the cluster gracefully."""
    CLUSTER_EXITING = "cluster-exiting"
    """Wait until the cluster has seen this node exiting (singletons hand over)."""
    CLUSTER_EXITING_DONE = "cluster-exiting-done"
    """Tell the cluster this node's exit is done, and wait for its removal."""
    STOP_USER_ACTORS = "stop-user-actors"
    """Stop every actor under ``/user``, children before parents (the runtime's task)."""
    CLOSE_EXTENSIONS = "close-extensions"
    """``aclose()`` of extensions that name no phase of their own, dependents first."""
    CLOSE_REMOTING = "close-remoting"
    """Flush outboxes and close the transport (``Remoting``)."""
    CLOSE_JOURNALS = "close-journals"
    """Close journals and snapshot stores (``Persistence``)."""
    STOP_SYSTEM_ACTORS = "stop-system-actors"
    """Stop every actor under ``/system`` (the runtime's task)."""
    ACTOR_SYSTEM_TERMINATE = "actor-system-terminate"
    """Last: release what the system itself holds; pending asks fail."""

    @property
    def order(self) -> int:
        """The phase's position in the order (0 = first)."""
        return _ORDER[self]


_ORDER: Final = {phase: i for i, phase in enumerate(ShutdownPhase)}

ShutdownTask = Callable[[], Awaitable[object]]
"""A task of a phase: called once, on the system's loop, when its phase starts."""


class _Registration:
    """A task registered in a phase; ``cancel()`` unregisters it (idempotent)."""

    __slots__ = ("cancelled", "name", "task")

    def __init__(self, name: str, task: ShutdownTask) -> None:
        self.name = name
        self.task = task
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


def _expire(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


async def _call(task: ShutdownTask) -> None:
    await task()


class CoordinatedShutdown:
    """The shutdown of one :class:`ActorSystem`: ``system.coordinated_shutdown``.

    Contract:

    * Tasks are registered with :meth:`add_task` in a :class:`ShutdownPhase`,
      by extensions (usually when created) or user code, on the system's loop.
    * :meth:`run` (also what ``system.shutdown()`` and leaving
      ``async with system`` call) starts the shutdown once; later calls wait
      for the same run, and the first reason is kept (:attr:`reason`). From
      its start the system refuses new actors and extensions.
    * Phases run one after another in :class:`ShutdownPhase` order. The tasks
      of a phase are called together and run concurrently on the loop; they
      may await anything but must not block the loop.
    * Each phase is time-boxed on the system's clock
      (``Settings.shutdown_phase_timeouts``, else ``Settings.shutdown_timeout``).
      When the box runs out the phase's unfinished tasks are logged and
      cancelled, and the next phase starts.
    * A task that raises is logged with its name and phase; the shutdown goes on.
    """

    def __init__(self, system: ActorSystem, on_start: Callable[[], None]) -> None:
        self._system = system
        self._on_start = on_start
        self._tasks: dict[ShutdownPhase, list[_Registration]] = {}
        self._reason: str | None = None
        self._run: asyncio.Task[None] | None = None
        self._phase: ShutdownPhase | None = None

    @property
    def reason(self) -> str | None:
        """Why the shutdown was run (``None`` while it has not been)."""
        return self._reason

    @property
    def phase(self) -> ShutdownPhase | None:
        """The phase running now (or the last one, once done); ``None`` before the run."""
        return self._phase

    def timeout(self, phase: ShutdownPhase) -> float:
        """The time box of ``phase`` in seconds."""
        settings = self._system.settings
        return settings.shutdown_phase_timeouts.get(phase, settings.shutdown_timeout)

    def add_task(self, phase: ShutdownPhase, name: str, task: ShutdownTask) -> Cancellable:
        """Run ``task()`` (async) in ``phase``; ``name`` identifies it in log lines.

        Returns a handle whose ``cancel()`` unregisters the task (e.g. when
        the actor that registered it stops earlier). A task added to a phase
        that has already started is not run: that is logged as a warning.
        """
        registration = _Registration(name, task)
        current = self._phase
        if current is not None and phase.order <= current.order:
            _log.warning(
                "[%s] shutdown task %r added to phase %s, which has already run",
                self._system.address,
                name,
                phase.value,
            )
            registration.cancelled = True
            return registration
        self._tasks.setdefault(phase, []).append(registration)
        return registration

    def run(self, reason: str) -> asyncio.Future[None]:
        """Start the shutdown (once) and return a future of its completion.

        Cancelling the returned future does not stop the shutdown.
        """
        if self._run is None:
            self._reason = reason
            self._on_start()
            _log.info("[%s] shutting down (reason: %s)", self._system.address, reason)
            self._run = self._system.loop.create_task(self._phases())
        return asyncio.shield(self._run)

    async def _phases(self) -> None:
        for phase in ShutdownPhase:
            self._phase = phase
            registrations = [r for r in self._tasks.pop(phase, ()) if not r.cancelled]
            if registrations:
                await self._run_phase(phase, registrations)

    async def _run_phase(self, phase: ShutdownPhase, registrations: list[_Registration]) -> None:
        loop = self._system.loop
        address = self._system.address
        running: dict[asyncio.Future[None], str] = {}
        for registration in registrations:
            started = loop.create_task(_call(registration.task))
            running[started] = registration.name
            started.add_done_callback(partial(self._finished, phase, registration.name))
        timeout = self.timeout(phase)
        expired: asyncio.Future[None] = loop.create_future()
        timer = self._system.clock.call_later(timeout, _expire, expired)
        pending: set[asyncio.Future[None]] = set(running)
        try:
            while pending and not expired.done():
                _, pending = await asyncio.wait(
                    (*pending, expired), return_when=asyncio.FIRST_COMPLETED
                )
                pending.discard(expired)
        except asyncio.CancelledError:
            for future in running:
                future.cancel()
            raise
        finally:
            timer.cancel()
        if pending:
            _log.error(
                "[%s] shutdown phase %s timed out after %s s; cancelling %s",
                address,
                phase.value,
                timeout,
                ", ".join(sorted(running[t] for t in pending)),
            )
            for future in pending:
                future.cancel()

    def _finished(self, phase: ShutdownPhase, name: str, task: asyncio.Task[None]) -> None:
        if task.cancelled():
            return
        error = task.exception()
        if error is not None:
            _log.error(
                "[%s] shutdown task %r of phase %s failed",
                self._system.address,
                name,
                phase.value,
                exc_info=error,
            )
