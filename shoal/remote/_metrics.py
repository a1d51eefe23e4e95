"""Remote transport counters and their Prometheus collector.

Counters are plain ints bumped on the event loop (per batch on the hot
path, never per message); Prometheus reads them only when scraped, through a
custom collector registered in the system's own registry (``system.metrics``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric


class RemoteMetrics:
    """This node's remote transport counters (monotonic since start).

    ``bad_input`` and ``dead_letters`` are keyed by kind/reason. Read them
    through :meth:`snapshot` or Prometheus; only the transport writes them.
    """

    __slots__ = (
        "associations_evicted",
        "bad_input",
        "bytes_received",
        "bytes_sent",
        "connects",
        "dead_letters",
        "envelopes_received",
        "envelopes_sent",
        "frames_received",
        "frames_sent",
        "handshakes_accepted",
        "incarnations_held",
        "incarnations_replaced",
        "link_crashes",
        "quarantine_evicted",
        "quarantines",
        "unreachable_give_ups",
    )

    def __init__(self) -> None:
        self.frames_sent = 0
        self.bytes_sent = 0
        self.envelopes_sent = 0
        self.frames_received = 0
        self.bytes_received = 0
        self.envelopes_received = 0
        self.connects = 0
        self.handshakes_accepted = 0
        self.incarnations_replaced = 0
        self.quarantines = 0
        self.incarnations_held = 0
        self.link_crashes = 0
        self.unreachable_give_ups = 0
        self.associations_evicted = 0
        self.quarantine_evicted = 0
        self.bad_input: dict[str, int] = {}
        self.dead_letters: dict[str, int] = {}

    def count_bad(self, kind: str, n: int = 1) -> None:
        self.bad_input[kind] = self.bad_input.get(kind, 0) + n

    def count_dead(self, reason: str, n: int = 1) -> None:
        self.dead_letters[reason] = self.dead_letters.get(reason, 0) + n

    def snapshot(self) -> dict[str, object]:
        """Every counter, as plain data (for tests, logs and management endpoints)."""
        data: dict[str, object] = {name: getattr(self, name) for name in self.__slots__}
        data["bad_input"] = dict(self.bad_input)
        data["dead_letters"] = dict(self.dead_letters)
        return data


class RemoteCollector:
    """Exposes :class:`RemoteMetrics` (and live gauges) to a Prometheus registry."""

    def __init__(
        self,
        address: str,
        metrics: RemoteMetrics,
        gauges: Callable[[], dict[str, tuple[str, float]]],
    ) -> None:
        self._address = [address]
        self._metrics = metrics
        self._gauges = gauges

    def collect(self) -> Iterable[Metric]:
        m = self._metrics
        address = self._address
        for name, doc, value in (
            ("shoal_remote_frames_sent", "Frames written to peers.", m.frames_sent),
            ("shoal_remote_bytes_sent", "Frame bytes written to peers.", m.bytes_sent),
            ("shoal_remote_envelopes_sent", "Envelopes written to peers.", m.envelopes_sent),
            ("shoal_remote_frames_received", "Frames read from peers.", m.frames_received),
            ("shoal_remote_bytes_received", "Frame bytes read from peers.", m.bytes_received),
            (
                "shoal_remote_envelopes_received",
                "Envelopes read from peers and handed to their targets.",
                m.envelopes_received,
            ),
            ("shoal_remote_connects", "Outbound streams established.", m.connects),
            (
                "shoal_remote_handshakes_accepted",
                "Inbound handshakes accepted.",
                m.handshakes_accepted,
            ),
            (
                "shoal_remote_incarnations_replaced",
                "Peers seen restarted with a new incarnation.",
                m.incarnations_replaced,
            ),
            ("shoal_remote_quarantines", "Peer incarnations quarantined.", m.quarantines),
            (
                "shoal_remote_incarnations_held",
                "Handshakes refused: a live, connected incarnation holds the address.",
                m.incarnations_held,
            ),
            (
                "shoal_remote_link_crashes",
                "Unexpected errors in a peer link's tasks (the link restarted).",
                m.link_crashes,
            ),
            (
                "shoal_remote_unreachable_give_ups",
                "Times a peer stayed unreachable past unreachable_drop_after.",
                m.unreachable_give_ups,
            ),
            (
                "shoal_remote_associations_evicted",
                "Idle peers forgotten (max_idle_associations).",
                m.associations_evicted,
            ),
            (
                "shoal_remote_quarantine_evicted",
                "Quarantine entries forgotten (quarantine_max_entries/max_age).",
                m.quarantine_evicted,
            ),
        ):
            counter = CounterMetricFamily(name, doc, labels=["address"])
            counter.add_metric(address, value)
            yield counter
        bad = CounterMetricFamily(
            "shoal_remote_bad_input", "Bad input from peers, by kind.", labels=["address", "kind"]
        )
        for kind, value in sorted(m.bad_input.items()):
            bad.add_metric([*address, kind], value)
        yield bad
        dead = CounterMetricFamily(
            "shoal_remote_dead_letters",
            "Envelopes that could not be sent, by reason.",
            labels=["address", "reason"],
        )
        for reason, value in sorted(m.dead_letters.items()):
            dead.add_metric([*address, reason], value)
        yield dead
        for gauge, (doc, level) in self._gauges().items():
            family = GaugeMetricFamily(gauge, doc, labels=["address"])
            family.add_metric(address, level)
            yield family
