"""The sections of a node's configuration that no layer owns, and ``NodeConfig`` itself.

The runtime, remote, cluster and persistence sections are those layers' own
settings objects; only what a whole node needs (who it is, its management
server, its logging, which journal plugin) is defined here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from shoal import persistence
from shoal.cluster import ClusterSettings
from shoal.management import DiscoverySettings, ManagementSettings
from shoal.persistence import (
    CassandraSettings,
    PersistenceSettings,
    SqliteSettings,
)
from shoal.pubsub import PubSubSettings
from shoal.remote import RemoteSettings
from shoal.runtime import Address, Settings

_APP = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_][\w.]*")


@dataclass(frozen=True, slots=True)
class NodeSettings:
    """Who a node is and what it runs.

    The node's host, port, seeds and roles are settings of the layers that
    use them (``remote.host``, ``remote.port``, ``cluster.seed_nodes``,
    ``cluster.roles``); the configuration names them ``node.host``,
    ``node.port``, ``node.seeds`` and ``node.roles``.
    """

    system: str = "shoal"
    """Name of the node's actor system, the ``system`` in its address
    ``system@host:port``. Every node of one cluster uses the same name."""

    secret_file: str | None = None
    """File holding the cluster secret (``RemoteSettings.cluster_secret``),
    read when the configuration is loaded; one trailing newline is ignored.
    The alternative is the ``SHOAL_NODE_SECRET`` environment variable; a
    secret is never taken from a flag or a config file."""

    app: str | None = None
    """The application, as ``module:function``: ``shoal node`` calls it with
    the node's actor system once the node runs, to start the user's actors."""

    tune_gc: bool = True
    """Once the node and its application have started, ``shoal node`` hides
    everything allocated so far from Python's cyclic garbage collector
    (``gc.freeze()``: modules, classes, start-up state) and raises the
    young-generation threshold from 700 to 20,000 allocations. An actor
    runtime allocates many short-lived futures and envelopes; with this,
    collections are fewer and cheaper (about 15-20% less CPU per
    persistent entity recovered). ``false`` keeps Python's defaults."""

    def __post_init__(self) -> None:
        try:
            Address(self.system)
        except ValueError:
            raise ValueError(f"system: invalid actor system name {self.system!r}") from None
        if self.app is not None and not _APP.fullmatch(self.app):
            raise ValueError(f"app must be 'module:function', got {self.app!r}")


@dataclass(frozen=True, slots=True)
class LogSettings:
    """How a node logs (see :func:`shoal.config.configure_logging`)."""

    level: Literal["debug", "info", "warning", "error", "critical"] = "info"
    """Lowest level logged, for every logger of the process."""

    format: Literal["text", "json"] = "text"
    """``text``: one readable line per record, a traceback below it.
    ``json``: one JSON object per line with ``time``, ``level``, ``logger``,
    ``node``, ``message`` and ``exc`` (the traceback, or ``null``)."""


@dataclass(frozen=True, slots=True)
class PersistenceConfig:
    """Which journal and snapshot store the node's persistent actors use.

    :meth:`settings` turns it into the ``PersistenceSettings`` of
    ``Persistence.configure``.
    """

    plugin: Literal["sqlite", "memory", "cassandra"] = "sqlite"
    """``sqlite``: the embedded journal, one file per node (``persistence.sqlite``).
    ``memory``: gone with the process (tests). ``cassandra``: the production
    journal shared by the cluster (``persistence.cassandra``)."""

    sqlite: SqliteSettings = field(default_factory=SqliteSettings)
    """Settings of the SQLite plugin."""

    cassandra: CassandraSettings = field(default_factory=CassandraSettings)
    """Settings of the Cassandra plugin."""

    def settings(self) -> PersistenceSettings:
        """The plugins as ``PersistenceSettings``: factories called on first use.

        The Cassandra journal and snapshot store each open their own driver
        session; the driver is imported only when the first one is made.
        """
        if self.plugin == "memory":
            return PersistenceSettings.testing(sqlite=self.sqlite)
        if self.plugin == "cassandra":
            cassandra = self.cassandra
            return PersistenceSettings(
                journal=lambda: persistence.CassandraJournal(cassandra),
                snapshot_store=lambda: persistence.CassandraSnapshotStore(cassandra),
                sqlite=self.sqlite,
            )
        return PersistenceSettings(sqlite=self.sqlite)

    @classmethod
    def testing(cls, **overrides: Any) -> PersistenceConfig:
        """The memory plugin."""
        return replace(cls(plugin="memory"), **overrides)


@dataclass(frozen=True, slots=True)
class NodeConfig:
    """Everything a node is configured with: one typed, frozen object.

    Each section is the settings object of the layer it configures, so
    ``config.remote`` goes to ``Remoting.start`` and ``config.cluster`` to
    the cluster as they are. ``NodeConfig()`` holds the production defaults,
    ``NodeConfig.testing()`` the fast preset of every layer;
    :func:`shoal.config.load_config` reads one from a file, the environment
    and flags. The secrets it holds never appear in its ``repr``.
    """

    node: NodeSettings = field(default_factory=NodeSettings)
    """Who the node is and what it runs."""

    management: ManagementSettings = field(default_factory=ManagementSettings)
    """The management HTTP server."""

    log: LogSettings = field(default_factory=LogSettings)
    """Logging."""

    runtime: Settings = field(default_factory=Settings)
    """The actor system."""

    remote: RemoteSettings = field(default_factory=RemoteSettings)
    """Node-to-node transport."""

    cluster: ClusterSettings = field(default_factory=ClusterSettings)
    """Membership, failure detection, split-brain resolution."""

    discovery: DiscoverySettings = field(default_factory=DiscoverySettings)
    """How the node finds its cluster: seed nodes, or DNS."""

    pubsub: PubSubSettings = field(default_factory=PubSubSettings)
    """The distributed pub/sub mediator every ``shoal node`` runs."""

    persistence: PersistenceConfig = field(default_factory=PersistenceConfig)
    """Journal and snapshot store."""

    @classmethod
    def testing(cls) -> NodeConfig:
        """Every section's ``testing()`` preset: fast timeouts, free ports, in-memory journal."""
        return cls(
            management=ManagementSettings.testing(),
            runtime=Settings.testing(),
            remote=RemoteSettings.testing(),
            cluster=ClusterSettings.testing(),
            discovery=DiscoverySettings.testing(),
            pubsub=PubSubSettings.testing(),
            persistence=PersistenceConfig.testing(),
        )
