"""Sharding on the management API: ``GET /cluster/shards/{type}``, ``/health/ready`` waiting
(time-boxed) for the regions to register, and the sharding metrics; over real HTTP, with the
cluster on the in-memory network and the manual clock."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest

from shoal.cluster import Cluster, ClusterSettings
from shoal.cluster.testing import advance_until, run_for
from shoal.management import Management, ManagementSettings
from shoal.remote.testing import MemoryNetwork
from shoal.runtime import Actor, message
from shoal.runtime.testing import ManualClock
from shoal.sharding import Sharding, ShardingSettings

SETTINGS = ShardingSettings.testing(number_of_shards=10)


@message
@dataclass(frozen=True, slots=True)
class Hello:
    pass


class Greeter(Actor):
    def __init__(self, entity_id: str) -> None:
        self.entity_id = entity_id

    def receive(self, msg: Hello) -> str:
        return f"hello from {self.entity_id}"


@dataclass
class Lab:
    net: MemoryNetwork
    clock: ManualClock
    http: aiohttp.ClientSession
    nodes: list[tuple[Cluster, Management]]

    async def start(self, seed: str | None = None) -> tuple[Cluster, Management]:
        remoting = await self.net.start_node("shoal")
        settings = ClusterSettings.testing(seed_nodes=(seed or remoting.address,))
        cluster = await Cluster.start(remoting.system, settings)
        management = await Management.start(remoting.system, ManagementSettings.testing())
        self.nodes.append((cluster, management))
        return cluster, management

    async def get(self, management: Management, path: str, expect: int) -> Any:
        async with self.http.get(management.url + path) as response:
            text = await response.text()
            assert response.status == expect, f"{path}: {response.status} {text}"
            return json.loads(text) if response.content_type == "application/json" else text


@pytest.fixture
async def lab() -> AsyncIterator[Lab]:
    clock = ManualClock()
    async with MemoryNetwork(clock=clock) as net, aiohttp.ClientSession() as http:
        lab = Lab(net, clock, http, [])
        try:
            yield lab
        finally:
            # A region's hand-off at shutdown is time-boxed on the manual clock.
            done = [c.system.coordinated_shutdown.run("test-end") for c, _ in lab.nodes]
            await advance_until(clock, lambda: all(f.done() for f in done), max_time=120)


async def test_the_shards_endpoint_shows_this_nodes_shards_and_the_allocation(lab: Lab) -> None:
    a, ma = await lab.start()
    b, mb = await lab.start(seed=a.system.address)
    await advance_until(lab.clock, lambda: a.is_up and b.is_up)
    ra = await Sharding.get(a.system).start("greeter", Greeter, SETTINGS)
    rb = await Sharding.get(b.system).start("greeter", Greeter, SETTINGS)
    await advance_until(lab.clock, lambda: ra.metrics.registered and rb.metrics.registered)
    ids = [f"u{i}" for i in range(20)]
    calls = [ra.entity(e).ask(Hello(), timeout=10) for e in ids]
    await advance_until(lab.clock, lambda: all(f.done() for f in calls))
    assert [f.result() for f in calls] == [f"hello from {e}" for e in ids]

    body = await lab.get(ma, "/cluster/shards/greeter", 200)
    assert body["typeName"] == "greeter"
    assert body["node"] == f"shoal://{a.system.address}"
    assert body["hosting"] is True
    assert body["registered"] is True
    assert body["numberOfShards"] == 10
    other = await lab.get(mb, "/cluster/shards/greeter", 200)
    entities = {e for view in (body, other) for r in view["regions"] for e in r["entityIds"]}
    assert entities == set(ids)
    for view in (body, other):
        assert all(r["numberOfEntities"] == len(r["entityIds"]) for r in view["regions"])
    allocation = body["allocation"]
    assert set(allocation) == {f"shoal://{a.system.address}", f"shoal://{b.system.address}"}
    assert allocation == other["allocation"]
    assert sorted(int(r["shardId"]) for r in body["regions"]) == allocation[body["node"]]

    error = await lab.get(ma, "/cluster/shards/nope", 404)
    assert "no sharding of entity type 'nope'" in error["error"]
    metrics = await lab.get(ma, "/metrics", 200)
    local = sum(r["numberOfEntities"] for r in body["regions"])
    line = (
        f'shoal_sharding_entities{{address="shoal://{a.system.address}",type="greeter"}} {local}.0'
    )
    assert line in metrics


async def test_ready_waits_for_the_regions_to_register_but_not_forever(lab: Lab) -> None:
    a, _ = await lab.start()
    b, mb = await lab.start(seed=a.system.address)
    await advance_until(lab.clock, lambda: a.is_up and b.is_up)
    # Only the younger node starts the type: the coordinator (on the oldest) never runs.
    region = await Sharding.get(b.system).start("greeter", Greeter, SETTINGS)
    body = await lab.get(mb, "/health/ready", 503)
    assert body["failed"] == {"sharding": "sharding regions not registered yet: greeter"}
    await run_for(lab.clock, SETTINGS.ready_timeout)
    assert not region.metrics.registered
    assert (await lab.get(mb, "/health/ready", 200))["status"] == "ready"
