"""Cluster counters and their Prometheus collector (registered in ``system.metrics``)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric


@dataclass(slots=True)
class ClusterMetrics:
    """This node's cluster counters (monotonic since start); only the cluster writes them.

    ``bytes_sent``/``bytes_received`` count the encoded cluster messages
    (gossip, heartbeats, joins), ``bad_input`` refused frames by kind,
    ``decisions`` the split-brain resolver's decisions by (strategy, kind).
    """

    gossip_rounds: int = 0
    messages_sent: int = 0
    messages_received: int = 0
    bytes_sent: int = 0
    bytes_received: int = 0
    states_sent: int = 0
    leader_changes: int = 0
    forbidden_claims: int = 0
    bad_input: dict[str, int] = field(default_factory=dict)
    decisions: dict[tuple[str, str], int] = field(default_factory=dict)

    def count_bad(self, kind: str) -> None:
        self.bad_input[kind] = self.bad_input.get(kind, 0) + 1

    def count_decision(self, strategy: str, kind: str) -> None:
        key = (strategy, kind)
        self.decisions[key] = self.decisions.get(key, 0) + 1


class ClusterCollector:
    """Exposes :class:`ClusterMetrics` and live gauges to a Prometheus registry."""

    def __init__(
        self,
        address: str,
        metrics: ClusterMetrics,
        members: Callable[[], dict[str, int]],
        unreachable: Callable[[], int],
        phi: Callable[[], dict[str, float]],
    ) -> None:
        self._address = [address]
        self._metrics = metrics
        self._members = members
        self._unreachable = unreachable
        self._phi = phi

    def collect(self) -> Iterable[Metric]:
        m = self._metrics
        address = self._address
        for name, doc, value in (
            ("shoal_cluster_gossip_rounds", "Gossip rounds started.", m.gossip_rounds),
            ("shoal_cluster_messages_sent", "Cluster messages sent.", m.messages_sent),
            ("shoal_cluster_messages_received", "Cluster messages read.", m.messages_received),
            ("shoal_cluster_bytes_sent", "Bytes of cluster messages sent.", m.bytes_sent),
            ("shoal_cluster_bytes_received", "Bytes of cluster messages read.", m.bytes_received),
            ("shoal_cluster_gossip_states_sent", "Full gossip states sent.", m.states_sent),
            (
                "shoal_cluster_leader_changes",
                "Times this node saw the leader change.",
                m.leader_changes,
            ),
            (
                "shoal_cluster_forbidden_claims",
                "Backward status claims in newer gossip, ignored.",
                m.forbidden_claims,
            ),
        ):
            counter = CounterMetricFamily(name, doc, labels=["address"])
            counter.add_metric(address, value)
            yield counter
        bad = CounterMetricFamily(
            "shoal_cluster_bad_input",
            "Cluster frames refused, by kind.",
            labels=["address", "kind"],
        )
        for kind, value in sorted(m.bad_input.items()):
            bad.add_metric([*address, kind], value)
        yield bad
        decisions = CounterMetricFamily(
            "shoal_cluster_resolver_decisions",
            "Split-brain resolver decisions taken by this node.",
            labels=["address", "strategy", "decision"],
        )
        for (strategy, kind), value in sorted(m.decisions.items()):
            decisions.add_metric([*address, strategy, kind], value)
        yield decisions
        members = GaugeMetricFamily(
            "shoal_cluster_members", "Members by status.", labels=["address", "status"]
        )
        for status, count in sorted(self._members().items()):
            members.add_metric([*address, status], count)
        yield members
        unreachable = GaugeMetricFamily(
            "shoal_cluster_unreachable_members", "Members observed unreachable.", labels=["address"]
        )
        unreachable.add_metric(address, self._unreachable())
        yield unreachable
        phi = GaugeMetricFamily(
            "shoal_cluster_phi",
            "Phi of each monitored member's failure detector.",
            labels=["address", "member"],
        )
        for member, level in sorted(self._phi().items()):
            phi.add_metric([*address, member], level)
        yield phi
