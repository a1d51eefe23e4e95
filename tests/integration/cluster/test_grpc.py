"""Two nodes in one process over real gRPC on loopback: the codec path end to end."""

from __future__ import annotations

import asyncio
from dataclasses import replace

from shoal import ActorSystem, Settings
from shoal.cluster import Cluster, ClusterSettings, MemberRemoved, MemberStatus, MemberUp
from shoal.remote import RemoteSettings, Remoting

SAFETY = 30.0  # seconds; only reached when something hangs


async def test_two_nodes_form_a_cluster_over_grpc_and_one_leaves() -> None:
    a = ActorSystem("grpc", Settings.testing())
    b = ActorSystem("grpc", Settings.testing())
    async with a, b:
        ra = await Remoting.start(a, RemoteSettings.testing())
        rb = await Remoting.start(b, RemoteSettings.testing())
        settings = ClusterSettings.testing(seed_nodes=(ra.address,))
        ca = await Cluster.start(a, settings)
        cb = await Cluster.start(b, replace(settings))
        ups: asyncio.Queue[object] = asyncio.Queue()
        removed: asyncio.Queue[MemberRemoved] = asyncio.Queue()
        ca.subscribe(lambda e: ups.put_nowait(e) if isinstance(e, MemberUp) else None)
        ca.subscribe(lambda e: removed.put_nowait(e) if isinstance(e, MemberRemoved) else None)
        await asyncio.wait_for(asyncio.gather(ca.wait_up(), cb.wait_up()), SAFETY)
        while len(ca.gossip.members) < 2 or not all(
            m.status is MemberStatus.UP for m in ca.gossip.members
        ):
            await asyncio.wait_for(ups.get(), SAFETY)
        assert {m.unique_address for m in cb.gossip.members} == {
            ca.self_address,
            cb.self_address,
        }
        assert ca.metrics.bytes_received > 0
        assert not ca.metrics.bad_input
        assert not cb.metrics.bad_input
        assert rb.unique_address == cb.self_address
        await asyncio.wait_for(cb.leave(), SAFETY)
        assert not b.is_running
        gone = await asyncio.wait_for(removed.get(), SAFETY)
        assert gone.member.unique_address == cb.self_address
        assert gone.previous_status is MemberStatus.EXITING
        assert [m.unique_address for m in ca.gossip.members] == [ca.self_address]
