"""The mediator on the in-memory network, on virtual time: exact and fast."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import pytest

from shoal import Actor, ActorRef, message
from shoal.cluster import Cluster, ClusterError, ClusterSettings
from shoal.cluster.testing import advance_until, form_cluster, run_for
from shoal.pubsub import (
    DistributedPubSub,
    InvalidTopicError,
    PubSubError,
    PubSubSettings,
    RegistryFullError,
)
from shoal.remote.testing import MemoryNetwork
from shoal.runtime import SerializationError
from shoal.runtime.testing import ManualClock


@message
@dataclass(frozen=True, slots=True)
class Note:
    n: int


class Inbox(Actor):
    def __init__(self, seen: list[tuple[str, int]], name: str) -> None:
        self.seen = seen
        self.name = name

    def receive(self, msg: object) -> None:
        self.seen.append((self.name, msg.n if isinstance(msg, Note) else -1))


@dataclass
class Env:
    clock: ManualClock
    net: MemoryNetwork
    nodes: list[Cluster]
    pubsubs: list[DistributedPubSub]

    def inbox(self, i: int, seen: list[tuple[str, int]], name: str) -> ActorRef:
        system = self.nodes[i].system
        return system.spawn(lambda: Inbox(seen, name), name=name)

    async def until(self, predicate: object, max_time: float = 5.0) -> float:
        assert callable(predicate)
        return await advance_until(self.clock, predicate, max_time=max_time)


@asynccontextmanager
async def cluster(n: int = 3) -> AsyncIterator[Env]:
    clock = ManualClock()
    async with MemoryNetwork(clock=clock) as net:
        nodes = await form_cluster(net, clock, n, ClusterSettings.testing())
        pubsubs = [DistributedPubSub.start(c.system, PubSubSettings.testing()) for c in nodes]
        await run_for(clock, 0.0)
        yield Env(clock, net, nodes, pubsubs)


async def test_publish_reaches_every_node_once_in_order() -> None:
    async with cluster() as env:
        a, b, c = env.pubsubs
        seen: list[tuple[str, int]] = []
        for i, ps in enumerate(env.pubsubs):
            for k in range(2):
                await ps.subscribe("room", env.inbox(i, seen, f"s{i}{k}"))
        took = await env.until(lambda: a.subscriber_count("room") == 6)
        assert took <= env.nodes[0].settings.gossip_interval  # pushed eagerly, not gossiped
        for n in range(5):
            assert a.publish("room", Note(n)) == 3
        await env.until(lambda: len(seen) == 30)
        await run_for(env.clock, 1.0)
        assert len(seen) == 30
        for name in {s for s, _ in seen}:
            assert [n for s, n in seen if s == name] == [0, 1, 2, 3, 4]
        assert a.metrics.published == 5
        assert b.metrics.delivered == 10
        assert c.metrics.delivered == 10
        assert a.topics() == {"room"}


async def test_publish_returns_zero_until_a_subscriber_is_known() -> None:
    async with cluster() as env:
        a, _, c = env.pubsubs
        seen: list[tuple[str, int]] = []
        assert a.publish("t", Note(0)) == 0
        await c.subscribe("t", env.inbox(2, seen, "x"))
        assert c.publish("t", Note(1)) == 1  # acknowledged: the local registry has it
        waiting = asyncio.ensure_future(a.wait_for_subscribers("t", 1, timeout=1.0))
        await env.until(waiting.done)
        assert waiting.result() == 1
        assert a.publish("t", Note(2)) == 1
        await env.until(lambda: len(seen) == 2)
        assert seen == [("x", 1), ("x", 2)]
        waiting = asyncio.ensure_future(a.wait_for_subscribers("t", 2, timeout=0.5))
        took = await env.until(waiting.done)
        assert took == 0.5
        with pytest.raises(TimeoutError, match="1 of 2 subscribers"):
            waiting.result()
        with pytest.raises(ValueError, match="positive and finite"):
            await a.wait_for_subscribers("t", 1, timeout=0)
        assert await a.wait_for_subscribers("t", 0, timeout=1.0) == 1  # already there


async def test_one_per_group() -> None:
    async with cluster() as env:
        a = env.pubsubs[0]
        seen: list[tuple[str, int]] = []
        for i, ps in enumerate(env.pubsubs):
            await ps.subscribe("jobs", env.inbox(i, seen, f"w{i}"), group="workers")
            await ps.subscribe("jobs", env.inbox(i, seen, f"l{i}"), group="loggers")
            await ps.subscribe("jobs", env.inbox(i, seen, f"u{i}"))
        await env.until(lambda: a.subscriber_count("jobs") == 9)
        for n in range(30):
            a.publish("jobs", Note(n), one_per_group=True)
        await env.until(lambda: len(seen) == 60)
        await run_for(env.clock, 0.5)
        assert len(seen) == 60
        for n in range(30):
            got = sorted(s[0] for s, m in seen if m == n)
            assert got == ["l", "w"]
        assert len({s for s, _ in seen if s[0] == "w"}) > 1  # spread over the nodes
        seen.clear()
        assert a.publish("jobs", Note(99)) == 3  # a plain publish: every subscriber
        await env.until(lambda: len(seen) == 9)


async def test_send_with_local_affinity_and_send_to_all() -> None:
    async with cluster() as env:
        a, b, c = env.pubsubs
        seen: list[tuple[str, int]] = []
        for i in (1, 2):
            await env.pubsubs[i].register(env.inbox(i, seen, f"svc{i}"))
        await env.until(lambda: a.registered("/user/svc2") == 1)

        assert b.send("/user/svc1", Note(1)) == 1  # local
        assert a.send("/user/svc2", Note(2)) == 1  # remote
        assert a.send("/user/nobody", Note(3)) == 0
        await env.until(lambda: len(seen) == 2)
        assert sorted(seen) == [("svc1", 1), ("svc2", 2)]
        seen.clear()
        # the same path on several nodes
        for i in (0, 1, 2):
            await env.pubsubs[i].register(env.inbox(i, seen, "svc"))
        await env.until(lambda: all(p.registered("/user/svc") == 3 for p in env.pubsubs))
        for n in range(5):
            assert b.send("/user/svc", Note(n)) == 1
        assert a.send_to_all("/user/svc", Note(10)) == 3
        assert c.send_to_all("/user/svc", Note(11), all_but_self=True) == 2
        await env.until(lambda: len(seen) == 10)
        await run_for(env.clock, 0.5)
        assert len(seen) == 10
        assert sorted(n for _, n in seen) == [0, 1, 2, 3, 4, 10, 10, 10, 11, 11]
        assert b.metrics.delivered >= 5 + 1 + 1  # all five sends stayed on b
        await b.unregister("/user/svc")
        await env.until(lambda: a.registered("/user/svc") == 2)


async def test_unsubscribe_and_a_stopped_subscriber() -> None:
    async with cluster() as env:
        a, b, _ = env.pubsubs
        seen: list[tuple[str, int]] = []
        x = env.inbox(1, seen, "x")
        y = env.inbox(1, seen, "y")
        await b.subscribe("t", x)
        await b.subscribe("t", y)
        await env.until(lambda: a.subscriber_count("t") == 2)
        await b.unsubscribe("t", x)
        await env.until(lambda: a.subscriber_count("t") == 1)
        await env.nodes[1].system.stop(y)
        await env.until(lambda: a.subscriber_count("t") == 0)
        assert a.publish("t", Note(1)) == 0
        assert a.topics() == set()


async def test_a_killed_node_s_bucket_is_pruned_and_a_restart_starts_afresh() -> None:
    async with cluster() as env:
        a = env.pubsubs[0]
        seen: list[tuple[str, int]] = []
        old = env.nodes[2]
        await env.pubsubs[2].subscribe("old-only", env.inbox(2, seen, "x"))
        await env.pubsubs[2].subscribe("both", env.inbox(2, seen, "y"))
        await env.until(lambda: a.subscriber_count("both") == 1)
        env.net.kill(old.system)
        await env.until(lambda: a.topics() == set(), max_time=15)
        assert len(env.nodes[0].gossip.members) == 2
        remoting = await env.net.restart(old.system)
        new = await Cluster.start(remoting.system, old.settings)
        await env.until(lambda: new.is_up and len(env.nodes[0].gossip.members) == 3, max_time=15)
        ps = DistributedPubSub.start(new.system, PubSubSettings.testing())
        seen2: list[tuple[str, int]] = []
        await ps.subscribe("both", new.system.spawn(lambda: Inbox(seen2, "z"), name="z"))
        await env.until(lambda: a.subscriber_count("both") == 1)
        assert a.topics() == {"both"}
        assert a.publish("both", Note(7)) == 1
        await env.until(lambda: seen2 == [("z", 7)])


async def test_a_lost_delta_is_repaired_by_the_status_round() -> None:
    async with cluster(2) as env:
        a, b = env.pubsubs
        seen: list[tuple[str, int]] = []
        env.net.partition([env.nodes[0].system], [env.nodes[1].system])
        await b.subscribe("t", env.inbox(1, seen, "x"))
        await run_for(env.clock, 0.3)
        env.net.heal()
        took = await env.until(lambda: a.subscriber_count("t") == 1, max_time=10)
        assert took <= 3 * env.nodes[0].settings.gossip_interval


async def test_ten_thousand_topics() -> None:
    async with cluster() as env:
        a, b, _ = env.pubsubs
        seen: list[tuple[str, int]] = []
        ref = env.inbox(1, seen, "x")
        # Subscribed at once: the mediator takes `throughput` (300) of them per loop
        # turn, and each turn's changes go to each peer as one delta.
        await asyncio.gather(*(b.subscribe(f"topic-{i}", ref) for i in range(10_000)))
        await env.until(lambda: len(a.topics()) == 10_000)
        assert a.publish("topic-9999", Note(1)) == 1
        await env.until(lambda: seen == [("x", 1)])
        assert b.metrics.deltas_sent <= 2 * (10_000 // 300 + 2)
        # one by one: each change is pushed in its own small delta
        for i in range(100):
            await b.unsubscribe(f"topic-{i}", ref)
        await env.until(lambda: len(a.topics()) == 9_900)
        assert env.pubsubs[2].topics() == a.topics()


async def test_bad_input_is_refused() -> None:
    async with cluster(2) as env:
        a, _b = env.pubsubs
        seen: list[tuple[str, int]] = []
        ref = env.inbox(0, seen, "x")
        for bad in ("", "x" * 2000, "tab\there"):
            with pytest.raises(InvalidTopicError):
                await a.subscribe(bad, ref)
            with pytest.raises(InvalidTopicError):
                a.publish(bad, Note(1))
        with pytest.raises(PubSubError, match="only actors of this node"):
            await a.subscribe("t", env.inbox(1, seen, "y"))
        assert a.metrics.bad_input == {"invalid-name": 6, "foreign-ref": 1}
        mediator = a._actor
        mediator.tell(b"\xff\x00garbage")
        mediator.tell("not bytes")
        await run_for(env.clock, 0.1)
        assert a.metrics.bad_input["undecodable"] == 1
        assert a.metrics.bad_input["unexpected"] == 1
        assert a.topics() == set()


async def test_metrics_are_exposed() -> None:
    from prometheus_client import generate_latest  # noqa: PLC0415

    async with cluster(2) as env:
        a, b = env.pubsubs
        seen: list[tuple[str, int]] = []
        await b.subscribe("t", env.inbox(1, seen, "x"))
        await b.subscribe("u", env.inbox(1, seen, "y"))
        await env.until(lambda: len(a.topics()) == 2)
        a.publish("t", Note(1))
        await env.until(lambda: len(seen) == 1)
        text_a = generate_latest(env.nodes[0].system.metrics).decode()
        text_b = generate_latest(env.nodes[1].system.metrics).decode()
        assert 'shoal_pubsub_topics{node="shoal@127.0.0.1:2552"} 2.0' in text_a
        assert 'shoal_pubsub_published_total{node="shoal@127.0.0.1:2552"} 1.0' in text_a
        assert 'shoal_pubsub_subscribers{node="shoal@127.0.0.1:2553"} 2.0' in text_b
        assert 'shoal_pubsub_local_topics{node="shoal@127.0.0.1:2553"} 2.0' in text_b
        assert 'shoal_pubsub_delivered_total{node="shoal@127.0.0.1:2553"} 1.0' in text_b
        assert "shoal_pubsub_deltas_sent_total" in text_b


async def test_used_before_start_or_after_shutdown() -> None:
    clock = ManualClock()
    async with MemoryNetwork(clock=clock) as net:
        remoting = await net.start_node()
        system = remoting.system
        with pytest.raises(ClusterError):
            DistributedPubSub.get(system)  # the cluster first
        pubsub = system.extension(DistributedPubSub)
        with pytest.raises(PubSubError, match="not started"):
            pubsub.publish("t", Note(1))
        with pytest.raises(PubSubError, match="not started"):
            pubsub.topics()
        cluster = await Cluster.start(system, ClusterSettings.testing())
        cluster.join_seed_nodes([remoting.address])
        await advance_until(clock, lambda: cluster.is_up)
        pubsub = DistributedPubSub.get(system)
        assert DistributedPubSub.get(system) is pubsub
        with pytest.raises(PubSubError, match="already runs"):
            DistributedPubSub.start(system)
        await pubsub.aclose()
        with pytest.raises(PubSubError, match="shut down"):
            pubsub.publish("t", Note(1))
        assert pubsub.topics() == set()


class Unregistered:
    """Not a message type: it cannot leave its node."""


async def test_a_message_that_cannot_leave_the_node_is_refused_before_anything_is_sent() -> None:
    async with cluster(2) as env:
        a, b = env.pubsubs
        seen: list[tuple[str, int]] = []
        await a.subscribe("t", env.inbox(0, seen, "x"))
        assert a.publish("t", Unregistered()) == 1  # local only: no serialization
        await b.subscribe("t", env.inbox(1, seen, "y"))
        await env.until(lambda: a.subscriber_count("t") == 2)
        with pytest.raises(SerializationError):
            a.publish("t", Unregistered())
        # groups: only ungrouped subscribers, so nobody gets a one-per-group publish
        assert a.publish("t", Unregistered(), one_per_group=True) == 0


async def test_a_full_registry_refuses_new_topics_and_goes_on() -> None:
    clock = ManualClock()
    async with MemoryNetwork(clock=clock) as net:
        nodes = await form_cluster(net, clock, 1, ClusterSettings.testing())
        pubsub = DistributedPubSub.start(nodes[0].system, PubSubSettings(max_keys=2))
        seen: list[tuple[str, int]] = []
        ref = nodes[0].system.spawn(lambda: Inbox(seen, "x"))
        await pubsub.subscribe("a", ref)
        await pubsub.subscribe("b", ref)
        with pytest.raises(RegistryFullError):
            await pubsub.subscribe("c", ref)
        await pubsub.subscribe("a", ref, group="g")  # a known topic still takes subscribers
        await pubsub.unsubscribe("b", ref)
        await pubsub.subscribe("c", ref)
        assert pubsub.topics() == {"a", "c"}
        assert pubsub.subscriber_count("a") == 2
        assert pubsub.metrics.bad_input == {"registry-full": 1}


async def test_eight_nodes_converge_and_prune_two_killed_ones() -> None:
    async with cluster(8) as env:
        seen: list[tuple[str, int]] = []
        for i, ps in enumerate(env.pubsubs):
            await ps.subscribe("all", env.inbox(i, seen, f"s{i}"))
            await ps.subscribe(f"only-{i}", env.inbox(i, seen, f"o{i}"))
        took = await env.until(
            lambda: all(
                len(ps.topics()) == 9 and ps.subscriber_count("all") == 8 for ps in env.pubsubs
            )
        )
        assert took <= env.nodes[0].settings.gossip_interval
        assert env.pubsubs[5].publish("all", Note(1)) == 8
        await env.until(lambda: len(seen) == 8)
        for victim in env.nodes[6:]:
            env.net.kill(victim.system)
        survivors = env.pubsubs[:6]
        await env.until(
            lambda: all(ps.subscriber_count("all") == 6 for ps in survivors), max_time=30
        )
        for ps in survivors:
            assert ps.topics() == {"all", *(f"only-{i}" for i in range(6))}
        assert survivors[0].publish("all", Note(2)) == 6
