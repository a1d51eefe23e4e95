"""Cluster sharding and the cluster singleton.

Cluster sharding: one entity per key, anywhere in the cluster::

    accounts = await Sharding.get(system).start("account", Account, ShardingSettings())
    await accounts.entity("alice").ask(Deposit(10))

Every node that hosts the type starts it (others: ``start_proxy``). An
entity is created with its id (``Account("alice")``) on the node its shard
lives on; the shard is a stable hash of the id modulo ``number_of_shards``
(:func:`shard_id`). A coordinator, itself a cluster singleton, places shards
on the regions with the fewest and rebalances in bounded rounds; messages to
a shard that is being located or moved are buffered (bounded) and
delivered once it is placed, including those that reached the old owner.
An entity stops itself with ``passivate(self)``: its
mailbox drains first, and a message arriving meanwhile starts it again.
Settings passivate idle entities (``passivation_idle_timeout``) and the
least recently used ones over a per-node limit (``active_entity_limit``);
``remember_entities`` keeps each shard's running entity ids in the journal
and restarts them, at a bounded rate, wherever the shard moves or comes
back after a crash.

Cluster singleton: one instance of an actor in the whole cluster, on the
oldest Up member (optionally: with a role), reached from every node
through a proxy::

    proxy = ClusterSingleton.get(system).init("scheduler", Scheduler)
    await proxy.ask(Schedule(...))

It never runs twice at once: on a graceful leave the old instance stops
before the new one starts (hand-over); after a crash the next oldest starts
it only once the old node is downed, removed, and a ``removal_margin``
later (the time the other side of a partition needs to down itself). While
it moves, each node's proxy buffers messages (bounded; overflow goes to
dead letters, counted, and fails an ask with :class:`BufferFullError`).

It lives here rather than in ``shoal.cluster`` because it is built only on
the cluster's public API and its first user is the shard coordinator; the
cluster's public face stays membership alone.
"""

from ._allocation import RebalanceLimits as RebalanceLimits
from ._errors import BufferFullError as BufferFullError
from ._errors import InvalidEntityIdError as InvalidEntityIdError
from ._errors import ShardingError as ShardingError
from ._protocol import passivate as passivate
from ._region import RegionMetrics as RegionMetrics
from ._settings import ShardingSettings as ShardingSettings
from ._shard_id import MAX_ENTITY_ID_BYTES as MAX_ENTITY_ID_BYTES
from ._shard_id import shard_id as shard_id
from ._sharding import EntityRef as EntityRef
from ._sharding import Sharding as Sharding
from ._sharding import ShardRegion as ShardRegion
from ._singleton_api import ClusterSingleton as ClusterSingleton
from ._singleton_api import SingletonMetrics as SingletonMetrics
from ._singleton_api import SingletonSettings as SingletonSettings

__all__ = [
    # cluster sharding
    "Sharding",
    "ShardRegion",
    "EntityRef",
    "ShardingSettings",
    "RebalanceLimits",
    "RegionMetrics",
    "passivate",
    "shard_id",
    "MAX_ENTITY_ID_BYTES",
    # cluster singleton
    "ClusterSingleton",
    "SingletonMetrics",
    "SingletonSettings",
    # errors
    "BufferFullError",
    "InvalidEntityIdError",
    "ShardingError",
]
