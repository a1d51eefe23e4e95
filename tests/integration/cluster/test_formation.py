"""A cluster forms on the in-memory network: seeds, welcome, Up, events in order."""

from __future__ import annotations

from dataclasses import replace

import pytest

from shoal.cluster import (
    Cluster,
    ClusterError,
    ClusterNotice,
    ClusterSettings,
    CurrentClusterState,
    LeaderChanged,
    MemberJoined,
    MemberStatus,
    MemberUp,
)
from shoal.cluster.testing import advance_until, form_cluster, run_for
from shoal.remote.testing import MemoryNetwork
from shoal.runtime.testing import ManualClock


async def test_three_nodes_form_a_cluster() -> None:
    clock = ManualClock()
    async with MemoryNetwork(clock=clock) as net:
        nodes = await form_cluster(net, clock, 3)
        leader = nodes[0].state.leader
        for c in nodes:
            assert [m.status for m in c.gossip.members] == [MemberStatus.UP] * 3
            assert c.is_up
            await c.wait_up()
            assert c.state.leader == leader
            assert c.state.unreachable == frozenset()
        assert [m.up_number for m in nodes[0].gossip.members] == [1, 2, 3]


async def test_the_first_seed_forms_alone_after_the_seed_node_timeout() -> None:
    clock = ManualClock()
    async with MemoryNetwork(clock=clock) as net:
        a = await net.start_node("app")
        settings = ClusterSettings.testing(seed_nodes=(a.address, "app@127.0.0.1:9999"))
        cluster = await Cluster.start(a.system, settings)
        took = await advance_until(clock, lambda: cluster.is_up)
        assert took == pytest.approx(settings.seed_node_timeout)


async def test_a_node_joins_through_a_later_seed_that_is_up() -> None:
    clock = ManualClock()
    async with MemoryNetwork(clock=clock) as net:
        nodes = await form_cluster(net, clock, 2)
        c = await net.start_node("shoal")
        settings = ClusterSettings.testing(
            seed_nodes=("shoal@127.0.0.1:9999", str(nodes[1].self_address.address))
        )
        joiner = await Cluster.start(c.system, settings)
        await advance_until(clock, lambda: joiner.is_up)
        assert len(joiner.gossip.members) == 3


async def test_a_subscriber_gets_a_snapshot_then_events_in_order() -> None:
    clock = ManualClock()
    async with MemoryNetwork(clock=clock) as net:
        nodes = await form_cluster(net, clock, 1)
        seen: list[ClusterNotice] = []
        nodes[0].subscribe(seen.append)
        assert isinstance(seen[0], CurrentClusterState)
        assert len(seen[0].members) == 1
        b = await net.start_node("shoal")
        settings = replace(nodes[0].settings)
        joiner = await Cluster.start(b.system, settings)
        await advance_until(clock, lambda: joiner.is_up)
        await run_for(clock, 0.5)
        new = joiner.self_address
        joined = [e for e in seen[1:] if not isinstance(e, LeaderChanged)]
        assert [type(e) for e in joined] == [MemberJoined, MemberUp]
        assert all(e.member.unique_address == new for e in joined)  # type: ignore[union-attr]
        assert isinstance(joined[1], MemberUp)
        assert joined[1].member.up_number == 2


async def test_start_twice_and_get_before_start_raise() -> None:
    clock = ManualClock()
    async with MemoryNetwork(clock=clock) as net:
        a = await net.start_node("app")
        with pytest.raises(ClusterError, match="not started"):
            Cluster.get(a.system)
        cluster = await Cluster.start(a.system, ClusterSettings.testing())
        assert Cluster.get(a.system) is cluster
        with pytest.raises(ClusterError, match="already runs"):
            await Cluster.start(a.system, ClusterSettings.testing())


async def test_seeds_of_another_system_are_refused_at_start() -> None:
    clock = ManualClock()
    async with MemoryNetwork(clock=clock) as net:
        a = await net.start_node("app")
        with pytest.raises(ValueError, match=r"seed_nodes: .* is not a node of this cluster"):
            await Cluster.start(
                a.system, ClusterSettings.testing(seed_nodes=("other@127.0.0.1:1",))
            )
        cluster = await Cluster.start(a.system, ClusterSettings.testing())
        with pytest.raises(ValueError, match="seed_nodes"):
            cluster.join_seed_nodes(["app@nohost"])


async def test_oldest_role_leaders_and_unreachable_observers() -> None:
    clock = ManualClock()
    async with MemoryNetwork(clock=clock) as net:
        remotings = [await net.start_node("shoal") for _ in range(3)]
        seeds = (remotings[0].address,)
        roles = [frozenset({"web"}), frozenset({"db"}), frozenset({"db", "web"})]
        nodes = [
            await Cluster.start(r.system, ClusterSettings.testing(seed_nodes=seeds, roles=roles[i]))
            for i, r in enumerate(remotings)
        ]
        await advance_until(clock, lambda: all(len(c.state.members) == 3 for c in nodes))
        await advance_until(clock, lambda: all(c.is_up for c in nodes))
        await run_for(clock, 0.5)
        a = nodes[0]
        assert a.oldest() is not None
        assert a.oldest().unique_address == a.self_address  # type: ignore[union-attr]
        assert a.oldest("db").unique_address == nodes[1].self_address  # type: ignore[union-attr]
        assert a.role_leader("db") == nodes[1].self_address
        assert a.role_leader() == a.self_address
        assert a.role_leader("none") is None
        net.partition([nodes[2].system], [a.system, nodes[1].system])
        await advance_until(clock, lambda: bool(a.unreachable_observers()), max_time=2)
        observed = a.unreachable_observers()
        assert list(observed) == [nodes[2].self_address]
        assert a.self_address in observed[nodes[2].self_address]
        net.heal()
        await run_for(clock, 1.0)
