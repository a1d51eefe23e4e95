"""The ``Persistence`` extension: one journal and one snapshot store per actor system."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

from shoal.runtime import ActorSystem, RateLimitedLog, ShutdownPhase

from ._journal import Journal
from ._memory import MemoryJournal, MemorySnapshotStore
from ._snapshot import SnapshotStore
from ._sqlite import SqliteJournal, SqliteSnapshotStore
from ._sqlite_db import SqliteSettings

__all__ = ["Persistence", "PersistenceSettings"]

_log = logging.getLogger("shoal.persistence")


@dataclass(frozen=True, slots=True)
class PersistenceSettings:
    """Which journal and snapshot store a system's persistent actors use.

    ``journal`` / ``snapshot_store`` are factories, called once, on first
    use; ``None`` (the default) means the embedded SQLite plugins on
    ``sqlite.path`` (``shoal.db`` in the working directory), journal and
    snapshots in one file. ``wall_clock`` stamps events and snapshots
    (seconds since the epoch; the stamps select snapshots by time, nothing
    orders by them). ``PersistenceSettings.testing()`` is the in-memory
    preset.
    """

    journal: Callable[[], Journal] | None = None
    snapshot_store: Callable[[], SnapshotStore] | None = None
    sqlite: SqliteSettings = field(default_factory=SqliteSettings)
    wall_clock: Callable[[], float] = time.time

    @classmethod
    def testing(cls, **overrides: Any) -> PersistenceSettings:
        """Memory journal and snapshot store: fast, and gone with the process."""
        return replace(cls(journal=MemoryJournal, snapshot_store=MemorySnapshotStore), **overrides)


class Persistence:
    """A system's persistence plugins: ``system.extension(Persistence)``.

    Configure it with :meth:`configure` before the first persistent actor
    starts; otherwise the defaults of :class:`PersistenceSettings` apply.
    The plugins are created on first use and closed when the system shuts
    down (after its user actors stopped).
    """

    shutdown_phase: ClassVar[ShutdownPhase] = ShutdownPhase.CLOSE_JOURNALS
    """``aclose`` runs in this phase of the system's coordinated shutdown."""

    def __init__(self, system: ActorSystem) -> None:
        self.system = system
        self._settings = PersistenceSettings()
        self._journal: Journal | None = None
        self._snapshot_store: SnapshotStore | None = None
        self.log = RateLimitedLog(_log, system.clock, 5, 10.0, level=logging.ERROR)
        """Where persistence logs what a broken journal or user error can repeat at
        line rate: 5 lines per kind per 10 s, then a count."""
        system.metrics.register(_PersistenceCollector(self))

    @classmethod
    def configure(cls, system: ActorSystem, settings: PersistenceSettings) -> Persistence:
        """Set ``system``'s persistence settings; raises ``RuntimeError`` once plugins exist."""
        ext = system.extension(cls)
        ext._configure(settings)  # noqa: SLF001 (its own class)
        return ext

    def _configure(self, settings: PersistenceSettings) -> None:
        if self._journal is not None or self._snapshot_store is not None:
            raise RuntimeError("persistence is already in use on this system")
        self._settings = settings

    @property
    def settings(self) -> PersistenceSettings:
        return self._settings

    @property
    def journal(self) -> Journal:
        """The system's journal (created on first access)."""
        if self._journal is None:
            factory = self._settings.journal
            self._journal = (
                factory()
                if factory is not None
                else SqliteJournal(self._settings.sqlite, clock=self.system.clock)
            )
        return self._journal

    @property
    def snapshot_store(self) -> SnapshotStore:
        """The system's snapshot store (created on first access)."""
        if self._snapshot_store is None:
            factory = self._settings.snapshot_store
            self._snapshot_store = (
                factory() if factory is not None else SqliteSnapshotStore(self._settings.sqlite)
            )
        return self._snapshot_store

    async def aclose(self) -> None:
        """Close the plugins (the system calls this at shutdown)."""
        journal, store = self._journal, self._snapshot_store
        if journal is not None:
            await journal.close()
        if store is not None:
            await store.close()


class _PersistenceCollector(Collector):
    """``shoal_persistence_repaired_events``: events replays dropped (Cassandra's repair)."""

    def __init__(self, persistence: Persistence) -> None:
        self._persistence = persistence

    def collect(self) -> Iterator[CounterMetricFamily]:
        journal = self._persistence._journal  # noqa: SLF001 (its own module)
        counter = CounterMetricFamily(
            "shoal_persistence_repaired_events",
            "Events replays dropped because a newer writer stored the same sequence numbers",
            labels=["address"],
        )
        counter.add_metric(
            [self._persistence.system.address], getattr(journal, "repaired_events", 0)
        )
        yield counter
