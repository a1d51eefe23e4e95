"""The management HTTP server: Akka Management's cluster API, health checks, metrics."""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar, Final

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from shoal.cluster import Cluster, MemberStatus
from shoal.runtime import Address, RateLimitedLog, ShutdownPhase

from ._discovery import Bootstrap, DiscoverySettings, seed_nodes_view
from ._settings import ManagementSettings
from ._views import member_json, members_json, node_name, parse_node

if TYPE_CHECKING:
    from shoal.runtime import ActorSystem

_log: Final = logging.getLogger("shoal.management")

ReadinessCheck = Callable[[], str | None]
"""A readiness check: ``None`` when ready, else why not (one short sentence)."""

ShardsView = Callable[[], Awaitable[Mapping[str, Any]]]
"""Renders ``GET /cluster/shards/{type}`` for one entity type (sharding registers it)."""

_OPERATIONS: Final = {"leave": "Leave", "down": "Down"}


class ManagementError(Exception):
    """The management server cannot start (port in use, started twice, no cluster)."""


def _error(status: type[web.HTTPError], message: str, **headers: str) -> web.HTTPError:
    body = json.dumps({"error": message, "status": status.status_code})
    return status(text=body, content_type="application/json", headers=headers or None)


def _ok(body: Mapping[str, Any], status: int = 200) -> web.Response:
    return web.json_response(dict(body), status=status)


