"""The Cassandra test fixture and the launcher behind it (scripts/cassandra.py).

Tests marked ``cassandra`` talk to the live node the fixture provides; the
others pin the launcher's offline contract and run without Java.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile
from cassandra.policies import RoundRobinPolicy

from tests.cassandra_support import load_launcher, parse_contact_points

launcher: Any = load_launcher()


def _cluster(contact_points: list[str]) -> Cluster:
    hosts = [point.rpartition(":")[0] for point in contact_points]
    ports = {int(point.rpartition(":")[2]) for point in contact_points}
    assert len(ports) == 1, "the driver takes one port for all contact points"
    profile = ExecutionProfile(load_balancing_policy=RoundRobinPolicy(), request_timeout=30)
    return Cluster(hosts, port=ports.pop(), execution_profiles={EXEC_PROFILE_DEFAULT: profile})


@pytest.mark.cassandra
def test_fixture_gives_host_port_strings(cassandra_contact_points: list[str]) -> None:
    assert cassandra_contact_points
    assert parse_contact_points(",".join(cassandra_contact_points)) == cassandra_contact_points


@pytest.mark.cassandra
def test_fixture_cluster_stores_and_returns_a_row(cassandra_contact_points: list[str]) -> None:
    keyspace = f"shoal_launcher_{uuid.uuid4().hex[:12]}"
    cluster = _cluster(cassandra_contact_points)
    try:
        session = cluster.connect()
        session.execute(
            f"CREATE KEYSPACE {keyspace} WITH replication = "
            "{'class': 'SimpleStrategy', 'replication_factor': 1}"
        )
        try:
            session.execute(
                f"CREATE TABLE {keyspace}.events "
                "(pid text, seq bigint, payload blob, PRIMARY KEY (pid, seq))"
            )
            insert = session.prepare(
                f"INSERT INTO {keyspace}.events (pid, seq, payload) VALUES (?, ?, ?)"
            )
            session.execute(insert, ("actor-1", 1, b"created"))
            session.execute(insert, ("actor-1", 2, b"renamed"))
            rows = session.execute(
                f"SELECT seq, payload FROM {keyspace}.events WHERE pid = %s", ("actor-1",)
            )
            assert [(row.seq, row.payload) for row in rows] == [(1, b"created"), (2, b"renamed")]
        finally:
            session.execute(f"DROP KEYSPACE {keyspace}")
    finally:
        cluster.shutdown()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:9042", ["127.0.0.1:9042"]),
        (" a:1 , b:65535,", ["a:1", "b:65535"]),
        ("[::1]:9042", ["[::1]:9042"]),
    ],
)
def test_parse_contact_points_accepts_host_port_lists(text: str, expected: list[str]) -> None:
    assert parse_contact_points(text) == expected


@pytest.mark.parametrize("text", ["", " , ", "localhost", ":9042", "h:0", "h:65536", "h:x"])
def test_parse_contact_points_rejects_malformed_lists(text: str) -> None:
    with pytest.raises(ValueError, match="contact point"):
        parse_contact_points(text)


def test_cache_dir_follows_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SHOAL_CASSANDRA_CACHE", str(tmp_path))
    assert launcher.cache_dir("5.0.9") == tmp_path.resolve() / "5.0.9"
    monkeypatch.delenv("SHOAL_CASSANDRA_CACHE")
    assert launcher.cache_dir("5.0.9") == Path.home() / ".cache/shoal/cassandra/5.0.9"


def test_launch_refuses_a_used_run_dir_before_downloading(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # An empty cache proves the refusal comes before any download is tried.
    monkeypatch.setenv("SHOAL_CASSANDRA_CACHE", str(tmp_path / "cache"))
    (tmp_path / "run" / "data").mkdir(parents=True)
    with pytest.raises(launcher.CassandraError, match="not empty"):
        launcher.launch(tmp_path / "run")
    assert not (tmp_path / "cache").exists()


def test_load_handle_without_a_node_says_so(tmp_path: Path) -> None:
    with pytest.raises(launcher.CassandraError, match="no Cassandra was started"):
        launcher.load_handle(tmp_path)


def test_stop_after_exit_removes_or_keeps_the_run_dir(tmp_path: Path) -> None:
    for keep in (True, False):
        run_dir = tmp_path / f"run-{keep}"
        run_dir.mkdir()
        process = subprocess.Popen([sys.executable, "-c", "pass"])
        process.wait()
        handle = launcher.CassandraHandle(
            host="127.0.0.1",
            native_port=1,
            storage_port=2,
            pid=process.pid,
            run_dir=run_dir,
            log_path=run_dir / "system.log",
            launched_at=0.0,
            process=process,
        )
        assert not launcher.is_running(handle)
        launcher.stop(handle, keep_run_dir=keep)
        launcher.stop(handle, keep_run_dir=keep)  # idempotent
        assert run_dir.exists() == keep


def test_handle_survives_the_round_trip_through_its_run_dir(tmp_path: Path) -> None:
    handle = launcher.CassandraHandle(
        host="127.0.0.1",
        native_port=9042,
        storage_port=7000,
        pid=12345,
        run_dir=tmp_path,
        log_path=tmp_path / "logs" / "system.log",
        launched_at=1.5,
    )
    (tmp_path / "handle.json").write_text(json.dumps(handle.to_json()))
    assert launcher.load_handle(tmp_path) == handle
    assert handle.contact_point == "127.0.0.1:9042"


def test_check_command_reports_java_and_maven() -> None:
    script = Path(launcher.__file__)
    result = subprocess.run(
        [sys.executable, str(script), "check"], capture_output=True, text=True, check=False
    )
    assert "java" in result.stdout
    assert "mvn" in result.stdout
    assert (result.returncode == 0) == launcher.tools_available()
