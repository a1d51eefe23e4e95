"""The ``shoal`` command line against real node processes."""

from __future__ import annotations

import json
import re
import signal
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from shoal.cli._main import _parser
from tests.integration.management._schema import (
    ALIVE,
    ERROR,
    MEMBER,
    READY,
    SEED_NODES,
    check_schema,
    members_schema,
)

from ._nodes import Nodes, eventually, members, shoal

pytestmark = [pytest.mark.multiprocess, pytest.mark.slow]


@pytest.fixture
def nodes(tmp_path: Path) -> Iterator[Nodes]:
    lab = Nodes(tmp_path)
    yield lab
    lab.close()


def test_three_nodes_form_and_the_cli_operates_them(nodes: Nodes) -> None:
    a, b, c = nodes.cluster(3)

    # members: a table, and the API's JSON.
    table = shoal("members", "--node", a.http)
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split() == ["NODE", "UID", "STATUS", "ROLES", "NOTES"]
    assert len(lines) == 4
    for node in (a, b, c):
        [row] = [line for line in lines if f"shoal://{node.address} " in line]
        assert re.search(r"\bUp\b", row)
        assert node.started["uid"] in row
    body = members(b)
    assert body["selfNode"] == f"shoal://{b.address}"
    assert sorted(m["node"] for m in body["members"]) == sorted(
        f"shoal://{n.address}" for n in (a, b, c)
    )

    # leave: the node walks out and exits 0.
    left = shoal("leave", c.address, "--node", a.http)
    assert left.returncode == 0, left.stderr
    assert left.stdout.strip() == f"Leaving shoal://{c.address}"
    assert c.wait_exit() == 0
    stopped = c.wait_event("stopped")
    assert stopped["reason"] == "cluster-leave"

    # down: the downed node stops itself with its own exit status.
    downed = shoal("down", f"shoal://{b.address}", "--node", a.http, "--json")
    assert downed.returncode == 0, downed.stderr
    assert json.loads(downed.stdout) == {"message": f"Downing shoal://{b.address}"}
    assert b.wait_exit() == 3
    assert b.wait_event("stopped")["reason"] == "cluster-downed"
    eventually(lambda: [m["node"] for m in members(a)["members"]] == [f"shoal://{a.address}"])

    # SIGTERM: a graceful leave, exit 0.
    a.signal(signal.SIGTERM)
    assert a.wait_exit() == 0


def test_a_killed_node_is_downed_and_removed_and_the_others_go_on(nodes: Nodes) -> None:
    a, b, c = nodes.cluster(3)
    c.kill()
    for survivor in (a, b):
        eventually(lambda s=survivor: len(members(s)["members"]) == 2, timeout=30)
    assert {m["status"] for m in members(a)["members"]} == {"Up"}


def test_admin_failures_are_one_line_and_exit_1(nodes: Nodes) -> None:
    a = nodes.start()
    a.wait_event("started")
    a.wait_event("up")
    cases = [
        (
            ("members", "--node", "http://127.0.0.1:1"),
            r"^shoal members: cannot reach http://127\.0\.0\.1:1: ",
        ),
        (("members", "--node", "ftp://x"), "must be an http"),
        (("leave", "bogus", "--node", a.http), r"^shoal leave: 400: malformed member address"),
        (
            ("down", "shoal@127.0.0.1:1", "--node", a.http),
            r"^shoal down: 404: member shoal://shoal@127\.0\.0\.1:1 not found",
        ),
        (
            ("shards", "account", "--node", a.http),
            r"^shoal shards: 404: no sharding of entity type 'account'",
        ),
        (
            ("leave", a.address, "--node", a.http, "--token-file", "/nonexistent"),
            "cannot read the token file",
        ),
    ]
    for args, expected in cases:
        result = shoal(*args)
        assert result.returncode == 1, (args, result)
        assert result.stdout == ""
        assert len(result.stderr.splitlines()) == 1, result.stderr
        assert re.search(expected, result.stderr), (args, result.stderr)
    # ...and the node still serves.
    assert len(members(a)["members"]) == 1


def test_a_token_from_the_environment_or_a_file(nodes: Nodes, tmp_path: Path) -> None:
    a = nodes.start(env={"SHOAL_MANAGEMENT_TOKEN": "s3cret"})
    a.wait_event("started")
    a.wait_event("up")
    b = nodes.start("--seed", a.address)
    b.wait_event("started")
    b.wait_event("up")
    refused = shoal("down", b.address, "--node", a.http, env={"SHOAL_MANAGEMENT_TOKEN": ""})
    assert refused.returncode == 1
    assert "401: missing bearer token" in refused.stderr
    token = tmp_path / "token"
    token.write_text("s3cret\n")
    accepted = shoal("down", b.address, "--node", a.http, "--token-file", str(token))
    assert accepted.returncode == 0, accepted.stderr
    assert b.wait_exit() == 3


def test_bad_configuration_exits_1_naming_the_setting(nodes: Nodes, tmp_path: Path) -> None:
    for argv, expected in [
        (["--port", "notaport"], "node.port (flag"),
        (["--seed", "not an address"], "node.seeds"),
        (["--app", "no_such_module_xyz:start"], "node.app: cannot import"),
    ]:
        node = nodes.start(*argv)
        assert node.wait_exit() == 1
        assert expected in node.stderr(), node.stderr()
    config = tmp_path / "shoal.toml"
    config.write_text("[cluster]\ngossip_interval = -1\n")
    node = nodes.start("--config", str(config))
    assert node.wait_exit() == 1
    assert "cluster.gossip_interval" in node.stderr()


