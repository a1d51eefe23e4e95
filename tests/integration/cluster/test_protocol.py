"""Protocol messages from peers: leave and down requests, forbidden status claims,
subscriptions by actor ref, and the metrics a node exposes."""

from __future__ import annotations

from dataclasses import replace

from prometheus_client import generate_latest

from shoal.cluster import Cluster, CurrentClusterState, MemberDowned, MemberStatus
from shoal.cluster._codec import encode
from shoal.cluster._gossip import Gossip
from shoal.cluster._messages import Body, Down, Envelope, GossipState, Leave
from shoal.cluster.testing import advance_until, finish_shutdowns, form_cluster, run_for
from shoal.remote import Remoting
from shoal.remote.testing import MemoryNetwork
from shoal.runtime import UniqueAddress
from shoal.runtime.testing import ManualClock, Probe


def _send(frm: Cluster, to: Cluster, body: Body, sender: UniqueAddress | None = None) -> None:
    target = frm.system.resolve(f"shoal://{to.self_address.address}/system/cluster")
    envelope = Envelope("shoal", sender or frm.self_address, to.self_address, body)
    Remoting.get(frm.system).send_control(target, encode(envelope))


async def test_a_member_may_ask_another_to_down_or_leave_a_member() -> None:
    clock = ManualClock()
    async with MemoryNetwork(clock=clock) as net:
        a, b, c, d = await form_cluster(net, clock, 4)
        _send(b, a, Down(c.self_address.address))
        _send(b, a, Leave(d.self_address.address))
        await advance_until(clock, lambda: not c.system.is_running and not d.system.is_running)
        assert d.system.coordinated_shutdown.reason == "cluster-leave"
        assert c.system.coordinated_shutdown.reason == "cluster-downed"
        await finish_shutdowns(clock, [a, b, c, d])


async def test_a_request_from_a_non_member_is_refused() -> None:
    clock = ManualClock()
    async with MemoryNetwork(clock=clock) as net:
        a, b = await form_cluster(net, clock, 2)
        stranger = UniqueAddress(b.self_address.address, 99)
        _send(b, a, Down(b.self_address.address), sender=stranger)
        await run_for(clock, 0.5)
        assert a.metrics.bad_input == {"unknown-sender": 1}
        assert b.system.is_running


async def test_newer_gossip_claiming_a_backward_status_is_logged_and_ignored() -> None:
    clock = ManualClock()
    async with MemoryNetwork(clock=clock) as net:
        a, b = await form_cluster(net, clock, 2)
        g = b.gossip
        backwards = [
            replace(m, status=MemberStatus.JOINING) if m.unique_address == a.self_address else m
            for m in g.members
        ]
        claim = Gossip.of(backwards, version=g.version.increment(b.self_address), seen=g.seen)
        _send(b, a, GossipState(claim))
        await run_for(clock, 0.0)
        assert a.metrics.forbidden_claims == 1
        assert a.gossip.member(a.self_address).status is MemberStatus.UP  # type: ignore[union-attr]


async def test_an_actor_can_subscribe_and_metrics_are_exposed() -> None:
    clock = ManualClock()
    async with MemoryNetwork(clock=clock) as net:
        a, b, c = await form_cluster(net, clock, 3)
        probe = Probe(a.system)
        a.subscribe(probe.ref)
        state = await probe.receive()
        assert isinstance(state, CurrentClusterState)
        assert len(state.members) == 3
        await run_for(clock, 1.0)
        net.kill(c.system)
        await advance_until(clock, lambda: len(a.gossip.members) == 2, max_time=5)
        events = [await probe.receive() for _ in range(probe.pending())]
        assert any(isinstance(e, MemberDowned) for e in events)
        text = generate_latest(a.system.metrics).decode()
        for name in (
            'shoal_cluster_members{address="shoal@127.0.0.1:2552",status="Up"} 2.0',
            "shoal_cluster_unreachable_members{",
            "shoal_cluster_phi{",
            "shoal_cluster_gossip_rounds_total{",
            "shoal_cluster_bytes_sent_total{",
            'decision="down_unreachable",strategy="keep-majority"} 1.0',
            "shoal_cluster_leader_changes_total{",
        ):
            assert name in text, name
        await finish_shutdowns(clock, [a, b, c])
