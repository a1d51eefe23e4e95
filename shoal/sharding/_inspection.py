"""What sharding shows of itself: the management view, a readiness check and metrics."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from shoal.runtime import ActorRef, message

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric

    from ._region import RegionMetrics
    from ._sharding import ShardRegion

QUERY_TIMEOUT: Final = 2.0
"""How long the view waits for its region, shards and coordinator."""


@dataclass(frozen=True, slots=True)
class ShardsQuery:
    """Local: a region answers with its shard actors, ``{shard: ref}``."""


@dataclass(frozen=True, slots=True)
class EntitiesQuery:
    """Local: a shard answers with the ids of its running entities."""


@message(manifest="shoal.sharding.AllocationQuery")
@dataclass(frozen=True, slots=True)
class AllocationQuery:
    """The coordinator answers with ``{region path: [shards]}`` of the whole cluster."""


async def shards_view(region: ShardRegion, node: str) -> Mapping[str, Any]:
    """The JSON of ``GET /cluster/shards/{type}`` for this node's region.

    ``regions`` keeps Akka Management's shape (one object per shard of this
    node: ``shardId``, ``numberOfEntities``); ``allocation`` is the cluster's
    (region node -> shards) as the coordinator has it, ``null`` if it did
    not answer within ``QUERY_TIMEOUT``.
    """
    shards: dict[int, ActorRef] = {}
    if region.hosting:
        shards = await region.ref.ask(ShardsQuery(), timeout=QUERY_TIMEOUT)
    counts: list[dict[str, Any]] = []
    for shard, ref in sorted(shards.items()):
        try:
            ids: list[str] = await ref.ask(EntitiesQuery(), timeout=QUERY_TIMEOUT)
        except Exception:  # a shard stopping meanwhile: count it empty
            ids = []
        counts.append({"shardId": str(shard), "numberOfEntities": len(ids), "entityIds": ids})
    allocation: dict[str, list[int]] | None
    try:
        raw = await region.coordinator.ask(AllocationQuery(), timeout=QUERY_TIMEOUT)
        allocation = {_node_of(path): sorted(shards) for path, shards in raw.items()}
    except Exception:  # no coordinator right now: say so, do not fail the request
        allocation = None
    return {
        "typeName": region.type_name,
        "node": node,
        "hosting": region.hosting,
        "registered": region.metrics.registered,
        "numberOfShards": region.settings.number_of_shards,
        "regions": counts,
        "allocation": allocation,
    }


def _node_of(path: str) -> str:
    # "shoal://sys@host:port/user/sharding-x" -> "shoal://sys@host:port"
    scheme, _, rest = path.partition("://")
    return f"{scheme}://{rest.split('/', 1)[0]}"


def readiness(
    regions: Callable[[], Iterable[ShardRegion]], now: Callable[[], float], started: float
) -> Callable[[], str | None]:
    """A readiness check: ready once every region registered, or ``ready_timeout`` passed."""

    def check() -> str | None:
        waiting = [r.type_name for r in regions() if not r.metrics.registered]
        if not waiting:
            return None
        timeout = max(r.settings.ready_timeout for r in regions())
        if now() - started >= timeout:
            return None  # time-boxed: a missing coordinator must not keep a node out for good
        return f"sharding regions not registered yet: {', '.join(sorted(waiting))}"

    return check


class ShardingCollector:
    """Prometheus figures of every entity type started on this node."""

    def __init__(self, address: str, metrics: Callable[[], Mapping[str, RegionMetrics]]) -> None:
        self._address = address
        self._metrics = metrics

    def collect(self) -> Iterable[Metric]:
        labels = ["address", "type"]
        gauges = {
            "shards": GaugeMetricFamily(
                "shoal_sharding_shards", "Shards hosted here.", labels=labels
            ),
            "entities": GaugeMetricFamily(
                "shoal_sharding_entities", "Entities running here.", labels=labels
            ),
            "buffered": GaugeMetricFamily(
                "shoal_sharding_buffered", "Messages waiting for a shard home.", labels=labels
            ),
        }
        counters = {
            name: CounterMetricFamily(f"shoal_sharding_{name}", doc, labels=labels)
            for name, doc in (
                ("activations", "Entities started here."),
                ("passivations", "Entities passivated here."),
                ("hand_offs", "Shards this node stopped for a move."),
                ("dropped", "Messages that overflowed a buffer to dead letters."),
                ("refused", "Envelopes from other nodes refused as invalid."),
                ("rebalances", "Rebalance rounds started by a coordinator on this node."),
            )
        }
        for type_name, m in sorted(self._metrics().items()):
            values = [self._address, type_name]
            for name, gauge in gauges.items():
                gauge.add_metric(values, getattr(m, name))
            for name, counter in counters.items():
                counter.add_metric(values, getattr(m, name))
        yield from gauges.values()
        yield from counters.values()
