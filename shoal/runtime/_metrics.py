"""The runtime's Prometheus metrics, read at scrape time.

The hot path only bumps plain integers on the system; a custom collector
turns them into metrics when scraped, so metrics cost nothing per message.
Other layers register their own collectors in the same per-system registry
(``system.metrics``), never in prometheus-client's process-global one.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from prometheus_client.core import Metric

    from ._system import ActorSystem


class RuntimeCollector(Collector):
    """Messages, actors and dead letters of one system."""

    def __init__(self, system: ActorSystem) -> None:
        self._system = system

    def collect(self) -> Iterator[Metric]:
        stats = self._system.stats()
        labels = ["address"]
        address = [self._system.address]
        for name, key, doc in (
            ("shoal_messages_processed", "messages_processed", "Messages handled by actors"),
            ("shoal_actors_spawned", "actors_spawned", "Actors created"),
            ("shoal_actors_stopped", "actors_stopped", "Actors stopped"),
            ("shoal_dead_letters", "dead_letters", "Messages that could not be delivered"),
        ):
            counter = CounterMetricFamily(name, doc, labels=labels)
            counter.add_metric(address, stats[key])
            yield counter
        live = GaugeMetricFamily("shoal_actors_live", "Actors alive now", labels=labels)
        live.add_metric(address, stats["actors_spawned"] - stats["actors_stopped"])
        yield live
