"""Finding the cluster without static seeds: DNS discovery and the bootstrap rule.

A node configured with ``discovery.method = "dns"`` looks up its service
name (A/AAAA records, each address a contact point on ``contact_port``, or
SRV records naming host and port) and asks every contact point's
management server for ``GET /bootstrap/seed-nodes``. As Akka's Cluster
Bootstrap does, it then:

* joins the cluster a contact point reports (its Up members are the seeds);
* or, when no contact point is in a cluster yet, the set of contact points
  has not changed for ``stable_margin``, at least ``required_contact_points``
  answered, and this node is the contact point with the lowest address, it
  forms the cluster (joins itself) -- exactly one node does, so nodes started
  all at once never form two clusters;
* otherwise it looks again after ``probe_interval``.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Final, Literal

import aiohttp

from shoal.cluster import Cluster, MemberStatus
from shoal.runtime import Address, RateLimitedLog

if TYPE_CHECKING:
    from ._server import Management

_log: Final = logging.getLogger("shoal.management")

_SEED_STATUSES: Final = frozenset({MemberStatus.UP, MemberStatus.WEAKLY_UP, MemberStatus.LEAVING})


@dataclass(frozen=True, slots=True)
class DiscoverySettings:
    """How a node finds its cluster when it is not given seed nodes."""

    method: Literal["seeds", "dns"] = "seeds"
    """``seeds``: join ``cluster.seed_nodes`` (a node without seeds forms its own
    cluster). ``dns``: look up ``service_name`` and bootstrap (see
    ``docs/configuration.md`` and the Kubernetes recipe)."""

    service_name: str = ""
    """DNS name of the service, e.g. a Kubernetes headless service
    ``shoal.default.svc.cluster.local``."""

    record_type: Literal["A", "SRV"] = "A"
    """``A``: every A/AAAA address is a contact point on ``contact_port``;
    ``SRV``: every record names a contact point's host and port."""

    contact_port: int | None = None
    """Management port of the contact points for A/AAAA lookups; unset: this
    node's own management port (all nodes alike)."""

    required_contact_points: int = 2
    """No node forms a new cluster before this many contact points answered."""

    stable_margin: float = 5.0
    """The contact points must stay the same this long (seconds) before the
    lowest forms a cluster: nodes still starting get time to appear."""

    probe_interval: float = 1.0
    """Seconds between lookups and probes until the node joined."""

    lookup_timeout: float = 2.0
    """Timeout of one DNS lookup, and of one probe of a contact point."""

    nameserver: str | None = None
    """DNS server as ``host`` or ``host:port``; unset: the system's resolver
    (``/etc/resolv.conf``)."""

    @classmethod
    def testing(cls, **overrides: Any) -> DiscoverySettings:
        """Fast probing and a short stable margin."""
        return replace(cls(stable_margin=0.5, probe_interval=0.1, lookup_timeout=0.5), **overrides)

    def __post_init__(self) -> None:
        if self.method == "dns" and not self.service_name:
            raise ValueError("service_name is required with method dns")
        if self.contact_port is not None and not 0 < self.contact_port <= 65535:
            raise ValueError(f"invalid contact_port {self.contact_port}")
        if self.required_contact_points < 1:
            raise ValueError("required_contact_points must be >= 1")
        if self.stable_margin < 0 or self.probe_interval <= 0 or self.lookup_timeout <= 0:
            raise ValueError("stable_margin must be >= 0, probe_interval and lookup_timeout > 0")
        if self.nameserver is not None:
            _nameserver(self.nameserver)  # raises ValueError naming what is wrong


def _nameserver(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":") if text.count(":") == 1 else (text, "", "53")
    host = host or text
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        raise ValueError(
            f"nameserver must be an IP address (optionally :port), not {text!r}"
        ) from None
    if not port.isdigit() or not 0 < int(port) <= 65535:
        raise ValueError(f"invalid nameserver port in {text!r}")
    return host.strip("[]"), int(port)


class LookupFailed(Exception):
    """A DNS lookup of contact points failed (timeout, refused, malformed answer)."""


ContactPoint = tuple[str, int]
"""``(ip, management port)``."""


def _order(point: ContactPoint) -> tuple[int, int, int]:
    ip = ipaddress.ip_address(point[0])
    return (ip.version, int(ip), point[1])