class Management:
    """A node's management HTTP server (``/cluster``, ``/health``, ``/metrics``).

    ::

        cluster = await Cluster.start(system, ClusterSettings(...))
        management = await Management.start(system, ManagementSettings(port=8558))
        print(management.url)        # http://127.0.0.1:8558

    The JSON of ``/cluster/members`` is Akka Management's (node addresses as
    ``shoal://system@host:port``), so tooling written for it carries over.
    Errors are 4xx with a body ``{"error": "...", "status": N}``. The
    server keeps answering while the node leaves (readiness turns 503 in
    the first shutdown phase) and closes with the system's extensions.
    """

    depends_on: ClassVar[tuple[type, ...]] = (Cluster,)
    shutdown_phase: ClassVar[ShutdownPhase] = ShutdownPhase.CLOSE_EXTENSIONS

    def __init__(self, system: ActorSystem) -> None:
        # Created by ``system.extension(Management)``; ``start()`` binds the port.
        self.system = system
        self.settings = ManagementSettings()
        self._runner: web.AppRunner | None = None
        self._port = 0
        self._checks: dict[str, ReadinessCheck] = {}
        self._shards: dict[str, ShardsView] = {}
        self._stopping = False
        self._tasks: set[asyncio.Task[None]] = set()
        self._bad = RateLimitedLog(_log, system.clock, 5, 10.0)

    # -- lifecycle ------------------------------------------------------------------------

    @classmethod
    async def start(
        cls, system: ActorSystem, settings: ManagementSettings | None = None
    ) -> Management:
        """Bind ``settings.host:port`` and serve. The cluster must be started first.

        Raises :class:`ManagementError` if the server already runs on this
        system or the port cannot be bound.
        """
        management = system.extension(cls)
        await management._bind(  # noqa: SLF001 (its own class)
            settings if settings is not None else ManagementSettings()
        )
        return management

    @classmethod
    def get(cls, system: ActorSystem) -> Management:
        """The started management server of ``system``; :class:`ManagementError` if none."""
        management = system.extension(cls)
        if management._runner is None:  # noqa: SLF001 (its own class)
            raise ManagementError(f"the management server is not started on {system.name}")
        return management

    async def _bind(self, settings: ManagementSettings) -> None:
        if self._runner is not None:
            raise ManagementError(f"the management server already runs on {self.url}")
        self.settings = settings
        Cluster.get(self.system)  # a ClusterError names what is missing
        app = web.Application(client_max_size=settings.max_body_bytes, middlewares=[self._errors])
        app.router.add_get("/cluster/members", self._members)
        app.router.add_get("/cluster/members/", self._members)
        member = "/cluster/members/{address:.+}"
        app.router.add_get(member, self._member)
        app.router.add_put(member, self._put_member)
        app.router.add_delete(member, self._delete_member)
        app.router.add_get("/cluster/shards/{type_name}", self._shards_of)
        app.router.add_get("/health/alive", self._alive)
        app.router.add_get("/health/ready", self._ready)
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/bootstrap/seed-nodes", self._seed_nodes)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        try:
            site = web.TCPSite(runner, settings.host, settings.port, reuse_address=True)
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            raise ManagementError(
                f"cannot serve management HTTP on {settings.host}:{settings.port}: {exc}"
            ) from exc
        self._runner = runner
        self._port = runner.addresses[0][1]
        self.system.coordinated_shutdown.add_task(
            ShutdownPhase.BEFORE_SERVICE_UNBIND, "management: not ready", self._not_ready
        )
        _log.info("[%s] management HTTP on %s", self.system.address, self.url)

    async def _not_ready(self) -> None:
        self._stopping = True

    async def aclose(self) -> None:
        """Stop serving (the system does it at shutdown)."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
        for task in list(self._tasks):
            await asyncio.gather(task, return_exceptions=True)

    @property
    def port(self) -> int:
        """The bound TCP port (useful with ``port=0``)."""
        return self._port

    @property
    def url(self) -> str:
        """``http://host:port`` of the server."""
        host = self.settings.host
        return f"http://[{host}]:{self._port}" if ":" in host else f"http://{host}:{self._port}"

    # -- extension points -----------------------------------------------------------------

    def add_readiness_check(self, name: str, check: ReadinessCheck) -> None:
        """Make ``/health/ready`` also depend on ``check`` (e.g. sharding regions registered).

        ``check`` is called on the loop for each request and must not block.
        """
        if name in self._checks:
            raise ValueError(f"readiness check {name!r} is already registered")
        self._checks[name] = check

    def register_shards(self, type_name: str, view: ShardsView) -> None:
        """Serve ``GET /cluster/shards/{type_name}`` with ``view``'s JSON."""
        if type_name in self._shards:
            raise ValueError(f"shards of {type_name!r} are already registered")
        self._shards[type_name] = view

    async def discover(self, settings: DiscoverySettings) -> str:
        """Find the cluster through ``settings`` (DNS) and join it; returns how.

        Runs the bootstrap rule (see :class:`DiscoverySettings`) until this
        node has joined: ``"formed"`` when it formed the cluster, else
        ``"joined <seeds>"``. The cluster must have been started without
        seed nodes. Cancel the task to stop looking.
        """
        bootstrap = Bootstrap(self, settings)
        await bootstrap.run()
        return bootstrap.decision or "joined"

    # -- middleware -----------------------------------------------------------------------

    @web.middleware
    async def _errors(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        try:
            return await handler(request)
        except web.HTTPException as exc:
            if exc.content_type == "application/json" or exc.status_code < 400:
                raise
            # aiohttp's own refusals (404, 405, 413...): the same JSON as ours.
            reason = exc.reason
            if isinstance(exc, web.HTTPRequestEntityTooLarge):
                reason = f"request body larger than {self.settings.max_body_bytes} bytes"
            headers = {k: v for k, v in exc.headers.items() if k.lower() == "allow"}
            body = json.dumps({"error": reason, "status": exc.status_code})
            return web.Response(
                status=exc.status_code, text=body, content_type="application/json", headers=headers
            )
        except Exception:
            self._bad.report(
                "request-failed",
                "management request %s %s failed",
                request.method,
                request.path[:200],
                exc_info=True,
            )
            body = json.dumps({"error": "internal error (logged on the node)", "status": 500})
            return web.Response(status=500, text=body, content_type="application/json")

    # -- handlers -------------------------------------------------------------------------

    def _cluster(self) -> Cluster:
        return Cluster.get(self.system)

    async def _members(self, request: web.Request) -> web.Response:
        return _ok(members_json(self._cluster()))

    def _address(self, request: web.Request) -> Address:
        text = request.match_info["address"]
        try:
            return parse_node(text)
        except ValueError as exc:
            raise _error(web.HTTPBadRequest, f"malformed member address: {exc}") from None

    async def _member(self, request: web.Request) -> web.Response:
        address = self._address(request)
        member = self._cluster().gossip.member_at(address)
        if member is None:
            raise _error(web.HTTPNotFound, f"member {node_name(address)} not found")
        return _ok(member_json(member))

    def _authorize(self, request: web.Request) -> None:
        token = self.settings.token
        if token is None:
            if not self.settings.loopback:
                raise _error(
                    web.HTTPForbidden,
                    "mutations are disabled: this server is not on loopback and has no token",
                )
            return
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not given:
            raise _error(
                web.HTTPUnauthorized, "missing bearer token", **{"WWW-Authenticate": "Bearer"}
            )
        if not hmac.compare_digest(given.strip().encode(), token.encode()):
            raise _error(
                web.HTTPUnauthorized, "wrong bearer token", **{"WWW-Authenticate": "Bearer"}
            )

    async def _operation(self, request: web.Request) -> str:
        if request.content_type == "application/json":
            try:
                body = await request.json()
            except (ValueError, UnicodeDecodeError):
                raise _error(web.HTTPBadRequest, "request body is not valid JSON") from None
            if not isinstance(body, dict):
                raise _error(web.HTTPBadRequest, 'expected a JSON object {"operation": ...}')
            operation = body.get("operation")
        else:
            try:
                form = await request.post()
            except ValueError:
                raise _error(web.HTTPBadRequest, "request body is not a valid form") from None
            operation = form.get("operation")
        if not isinstance(operation, str) or operation.lower() not in _OPERATIONS:
            raise _error(web.HTTPBadRequest, "operation must be Leave or Down (form field or JSON)")
        return _OPERATIONS[operation.lower()]

    async def _put_member(self, request: web.Request) -> web.Response:
        self._authorize(request)
        address = self._address(request)
        operation = await self._operation(request)
        return self._mutate(address, operation)

    async def _delete_member(self, request: web.Request) -> web.Response:
        self._authorize(request)
        return self._mutate(self._address(request), "Leave")

    def _mutate(self, address: Address, operation: str) -> web.Response:
        cluster = self._cluster()
        member = cluster.gossip.member_at(address)
        if member is None:
            raise _error(web.HTTPNotFound, f"member {node_name(address)} not found")
        if member.status is MemberStatus.REMOVED:
            raise _error(web.HTTPNotFound, f"member {node_name(address)} was removed")
        if operation == "Down":
            cluster.down(address)
            return _ok({"message": f"Downing {node_name(address)}"})
        cluster.leave_member(address)
        return _ok({"message": f"Leaving {node_name(address)}"})

    async def _shards_of(self, request: web.Request) -> web.Response:
        type_name = request.match_info["type_name"]
        view = self._shards.get(type_name)
        if view is None:
            raise _error(web.HTTPNotFound, f"no sharding of entity type {type_name!r} on this node")
        return _ok(await view())

    async def _alive(self, request: web.Request) -> web.Response:
        return _ok({"status": "alive", "node": node_name(self._cluster().self_address)})

    async def _ready(self, request: web.Request) -> web.Response:
        failed: dict[str, str] = {}
        if self._stopping:
            failed["shutdown"] = "the node is shutting down"
        me = self._cluster().self_member
        if me is None or me.status is not MemberStatus.UP:
            status = "not a member" if me is None else me.status.value
            failed["cluster"] = f"this node is not Up ({status})"
        for name, check in self._checks.items():
            try:
                reason = check()
            except Exception as exc:  # a check's bug must not take the endpoint down
                reason = f"check failed: {type(exc).__name__}: {exc}"
            if reason is not None:
                failed[name] = reason
        body = {"status": "ready" if not failed else "not ready", "failed": failed}
        return _ok(body, 200 if not failed else 503)

    async def _seed_nodes(self, request: web.Request) -> web.Response:
        return _ok(seed_nodes_view(self._cluster()))

    async def _metrics(self, request: web.Request) -> web.Response:
        body = generate_latest(self.system.metrics)
        response = web.Response(body=body)
        response.headers["Content-Type"] = CONTENT_TYPE_LATEST
        return response
