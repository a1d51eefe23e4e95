"""Cluster singleton and cluster sharding.

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

from ._errors import BufferFullError as BufferFullError
from ._errors import InvalidEntityIdError as InvalidEntityIdError
from ._errors import ShardingError as ShardingError
from ._singleton_api import ClusterSingleton as ClusterSingleton
from ._singleton_api import SingletonMetrics as SingletonMetrics
from ._singleton_api import SingletonSettings as SingletonSettings

__all__ = [
    # cluster singleton
    "ClusterSingleton",
    "SingletonMetrics",
    "SingletonSettings",
    # errors
    "BufferFullError",
    "InvalidEntityIdError",
    "ShardingError",
]
