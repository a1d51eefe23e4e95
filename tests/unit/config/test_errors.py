"""Every kind of bad input is a ConfigError naming the setting and where it came from."""

from __future__ import annotations

from pathlib import Path

import pytest

from shoal.config import ConfigError, load_config


def _error(tmp_path: Path, toml: str | None = None, **kwargs: object) -> ConfigError:
    file = None
    if toml is not None:
        file = tmp_path / "node.toml"
        file.write_text(toml)
    kwargs.setdefault("env", {})
    with pytest.raises(ConfigError) as caught:
        load_config(file, **kwargs)  # type: ignore[arg-type]
    return caught.value


CASES = [
    # id, TOML file or None, keyword arguments, key at fault, source ({file}: the file), reason
    (
        "unknown section in a file",
        "[clustr]\nx = 1\n",
        {},
        "clustr",
        "file {file}",
        "unknown section 'clustr'",
    ),
    (
        "unknown key in a file",
        "[cluster]\ngossip_intervall = 1\n",
        {},
        "cluster.gossip_intervall",
        "file {file}",
        "did you mean cluster.gossip_interval?",
    ),
    (
        "a setting outside a section",
        "port = 1\n",
        {},
        "port",
        "file {file}",
        "unknown section 'port'",
    ),
    ("a section given a value", "cluster = 1\n", {}, "cluster", "file {file}", "is a section"),
    (
        "bad type in a file",
        '[node]\nport = "2552"\n',
        {},
        "node.port",
        "file {file}",
        "expected an integer, got str '2552'",
    ),
    (
        "bool for a number",
        "[cluster]\ngossip_interval = true\n",
        {},
        "cluster.gossip_interval",
        "file {file}",
        "expected a number",
    ),
    (
        "a list of numbers",
        "[node]\nseeds = [1]\n",
        {},
        "node.seeds",
        "file {file}",
        "expected an array of strings",
    ),
    (
        "not one of the choices",
        '[log]\nformat = "xml"\n',
        {},
        "log.format",
        "file {file}",
        "expected one of text, json, got 'xml'",
    ),
    (
        "not finite",
        "[cluster]\nphi_threshold = inf\n",
        {},
        "cluster.phi_threshold",
        "file {file}",
        "finite",
    ),
    (
        "refused by the layer (file)",
        "[cluster]\ngossip_interval = 0\n",
        {},
        "cluster.gossip_interval",
        "file {file}",
        "gossip_interval must be positive, got 0.0",
    ),
    (
        "unknown section in env",
        None,
        {"env": {"SHOAL_CLUSTR_X": "1"}},
        "SHOAL_CLUSTR_X",
        "environment variable",
        "unknown section",
    ),
    (
        "unknown key in env",
        None,
        {"env": {"SHOAL_CLUSTER_GOSIP_INTERVAL": "1"}},
        "SHOAL_CLUSTER_GOSIP_INTERVAL",
        "environment variable",
        "did you mean SHOAL_CLUSTER_GOSSIP_INTERVAL?",
    ),
    (
        "bad bool in env",
        None,
        {"env": {"SHOAL_REMOTE_ALLOW_UNAUTHENTICATED": "maybe"}},
        "remote.allow_unauthenticated",
        "environment variable SHOAL_REMOTE_ALLOW_UNAUTHENTICATED",
        "expected true or false",
    ),
    (
        "bad pairs in env",
        None,
        {"env": {"SHOAL_RUNTIME_SHUTDOWN_PHASE_TIMEOUTS": "x"}},
        "runtime.shutdown_phase_timeouts",
        "environment variable SHOAL_RUNTIME_SHUTDOWN_PHASE_TIMEOUTS",
        "expected key=value pairs",
    ),
    (
        "bad number in a table",
        None,
        {"env": {"SHOAL_RUNTIME_SHUTDOWN_PHASE_TIMEOUTS": "before-service-unbind=soon"}},
        "runtime.shutdown_phase_timeouts",
        "environment variable SHOAL_RUNTIME_SHUTDOWN_PHASE_TIMEOUTS",
        "before-service-unbind: expected a number",
    ),
    (
        "refused by the layer (env)",
        None,
        {"env": {"SHOAL_CLUSTER_SBR_STRATEGY": "coin-toss"}},
        "cluster.sbr_strategy",
        "environment variable SHOAL_CLUSTER_SBR_STRATEGY",
        "sbr_strategy 'coin-toss' is unknown",
    ),
    (
        "refused by the layer (a table key)",
        None,
        {"env": {"SHOAL_RUNTIME_SHUTDOWN_PHASE_TIMEOUTS": "lunch=3"}},
        "runtime.shutdown_phase_timeouts",
        "environment variable SHOAL_RUNTIME_SHUTDOWN_PHASE_TIMEOUTS",
        "not a shutdown phase: 'lunch'",
    ),
    (
        "refused by the layer (an alias)",
        None,
        {"env": {"SHOAL_NODE_HOST": "0.0.0.0"}},
        "node.host",
        "environment variable SHOAL_NODE_HOST",
        "needs advertised_host",
    ),
    (
        "a bad seed",
        None,
        {"flags": {"node.seeds": "nohost"}},
        "node.seeds",
        "flag node.seeds",
        "has no host:port",
    ),
    (
        "a bad system name",
        None,
        {"flags": {"node.system": "a b"}},
        "node.system",
        "flag node.system",
        "invalid actor system name",
    ),
    (
        "a bad app",
        None,
        {"flags": {"node.app": "module"}},
        "node.app",
        "flag node.app",
        "'module:function'",
    ),
    (
        "a bad persistence value",
        None,
        {"flags": {"persistence.cassandra.keyspace": "Bad-Name"}},
        "persistence.cassandra.keyspace",
        "flag persistence.cassandra.keyspace",
        "invalid keyspace name",
    ),
    (
        "unknown flag",
        None,
        {"flags": {"node.prot": 1}},
        "node.prot",
        "flag node.prot",
        "did you mean node.port?",
    ),
    (
        "bad flag text",
        None,
        {"flags": {"node.port": "x"}},
        "node.port",
        "flag node.port",
        "expected an integer, got 'x'",
    ),
    (
        "bad typed flag",
        None,
        {"flags": {"node.port": 2.5}},
        "node.port",
        "flag node.port",
        "expected an integer, got float 2.5",
    ),
    (
        "a partial TLS section",
        "[remote.tls]\ncert_file = 'c.pem'\n",
        {},
        "remote.tls.cert_file",
        "file {file}",
        "[remote.tls] also needs remote.tls.key_file, remote.tls.ca_file",
    ),
    (
        "a secret in a file",
        "[node]\nsecret = 'x'\n",
        {},
        "node.secret",
        "file {file}",
        "never read from a file or a flag: set SHOAL_NODE_SECRET or node.secret_file",
    ),
    (
        "a secret in a flag",
        None,
        {"flags": {"management.token": "x"}},
        "management.token",
        "flag management.token",
        "set SHOAL_MANAGEMENT_TOKEN or management.token_file",
    ),
    (
        "unknown preset",
        None,
        {"preset": "staging"},
        "preset",
        "argument",
        "unknown preset 'staging'; use production or testing",
    ),
]


