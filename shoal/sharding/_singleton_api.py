"""``ClusterSingleton``: the user-facing extension, its settings and its metrics."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, ClassVar, Final

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from shoal.cluster import Cluster
from shoal.runtime import ActorRef, ShutdownPhase

from ._errors import ShardingError
from ._singleton import WIRE_MESSAGES, SingletonManager, _Shutdown, manager_name

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric

    from shoal.runtime import Actor, ActorSystem

_NAME_RE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")


@dataclass(frozen=True, slots=True)
class SingletonSettings:
    """How one cluster singleton is placed, handed over and reached. Frozen.

    ``role``: only members with this role host it (``None``: every member).
    ``buffer_size``: messages a node's proxy keeps while the singleton is
    being located or handed over; more go to dead letters. ``retry_interval``:
    how often hand-over requests and look-ups are repeated while they have no
    answer. ``removal_margin``: after an older member that crashed (it never
    released the singleton) is removed, how long the next oldest still waits
    before it starts the singleton — the time the other side of a partition
    needs to down itself and stop; ``None`` takes the cluster's
    ``sbr_stable_after``, which is the time the resolver gives that side.
    """

    role: str | None = None
    buffer_size: int = 1000
    retry_interval: float = 1.0
    removal_margin: float | None = None

    def __post_init__(self) -> None:
        if self.buffer_size < 0:
            raise ValueError(f"buffer_size must be >= 0, not {self.buffer_size}")
        if self.retry_interval <= 0:
            raise ValueError(f"retry_interval must be positive, not {self.retry_interval}")
        if self.removal_margin is not None and self.removal_margin < 0:
            raise ValueError(f"removal_margin must be >= 0, not {self.removal_margin}")

    @classmethod
    def testing(cls, **overrides: Any) -> SingletonSettings:
        """Fast retries for tests (``retry_interval=0.1``), with ``overrides`` applied."""
        return replace(cls(retry_interval=0.1), **overrides)


@dataclass(slots=True)
class SingletonMetrics:
    """One singleton's figures on this node; only its manager writes them.

    ``running`` is 1 while this node runs the instance; ``starts`` counts the
    instances this node started; ``buffered`` the messages its proxy holds now;
    ``dropped`` those that overflowed the buffer to dead letters.
    """

    running: int = 0
    starts: int = 0
    buffered: int = 0
    dropped: int = 0


@dataclass(slots=True)
class _Entry:
    ref: ActorRef
    factory: Callable[[], Actor]
    settings: SingletonSettings
    metrics: SingletonMetrics = field(default_factory=SingletonMetrics)


class ClusterSingleton:
    """Cluster singletons of one node: ``ClusterSingleton.get(system).init(...)``.

    ::

        coordinator = ClusterSingleton.get(system).init("coordinator", Coordinator)
        coordinator.tell(Hello())       # forwarded to wherever it runs

    Call ``init`` with the same name on every node of the cluster (after
    ``Cluster.start``): nodes with the role may host it, every node gets a
    proxy. The returned ref is the proxy; asks through it are answered by
    the singleton. The singleton runs on the oldest Up member with the role;
    see :mod:`shoal.sharding` for the hand-over and crash rules.
    """

    depends_on: ClassVar[tuple[type, ...]] = (Cluster,)
    shutdown_phase: ClassVar[ShutdownPhase] = ShutdownPhase.CLOSE_EXTENSIONS

    def __init__(self, system: ActorSystem) -> None:
        self.system = system
        self._entries: dict[str, _Entry] = {}
        self._collector: _Collector | None = None
        system.serialization.register(*WIRE_MESSAGES)

    @classmethod
    def get(cls, system: ActorSystem) -> ClusterSingleton:
        """This system's singletons; the cluster must be started (``ClusterError`` otherwise)."""
        Cluster.get(system)  # raises ClusterError if not started
        return system.extension(cls)

    def init(
        self,
        name: str,
        factory: Callable[[], Actor],
        settings: SingletonSettings | None = None,
    ) -> ActorRef:
        """Start managing the singleton ``name`` on this node; returns its proxy.

        ``name`` is 1-100 letters, digits, ``_``, ``.`` or ``-`` (ValueError
        otherwise). Calling it again with the same name and settings returns
        the same proxy; with other settings or another factory it raises
        :class:`ShardingError`.
        """
        if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
            raise ValueError(f"invalid singleton name {name!r}")
        settings = settings if settings is not None else SingletonSettings()
        entry = self._entries.get(name)
        if entry is not None:
            if entry.settings != settings or entry.factory is not factory:
                raise ShardingError(f"singleton {name!r} already runs with other settings")
            return entry.ref
        cluster = Cluster.get(self.system)
        hosting = settings.role is None or settings.role in cluster.settings.roles
        metrics = SingletonMetrics()
        ref = self.system.spawn(
            lambda: SingletonManager(name, factory, settings, metrics, hosting),
            name=manager_name(name),
        )
        self._entries[name] = _Entry(ref, factory, settings, metrics)
        if self._collector is None:
            self._collector = _Collector(str(cluster.self_address.address), self)
            self.system.metrics.register(self._collector)
            self.system.coordinated_shutdown.add_task(
                ShutdownPhase.CLUSTER_EXITING, "singletons-stop", self._stop_all
            )
        return ref

    def metrics(self, name: str) -> SingletonMetrics:
        """The figures of the singleton ``name`` here (:class:`ShardingError` if unknown)."""
        entry = self._entries.get(name)
        if entry is None:
            raise ShardingError(f"no singleton {name!r} on this node")
        return entry.metrics

    async def _stop_all(self) -> None:
        # A node going away stops its instances once its regions handed off
        # (a coordinator is a singleton) and its leave was announced; a node
        # that saw itself Down or removed has stopped them already.
        for entry in self._entries.values():
            entry.ref.tell(_Shutdown())

    async def aclose(self) -> None:
        """Forget the metrics (the system's shutdown calls it)."""
        if self._collector is not None:
            self.system.metrics.unregister(self._collector)
            self._collector = None

    def names(self) -> Iterable[str]:
        """The singletons managed on this node."""
        return tuple(self._entries)


class _Collector:
    def __init__(self, address: str, owner: ClusterSingleton) -> None:
        self.address = address
        self.owner = owner

    def collect(self) -> Iterable[Metric]:
        running = GaugeMetricFamily(
            "shoal_singleton_running",
            "1 while this node runs the singleton.",
            labels=["address", "singleton"],
        )
        buffered = GaugeMetricFamily(
            "shoal_singleton_buffered",
            "Messages the proxy buffers.",
            labels=["address", "singleton"],
        )
        starts = CounterMetricFamily(
            "shoal_singleton_starts",
            "Instances started on this node.",
            labels=["address", "singleton"],
        )
        dropped = CounterMetricFamily(
            "shoal_singleton_dropped",
            "Messages that overflowed the proxy's buffer.",
            labels=["address", "singleton"],
        )
        for name in self.owner.names():
            m = self.owner.metrics(name)
            labels = [self.address, name]
            running.add_metric(labels, m.running)
            buffered.add_metric(labels, m.buffered)
            starts.add_metric(labels, m.starts)
            dropped.add_metric(labels, m.dropped)
        yield from (running, buffered, starts, dropped)
