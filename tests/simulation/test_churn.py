"""Churn in a ten-node cluster on virtual time: a restart with a new incarnation and a
graceful leave at once; the rest converge on the new membership."""

from __future__ import annotations

import asyncio

from shoal.cluster import Cluster, ClusterSettings, MemberStatus
from shoal.cluster.testing import advance_until, finish_shutdowns, form_cluster
from shoal.remote.testing import MemoryNetwork
from shoal.runtime.testing import ManualClock


async def test_a_restart_and_a_leave_at_once() -> None:
    clock = ManualClock()
    settings = ClusterSettings.testing()
    async with MemoryNetwork(clock=clock) as net:
        nodes = await form_cluster(net, clock, 10, settings)
        leaver, restarted = nodes[3], nodes[7]
        leaving = asyncio.ensure_future(leaver.leave())
        remoting = await net.restart(restarted.system)
        fresh = await Cluster.start(remoting.system, restarted.settings)
        await advance_until(clock, leaving.done, max_time=5)
        await leaving
        expected = sorted(
            [c.self_address for c in nodes if c not in (leaver, restarted)] + [fresh.self_address]
        )
        stay = [c for c in nodes if c not in (leaver, restarted)] + [fresh]

        def converged() -> bool:
            return all(
                [m.unique_address for m in c.gossip.members] == expected
                and all(m.status is MemberStatus.UP for m in c.gossip.members)
                and c.gossip.seen == frozenset(expected)
                for c in stay
            )

        took = await advance_until(clock, converged, max_time=10)
        assert took < 5.0
        for c in stay:
            assert c.gossip.is_tombstoned(leaver.self_address)
            assert c.gossip.is_tombstoned(restarted.self_address)
        await finish_shutdowns(clock, nodes)
