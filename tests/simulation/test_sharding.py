"""Cluster sharding on the in-memory network and the manual clock: entities reachable from
every node, rebalance when a node joins, hand-off without loss or reordering, a killed node's
shards coming back elsewhere, passivation, and bad input."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace

import pytest

from shoal.cluster import Cluster, ClusterSettings
from shoal.cluster.testing import advance_until, form_cluster, run_for, start_node
from shoal.remote.testing import MemoryNetwork
from shoal.runtime import Actor, message
from shoal.runtime.testing import ManualClock
from shoal.sharding import (
    InvalidEntityIdError,
    Sharding,
    ShardingError,
    ShardingSettings,
    ShardRegion,
    passivate,
    shard_id,
)
from shoal.sharding._inspection import ShardsQuery
from shoal.sharding._protocol import EntityEnvelope


@message
@dataclass(frozen=True, slots=True)
class Add:
    value: int


@message
@dataclass(frozen=True, slots=True)
class Get:
    pass


@message
@dataclass(frozen=True, slots=True)
class Sleep:
    pass


class Probe:
    """Every entity start, stop and message, with its node and virtual time."""

    def __init__(self, clock: ManualClock) -> None:
        self.clock = clock
        self.events: list[tuple[float, str, str, str]] = []  # (time, event, entity, node)
        self.received: dict[str, list[int]] = {}

    def record(self, event: str, entity_id: str, node: str) -> None:
        self.events.append((self.clock.now(), event, entity_id, node))

    def active(self) -> dict[str, str]:
        where: dict[str, str] = {}
        for _, event, entity, node in self.events:
            if event == "start":
                where[entity] = node
            else:
                where.pop(entity, None)
        return where

    def assert_never_two(self) -> None:
        active: dict[str, str] = {}
        # In recording order: one process, so that is the order things happened in.
        for _, event, entity, node in self.events:
            if event == "start":
                assert entity not in active, f"{entity} started on {node} while on {active[entity]}"
                active[entity] = node
            elif active.get(entity) == node:
                del active[entity]


def counter(probe: Probe, node: str) -> type[Actor]:
    class Counter(Actor):
        def __init__(self, entity_id: str) -> None:
            self.entity_id = entity_id
            self.total = 0

        def started(self) -> None:
            probe.record("start", self.entity_id, node)

        def stopped(self) -> None:
            probe.record("stop", self.entity_id, node)

        def receive(self, msg: Add | Get | Sleep) -> object:
            match msg:
                case Add(value):
                    self.total += value
                    probe.received.setdefault(self.entity_id, []).append(value)
                    return self.total
                case Get():
                    return [self.entity_id, node, self.total]
                case Sleep():
                    passivate(self)
            return None

    return Counter


SETTINGS = ShardingSettings.testing(number_of_shards=12)


@asynccontextmanager
async def sharded(n: int) -> AsyncIterator[tuple[ManualClock, MemoryNetwork, list[Cluster]]]:
    """``n`` nodes Up on the in-memory network; every node (also added ones) shut down after."""
    clock = ManualClock()
    async with MemoryNetwork(clock=clock) as net:
        nodes = await form_cluster(net, clock, n)
        try:
            yield clock, net, nodes
        finally:
            await stop_all(clock, nodes)


async def stop_all(clock: ManualClock, nodes: list[Cluster]) -> None:
    """Shut every node down on virtual time (a region's hand-off is time-boxed on the clock)."""
    done = [c.system.coordinated_shutdown.run("test-end") for c in nodes]
    await advance_until(clock, lambda: all(f.done() for f in done), max_time=120)


async def start_all(nodes: list[Cluster], probe: Probe) -> list[ShardRegion]:
    regions = [
        await Sharding.get(c.system).start("counter", counter(probe, c.system.address), SETTINGS)
        for c in nodes
    ]
    waits = [asyncio.ensure_future(r.wait_registered()) for r in regions]
    await advance_until(probe.clock, lambda: all(w.done() for w in waits), max_time=5)
    assert all(r.metrics.registered for r in regions)
    return regions


async def ask_all(clock: ManualClock, calls: list, max_time: float = 30.0) -> list:  # type: ignore[type-arg]
    await advance_until(clock, lambda: all(f.done() for f in calls), max_time=max_time)
    return [f.result() for f in calls]


async def test_entities_are_reachable_from_every_node_and_run_once() -> None:
    async with sharded(3) as (clock, _net, nodes):
        probe = Probe(clock)
        regions = await start_all(nodes, probe)
        ids = [f"user-{i}" for i in range(30)]
        answers = await ask_all(
            clock, [r.entity(e).ask(Get(), timeout=20) for r in regions for e in ids]
        )
        by_id: dict[str, set[str]] = {}
        for entity_id, node, _ in answers:
            by_id.setdefault(entity_id, set()).add(node)
        assert sorted(by_id) == sorted(ids)
        assert all(len(where) == 1 for where in by_id.values())  # one incarnation each
        hosts = {node for where in by_id.values() for node in where}
        assert len(hosts) == 3  # 12 shards over 3 regions
        assert sorted(r.metrics.shards for r in regions) == [4, 4, 4]
        assert sum(r.metrics.entities for r in regions) == 30
        probe.assert_never_two()


async def test_a_joining_node_gets_shards_and_nothing_is_lost_or_reordered() -> None:
    async with sharded(2) as (clock, net, nodes):
        probe = Probe(clock)
        regions = await start_all(nodes, probe)
        ids = [f"e{i}" for i in range(60)]  # every one of the 12 shards
        await ask_all(clock, [regions[0].entity(e).ask(Get(), timeout=20) for e in ids])
        assert sorted(r.metrics.shards for r in regions) == [6, 6]
        third = await start_node(
            net, replace(ClusterSettings.testing(), seed_nodes=(nodes[0].system.address,))
        )
        regions.append(
            await Sharding.get(third.system).start(
                "counter", counter(probe, third.system.address), SETTINGS
            )
        )
        nodes.append(third)
        # A steady stream of numbered messages, from every node, while shards move;
        # a value is sender * 1e6 + sequence number.
        sent = 0
        while regions[2].metrics.shards < 4:
            for i, region in enumerate(regions):
                for e in ids:
                    region.entity(e).tell(Add(i * 1_000_000 + sent))
            sent += 1
            await run_for(clock, 0.05)
            assert clock.now() < 60
        await run_for(clock, 2.0)
        assert sorted(r.metrics.shards for r in regions) == [4, 4, 4]
        assert sum(r.metrics.hand_offs for r in regions) >= 4
        for e in ids:
            got = probe.received[e]
            for i in range(3):
                from_i = [v - i * 1_000_000 for v in got if v // 1_000_000 == i]
                assert from_i == list(range(sent)), f"{e} from region {i}: lost or reordered"
        probe.assert_never_two()


async def test_a_killed_nodes_shards_come_back_elsewhere() -> None:
    async with sharded(3) as (clock, net, nodes):
        probe = Probe(clock)
        regions = await start_all(nodes, probe)
        ids = [f"k{i}" for i in range(30)]
        await ask_all(clock, [regions[0].entity(e).ask(Add(1), timeout=20) for e in ids])
        victim = nodes[2].system.address
        on_victim = [e for e, node in probe.active().items() if node == victim]
        assert on_victim
        net.kill(nodes[2].system)
        await advance_until(clock, lambda: len(nodes[0].gossip.members) == 2, max_time=20)
        answers = await ask_all(
            clock, [regions[1].entity(e).ask(Get(), timeout=20) for e in on_victim]
        )
        assert {node for _, node, _ in answers} <= {
            nodes[0].system.address,
            nodes[1].system.address,
        }
        assert all(total == 0 for _, _, total in answers)  # plain entities: state starts anew
        probe.assert_never_two()


async def test_passivation_drains_the_mailbox_and_a_later_message_starts_it_again() -> None:
    async with sharded(2) as (clock, _net, nodes):
        probe = Probe(clock)
        regions = await start_all(nodes, probe)
        alice = regions[1].entity("alice")
        first = [alice.ask(Add(1), timeout=10), alice.ask(Sleep(), timeout=10)]
        await advance_until(clock, lambda: sum(r.metrics.passivations for r in regions) == 1)
        # Sent while the entity passivates (or once it has): a new incarnation gets them.
        later = [alice.ask(Add(i), timeout=10) for i in range(2, 6)]
        answers = await ask_all(clock, first + later)
        assert answers[0] == 1
        assert answers[2:] == [2, 5, 9, 14]  # the new incarnation starts from zero
        assert probe.received["alice"] == [1, 2, 3, 4, 5]
        events = [(event, entity) for _, event, entity, _ in probe.events]
        assert events == [("start", "alice"), ("stop", "alice"), ("start", "alice")]
        assert sum(r.metrics.passivations for r in regions) == 1


async def test_a_graceful_shutdown_hands_every_shard_off_without_loss() -> None:
    async with sharded(3) as (clock, _net, nodes):
        probe = Probe(clock)
        regions = await start_all(nodes, probe)
        ids = [f"g{i}" for i in range(24)]
        await ask_all(clock, [regions[0].entity(e).ask(Add(0), timeout=20) for e in ids])
        leaving = nodes[2].system.coordinated_shutdown.run("test-leave")
        sent = 1
        while not leaving.done():
            for e in ids:
                regions[0].entity(e).tell(Add(sent))
            sent += 1
            await run_for(clock, 0.05)
            assert clock.now() < 60
        answers = await ask_all(clock, [regions[0].entity(e).ask(Get(), timeout=20) for e in ids])
        assert {node for _, node, _ in answers} <= {
            nodes[0].system.address,
            nodes[1].system.address,
        }
        for e in ids:
            assert probe.received[e] == list(range(sent)), e
        probe.assert_never_two()


async def test_bad_input_is_refused_with_a_clear_error() -> None:
    async with sharded(1) as (clock, _net, nodes):
        probe = Probe(clock)
        sharding = Sharding.get(nodes[0].system)
        region = await sharding.start("counter", counter(probe, "n"), SETTINGS)
        for bad in ("", "x" * 600, 7):
            with pytest.raises(InvalidEntityIdError):
                region.entity(bad)  # type: ignore[arg-type]
        with pytest.raises(ShardingError, match="not started"):
            sharding.region("nope")
        with pytest.raises(ShardingError, match="other settings"):
            await sharding.start("counter", counter(probe, "n"), SETTINGS)
        with pytest.raises(ShardingError, match="invalid entity type"):
            await sharding.start("a/b", counter(probe, "n"), SETTINGS)
        assert sharding.region("counter") is region
        # nothing else was disturbed: the region still answers
        assert await ask_all(clock, [region.entity("ok").ask(Get(), timeout=5)]) == [["ok", "n", 0]]


async def test_coordinator_failover_rebuilds_from_the_regions_and_never_doubles_a_shard() -> None:
    async with sharded(3) as (clock, net, nodes):
        probe = Probe(clock)
        regions = await start_all(nodes, probe)
        ids = [f"c{i}" for i in range(40)]
        await ask_all(clock, [regions[1].entity(e).ask(Add(1), timeout=20) for e in ids])
        before = probe.active()
        # The oldest node runs the coordinator: kill it.
        net.kill(nodes[0].system)
        victim = nodes[0].system.address
        await advance_until(clock, lambda: len(nodes[1].gossip.members) == 2, max_time=20)
        answers = await ask_all(
            clock, [r.entity(e).ask(Get(), timeout=30) for r in regions[1:] for e in ids]
        )
        where = {entity_id: node for entity_id, node, _ in answers}
        assert victim not in where.values()
        # Entities of the surviving nodes never moved nor restarted: their shards
        # were reported by their regions to the new coordinator.
        for entity_id, node in before.items():
            if node != victim:
                assert where[entity_id] == node
        starts = [e for _, event, e, node in probe.events if event == "start" and node != victim]
        assert len(starts) == len(set(starts))
        # One home per shard: the regions' own shards are disjoint and complete.
        views = [await ask_all(clock, [r.ref.ask(ShardsQuery(), timeout=5)]) for r in regions[1:]]
        local = [set(v[0]) for v in views]
        assert not local[0] & local[1]
        probe.assert_never_two()


async def test_a_partition_moves_the_minoritys_entities_without_ever_running_one_twice() -> None:
    async with sharded(5) as (clock, net, nodes):
        probe = Probe(clock)
        regions = await start_all(nodes, probe)
        ids = [f"p{i}" for i in range(60)]
        await ask_all(clock, [regions[2].entity(e).ask(Add(1), timeout=20) for e in ids])
        minority = {nodes[0].system.address, nodes[1].system.address}
        assert minority & set(probe.active().values())
        # The oldest (and the coordinator) is on the minority side: keep-majority downs it.
        net.partition([c.system for c in nodes[:2]], [c.system for c in nodes[2:]])
        await advance_until(
            clock, lambda: not nodes[0].system.is_running and not nodes[1].system.is_running
        )
        answers = await ask_all(
            clock, [regions[3].entity(e).ask(Get(), timeout=30) for e in ids], max_time=40
        )
        assert not {node for _, node, _ in answers} & minority
        probe.assert_never_two()
        net.heal()


async def test_a_leave_through_the_cluster_hands_every_shard_off_without_loss() -> None:
    async with sharded(3) as (clock, _net, nodes):
        probe = Probe(clock)
        regions = await start_all(nodes, probe)
        ids = [f"l{i}" for i in range(24)]
        await ask_all(clock, [regions[0].entity(e).ask(Add(0), timeout=20) for e in ids])
        leaving = nodes[2].system.address
        assert leaving in probe.active().values()
        nodes[0].leave_member(nodes[2].self_address.address)  # an operator's request elsewhere
        sent = 1
        while nodes[2].system.is_running or sent < 40:
            for e in ids:
                regions[0].entity(e).tell(Add(sent))
            sent += 1
            await run_for(clock, 0.05)
            assert clock.now() < 60
        answers = await ask_all(clock, [regions[0].entity(e).ask(Get(), timeout=20) for e in ids])
        assert leaving not in {node for _, node, _ in answers}
        for e in ids:
            assert probe.received[e] == list(range(sent)), e
        probe.assert_never_two()


async def test_an_idle_entity_is_passivated_after_the_idle_timeout_and_comes_back() -> None:
    async with sharded(1) as (clock, _net, nodes):
        probe = Probe(clock)
        settings = replace(SETTINGS, passivation_idle_timeout=2.0)
        region = await Sharding.get(nodes[0].system).start(
            "idle", counter(probe, nodes[0].system.address), settings
        )
        bob, eve = region.entity("bob"), region.entity("eve")
        await ask_all(clock, [bob.ask(Add(1), timeout=5), eve.ask(Add(1), timeout=5)])
        last = clock.now()
        await run_for(clock, 1.5)
        await ask_all(clock, [eve.ask(Add(2), timeout=5)])  # eve stays busy
        eve_last = clock.now()
        await advance_until(clock, lambda: "bob" not in probe.active(), max_time=5)
        stopped_at = clock.now()
        assert last + 2.0 <= stopped_at <= last + 2.5
        assert "eve" in probe.active()
        await advance_until(clock, lambda: "eve" not in probe.active(), max_time=5)
        assert eve_last + 2.0 <= clock.now() <= eve_last + 2.5
        assert region.metrics.passivations == 2
        # The next message starts a new incarnation.
        assert await ask_all(clock, [bob.ask(Add(5), timeout=5)]) == [5]
        assert probe.active() == {"bob": nodes[0].system.address}


async def test_bad_envelopes_from_a_peer_are_refused_and_the_region_goes_on() -> None:
    async with sharded(2) as (clock, _net, nodes):
        probe = Probe(clock)
        regions = await start_all(nodes, probe)
        target = nodes[1].system.resolve(f"shoal://{nodes[0].system.address}/user/sharding-counter")
        good = nodes[1].system.serialization.serialize(Get())
        wrong_shard = (shard_id("x", 12) + 1) % 12
        bad = [
            EntityEnvelope("x", wrong_shard, *good),  # not the entity's shard
            EntityEnvelope("", 0, *good),  # no entity id
            EntityEnvelope("x", 99, *good),  # no such shard
        ]
        calls = [target.ask(envelope, timeout=5) for envelope in bad]
        await advance_until(clock, lambda: all(f.done() for f in calls))
        assert all(f.exception() is not None for f in calls)
        assert regions[0].metrics.refused == 3
        # An undecodable payload for a shard this node hosts fails that ask alone.
        ys = [f"y{i}" for i in range(20)]
        await ask_all(clock, [regions[0].entity(e).ask(Add(0), timeout=5) for e in ys])
        local = next(e for e in ys if probe.active()[e] == nodes[0].system.address)
        garbage = EntityEnvelope(local, shard_id(local, 12), good[0], "no.such.Manifest", b"\x00")
        failed = target.ask(garbage, timeout=5)
        await advance_until(clock, failed.done)
        assert failed.exception() is not None
        assert regions[0].metrics.refused == 4
        assert (await ask_all(clock, [regions[1].entity(local).ask(Get(), timeout=5)]))[0][
            0
        ] == local
