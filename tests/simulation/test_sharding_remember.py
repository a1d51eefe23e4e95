"""Remember entities and the active-entity limit, on the in-memory network and the manual
clock: remembered entities come back after a move and a crash (at a bounded rate, with their
persisted state), passivation forgets them, and a region over its limit passivates the least
recently used entity."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter as Tally
from dataclasses import dataclass, replace

import pytest

from shoal.cluster import Cluster, ClusterSettings
from shoal.cluster.testing import advance_until, run_for, start_node
from shoal.persistence import (
    MemoryJournal,
    MemorySnapshotStore,
    Persistence,
    PersistenceSettings,
    PersistentActor,
    PersistentRepr,
)
from shoal.runtime import Actor, message
from shoal.sharding import Sharding, ShardingSettings, ShardRegion, passivate
from shoal.sharding._remember import remember_persistence_id
from tests.simulation.test_sharding import Add, Get, Probe, Sleep, ask_all, counter, sharded

REMEMBER = ShardingSettings.testing(number_of_shards=12, remember_entities=True)


class SharedJournal(MemoryJournal):
    """One journal for every node of the test (one host's shared file, in memory)."""

    async def close(self) -> None:
        pass  # the nodes stop one by one; the journal outlives them all


class SharedSnapshots(MemorySnapshotStore):
    async def close(self) -> None:
        pass


@dataclass
class Store:
    journal: SharedJournal
    snapshots: SharedSnapshots

    def attach(self, node: Cluster) -> None:
        Persistence.configure(
            node.system,
            PersistenceSettings(
                journal=lambda: self.journal, snapshot_store=lambda: self.snapshots
            ),
        )


def new_store() -> Store:
    return Store(SharedJournal(), SharedSnapshots())


@message
@dataclass(frozen=True, slots=True)
class Added:
    value: int


def persistent_counter(probe: Probe, node: str) -> type[Actor]:
    class Account(PersistentActor):
        def __init__(self, entity_id: str) -> None:
            self.entity_id = entity_id
            self.total = 0

        @property
        def persistence_id(self) -> str:
            return f"account|{self.entity_id}"

        def recovery_completed(self) -> None:
            probe.record("start", self.entity_id, node)

        def stopped(self) -> None:
            probe.record("stop", self.entity_id, node)

        async def on_command(self, msg: Add | Get | Sleep) -> object:
            match msg:
                case Add(value):
                    await self.persist(Added(value))
                    return self.total
                case Get():
                    return [self.entity_id, node, self.total]
                case Sleep():
                    passivate(self)
            return None

        def on_event(self, event: Added) -> None:
            self.total += event.value

    return Account


async def start_type(
    nodes: list[Cluster], probe: Probe, settings: ShardingSettings, *, persistent: bool = False
) -> list[ShardRegion]:
    make = persistent_counter if persistent else counter
    regions = [
        await Sharding.get(c.system).start("counter", make(probe, c.system.address), settings)
        for c in nodes
    ]
    waits = [asyncio.ensure_future(r.wait_registered()) for r in regions]
    await advance_until(probe.clock, lambda: all(w.done() for w in waits), max_time=5)
    return regions


def active_on(probe: Probe, nodes: set[str]) -> set[str]:
    return {entity for entity, node in probe.active().items() if node in nodes}


async def test_remembered_entities_restart_on_their_new_node_after_a_rebalance() -> None:
    async with sharded(2) as (clock, net, nodes):
        store = new_store()
        for node in nodes:
            store.attach(node)
        probe = Probe(clock)
        regions = await start_type(nodes, probe, REMEMBER)
        ids = [f"r{i}" for i in range(40)]
        await ask_all(clock, [regions[0].entity(e).ask(Add(1), timeout=20) for e in ids])
        # One entity passivates itself: it is forgotten, and stays stopped after the move.
        await ask_all(clock, [regions[0].entity("r0").ask(Sleep(), timeout=20)])
        await advance_until(clock, lambda: "r0" not in probe.active())
        third = await start_node(
            net, replace(ClusterSettings.testing(), seed_nodes=(nodes[0].system.address,))
        )
        store.attach(third)
        nodes.append(third)
        regions += await start_type([third], probe, REMEMBER)
        await advance_until(clock, lambda: regions[2].metrics.shards == 4, max_time=30)
        await run_for(clock, 1.0)
        # No message was sent since: the moved shards restarted their entities unasked.
        moved = active_on(probe, {third.system.address})
        assert moved
        assert set(probe.active()) == set(ids) - {"r0"}
        assert regions[2].metrics.entities == len(moved)
        probe.assert_never_two()


async def test_a_crashed_nodes_remembered_entities_come_back_with_their_state() -> None:
    async with sharded(3) as (clock, net, nodes):
        store = new_store()
        for node in nodes:
            store.attach(node)
        probe = Probe(clock)
        regions = await start_type(nodes, probe, REMEMBER, persistent=True)
        ids = [f"k{i}" for i in range(30)]
        await ask_all(
            clock, [regions[0].entity(e).ask(Add(i), timeout=20) for i, e in enumerate(ids)]
        )
        victim = nodes[2].system.address
        on_victim = {e for e, node in probe.active().items() if node == victim}
        assert on_victim
        net.kill(nodes[2].system)
        survivors = {nodes[0].system.address, nodes[1].system.address}
        # Back on the others with no message sent, once the victim was removed and the
        # removal margin passed (so its own entities stopped first).
        await advance_until(clock, lambda: active_on(probe, survivors) == set(ids), max_time=60)
        answers = await ask_all(clock, [regions[1].entity(e).ask(Get(), timeout=20) for e in ids])
        assert {e: total for e, _, total in answers} == {e: i for i, e in enumerate(ids)}
        probe.assert_never_two()


async def test_remembered_entities_restart_at_the_configured_rate() -> None:
    async with sharded(2) as (clock, _net, nodes):
        store = new_store()
        for node in nodes:
            store.attach(node)
        probe = Probe(clock)
        settings = replace(REMEMBER, number_of_shards=1, remembered_restarts_per_s=100.0)
        regions = await start_type(nodes, probe, settings)
        ids = [f"q{i}" for i in range(45)]
        await ask_all(clock, [regions[0].entity(e).ask(Add(1), timeout=20) for e in ids])
        owner = next(iter(probe.active().values()))
        leaving = 0 if nodes[0].system.address == owner else 1
        other = nodes[1 - leaving].system.address
        done = nodes[leaving].system.coordinated_shutdown.run("test-leave")
        await advance_until(clock, lambda: done.done() and len(active_on(probe, {other})) == 45)
        starts = [t for t, event, _, node in probe.events if event == "start" and node == other]
        # 100 per second: batches of 10, 0.1 s apart.
        first = starts[0]
        batches = Tally(round((t - first) / 0.1, 6) for t in starts)
        assert batches == {0.0: 10, 1.0: 10, 2.0: 10, 3.0: 10, 4.0: 5}
        probe.assert_never_two()


async def test_passivation_and_idle_timeouts_forget_an_entity_in_the_journal() -> None:
    async with sharded(1) as (clock, _net, nodes):
        store = new_store()
        store.attach(nodes[0])
        probe = Probe(clock)
        settings = replace(REMEMBER, number_of_shards=1, passivation_idle_timeout=2.0)
        (region,) = await start_type(nodes, probe, settings)
        await ask_all(clock, [region.entity(e).ask(Add(1), timeout=5) for e in ("a", "b", "c")])
        await ask_all(clock, [region.entity("a").ask(Sleep(), timeout=5)])
        await run_for(clock, 1.0)
        await ask_all(clock, [region.entity("c").ask(Add(1), timeout=5)])
        await run_for(clock, 1.5)  # b idle for 2.5 s: passivated; c busy 1.5 s ago: kept
        assert set(probe.active()) == {"c"}
        events = [
            (type(r.payload).__name__, r.sequence_nr)
            async for chunk in store.journal.replay(remember_persistence_id("counter", 0))
            for r in chunk
        ]
        assert [seq for _, seq in events] == [1, 2, 3, 4, 5]
        decoded = [
            nodes[0].system.serialization.deserialize(r.serializer_id, r.manifest, r.payload)
            async for chunk in store.journal.replay(remember_persistence_id("counter", 0))
            for r in chunk
        ]
        assert [(type(e).__name__, e.entity_id) for e in decoded] == [
            ("EntityStarted", "a"),
            ("EntityStarted", "b"),
            ("EntityStarted", "c"),
            ("EntityStopped", "a"),
            ("EntityStopped", "b"),
        ]


async def test_a_region_over_its_entity_limit_passivates_the_least_recently_used() -> None:
    async with sharded(1) as (clock, _net, nodes):
        probe = Probe(clock)
        settings = ShardingSettings.testing(number_of_shards=12, active_entity_limit=3)
        (region,) = await start_type(nodes, probe, settings)
        for e in ("a", "b", "c"):
            await ask_all(clock, [region.entity(e).ask(Add(1), timeout=5)])
        await ask_all(clock, [region.entity("a").ask(Add(1), timeout=5)])  # a: used again
        await ask_all(clock, [region.entity("d").ask(Add(1), timeout=5)])
        await run_for(clock, 0.1)
        assert set(probe.active()) == {"a", "c", "d"}  # b was the least recently used
        assert region.metrics.entities == 3
        assert region.metrics.passivations == 1
        # b comes back on its next message (from zero), and c, now the oldest, goes.
        assert await ask_all(clock, [region.entity("b").ask(Add(5), timeout=5)]) == [5]
        await run_for(clock, 0.1)
        assert set(probe.active()) == {"a", "b", "d"}
        # A burst of messages to an evicted entity: drained, none lost.
        burst = [region.entity("c").ask(Add(1), timeout=5) for _ in range(5)]
        burst += [region.entity(e).ask(Add(1), timeout=5) for e in ("e", "f", "c")]
        await ask_all(clock, burst)
        await run_for(clock, 0.1)
        assert probe.received["c"] == [1, 1, 1, 1, 1, 1, 1]
        assert region.metrics.entities == 3
        probe.assert_never_two()


async def test_a_shard_whose_remember_store_cannot_recover_runs_its_entities_anyway(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with sharded(1) as (clock, _net, nodes):
        store = new_store()
        store.attach(nodes[0])
        # Not an event this system can decode: the store's recovery fails.
        await store.journal.write(
            [PersistentRepr(remember_persistence_id("counter", 0), 1, 4, "no.such.Event", b"\x00")]
        )
        probe = Probe(clock)
        settings = replace(REMEMBER, number_of_shards=1)
        (region,) = await start_type(nodes, probe, settings)
        with caplog.at_level(logging.WARNING):
            answers = await ask_all(clock, [region.entity(e).ask(Add(2), timeout=5) for e in "xy"])
            await run_for(clock, 1.0)
        assert answers == [2, 2]
        assert "no longer remembered" in caplog.text
        assert set(probe.active()) == {"x", "y"}
        # Nothing was written after the bad record: the store is not running.
        assert await store.journal.highest_sequence_nr(remember_persistence_id("counter", 0)) == 1


async def test_hand_off_moves_every_shard_away_before_a_leave_and_loses_nothing() -> None:
    async with sharded(2) as (clock, _net, nodes):
        probe = Probe(clock)
        regions = await start_type(nodes, probe, ShardingSettings.testing(number_of_shards=12))
        ids = [f"h{i}" for i in range(24)]
        await ask_all(clock, [regions[0].entity(e).ask(Add(0), timeout=20) for e in ids])
        assert regions[1].metrics.shards > 0
        moving = asyncio.ensure_future(Sharding.get(nodes[1].system).hand_off())
        sent = 1
        while not moving.done():
            for e in ids:
                regions[0].entity(e).tell(Add(sent))
            sent += 1
            await run_for(clock, 0.05)
            assert clock.now() < 60
        await moving
        assert regions[1].metrics.shards == 0
        assert nodes[1].system.is_running  # still a member: it may leave now
        answers = await ask_all(clock, [regions[0].entity(e).ask(Get(), timeout=20) for e in ids])
        assert {node for _, node, _ in answers} == {nodes[0].system.address}
        for e in ids:
            assert probe.received[e] == list(range(sent)), e
        probe.assert_never_two()


async def test_hand_off_on_the_last_node_returns_at_once() -> None:
    async with sharded(1) as (clock, _net, nodes):
        probe = Probe(clock)
        (region,) = await start_type(nodes, probe, ShardingSettings.testing(number_of_shards=4))
        await ask_all(clock, [region.entity("x").ask(Add(1), timeout=5)])
        await Sharding.get(nodes[0].system).hand_off()
        assert region.metrics.shards > 0  # nowhere to go: they stop with the system
