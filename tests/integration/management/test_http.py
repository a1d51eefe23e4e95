"""The management HTTP API against live nodes: Akka Management's JSON, mutations, bad input.

The cluster runs on the in-memory network and a manual clock (exact, fast);
the HTTP server and client are real aiohttp on loopback sockets.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest

from shoal.cluster import Cluster, ClusterSettings, MemberStatus
from shoal.cluster.testing import advance_until
from shoal.management import Management, ManagementError, ManagementSettings
from shoal.remote.testing import MemoryNetwork
from shoal.runtime import ShutdownPhase
from shoal.runtime.testing import ManualClock, quiesce

from ._schema import ERROR, MEMBER, check_schema, members_schema


@dataclass
class Node:
    cluster: Cluster
    management: Management

    @property
    def address(self) -> str:
        return str(self.cluster.self_address.address)

    def url(self, path: str) -> str:
        return self.management.url + path


@dataclass
class Lab:
    net: MemoryNetwork
    clock: ManualClock
    http: aiohttp.ClientSession
    nodes: list[Node]

    async def start(
        self,
        roles: Iterable[str] = (),
        seed: str | None = None,
        management: ManagementSettings | None = None,
    ) -> Node:
        remoting = await self.net.start_node("shoal")
        seeds = (seed or remoting.address,)
        settings = ClusterSettings.testing(seed_nodes=seeds, roles=frozenset(roles))
        cluster = await Cluster.start(remoting.system, settings)
        mgmt = await Management.start(remoting.system, management or ManagementSettings.testing())
        node = Node(cluster, mgmt)
        self.nodes.append(node)
        return node

    async def form(self, *roles: Iterable[str]) -> list[Node]:
        first = await self.start(roles[0])
        rest = [await self.start(r, seed=first.address) for r in roles[1:]]
        nodes = [first, *rest]
        await advance_until(
            self.clock,
            lambda: all(
                len(n.cluster.gossip.members) == len(nodes)
                and all(m.status is MemberStatus.UP for m in n.cluster.gossip.members)
                for n in nodes
            ),
        )
        return nodes

    async def request(self, method: str, url: str, *, expect: int, **kwargs: Any) -> Any:
        async with self.http.request(method, url, **kwargs) as response:
            text = await response.text()
            assert response.status == expect, f"{method} {url}: {response.status} {text}"
            if response.content_type == "application/json":
                return json.loads(text)
            return text


@pytest.fixture
async def lab() -> AsyncIterator[Lab]:
    clock = ManualClock()
    async with MemoryNetwork(clock=clock) as net, aiohttp.ClientSession() as http:
        yield Lab(net, clock, http, [])
        # Shutdown flushes outboxes within time boxes on the manual clock: a
        # partition left in place would hold them forever.
        net.heal()


async def test_members_in_akka_management_shape(lab: Lab) -> None:
    a, b, c = await lab.form(["web", "backend"], ["backend"], [])
    body = await lab.request("GET", a.url("/cluster/members"), expect=200)
    check_schema(body, members_schema(["web", "backend"]))
    assert body["selfNode"] == f"shoal://{a.address}"
    assert [m["node"] for m in body["members"]] == sorted(f"shoal://{n.address}" for n in (a, b, c))
    assert {m["status"] for m in body["members"]} == {"Up"}
    assert body["oldest"] == f"shoal://{a.address}"  # the first Up
    assert body["oldestPerRole"] == {
        "web": f"shoal://{a.address}",
        "backend": f"shoal://{a.address}",
    }
    assert body["leaderPerRole"]["web"] == f"shoal://{a.address}"
    assert body["leader"] == f"shoal://{min(n.cluster.self_address for n in (a, b, c)).address}"
    assert body["unreachable"] == []
    uids = {m["node"]: m["nodeUid"] for m in body["members"]}
    assert uids[f"shoal://{b.address}"] == str(b.cluster.self_address.uid)
    # Every node answers the same membership, with itself as selfNode.
    other = await lab.request("GET", c.url("/cluster/members"), expect=200)
    assert other["members"] == body["members"]
    assert other["selfNode"] == f"shoal://{c.address}"


async def test_unreachable_members_name_their_observers(lab: Lab) -> None:
    a, b, c = await lab.form([], [], [])
    lab.net.partition({a.cluster.system, b.cluster.system}, {c.cluster.system})
    await advance_until(lab.clock, lambda: len(a.cluster.state.unreachable) == 1)
    body = await lab.request("GET", a.url("/cluster/members"), expect=200)
    check_schema(body, members_schema([]))
    [entry] = body["unreachable"]
    assert entry["node"] == f"shoal://{c.address}"
    assert f"shoal://{a.address}" in entry["observedBy"]


async def test_one_member_by_address_with_or_without_scheme(lab: Lab) -> None:
    a, b = await lab.form([], ["x"])
    for form in (f"shoal://{b.address}", b.address, quote(f"shoal://{b.address}", safe="")):
        body = await lab.request("GET", a.url(f"/cluster/members/{form}"), expect=200)
        check_schema(body, MEMBER)
        assert body["node"] == f"shoal://{b.address}"
        assert body["roles"] == ["x"]
    error = await lab.request(
        "GET", a.url("/cluster/members/shoal://shoal@127.0.0.1:1"), expect=404
    )
    check_schema(error, ERROR)
    assert "not found" in error["error"]


@pytest.mark.parametrize(
    "address",
    [
        "nonsense",
        "shoal@host",
        "shoal@host:port",
        "http://shoal@127.0.0.1:1",
        "shoal@::1:5",
        "x" * 600,
    ],
)
async def test_malformed_addresses_are_400(lab: Lab, address: str) -> None:
    a = await lab.start()
    for method in ("GET", "PUT", "DELETE"):
        error = await lab.request(
            method,
            a.url(f"/cluster/members/{quote(address)}"),
            expect=400,
            data={"operation": "Down"},
        )
        check_schema(error, ERROR)
        assert "malformed member address" in error["error"]


async def test_down_by_form_removes_the_member_and_it_stops(lab: Lab) -> None:
    a, b, c = await lab.form([], [], [])
    body = await lab.request(
        "PUT",
        a.url(f"/cluster/members/shoal://{c.address}"),
        expect=200,
        data={"operation": "Down"},
    )
    assert body == {"message": f"Downing shoal://{c.address}"}
    await advance_until(
        lab.clock,
        lambda: len(a.cluster.gossip.members) == 2 and not c.cluster.system.is_running,
    )
    members = await lab.request("GET", b.url("/cluster/members"), expect=200)
    assert f"shoal://{c.address}" not in [m["node"] for m in members["members"]]


@pytest.mark.parametrize("how", ["json", "delete", "form-lowercase"])
async def test_leave_walks_to_removed_and_the_node_shuts_down(lab: Lab, how: str) -> None:
    a, _, c = await lab.form([], [], [])
    url = a.url(f"/cluster/members/{c.address}")
    if how == "json":
        body = await lab.request("PUT", url, expect=200, json={"operation": "Leave"})
    elif how == "delete":
        body = await lab.request("DELETE", url, expect=200)
    else:
        body = await lab.request("PUT", url, expect=200, data={"operation": "leave"})
    assert body == {"message": f"Leaving shoal://{c.address}"}
    seen: list[MemberStatus] = []
    c.cluster.subscribe(lambda e: seen.append(getattr(getattr(e, "member", None), "status", None)))
    await advance_until(
        lab.clock,
        lambda: len(a.cluster.gossip.members) == 2 and not c.cluster.system.is_running,
    )
    assert MemberStatus.DOWN not in seen


async def test_a_node_asked_to_leave_itself_answers_first(lab: Lab) -> None:
    a, b = await lab.form([], [])
    body = await lab.request(
        "PUT", b.url(f"/cluster/members/{b.address}"), expect=200, data={"operation": "Leave"}
    )
    assert body["message"].startswith("Leaving")
    await advance_until(lab.clock, lambda: not b.cluster.system.is_running)
    assert len(a.cluster.gossip.members) == 1


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({"data": {"operation": "Explode"}}, "operation must be Leave or Down"),
        ({"data": {}}, "operation must be Leave or Down"),
        ({"json": {"operation": 3}}, "operation must be Leave or Down"),
        ({"json": ["Leave"]}, "expected a JSON object"),
        (
            {"data": b"{not json", "headers": {"Content-Type": "application/json"}},
            "not valid JSON",
        ),
        ({"data": b"\xff\xfe", "headers": {"Content-Type": "application/json"}}, "not valid JSON"),
    ],
)
async def test_bad_operations_are_400_and_change_nothing(
    lab: Lab, kwargs: dict[str, Any], reason: str
) -> None:
    a, b = await lab.form([], [])
    error = await lab.request("PUT", a.url(f"/cluster/members/{b.address}"), expect=400, **kwargs)
    check_schema(error, ERROR)
    assert reason in error["error"]
    assert {m.status for m in a.cluster.gossip.members} == {MemberStatus.UP}


async def test_oversized_bodies_unknown_paths_and_wrong_methods(lab: Lab) -> None:
    a, b = await lab.form([], [])
    url = a.url(f"/cluster/members/{b.address}")
    big = {"operation": "Down", "pad": "x" * 20_000}
    error = await lab.request("PUT", url, expect=413, data=big)
    check_schema(error, ERROR)
    assert "larger than" in error["error"]
    error = await lab.request("PUT", url, expect=413, json=big)
    check_schema(error, ERROR)
    for method, path, status in [
        ("POST", "/cluster/members", 405),
        ("PATCH", f"/cluster/members/{b.address}", 405),
        ("DELETE", "/metrics", 405),
        ("GET", "/nope", 404),
        ("GET", "/cluster/shards/", 404),
    ]:
        error = await lab.request(method, a.url(path), expect=status)
        check_schema(error, ERROR)
    # ...and nothing changed: the node keeps serving.
    assert {m.status for m in a.cluster.gossip.members} == {MemberStatus.UP}
    await lab.request("GET", a.url("/cluster/members"), expect=200)


async def test_a_token_guards_mutations(lab: Lab) -> None:
    a = await lab.start(management=ManagementSettings.testing(token="s3cret"))
    b = await lab.start(seed=a.address)
    await advance_until(lab.clock, lambda: len(a.cluster.gossip.members) == 2 and b.cluster.is_up)
    url = a.url(f"/cluster/members/{b.address}")
    for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": "Basic czNjcmV0"}):
        error = await lab.request(
            "PUT", url, expect=401, data={"operation": "Down"}, headers=headers
        )
        check_schema(error, ERROR)
        error = await lab.request("DELETE", url, expect=401, headers=headers)
    # Reads stay open.
    await lab.request("GET", a.url("/cluster/members"), expect=200)
    assert {m.status for m in a.cluster.gossip.members} == {MemberStatus.UP}
    await lab.request(
        "PUT",
        url,
        expect=200,
        data={"operation": "Down"},
        headers={"Authorization": "Bearer s3cret"},
    )
    await advance_until(lab.clock, lambda: len(a.cluster.gossip.members) == 1)


async def test_beyond_loopback_without_a_token_mutations_are_refused(lab: Lab) -> None:
    a = await lab.start(management=ManagementSettings.testing(host="0.0.0.0"))
    await advance_until(lab.clock, lambda: a.cluster.is_up)
    url = f"http://127.0.0.1:{a.management.port}/cluster/members/{a.address}"
    error = await lab.request("PUT", url, expect=403, data={"operation": "Leave"})
    assert "no token" in error["error"]
    await lab.request("GET", f"http://127.0.0.1:{a.management.port}/health/alive", expect=200)


async def test_health_alive_and_ready(lab: Lab) -> None:
    remoting = await lab.net.start_node("shoal")
    # Seeds that never answer: the node is alive but never Up.
    settings = ClusterSettings.testing(seed_nodes=("shoal@127.0.0.1:1", "shoal@127.0.0.1:2"))
    cluster = await Cluster.start(remoting.system, settings)
    mgmt = await Management.start(remoting.system, ManagementSettings.testing())
    alive = await lab.request("GET", mgmt.url + "/health/alive", expect=200)
    assert alive["status"] == "alive"
    ready = await lab.request("GET", mgmt.url + "/health/ready", expect=503)
    assert ready["status"] == "not ready"
    assert "not Up" in ready["failed"]["cluster"]
    assert cluster.self_member is None

    a = await lab.start()
    await advance_until(lab.clock, lambda: a.cluster.is_up)
    ready = await lab.request("GET", a.url("/health/ready"), expect=200)
    assert ready == {"status": "ready", "failed": {}}
    verdict: list[str | None] = ["regions are not registered"]
    a.management.add_readiness_check("sharding", lambda: verdict[0])
    ready = await lab.request("GET", a.url("/health/ready"), expect=503)
    assert ready["failed"] == {"sharding": "regions are not registered"}
    verdict[0] = None
    await lab.request("GET", a.url("/health/ready"), expect=200)
    with pytest.raises(ValueError, match="already registered"):
        a.management.add_readiness_check("sharding", lambda: None)


async def test_readiness_fails_as_soon_as_shutdown_begins(lab: Lab) -> None:
    _, b = await lab.form([], [])
    await lab.request("GET", b.url("/health/ready"), expect=200)
    system = b.cluster.system
    # Hold the shutdown in its second phase: readiness has flipped in the first,
    # and the server still answers (it closes with the extensions, much later).
    release = asyncio.Event()
    system.coordinated_shutdown.add_task(ShutdownPhase.SERVICE_UNBIND, "hold", release.wait)
    shutdown = asyncio.ensure_future(system.shutdown("test"))
    await quiesce()
    ready = await lab.request("GET", b.url("/health/ready"), expect=503)
    assert ready["failed"]["shutdown"] == "the node is shutting down"
    release.set()
    await advance_until(lab.clock, shutdown.done)
    with pytest.raises(aiohttp.ClientConnectionError):
        await lab.http.get(b.url("/health/alive"))


async def test_metrics_are_prometheus_text_of_every_layer(lab: Lab) -> None:
    a, _ = await lab.form([], [])
    async with lab.http.get(a.url("/metrics")) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain")
        text = await response.text()
    for name in (
        "shoal_cluster_members",
        "shoal_cluster_gossip_rounds",
        "shoal_cluster_leader_changes",
        "shoal_cluster_resolver_decisions",
        "shoal_remote_frames_sent",
        "shoal_actors",
    ):
        assert name in text, name
    assert 'status="Up"' in text


async def test_shards_are_404_until_sharding_registers_the_type(lab: Lab) -> None:
    a = await lab.start()
    error = await lab.request("GET", a.url("/cluster/shards/account"), expect=404)
    check_schema(error, ERROR)
    assert "no sharding of entity type 'account'" in error["error"]

    async def view() -> dict[str, Any]:
        return {"regions": [{"shardId": "1", "numberOfEntities": 2}]}

    a.management.register_shards("account", view)
    body = await lab.request("GET", a.url("/cluster/shards/account"), expect=200)
    assert body["regions"][0]["numberOfEntities"] == 2


async def test_start_errors_name_the_problem(lab: Lab) -> None:
    a = await lab.start()
    with pytest.raises(ManagementError, match="already runs"):
        await Management.start(a.cluster.system, ManagementSettings.testing())
    remoting = await lab.net.start_node("shoal")
    cluster = await Cluster.start(remoting.system, ClusterSettings.testing())
    with pytest.raises(ManagementError, match="cannot serve"):
        await Management.start(cluster.system, ManagementSettings(port=a.management.port))
    with pytest.raises(ValueError, match="invalid port"):
        ManagementSettings(port=70000)
    with pytest.raises(ValueError, match="must not be empty"):
        ManagementSettings(token="  ")
    assert "s3cret" not in repr(ManagementSettings(token="s3cret"))
