"""Hundreds of nodes on one in-memory network, on virtual time."""

from __future__ import annotations

import asyncio

import pytest

from shoal.cluster import ClusterSettings, MemberStatus
from shoal.cluster.testing import convergence_rounds, form_cluster
from shoal.remote.testing import MemoryNetwork
from shoal.runtime.testing import ManualClock


@pytest.mark.slow
async def test_200_nodes_form_one_cluster() -> None:
    if type(asyncio.get_running_loop()).__module__.startswith("uvloop"):
        pytest.skip("200 nodes cost ~15 s a loop; the formation is run on asyncio's loop only")
    clock = ManualClock()
    # Heartbeats at the gossip interval: 200 nodes x 5 neighbours is plenty of traffic.
    settings = ClusterSettings.testing(heartbeat_interval=0.1, min_std_deviation=0.02)
    async with MemoryNetwork(clock=clock) as net:
        nodes = await form_cluster(net, clock, 200, settings, max_time=10)
        assert clock.now() <= 1.0
        first = nodes[0].gossip
        assert sorted(m.up_number for m in first.members) == list(range(1, 201))
        for c in nodes:
            assert c.gossip.version == first.version
            assert all(m.status is MemberStatus.UP for m in c.gossip.members)


@pytest.mark.slow
def test_a_change_converges_among_300_members_in_log_rounds() -> None:
    assert convergence_rounds(300) <= 15
