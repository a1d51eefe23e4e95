"""Bad cluster frames are refused, counted and logged; the node keeps its state."""

from __future__ import annotations

from prometheus_client import generate_latest

from shoal.cluster._codec import encode
from shoal.cluster._messages import Envelope, GossipState, Heartbeat
from shoal.cluster.testing import advance_until, finish_shutdowns, form_cluster, run_for
from shoal.remote import Remoting
from shoal.remote.testing import MemoryNetwork
from shoal.runtime import ActorSystem, UniqueAddress
from shoal.runtime.testing import ManualClock


async def test_bad_frames_are_refused_and_counted() -> None:
    clock = ManualClock()
    async with MemoryNetwork(clock=clock) as net:
        a, b = await form_cluster(net, clock, 2)
        before = a.gossip
        remote_b = Remoting.get(b.system)
        target = b.system.resolve(f"shoal://{a.self_address.address}/system/cluster")

        def send(message: object) -> None:
            remote_b.send_control(target, message)

        send(b"\x08\xff garbage")
        send("not bytes")
        send(encode(Envelope("elsewhere", b.self_address, a.self_address, Heartbeat(1))))
        old_b = UniqueAddress(b.self_address.address, 42)
        send(encode(Envelope("shoal", b.self_address, old_b, Heartbeat(1))))
        stranger = UniqueAddress(b.self_address.address, 43)
        send(encode(Envelope("shoal", stranger, a.self_address, GossipState(before))))
        await run_for(clock, 0.0)
        assert a.metrics.bad_input == {
            "undecodable": 1,
            "not-bytes": 1,
            "other-cluster": 1,
            "wrong-incarnation": 1,
            "unknown-sender": 1,
        }
        assert a.gossip.members == before.members
        await run_for(clock, 1.0)
        assert a.gossip.members == before.members
        text = _scrape(a.system)
        assert 'kind="undecodable"} 1.0' in text
        assert "shoal_cluster_members{" in text


def _scrape(system: ActorSystem) -> str:
    return generate_latest(system.metrics).decode()


async def test_gossip_from_a_removed_incarnation_is_refused() -> None:
    clock = ManualClock()
    async with MemoryNetwork(clock=clock) as net:
        a, b, c = await form_cluster(net, clock, 3)
        a.down(c.self_address.address)
        await advance_until(clock, lambda: a.gossip.is_tombstoned(c.self_address), max_time=5)
        await finish_shutdowns(clock, [c])  # c saw itself downed and stopped
        await run_for(clock, 1.0)
        refused = a.metrics.bad_input.get("quarantined", 0)
        before = a.gossip
        target = b.system.resolve(f"shoal://{a.self_address.address}/system/cluster")
        stale = encode(Envelope("shoal", c.self_address, a.self_address, GossipState(before)))
        Remoting.get(b.system).send_control(target, stale)  # no sender: passes for c's frame
        await run_for(clock, 0.0)
        assert a.metrics.bad_input.get("quarantined") == refused + 1
        assert a.gossip is before or a.gossip.members == before.members
        await finish_shutdowns(clock, [a, b, c])
