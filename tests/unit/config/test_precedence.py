"""Each setting comes from the preset, then the file, then the environment, then flags."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from shoal.cluster import ClusterSettings
from shoal.config import NodeConfig, load_config
from shoal.runtime import MailboxOverflow

Row = tuple[
    str, tuple[str, str, object], tuple[object, object, object], Callable[[NodeConfig], object]
]
"""A setting, the TOML literal, environment text and flag value given, the value each gives,
and how to read it from the configuration."""

ROWS: list[Row] = [
    ("node.port", ("2552", "2553", "2554"), (2552, 2553, 2554), lambda c: c.remote.port),
    ("node.system", ('"a"', "b", "c"), ("a", "b", "c"), lambda c: c.node.system),
    (
        "cluster.gossip_interval",
        ("2", "0.5", 0.25),
        (2.0, 0.5, 0.25),
        lambda c: c.cluster.gossip_interval,
    ),
    (
        "remote.allow_unauthenticated",
        ("true", "no", True),
        (True, False, True),
        lambda c: c.remote.allow_unauthenticated,
    ),
    (
        "node.seeds",
        ('["s@h:1"]', "s@h:2, s@h:3", ("s@h:4",)),
        (("s@h:1",), ("s@h:2", "s@h:3"), ("s@h:4",)),
        lambda c: c.cluster.seed_nodes,
    ),
    (
        "node.roles",
        ('["a"]', "b,c", "d"),
        (frozenset("a"), frozenset("bc"), frozenset("d")),
        lambda c: c.cluster.roles,
    ),
    (
        "runtime.mailbox_overflow",
        ('"drop-oldest"', "DEAD-LETTER", "drop-oldest"),
        (MailboxOverflow.DROP_OLDEST, MailboxOverflow.DEAD_LETTER, MailboxOverflow.DROP_OLDEST),
        lambda c: c.runtime.mailbox_overflow,
    ),
    ("log.format", ('"json"', "text", "JSON"), ("json", "text", "json"), lambda c: c.log.format),
    (
        "cluster.weakly_up_after",
        ("3", "none", "4"),
        (3.0, None, 4.0),
        lambda c: c.cluster.weakly_up_after,
    ),
    (
        "remote.advertised_host",
        ('"a.example"', "", "c.example"),
        ("a.example", None, "c.example"),
        lambda c: c.remote.advertised_host,
    ),
    (
        "persistence.cassandra.replication",
        (
            '{class = "SimpleStrategy", replication_factor = 3}',
            "class=NetworkTopologyStrategy,dc1=2",
            {"class": "X", "dc2": 1},
        ),
        (
            {"class": "SimpleStrategy", "replication_factor": 3},
            {"class": "NetworkTopologyStrategy", "dc1": 2},
            {"class": "X", "dc2": 1},
        ),
        lambda c: dict(c.persistence.cassandra.replication),
    ),
    (
        "runtime.shutdown_phase_timeouts",
        ('{"before-service-unbind" = 3}', "before-service-unbind=4", "before-service-unbind=5"),
        (
            {"before-service-unbind": 3.0},
            {"before-service-unbind": 4.0},
            {"before-service-unbind": 5.0},
        ),
        lambda c: dict(c.runtime.shutdown_phase_timeouts),
    ),
    (
        "persistence.sqlite.path",
        ('"/a.db"', "/b.db", Path("/c.db")),
        ("/a.db", "/b.db", "/c.db"),
        lambda c: c.persistence.sqlite.path,
    ),
]

SOURCES = [
    ("file",),
    ("env",),
    ("flag",),
    ("file", "env"),
    ("file", "flag"),
    ("env", "flag"),
    ("file", "env", "flag"),
]


def _env_name(key: str) -> str:
    return "SHOAL_" + key.replace(".", "_").upper()


@pytest.mark.parametrize("sources", SOURCES, ids="+".join)
@pytest.mark.parametrize(("key", "given", "expected", "read"), ROWS, ids=[r[0] for r in ROWS])
def test_the_last_source_wins(
    tmp_path: Path,
    sources: tuple[str, ...],
    key: str,
    given: tuple[str, str, object],
    expected: tuple[object, object, object],
    read: Callable[[NodeConfig], object],
) -> None:
    section, _, name = key.rpartition(".")
    file = tmp_path / "shoal.toml"
    file.write_text(f"[{section}]\n{name} = {given[0]}\n")
    config = load_config(
        file if "file" in sources else None,
        env={_env_name(key): given[1]} if "env" in sources else {},
        flags={key: given[2]} if "flag" in sources else None,
    )
    last = ("file", "env", "flag").index(sources[-1])
    assert read(config) == expected[last]


def test_nothing_given_is_the_preset() -> None:
    assert load_config(env={}) == NodeConfig()
    assert load_config(env={}, preset="testing") == NodeConfig.testing()


def test_the_testing_preset_is_fast_and_in_memory(tmp_path: Path) -> None:
    config = load_config(env={}, preset="testing")
    assert config.cluster.gossip_interval == 0.1
    assert config.remote.backoff_min == 0.01
    assert config.runtime.ask_timeout == 2.0
    assert config.management.port == 0
    assert config.persistence.plugin == "memory"
    # a file still overrides the preset, setting by setting
    file = tmp_path / "shoal.toml"
    file.write_text("[cluster]\ngossip_interval = 0.3\n")
    config = load_config(file, env={}, preset="testing")
    assert config.cluster.gossip_interval == 0.3
    assert config.cluster.heartbeat_interval == ClusterSettings.testing().heartbeat_interval


def test_sections_nest_in_toml(tmp_path: Path) -> None:
    file = tmp_path / "shoal.toml"
    file.write_text(
        "[persistence]\nplugin = 'cassandra'\n"
        "[persistence.cassandra]\ncontact_points = ['10.0.0.1:9042', '10.0.0.2']\n"
        "[remote.tls]\ncert_file = 'c.pem'\nkey_file = 'k.pem'\nca_file = 'ca.pem'\n"
        "[management]\nhost = '0.0.0.0'\n"
    )
    config = load_config(file, env={"SHOAL_REMOTE_TLS_SERVER_NAME": "node.example"})
    assert config.persistence.plugin == "cassandra"
    assert config.persistence.cassandra.contact_points == ("10.0.0.1:9042", "10.0.0.2")
    assert config.remote.tls is not None
    assert (config.remote.tls.cert_file, config.remote.tls.server_name) == ("c.pem", "node.example")
    assert config.management.host == "0.0.0.0"
    assert not config.management.loopback


def test_other_shoal_tools_variables_are_not_settings() -> None:
    env = {"SHOAL_CASSANDRA_CONTACT_POINTS": "127.0.0.1:9042", "PATH": "/bin", "HOME": "/"}
    assert load_config(env=env) == NodeConfig()


def test_flags_left_out_and_dashed_flags() -> None:
    flags: dict[str, object] = {"node.port": None, "node.http-port": "9000", "log.level": None}
    config = load_config(env={"SHOAL_NODE_PORT": "2600"}, flags=flags)
    assert (config.remote.port, config.management.port, config.log.level) == (2600, 9000, "info")


def test_the_environment_is_read_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHOAL_CLUSTER_GOSSIP_INTERVAL", "0.75")
    assert load_config().cluster.gossip_interval == 0.75
