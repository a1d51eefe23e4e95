"""Partitions on the in-memory network: for each strategy exactly one side survives (none
for down-all), and flapping links never down a healthy member."""

from __future__ import annotations

import pytest

from shoal.cluster import (
    Cluster,
    ClusterSettings,
    MemberDowned,
    MemberStatus,
    ReachableMember,
    UnreachableMember,
)
from shoal.cluster._phi import suspicion_y
from shoal.cluster.testing import advance_until, finish_shutdowns, form_cluster, run_for
from shoal.remote.testing import MemoryNetwork
from shoal.runtime.testing import ManualClock


def _alive(nodes: list[Cluster]) -> list[int]:
    return [i for i, c in enumerate(nodes) if c.system.is_running]


@pytest.mark.parametrize(
    ("settings", "survivors"),
    [
        (ClusterSettings.testing(), [2, 3, 4]),
        (ClusterSettings.testing(sbr_strategy="keep-oldest"), [0, 1]),
        (ClusterSettings.testing(sbr_strategy="static-quorum", sbr_quorum_size=3), [2, 3, 4]),
        (ClusterSettings.testing(sbr_strategy="down-all"), []),
    ],
    ids=["keep-majority", "keep-oldest", "static-quorum", "down-all"],
)
async def test_a_partition_leaves_at_most_one_side(
    settings: ClusterSettings, survivors: list[int]
) -> None:
    clock = ManualClock()
    async with MemoryNetwork(clock=clock) as net:
        nodes = await form_cluster(net, clock, 5, settings)
        await run_for(clock, 1.0)
        net.partition([c.system for c in nodes[:2]], [c.system for c in nodes[2:]])
        await advance_until(clock, lambda: _alive(nodes) == survivors, max_time=10)
        await run_for(clock, 2 * settings.gossip_interval)
        for i in survivors:
            members = nodes[i].gossip.members
            assert [m.unique_address for m in members] == [nodes[j].self_address for j in survivors]
            assert all(m.status is MemberStatus.UP for m in members)
        deciders = [c for c in nodes if c.metrics.decisions]
        assert deciders
        await finish_shutdowns(clock, nodes)


async def test_detection_decision_and_removal_happen_at_exact_virtual_times() -> None:
    clock = ManualClock()
    settings = ClusterSettings.testing()
    async with MemoryNetwork(clock=clock) as net:
        nodes = await form_cluster(net, clock, 3, settings)
        events: list[tuple[float, object]] = []
        nodes[0].subscribe(lambda e: events.append((clock.now(), e)))
        # Heartbeat ticks every 0.05 s from t=0 and replies arrive at once: the
        # last reply before the crash is the one of the tick at t=1.0.
        await run_for(clock, 1.01)
        net.kill(nodes[2].system)
        await advance_until(clock, lambda: len(nodes[0].gossip.members) == 2, max_time=5)
        times = {type(e).__name__: t for t, e in events[1:]}
        # phi crosses 8 at 0.05 + 0.5 + 5.226 * 0.01 s after the last reply (t=1.0),
        # and the node checks exactly then (a microsecond later).
        detected = 1.0 + 0.05 + 0.5 + suspicion_y(8.0) * 0.01 + 1e-6
        assert times["UnreachableMember"] == pytest.approx(detected, abs=1e-9)
        # The resolver decides exactly sbr_stable_after later; removal follows at once.
        assert times["MemberDowned"] == pytest.approx(detected + settings.sbr_stable_after)
        assert times["MemberRemoved"] == pytest.approx(detected + settings.sbr_stable_after)
        assert times["MemberRemoved"] - 1.01 <= settings.removal_bound
        await finish_shutdowns(clock, nodes)


async def test_flapping_links_do_not_down_a_healthy_member() -> None:
    clock = ManualClock()
    settings = ClusterSettings.testing()
    async with MemoryNetwork(clock=clock) as net:
        nodes = await form_cluster(net, clock, 5, settings)
        events: list[object] = []
        nodes[0].subscribe(events.append)
        a, b = nodes[0].system, nodes[1].system
        for _ in range(10):
            net.drop(a, b)
            net.drop(b, a)
            await run_for(clock, 0.8)  # long enough to be found unreachable
            net.heal()
            await run_for(clock, 0.2)
        await run_for(clock, 2.0)
        assert any(isinstance(e, UnreachableMember) for e in events)
        assert any(isinstance(e, ReachableMember) for e in events)
        assert not any(isinstance(e, MemberDowned) for e in events)
        assert _alive(nodes) == [0, 1, 2, 3, 4]
        for c in nodes:
            assert [m.status for m in c.gossip.members] == [MemberStatus.UP] * 5
            assert c.state.unreachable == frozenset()


async def test_indirectly_connected_members_are_downed() -> None:
    clock = ManualClock()
    settings = ClusterSettings.testing()
    async with MemoryNetwork(clock=clock) as net:
        nodes = await form_cluster(net, clock, 5, settings)
        await run_for(clock, 0.5)
        a, c = nodes[1].system, nodes[3].system  # each reaches the others, not each other
        net.drop(a, c)
        net.drop(c, a)
        await advance_until(clock, lambda: _alive(nodes) == [0, 2, 4], max_time=10)
        rest = [nodes[j].self_address for j in (0, 2, 4)]
        await advance_until(
            clock,
            lambda: all(
                [m.unique_address for m in nodes[i].gossip.members] == rest for i in (0, 2, 4)
            ),
            max_time=settings.removal_bound,
        )
        await finish_shutdowns(clock, nodes)