def test_an_app_starts_the_users_actors(nodes: Nodes, tmp_path: Path) -> None:
    (tmp_path / "cli_app_probe.py").write_text(
        "from shoal import Actor\n"
        "class Echo(Actor):\n"
        "    def receive(self, msg):\n"
        "        return msg\n"
        "async def start(system):\n"
        "    system.spawn(Echo, name='echo')\n"
        '    print(\'{"event": "app", "echo": "\' + system.address + \'"}\', flush=True)\n'
    )
    node = nodes.start("--app", "cli_app_probe:start", env={"PYTHONPATH": str(tmp_path)})
    assert node.wait_event("app")["echo"].startswith("shoal@127.0.0.1:")
    node.wait_event("started")
    node.wait_event("up")
    node.signal(signal.SIGINT)
    assert node.wait_exit() == 0


def test_the_node_tunes_the_garbage_collector_unless_told_not_to(
    nodes: Nodes, tmp_path: Path
) -> None:
    (tmp_path / "cli_gc_probe.py").write_text(
        "import asyncio, gc, json\n"
        "def report():\n"
        "    print(json.dumps({'event': 'gc', 'young': gc.get_threshold()[0],\n"
        "                      'frozen': gc.get_freeze_count()}), flush=True)\n"
        "async def start(system):\n"
        "    asyncio.get_running_loop().call_soon(report)  # runs once start-up is over\n"
    )
    env = {"PYTHONPATH": str(tmp_path)}
    tuned = nodes.start("--app", "cli_gc_probe:start", env=env)
    report = tuned.wait_event("gc")
    assert report["young"] == 20_000
    assert report["frozen"] > 10_000  # modules, classes, the node's start-up state
    plain = nodes.start("--app", "cli_gc_probe:start", env={**env, "SHOAL_NODE_TUNE_GC": "false"})
    report = plain.wait_event("gc")
    assert report == {"event": "gc", "young": 700, "frozen": 0}
    for node in (tuned, plain):
        node.signal(signal.SIGINT)
        assert node.wait_exit() == 0


def test_help_is_complete() -> None:
    parser = _parser()
    top = shoal("--help")
    assert top.returncode == 0
    for command in ("node", "members", "leave", "down", "shards"):
        assert command in top.stdout
        result = shoal(command, "--help")
        assert result.returncode == 0, result.stderr
        sub = parser._subparsers._group_actions[0].choices[command]  # type: ignore[union-attr]
        for action in sub._actions:
            for option in action.option_strings:
                assert option in result.stdout, (command, option)
    node_help = shoal("node", "--help").stdout
    for text in ("SHOAL_NODE_SECRET", "exit status", "SIGTERM", "docs/configuration.md"):
        assert text in node_help


def test_every_endpoint_of_a_live_node_process_has_its_documented_shape(nodes: Nodes) -> None:
    a, b, _ = nodes.cluster(3)
    base = a.http

    def get(path: str, expect: int = 200) -> object:
        try:
            with urllib.request.urlopen(base + path, timeout=10) as response:
                status, body, kind = response.status, response.read(), response.headers
        except urllib.error.HTTPError as exc:
            status, body, kind = exc.code, exc.read(), exc.headers
        assert status == expect, (path, status, body)
        if kind.get_content_type() == "application/json":
            return json.loads(body)
        return body.decode()

    check_schema(get("/cluster/members"), members_schema([]))
    check_schema(get(f"/cluster/members/shoal://{b.address}"), MEMBER)
    check_schema(get("/cluster/members/shoal://shoal@127.0.0.1:1", 404), ERROR)
    check_schema(get("/cluster/members/nonsense", 400), ERROR)
    check_schema(get("/cluster/shards/account", 404), ERROR)
    check_schema(get("/health/alive"), ALIVE)
    ready = get("/health/ready")
    check_schema(ready, READY)
    assert ready == {"status": "ready", "failed": {}}
    check_schema(get("/bootstrap/seed-nodes"), SEED_NODES)
    metrics = get("/metrics")
    assert isinstance(metrics, str)
    for name in ("shoal_cluster_members", "shoal_remote_frames_sent", "shoal_actors"):
        assert name in metrics
    check_schema(get("/no/such/path", 404), ERROR)


def test_five_nodes_survive_a_kill_a_leave_and_a_restart(nodes: Nodes) -> None:
    cluster = nodes.cluster(5)
    first = cluster[0]
    eventually(lambda: len(members(first)["members"]) == 5)

    def view() -> list[tuple[str, str, str]]:
        return sorted((m["node"], m["nodeUid"], m["status"]) for m in members(first)["members"])

    # SIGKILL: detected, downed by the resolver, removed; the others go on.
    killed = cluster[4]
    killed.kill()
    eventually(lambda: len(view()) == 4, timeout=30)
    assert {status for _, _, status in view()} == {"Up"}

    # SIGTERM: a graceful leave, exit 0.
    cluster[3].signal(signal.SIGTERM)
    assert cluster[3].wait_exit() == 0
    eventually(lambda: len(view()) == 3, timeout=30)

    # The killed node comes back on the same address: a new incarnation joins.
    again = nodes.start("--port", killed.address.rsplit(":", 1)[1], "--seed", first.address)
    again.wait_event("started")
    again.wait_event("up")
    assert again.started["uid"] != killed.started["uid"]
    eventually(lambda: len(view()) == 4, timeout=30)
    assert (f"shoal://{killed.address}", again.started["uid"], "Up") in view()
