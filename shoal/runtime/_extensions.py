"""Extensions: one instance per system of the layers built on the runtime.

An extension is whatever ``factory(system)`` returns: remoting, persistence,
later the cluster and sharding. The registry creates each once, after what it
declares it depends on, and closes it at shutdown before them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final, TypeVar

from ._errors import ExtensionError, SystemNotRunningError
from ._shutdown import ShutdownPhase

if TYPE_CHECKING:
    from ._system import ActorSystem

_log: Final = logging.getLogger("shoal.runtime")

E = TypeVar("E")

ExtensionFactory = Callable[["ActorSystem"], Any]


def _name(factory: object) -> str:
    return getattr(factory, "__qualname__", None) or repr(factory)


class Extensions:
    """The extensions of one system, in the order they were created (see
    ``ActorSystem.extension`` for the contract)."""

    __slots__ = ("_closing", "_instances", "_phases", "_starting", "_system")

    def __init__(self, system: ActorSystem) -> None:
        self._system = system
        self._instances: dict[object, object] = {}
        """Factory -> instance, in creation order: every dependency before its dependents."""
        self._phases: dict[object, ShutdownPhase] = {}
        self._starting: list[object] = []
        """Factories being created now, outermost first (to name a cycle)."""
        self._closing: set[ShutdownPhase] = set()
        """Phases in which a task closing this phase's extensions is registered."""

    def get(self, factory: Callable[[ActorSystem], E]) -> E:
        ext = self._instances.get(factory)
        if ext is None and factory not in self._instances:
            ext = self._create(factory)
        return ext  # type: ignore[return-value]

    def _create(self, factory: ExtensionFactory) -> object:
        if factory in self._starting:
            cycle = [*self._starting[self._starting.index(factory) :], factory]
            raise ExtensionError(
                f"extension dependency cycle: {' -> '.join(_name(f) for f in cycle)}"
            )
        system = self._system
        if not system.is_running:
            raise SystemNotRunningError(f"actor system {system.name} is shut down")
        phase = getattr(factory, "shutdown_phase", ShutdownPhase.CLOSE_EXTENSIONS)
        if not isinstance(phase, ShutdownPhase):
            raise ExtensionError(
                f"extension {_name(factory)}: shutdown_phase must be a ShutdownPhase, not {phase!r}"
            )
        depends_on = getattr(factory, "depends_on", ())
        self._starting.append(factory)
        try:
            for dependency in depends_on:
                self._start_dependency(factory, phase, dependency)
            ext = factory(system)
        finally:
            self._starting.pop()
        self._instances[factory] = ext
        self._phases[factory] = phase
        if getattr(ext, "aclose", None) is not None and phase not in self._closing:
            self._closing.add(phase)
            system.coordinated_shutdown.add_task(
                phase, f"close extensions ({phase.value})", lambda: self._close(phase)
            )
        return ext

    def _start_dependency(
        self, factory: ExtensionFactory, phase: ShutdownPhase, dependency: object
    ) -> None:
        if not callable(dependency):
            raise ExtensionError(
                f"extension {_name(factory)} depends on {dependency!r}, "
                "which is not an extension factory"
            )
        own = getattr(dependency, "shutdown_phase", ShutdownPhase.CLOSE_EXTENSIONS)
        if isinstance(own, ShutdownPhase) and own.order < phase.order:
            raise ExtensionError(
                f"extension {_name(factory)} closes in phase {phase.value}, after "
                f"{_name(dependency)} it depends on (phase {own.value}): a dependency "
                "must close in the same phase or a later one"
            )
        try:
            self.get(dependency)
        except (ExtensionError, SystemNotRunningError):
            raise
        except Exception as exc:
            raise ExtensionError(
                f"extension {_name(factory)} depends on {_name(dependency)}, "
                f"which failed to start: {exc}"
            ) from exc

    async def _close(self, phase: ShutdownPhase) -> None:
        """``aclose()`` this phase's extensions one by one, the last created first.

        One failing is logged and the others are still closed; the phase's
        time box bounds them all.
        """
        for factory, ext in reversed(list(self._instances.items())):
            if self._phases[factory] is not phase:
                continue
            aclose = getattr(ext, "aclose", None)
            if aclose is None:
                continue
            try:
                await aclose()
            except Exception:
                _log.exception("[%s] closing extension %r failed", self._system.address, ext)
