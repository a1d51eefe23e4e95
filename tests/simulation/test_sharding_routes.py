"""Direct routes (``shoal.sharding._routes``) on the in-memory network and the manual clock:
once a shard's home is known, messages skip the region (and a running entity's shard), and
per-sender order, passivation and the idle clock behave as through the region."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest

from shoal.cluster.testing import advance_until, run_for
from shoal.remote import Remoting
from shoal.runtime import ActorRef
from shoal.sharding import Sharding, ShardRegion, shard_id
from shoal.sharding._inbound import InboundRoute
from shoal.sharding._protocol import Deliver, EntityEnvelope

from .test_sharding import SETTINGS, Add, Probe, Sleep, ask_all, counter, sharded, start_all


def routes(region: ShardRegion):  # type: ignore[no-untyped-def]
    return region._routes


async def test_messages_go_straight_to_a_known_home_and_keep_their_order() -> None:
    async with sharded(2) as (clock, _net, nodes):
        probe = Probe(clock)
        regions = await start_all(nodes, probe)
        here, there = nodes[0].system.address, nodes[1].system.address
        ids = [f"o{i}" for i in range(24)]
        # From the very first message on, one message per loop turn while the
        # homes are being located, become known and the buffers are flushed:
        # every transition between the region and the direct routes is crossed.
        sent = 0
        while sent < 40:
            for e in ids:
                regions[0].entity(e).tell(Add(sent))
            sent += 1
            await asyncio.sleep(0)
            if sent % 4 == 0:
                await run_for(clock, 0.01)
        await run_for(clock, 1.0)
        for e in ids:
            assert probe.received[e] == list(range(sent)), f"{e}: lost or reordered"
        where = probe.active()
        known = routes(regions[0])
        assert not known.pending
        for e in ids:
            shard = shard_id(e, SETTINGS.number_of_shards)
            if where[e] == here:
                assert e in known.local[shard].entities
                assert known.local[shard].pending == 0
            else:
                assert where[e] == there
                assert shard in known.remote
        # Answers come straight back from the entity, wherever it runs.
        answers = await ask_all(clock, [regions[0].entity(e).ask(Add(0), timeout=5) for e in ids])
        assert answers == [sum(range(sent))] * len(ids)


async def test_a_burst_buffered_by_the_region_is_not_overtaken_by_later_messages() -> None:
    # More messages than an actor handles in one turn (Settings.throughput): the
    # region and the shard hand them on over several turns, and the messages sent
    # meanwhile must wait behind them rather than go straight to the entity.
    async with sharded(2) as (clock, _net, nodes):
        probe = Probe(clock)
        regions = await start_all(nodes, probe)
        ids = ["b0", "b1", "b2", "b5"]  # two on each node
        burst = 1000
        for n in range(burst):
            for e in ids:
                regions[0].entity(e).tell(Add(n))
        sent = burst
        while sent < burst + 200:
            for e in ids:
                regions[0].entity(e).tell(Add(sent))
            sent += 1
            await asyncio.sleep(0)
        await run_for(clock, 1.0)
        assert {probe.active()[e] for e in ids} == {a.system.address for a in nodes}
        for e in ids:
            assert probe.received[e] == list(range(sent)), f"{e}: lost or reordered"


async def test_a_passivating_entity_takes_no_direct_message_and_loses_none() -> None:
    async with sharded(1) as (clock, _net, nodes):
        probe = Probe(clock)
        [region] = await start_all(nodes, probe)
        alice = region.entity("alice")
        assert await ask_all(clock, [alice.ask(Add(1), timeout=5)]) == [1]
        shard = routes(region).local[alice.shard_id]
        assert "alice" in shard.entities
        first = alice.ask(Sleep(), timeout=5)
        await advance_until(clock, lambda: region.metrics.passivations == 1)
        assert "alice" not in shard.entities  # the shard takes her messages now
        later = [alice.ask(Add(i), timeout=5) for i in range(2, 5)]
        answers = await ask_all(clock, [first, *later])
        assert answers == [None, 2, 5, 9]  # a new incarnation, in order
        assert probe.received["alice"] == [1, 2, 3, 4]
        assert "alice" in shard.entities


async def test_direct_messages_keep_an_entity_from_idling_out() -> None:
    async with sharded(1) as (clock, _net, nodes):
        probe = Probe(clock)
        settings = replace(SETTINGS, passivation_idle_timeout=2.0)
        region = await Sharding.get(nodes[0].system).start(
            "busy", counter(probe, nodes[0].system.address), settings
        )
        bob = region.entity("bob")
        await ask_all(clock, [bob.ask(Add(1), timeout=5)])
        assert "bob" in routes(region).local[bob.shard_id].entities
        for _ in range(10):  # 10 s of a message a second: never idle for 2 s
            await run_for(clock, 1.0)
            await ask_all(clock, [bob.ask(Add(1), timeout=5)])
        assert region.metrics.passivations == 0
        await advance_until(clock, lambda: "bob" not in probe.active(), max_time=5)
        assert region.metrics.passivations == 1


async def test_a_moved_shard_loses_its_direct_route_until_its_new_home_is_known() -> None:
    async with sharded(2) as (clock, _net, nodes):
        probe = Probe(clock)
        regions = await start_all(nodes, probe)
        ids = [f"m{i}" for i in range(24)]
        await ask_all(clock, [regions[0].entity(e).ask(Add(1), timeout=5) for e in ids])
        remote = routes(regions[0]).remote
        assert remote
        # The other node goes away gracefully: its shards move here.
        gone = nodes.pop(1)
        done = gone.system.coordinated_shutdown.run("test")
        sent = 0
        while not done.done():
            for e in ids:
                regions[0].entity(e).tell(Add(10 + sent))
            sent += 1
            await run_for(clock, 0.05)
            assert clock.now() < 60
        await run_for(clock, 2.0)
        assert not remote  # every shard runs here now
        local = routes(regions[0]).local
        assert all(shard_id(e, SETTINGS.number_of_shards) in local for e in ids)
        for e in ids:
            assert probe.received[e] == [1, *range(10, 10 + sent)], e
        probe.assert_never_two()


async def test_a_peers_message_for_a_running_entity_skips_the_region_unless_it_must_wait(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    taken: list[ActorRef] = []
    original = InboundRoute._target

    def spy(self: InboundRoute, envelope: EntityEnvelope) -> tuple[ActorRef, object]:
        target, message = original(self, envelope)
        taken.append(target)
        return target, message

    monkeypatch.setattr(InboundRoute, "_target", spy)
    async with sharded(2) as (clock, _net, nodes):
        probe = Probe(clock)
        regions = await start_all(nodes, probe)
        ids = [f"p{i}" for i in range(12)]
        await ask_all(clock, [regions[0].entity(e).ask(Add(0), timeout=5) for e in ids])
        home = nodes[1].system
        entity_id = next(e for e in ids if probe.active()[e] == home.address)
        shard = shard_id(entity_id, SETTINGS.number_of_shards)
        # Over the network, once running: straight from remoting's inbound to the entity.
        taken.clear()
        assert await ask_all(clock, [regions[0].entity(entity_id).ask(Add(1), timeout=5)]) == [1]
        assert taken
        assert all(t != regions[1].ref for t in taken)
        # What remoting's inbound does with an envelope from node 0 (see _inbound).
        inbound = Remoting.get(home).redirects[regions[1].ref]
        known = routes(regions[1])

        def envelope(value: int) -> EntityEnvelope:
            return EntityEnvelope(entity_id, shard, *home.serialization.serialize(Add(value)))

        inbound.tell(envelope(7))
        await asyncio.sleep(0)  # one loop turn: the entity's, with no region turn before it
        assert probe.received[entity_id][-1] == 7
        # Something for the shard waits in the region: the envelope waits behind it.
        known.queued(shard)
        regions[1].ref.tell(Deliver(entity_id, shard, Add(8)))
        inbound.tell(envelope(9))
        assert known.pending[shard] == 2
        await run_for(clock, 0.1)
        assert probe.received[entity_id][-3:] == [7, 8, 9]
        assert not known.pending
        # Undecodable: refused by the region like any other bad envelope.
        refused = regions[1].metrics.refused
        inbound.tell(EntityEnvelope(entity_id, shard, 4, "no.such.Manifest", b"\x00"))
        await run_for(clock, 0.1)
        assert regions[1].metrics.refused == refused + 1
        assert not known.pending
