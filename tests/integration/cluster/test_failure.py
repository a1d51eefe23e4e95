"""A crashed node is detected, downed by the resolver and removed within the bound."""

from __future__ import annotations

from shoal.cluster import ClusterSettings
from shoal.cluster.testing import advance_until, form_cluster, run_for
from shoal.remote.testing import MemoryNetwork
from shoal.runtime.testing import ManualClock


async def test_a_killed_node_is_removed_within_the_bound() -> None:
    clock = ManualClock()
    settings = ClusterSettings.testing()
    async with MemoryNetwork(clock=clock) as net:
        nodes = await form_cluster(net, clock, 3, settings)
        await run_for(clock, 1.0)
        victim = nodes[2]
        survivors = nodes[:2]
        net.kill(victim.system)
        took = await advance_until(
            clock, lambda: all(len(c.gossip.members) == 2 for c in survivors), max_time=10
        )
        assert took <= settings.removal_bound
