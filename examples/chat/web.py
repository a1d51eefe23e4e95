"""The chat node's HTTP and WebSocket server (aiohttp), on its own port."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any, Final

import aiohttp
from aiohttp import web

from shoal.cluster import Cluster
from shoal.management import Management
from shoal.runtime import ActorSystem, RateLimitedLog
from shoal.sharding import Sharding

from . import auth
from . import protocol as p
from .config import ChatSettings
from .connection import GOING_AWAY, Closed, Connection, Outbox
from .ratelimit import TokenBucket
from .session import ROOM_TYPE, TYPE_NAME

_log = logging.getLogger("examples.chat")

ENTITY_TYPES: Final = (ROOM_TYPE, TYPE_NAME)


def _status(value: str) -> str:
    return "weakly-up" if value == "WeaklyUp" else value.lower()


def _error(status: int, code: str, message: str) -> web.Response:
    body = {"error": {"code": code, "message": message}}
    return web.json_response(body, status=status)


class ChatServer:
    """HTTP endpoints, the WebSocket handler and the static pages of one node."""

    def __init__(
        self,
        system: ActorSystem,
        settings: ChatSettings,
        stats: Callable[[], dict[str, dict[str, Any]]],
    ) -> None:
        self.system = system
        self.settings = settings
        self.stats = stats
        self.sockets: set[web.WebSocketResponse] = set()
        self.outboxes: set[Outbox] = set()
        self.runner: web.AppRunner | None = None
        self.url = ""
        self.ready = False
        self._bad_log = RateLimitedLog(_log, system.clock, 5, 10.0)

    @property
    def connections(self) -> int:
        return len(self.sockets)

    def app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024)
        app.router.add_post("/api/login", self.login)
        app.router.add_get("/api/cluster", self.cluster)
        app.router.add_get("/api/health", self.health)
        app.router.add_get("/ws", self.websocket)
        app.router.add_get("/", self.page("index.html"))
        app.router.add_get("/cluster", self.page("cluster.html"))
        static = self.settings.static_dir
        if static.is_dir():
            app.router.add_static("/static/", static)
        return app

    async def start(self) -> str:
        self.runner = web.AppRunner(self.app(), access_log=None, handle_signals=False)
        await self.runner.setup()
        site = web.TCPSite(self.runner, self.settings.http_host, self.settings.http_port)
        await site.start()
        port = self.settings.http_port
        for sock in self.runner.addresses:
            port = int(sock[1])
            break
        self.url = f"http://{self.settings.http_host}:{port}"
        return self.url

    async def stop(self) -> None:
        """Close every socket with 1001 (going away), then the server."""
        for outbox in list(self.outboxes):
            outbox.close(GOING_AWAY, "node shutting down: resume elsewhere")
        if self.sockets:
            await asyncio.sleep(0.2)  # let the writers send their close frames
        if self.runner is not None:
            await self.runner.cleanup()

    # -- pages and endpoints ----------------------------------------------------------

    def page(self, name: str) -> Callable[[web.Request], Any]:
        async def serve(request: web.Request) -> web.StreamResponse:
            path = self.settings.static_dir / name
            if not path.is_file():
                return web.Response(text=f"{name} is not there yet", status=404)
            return web.FileResponse(path)

        return serve

    async def login(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except (ValueError, UnicodeDecodeError):
            return _error(400, "bad_name", 'the body is JSON: {"name": "..."}')
        name = body.get("name") if isinstance(body, dict) else None
        if not p.valid_name(name):
            return _error(400, "bad_name", "name: 1-32 characters of A-Z a-z 0-9 _ . -")
        assert isinstance(name, str)
        token, expires = auth.issue(self.settings.secret, name, time.time())
        return web.json_response({"token": token, "user": name, "expires_at": expires})

    async def health(self, request: web.Request) -> web.Response:
        cluster = Cluster.get(self.system)
        node = f"shoal://{cluster.self_address.address}"
        if not (self.ready and cluster.is_up):
            return web.json_response({"ok": False, "node": node}, status=503)
        return web.json_response({"ok": True, "node": node})

    async def cluster(self, request: web.Request) -> web.Response:
        cluster = Cluster.get(self.system)
        unreachable = {f"shoal://{u.address}" for u in cluster.unreachable_observers()}
        stats = self.stats()
        leader = cluster.role_leader()
        members = [
            {
                "node": f"shoal://{m.address}",
                "status": _status(m.status.value),
                "reachable": f"shoal://{m.address}" not in unreachable,
                "roles": sorted(m.roles),
                "http": stats.get(f"shoal://{m.address}", {}).get("http"),
            }
            for m in cluster.gossip.members
        ]
        sharding: dict[str, Any] = {}
        for type_name in ENTITY_TYPES:
            sharding[type_name] = await self._shards(type_name, stats)
        body = {
            "v": p.VERSION,
            "node": f"shoal://{cluster.self_address.address}",
            "leader": None if leader is None else f"shoal://{leader.address}",
            "members": members,
            "unreachable": sorted(unreachable),
            "sharding": sharding,
            "connections": {node: s.get("connections") for node, s in stats.items()},
        }
        return web.json_response(body)

    async def _shards(self, type_name: str, stats: dict[str, dict[str, Any]]) -> dict[str, Any]:
        region = Sharding.get(self.system).region(type_name)
        nodes: dict[str, Any] = {}
        url = f"{Management.get(self.system).url}/cluster/shards/{type_name}"
        try:
            timeout = aiohttp.ClientTimeout(total=3)
            async with aiohttp.ClientSession(timeout=timeout) as http, http.get(url) as answer:
                view = await answer.json()
            allocation = view.get("allocation") or {}
        except (aiohttp.ClientError, TimeoutError, ValueError):
            allocation = {}
        for node, shards in allocation.items():
            entities = stats.get(node, {}).get("entities", {}).get(type_name)
            nodes[node] = {"shards": shards, "entities": entities}
        return {"shards": region.settings.number_of_shards, "nodes": nodes}

    # -- the WebSocket ----------------------------------------------------------------

    async def websocket(self, request: web.Request) -> web.StreamResponse:
        try:
            user = auth.verify(self.settings.secret, request.query.get("token"), time.time())
        except auth.TokenError as exc:
            return _error(401, "unauthorized", str(exc))
        limits = self.settings.limits
        # No permessage-deflate: a frame is encoded once per node and written as is to
        # every socket of its room (small chat frames gain little from compression).
        ws = web.WebSocketResponse(
            heartbeat=self.settings.heartbeat_s,
            max_msg_size=limits.hard_frame_bytes,
            compress=False,
        )
        await ws.prepare(request)
        outbox = Outbox(self.settings.outbox, self.settings.stuck_s)
        transport = request.transport
        if transport is not None:
            outbox.abort = transport.abort
        conn = self.system.spawn(lambda: Connection(user, outbox, self.settings))
        self.sockets.add(ws)
        self.outboxes.add(outbox)
        writer = asyncio.get_running_loop().create_task(outbox.run(ws, transport))
        node = f"shoal://{Cluster.get(self.system).self_address.address}"
        outbox.push(
            p.frame(
                "welcome",
                user=user,
                node=node,
                heartbeat_s=self.settings.heartbeat_s,
                limits=limits.public(),
            )
        )
        bucket = TokenBucket(limits.rate_per_s, limits.burst, time.monotonic())
        try:
            async for frame in ws:
                if frame.type is aiohttp.WSMsgType.TEXT:
                    raw: str | bytes = frame.data
                elif frame.type is aiohttp.WSMsgType.BINARY:
                    raw = frame.data
                else:
                    break  # an error or a close
                wait = bucket.take(time.monotonic())
                if wait > 0:
                    outbox.push(
                        p.ProtocolError(
                            "rate_limited",
                            f"at most {limits.rate_per_s:g} frames per second",
                            retry_after_ms=int(wait * 1000) + 1,
                        ).to_frame()
                    )
                    continue
                try:
                    command = p.decode(raw, limits)
                except p.ProtocolError as exc:
                    outbox.push(exc.to_frame())
                    continue
                conn.tell(command)
        finally:
            conn.tell(Closed())
            self.sockets.discard(ws)
            self.outboxes.discard(outbox)
            outbox.close(1000, "")
            with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(asyncio.shield(writer), 1.0)
            writer.cancel()
        if ws.close_code == 1009:
            self._bad_log.report(
                "oversized", "a client of %s sent a frame over the hard limit", user
            )
        return ws
