"""Every field of every settings object is a documented setting, or excluded on purpose."""

from __future__ import annotations

from dataclasses import fields

import shoal.config
from shoal.cluster import ClusterSettings
from shoal.config import (
    LogSettings,
    ManagementSettings,
    NodeConfig,
    NodeSettings,
    PersistenceConfig,
    reference,
)
from shoal.management import DiscoverySettings
from shoal.persistence import (
    CassandraSettings,
    MemoryJournal,
    MemorySnapshotStore,
    SqliteSettings,
)
from shoal.pubsub import PubSubSettings
from shoal.remote import RemoteSettings, TlsSettings
from shoal.runtime import Settings, ShoalError

SECTIONS = {"runtime": Settings, "remote": RemoteSettings}


def test_public_names() -> None:
    assert sorted(shoal.config.__all__) == [
        "ConfigError",
        "LogSettings",
        "ManagementSettings",
        "NodeConfig",
        "NodeSettings",
        "PersistenceConfig",
        "Reference",
        "Setting",
        "configure_logging",
        "load_config",
        "reference",
    ]
    assert issubclass(shoal.config.ConfigError, ShoalError)
    assert issubclass(shoal.config.ConfigError, ValueError)


def test_every_field_is_a_setting_or_excluded() -> None:
    ref = reference()
    configured = {setting.field for setting in ref.settings}
    excluded = set()
    for key, _ in ref.excluded:
        section, _, name = key.partition(".")
        excluded.add(f"{SECTIONS[section].__name__}.{name}")
    classes = (
        NodeSettings,
        ManagementSettings,
        LogSettings,
        Settings,
        RemoteSettings,
        TlsSettings,
        ClusterSettings,
        DiscoverySettings,
        PubSubSettings,
        PersistenceConfig,
        SqliteSettings,
        CassandraSettings,
    )
    every = {f"{cls.__name__}.{f.name}" for cls in classes for f in fields(cls)}
    nested = {"RemoteSettings.tls", "PersistenceConfig.sqlite", "PersistenceConfig.cassandra"}
    assert configured | excluded == every - nested
    assert not configured & excluded


def test_every_setting_is_documented() -> None:
    for setting in reference().settings:
        assert setting.doc, f"{setting.field} has no attribute docstring"
        assert setting.env == "SHOAL_" + setting.key.replace(".", "_").upper()
        assert setting.type
    assert [s.key for s in reference().settings if s.secret] == ["node.secret", "management.token"]


def test_the_node_section_names_the_layers_fields() -> None:
    rows = {s.key: s for s in reference().settings}
    assert rows["node.host"].field == "RemoteSettings.host"
    assert rows["node.seeds"].field == "ClusterSettings.seed_nodes"
    assert rows["node.http_port"].field == "ManagementSettings.port"
    assert (rows["node.http_port"].default, rows["node.http_port"].testing) == ("8558", "0")
    assert "remote.host" not in rows
    assert "cluster.seed_nodes" not in rows


def test_persistence_plugins_become_persistence_settings() -> None:
    memory = PersistenceConfig.testing().settings()
    assert (memory.journal, memory.snapshot_store) == (MemoryJournal, MemorySnapshotStore)
    sqlite = NodeConfig().persistence.settings()
    assert (sqlite.journal, sqlite.snapshot_store) == (None, None)
    assert sqlite.sqlite == SqliteSettings()
    cassandra = PersistenceConfig(plugin="cassandra").settings()
    assert callable(cassandra.journal)
    assert callable(cassandra.snapshot_store)