@pytest.mark.parametrize(
    ("toml", "kwargs", "key", "source", "reason"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_bad_input_names_the_setting_and_its_source(
    tmp_path: Path, toml: str | None, kwargs: dict[str, object], key: str, source: str, reason: str
) -> None:
    error = _error(tmp_path, toml, **kwargs)
    source = source.format(file=tmp_path / "node.toml")
    assert (error.key, error.source) == (key, source)
    assert reason in error.reason
    assert str(error).startswith(f"{key} ({source}): ")


def test_settings_refused_together_are_named_together() -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(
            env={"SHOAL_CLUSTER_JOIN_RETRY_MIN": "5"}, flags={"cluster.join_retry_max": 1.0}
        )
    assert caught.value.origins == (
        ("cluster.join_retry_min", "environment variable SHOAL_CLUSTER_JOIN_RETRY_MIN"),
        ("cluster.join_retry_max", "flag cluster.join_retry_max"),
    )
    assert "join_retry_max must be >= join_retry_min" in str(caught.value)


def test_malformed_toml_names_the_file_and_line(tmp_path: Path) -> None:
    error = _error(tmp_path, "[node]\nport = 1\n\nroles = ['a' 'b']\n")
    assert str(tmp_path / "node.toml") in str(error)
    assert "line 4" in str(error)
    error = _error(tmp_path, "[node]\nport = = 3\n")
    assert "malformed TOML" in str(error)
    assert "line 2" in str(error)


def test_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"cannot read config file .*missing\.toml"):
        load_config(tmp_path / "missing.toml", env={})
    binary = tmp_path / "binary.toml"
    binary.write_bytes(b"\xff\xfe")
    with pytest.raises(ConfigError, match="is not UTF-8 text"):
        load_config(binary, env={})


def test_the_last_error_source_is_the_one_named(tmp_path: Path) -> None:
    # a bad value in the file, overridden by a good flag, is not an error
    file = tmp_path / "node.toml"
    file.write_text("[cluster]\ngossip_interval = 0\n")
    assert (
        load_config(file, env={}, flags={"cluster.gossip_interval": 2}).cluster.gossip_interval
        == 2.0
    )


def test_a_valid_setting_named_in_the_message_is_not_blamed() -> None:
    # the runtime's message names mailbox_capacity, which is fine; stash_capacity is not
    with pytest.raises(ConfigError) as caught:
        load_config(
            env={"SHOAL_RUNTIME_MAILBOX_CAPACITY": "5", "SHOAL_RUNTIME_STASH_CAPACITY": "-1"}
        )
    assert [key for key, _ in caught.value.origins] == ["runtime.stash_capacity"]
