"""Pub/sub counters and their Prometheus collector (registered in ``system.metrics``)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric


@dataclass(slots=True)
class PubSubMetrics:
    """This node's pub/sub counters (monotonic since start); only the mediator writes them.

    ``published`` counts calls of publish/send/send_to_all made on this node,
    ``delivered`` the messages this node's mediator handed to local actors,
    ``dropped`` delivery frames that found no local subscriber (it unsubscribed
    meanwhile), ``overflow`` messages to a subscriber of this node that went to
    dead letters because its mailbox was full (a slow subscriber; any sender's
    message to it counts), ``bad_input`` refused frames by kind.
    """

    published: int = 0
    delivered: int = 0
    dropped: int = 0
    overflow: int = 0
    deltas_sent: int = 0
    deltas_received: int = 0
    statuses_sent: int = 0
    bad_input: dict[str, int] = field(default_factory=dict)

    def count_bad(self, kind: str) -> None:
        self.bad_input[kind] = self.bad_input.get(kind, 0) + 1


class PubSubCollector:
    """Exposes :class:`PubSubMetrics` and live gauges to a Prometheus registry."""

    def __init__(
        self, address: str, metrics: PubSubMetrics, gauges: Callable[[], tuple[int, int, int]]
    ) -> None:
        self._address = [address]
        self._metrics = metrics
        self._gauges = gauges

    def collect(self) -> Iterable[Metric]:
        m = self._metrics
        address = self._address
        for name, doc, value in (
            ("shoal_pubsub_published", "Publish, send and send_to_all calls.", m.published),
            ("shoal_pubsub_delivered", "Messages handed to local subscribers.", m.delivered),
            ("shoal_pubsub_dropped", "Delivery frames without a local subscriber.", m.dropped),
            (
                "shoal_pubsub_overflow",
                "Messages to local subscribers lost to a full mailbox (dead letters).",
                m.overflow,
            ),
            ("shoal_pubsub_deltas_sent", "Registry deltas sent to peers.", m.deltas_sent),
            ("shoal_pubsub_deltas_received", "Registry deltas read.", m.deltas_received),
            ("shoal_pubsub_statuses_sent", "Registry status messages sent.", m.statuses_sent),
        ):
            counter = CounterMetricFamily(name, doc, labels=["node"])
            counter.add_metric(address, value)
            yield counter
        bad = CounterMetricFamily(
            "shoal_pubsub_bad_input", "Refused pub/sub frames, by kind.", labels=["node", "kind"]
        )
        for kind, count in sorted(m.bad_input.items()):
            bad.add_metric([*address, kind], count)
        yield bad
        topics, local_topics, subscribers = self._gauges()
        for name, doc, value in (
            ("shoal_pubsub_topics", "Topics with subscribers anywhere in the cluster.", topics),
            ("shoal_pubsub_local_topics", "Topics with subscribers on this node.", local_topics),
            ("shoal_pubsub_subscribers", "Subscribers on this node.", subscribers),
        ):
            gauge = GaugeMetricFamily(name, doc, labels=["node"])
            gauge.add_metric(address, value)
            yield gauge