class Resolver:
    """DNS lookups of contact points (dnspython's asyncio resolver)."""

    def __init__(self, settings: DiscoverySettings, default_port: int) -> None:
        # dnspython is imported by nodes that use DNS discovery only (start-up time).
        import dns.asyncresolver  # noqa: PLC0415

        self._settings = settings
        self._port = settings.contact_port or default_port
        if settings.nameserver is None:
            self._resolver = dns.asyncresolver.Resolver()
        else:
            host, port = _nameserver(settings.nameserver)
            self._resolver = dns.asyncresolver.Resolver(configure=False)
            self._resolver.nameservers = [host]
            self._resolver.port = port
        self._resolver.lifetime = settings.lookup_timeout
        self._resolver_module = dns.resolver

    async def _addresses(self, name: str) -> list[str]:
        found: list[str] = []
        for rdtype in ("A", "AAAA"):
            try:
                answer = await self._resolver.resolve(name, rdtype)
            except (self._resolver_module.NoAnswer, self._resolver_module.NXDOMAIN):
                continue
            found.extend(str(r) for r in answer)
        return found

    async def contact_points(self) -> list[ContactPoint]:
        """The contact points the service name resolves to, lowest address first.

        Raises :class:`LookupFailed` when the lookup itself fails.
        """
        import dns.exception  # noqa: PLC0415 - loaded with the resolver

        try:
            return await self._contact_points()
        except dns.exception.DNSException as exc:
            raise LookupFailed(str(exc) or type(exc).__name__) from exc

    async def _contact_points(self) -> list[ContactPoint]:
        name = self._settings.service_name
        points: set[ContactPoint] = set()
        if self._settings.record_type == "SRV":
            try:
                answer = await self._resolver.resolve(name, "SRV")
            except (self._resolver_module.NoAnswer, self._resolver_module.NXDOMAIN):
                return []
            for record in answer:
                target = str(record.target).rstrip(".")
                try:
                    ips = [str(ipaddress.ip_address(target))]
                except ValueError:
                    ips = await self._addresses(target)
                points.update((ip, int(record.port)) for ip in ips)
        else:
            points.update((ip, self._port) for ip in await self._addresses(name))
        return sorted(points, key=_order)


def seed_nodes_view(cluster: Cluster) -> dict[str, Any]:
    """The body of ``GET /bootstrap/seed-nodes``: this node, and its cluster's seeds.

    ``seedNodes`` is empty until this node is an Up member; then it lists the
    members a newcomer may join through.
    """
    me = cluster.self_member
    seeds: list[str] = []
    if me is not None and me.status in _SEED_STATUSES:
        seeds = [
            f"shoal://{m.address}" for m in cluster.gossip.members if m.status in _SEED_STATUSES
        ]
    return {"selfNode": f"shoal://{cluster.self_address.address}", "seedNodes": seeds}


class Bootstrap:
    """Runs the bootstrap rule until this node has joined (or the system stops)."""

    def __init__(self, management: Management, settings: DiscoverySettings) -> None:
        self._management = management
        self._settings = settings
        self._cluster = Cluster.get(management.system)
        self._resolver = Resolver(settings, management.port)
        self._bad = RateLimitedLog(_log, management.system.clock, 3, 30.0)
        self._seen: list[ContactPoint] = []
        self._since = time.monotonic()
        self.decision: str | None = None
        """How this node joined: ``"formed"`` or ``"joined <seeds>"``."""

    async def run(self) -> None:
        timeout = aiohttp.ClientTimeout(total=self._settings.lookup_timeout)
        async with aiohttp.ClientSession(timeout=timeout) as http:
            while self.decision is None and self._cluster.self_member is None:
                await self._round(http)
                if self.decision is None:
                    await asyncio.sleep(self._settings.probe_interval)

    async def _round(self, http: aiohttp.ClientSession) -> None:
        try:
            points = await self._resolver.contact_points()
        except LookupFailed as exc:
            self._bad.report(
                "lookup", "DNS lookup of %s failed: %s", self._settings.service_name, exc
            )
            return
        now = time.monotonic()
        if points != self._seen:
            _log.info("contact points of %s: %s", self._settings.service_name, points)
            self._seen = points
            self._since = now
        answers = await asyncio.gather(*(self._probe(http, p) for p in points))
        for answer in answers:
            if answer is not None and answer["seedNodes"]:
                seeds = [s.removeprefix("shoal://") for s in answer["seedNodes"]]
                self._join(seeds, f"joined {', '.join(seeds)}")
                return
        if any(a is None for a in answers) or len(points) < self._settings.required_contact_points:
            return
        if now - self._since < self._settings.stable_margin:
            return
        lowest = answers[0]
        me = f"shoal://{self._cluster.self_address.address}"
        if lowest is not None and lowest["selfNode"] == me:
            self._join([str(self._cluster.self_address.address)], "formed")

    def _join(self, seeds: Sequence[str], decision: str) -> None:
        self.decision = decision
        _log.info("bootstrap: %s", decision)
        self._cluster.join_seed_nodes(seeds)

    async def _probe(
        self, http: aiohttp.ClientSession, point: ContactPoint
    ) -> dict[str, Any] | None:
        host = f"[{point[0]}]" if ":" in point[0] else point[0]
        url = f"http://{host}:{point[1]}/bootstrap/seed-nodes"
        try:
            async with http.get(url) as response:
                status = response.status
                body = await response.json() if status == 200 else None
            why = _invalid_answer(status, body)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            why = str(exc) or type(exc).__name__
        if why is not None:
            self._bad.report(f"probe {point}", "contact point %s:%d: %s", point[0], point[1], why)
            return None
        return body


def _invalid_answer(status: int, body: Any) -> str | None:
    """Why a contact point's answer cannot be used; ``None`` if it can."""
    if status != 200:
        return f"status {status}"
    if not isinstance(body, dict) or not isinstance(body.get("selfNode"), str):
        return "not a seed-nodes answer"
    seeds = body.get("seedNodes")
    if not isinstance(seeds, list) or not all(isinstance(s, str) for s in seeds):
        return "seedNodes is not a list of addresses"
    try:
        for seed in [body["selfNode"], *seeds]:
            Address.parse(seed.removeprefix("shoal://"))
    except ValueError as exc:
        return str(exc)
    return None
