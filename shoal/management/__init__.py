"""Management HTTP for a cluster node: members, health, metrics.

Akka Management's endpoints and JSON, so habits and tooling carry over:

- ``GET /cluster/members``: ``selfNode``, ``leader``, ``oldest``, ``members``
  (``node``, ``nodeUid``, ``status``, ``roles``), ``unreachable`` (``node``,
  ``observedBy``), ``oldestPerRole``, ``leaderPerRole``; nodes as
  ``shoal://system@host:port``.
- ``GET /cluster/members/{address}``; ``PUT`` with ``operation=Leave`` or
  ``Down`` (form or JSON) and ``DELETE`` (leave) change the cluster.
- ``GET /cluster/shards/{type}``: what sharding registered (404 until then).
- ``GET /health/alive`` and ``GET /health/ready`` (this node is Up and every
  registered readiness check passes): 200 or 503 with the failed checks.
- ``GET /metrics``: the node's Prometheus registry (runtime, remote, cluster).
- ``GET /bootstrap/seed-nodes``: this node and its cluster's seeds, which
  DNS discovery (:class:`DiscoverySettings`, :meth:`Management.discover`)
  probes to decide whether to join a cluster or form one.

Mutations need ``ManagementSettings.token`` (``Authorization: Bearer``) or a
loopback bind. Every error is a 4xx with ``{"error": ..., "status": ...}``.
"""

from ._discovery import DiscoverySettings as DiscoverySettings
from ._server import Management as Management
from ._server import ManagementError as ManagementError
from ._server import ReadinessCheck as ReadinessCheck
from ._server import ShardsView as ShardsView
from ._settings import ManagementSettings as ManagementSettings

__all__ = [
    "DiscoverySettings",
    "Management",
    "ManagementError",
    "ManagementSettings",
    "ReadinessCheck",
    "ShardsView",
]
