"""Secrets come from the environment or a file, and are never shown."""

from __future__ import annotations

from pathlib import Path

import pytest

from shoal.config import ConfigError, NodeConfig, load_config
from shoal.remote import RemoteSettings

SECRET = "s3cret-value"


def test_the_cluster_secret_from_the_environment() -> None:
    config = load_config(env={"SHOAL_NODE_SECRET": SECRET, "SHOAL_MANAGEMENT_TOKEN": "t0ken"})
    assert config.remote.cluster_secret == SECRET.encode()
    assert config.management.token == "t0ken"
    assert SECRET not in repr(config)
    assert "t0ken" not in repr(config)
    assert SECRET not in str(config)


def test_secrets_from_files(tmp_path: Path) -> None:
    (tmp_path / "secret").write_text(SECRET + "\n")
    (tmp_path / "token").write_text("t0ken")
    file = tmp_path / "node.toml"
    file.write_text(f"[node]\nsecret_file = '{tmp_path / 'secret'}'\n")
    config = load_config(file, env={}, flags={"management.token_file": str(tmp_path / "token")})
    assert config.remote.cluster_secret == SECRET.encode()
    assert config.management.token == "t0ken"
    assert SECRET not in repr(config)


def test_a_missing_or_empty_secret_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(env={}, flags={"node.secret_file": str(tmp_path / "nope")})
    assert caught.value.key == "node.secret_file"
    assert "No such file" in caught.value.reason
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(ConfigError, match="is empty"):
        load_config(env={"SHOAL_NODE_SECRET_FILE": str(tmp_path / "empty")})


def test_a_secret_given_twice(tmp_path: Path) -> None:
    (tmp_path / "secret").write_text("other")
    with pytest.raises(ConfigError) as caught:
        load_config(
            env={"SHOAL_NODE_SECRET": SECRET}, flags={"node.secret_file": str(tmp_path / "secret")}
        )
    assert [key for key, _ in caught.value.origins] == ["node.secret_file", "node.secret"]
    assert SECRET not in str(caught.value)


def test_a_secret_is_not_in_errors_about_it(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("  \n")
    with pytest.raises(ConfigError) as caught:
        load_config(env={"SHOAL_MANAGEMENT_TOKEN_FILE": str(tmp_path / "token")})
    assert caught.value.key == "management.token_file"
    assert caught.value.reason.endswith("is empty")
    with pytest.raises(ConfigError) as caught:
        load_config(env={}, flags={"node.secret": SECRET})
    assert SECRET not in str(caught.value)


def test_settings_objects_hide_secrets() -> None:
    assert SECRET not in repr(RemoteSettings(cluster_secret=SECRET.encode()))
    assert "t0ken" not in repr(NodeConfig().management.__class__(token="t0ken"))
