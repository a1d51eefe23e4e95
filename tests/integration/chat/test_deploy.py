"""The chat cluster's deployment files, through the real tools.

* ``docker-compose.yml`` through Compose's own loader (``docker-compose
  config``; no engine needed): three nodes, Cassandra, nginx started after
  the nodes' health checks, the nginx configuration mounted, no default
  cluster or token secret.
* ``examples/chat/deploy/nginx.conf`` through ``nginx -t`` and in use, on
  loopback in front of three local WebSocket servers: the upgrade passes,
  connections spread over the nodes, a dead node's clients land on the others.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from aiohttp import web

from tests.browser_support import (
    COMPOSE_FILE,
    NGINX_CONF,
    ROOT,
    Nginx,
    nginx_binary,
    nginx_check,
    render_local_nginx,
    unavailable,
)

NODES = ("node1", "node2", "node3")


def _compose_config(docker_compose: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [docker_compose, "-f", str(COMPOSE_FILE), "config"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=ROOT,
        env={**os.environ, **env},
    )


@pytest.fixture(scope="module")
def compose(docker_compose: str) -> dict[str, Any]:
    done = _compose_config(
        docker_compose, {"SHOAL_NODE_SECRET": "test-secret", "CHAT_SECRET": "chat-secret"}
    )
    assert done.returncode == 0, done.stderr
    loaded = yaml.safe_load(done.stdout)
    assert isinstance(loaded, dict)
    return loaded


def test_compose_has_three_nodes_cassandra_and_nginx(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == {*NODES, "cassandra", "nginx"}
    for name in NODES:
        node = services[name]
        env = node["environment"]
        assert env["SHOAL_NODE_HOST"] == name
        assert env["SHOAL_PERSISTENCE_PLUGIN"] == "cassandra"
        assert env["SHOAL_PERSISTENCE_CASSANDRA_CONTACT_POINTS"].split(":")[0] == "cassandra"
        assert env["SHOAL_NODE_SECRET"] == "test-secret"
        assert env["CHAT_SECRET"] == "chat-secret"
        for seed in env["SHOAL_NODE_SEEDS"].split(","):
            system, _, host_port = seed.partition("@")
            assert system == env["SHOAL_NODE_SYSTEM"]
            assert host_port.split(":")[0] in NODES
        assert node["depends_on"]["cassandra"]["condition"] == "service_healthy"
        assert node["healthcheck"]["test"][0] == "CMD"
        assert node["command"][:2] == ["shoal", "node"]
    assert services["cassandra"]["healthcheck"]["test"]


def test_nginx_starts_after_every_node_is_healthy(compose: dict[str, Any]) -> None:
    nginx = compose["services"]["nginx"]
    assert nginx["depends_on"] == {n: {"condition": "service_healthy"} for n in NODES}
    mounts = [v for v in nginx["volumes"] if v.endswith(":/etc/nginx/nginx.conf:ro")]
    assert len(mounts) == 1
    assert Path(mounts[0].split(":")[0]) == NGINX_CONF


def test_nginx_upstreams_are_the_compose_nodes(compose: dict[str, Any]) -> None:
    servers = re.findall(r"^\s*server\s+(\w+):(\d+)", NGINX_CONF.read_text(), re.MULTILINE)
    assert [name for name, _ in servers] == list(NODES)
    for name, port in servers:
        env = compose["services"][name]["environment"]
        assert env["CHAT_HTTP_PORT"] == port
        assert port in compose["services"][name]["expose"]


@pytest.mark.parametrize("secret", ["SHOAL_NODE_SECRET", "CHAT_SECRET"])
def test_compose_refuses_to_run_without_its_secrets(docker_compose: str, secret: str) -> None:
    env = {**os.environ, "SHOAL_NODE_SECRET": "s", "CHAT_SECRET": "c"}
    del env[secret]
    done = subprocess.run(
        [docker_compose, "-f", str(COMPOSE_FILE), "config"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=ROOT,
        env=env,
    )
    assert done.returncode != 0
    assert f"set {secret}" in done.stderr


def test_dockerfile_installs_shoal_and_carries_the_chat_example(compose: dict[str, Any]) -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert "pip install" in text
    assert re.search(r"^COPY examples/chat ", text, re.MULTILINE)
    assert re.search(r"^COPY examples/__init__.py ", text, re.MULTILINE)
    assert re.search(r"^USER nobody$", text, re.MULTILINE)
    # The nodes' --app names a function the image carries.
    command = compose["services"]["node1"]["command"]
    module, _, function = command[command.index("--app") + 1].partition(":")
    source = ROOT / Path(*module.split(".")).with_suffix(".py")
    assert source.is_file()
    assert re.search(rf"^async def {function}\(|^def {function}\(", source.read_text(), re.M)


# -- nginx ----------------------------------------------------------------------------------


def test_render_refuses_a_configuration_it_cannot_template(tmp_path: Path) -> None:
    conf = NGINX_CONF.read_text()
    with pytest.raises(ValueError, match="3 'server nodeN:PORT' lines"):
        render_local_nginx(conf, listen_port=1, upstream_ports=[1, 2], prefix=tmp_path)
    with pytest.raises(ValueError, match="'listen PORT;'"):
        render_local_nginx(
            conf.replace("listen 80;", "listen [::]:80;"),
            listen_port=1,
            upstream_ports=[1, 2, 3],
            prefix=tmp_path,
        )


def test_nginx_accepts_the_configuration(tmp_path: Path) -> None:
    binary = nginx_binary()
    if binary is None:
        unavailable("nginx is not installed (apt-get install nginx)")
    for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (tmp_path / kind).mkdir()
    conf = tmp_path / "nginx.conf"
    conf.write_text(
        render_local_nginx(
            NGINX_CONF.read_text(), listen_port=8, upstream_ports=[1, 2, 3], prefix=tmp_path
        )
    )
    done = nginx_check(binary, tmp_path, conf)
    assert done.returncode == 0, done.stderr
    assert "test is successful" in done.stderr
    # Every address but the template's points at loopback or the prefix.
    assert "node1" not in conf.read_text()
    assert "/var/log" not in conf.read_text()


class _Upstream:
    """A stand-in node: answers ``/`` with its name and echoes WebSocket text."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.sockets: set[web.WebSocketResponse] = set()
        app = web.Application()
        app.router.add_get("/", self._index)
        app.router.add_get("/ws", self._ws)
        self.runner = web.AppRunner(app)
        self.port = 0

    async def start(self) -> None:
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def stop(self) -> None:
        for ws in list(self.sockets):
            await ws.close()
        await self.runner.cleanup()

    async def _index(self, request: web.Request) -> web.Response:
        return web.Response(text=self.name)

    async def _ws(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self.sockets.add(ws)
        try:
            async for msg in ws:
                if msg.type == aiohttp.WSMsgType.TEXT:
                    await ws.send_str(f"{self.name}:{msg.data}")
        finally:
            self.sockets.discard(ws)
        return ws


@pytest.fixture
async def upstreams() -> AsyncIterator[list[_Upstream]]:
    started = [_Upstream(name) for name in NODES]
    for upstream in started:
        await upstream.start()
    yield started
    for upstream in started:
        await upstream.stop()


async def _echo(ws: aiohttp.ClientWebSocketResponse, text: str) -> str:
    await ws.send_str(text)
    msg = await ws.receive(timeout=5)
    assert msg.type == aiohttp.WSMsgType.TEXT, msg
    return str(msg.data)


@pytest.mark.slow
async def test_nginx_proxies_websockets_over_the_nodes_and_around_a_dead_one(
    upstreams: list[_Upstream], nginx_runner: Callable[[Sequence[int]], Nginx]
) -> None:
    nginx = await asyncio.to_thread(nginx_runner, [u.port for u in upstreams])
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{nginx.url}/") as response:
            assert response.status == 200
            assert await response.text() in NODES
        # Long-lived sockets: least_conn puts each new one on the node with fewest.
        sockets = [await http.ws_connect(f"{nginx.url}/ws") for _ in NODES]
        answered = [await _echo(ws, f"hello{i}") for i, ws in enumerate(sockets)]
        assert sorted(a.split(":")[0] for a in answered) == sorted(NODES)
        assert all(a.endswith(f"hello{i}") for i, a in enumerate(answered))

        # A node dies: its client is disconnected and reconnects to another node at once.
        victim = answered[0].split(":")[0]
        dead = next(u for u in upstreams if u.name == victim)
        await dead.stop()
        closed = await sockets[0].receive(timeout=5)
        assert closed.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
        for attempt in range(4):
            ws = await http.ws_connect(f"{nginx.url}/ws")
            reply = await _echo(ws, f"again{attempt}")
            assert reply.split(":")[0] != victim
            assert reply.split(":")[0] in NODES
            await ws.close()
        # The others never noticed.
        assert (await _echo(sockets[1], "still")) == f"{answered[1].split(':')[0]}:still"
        for ws in sockets:
            await ws.close()
    log = nginx.error_log()
    assert "[emerg]" not in log
    assert "[crit]" not in log
