"""Leaving, downing and restarting members on the in-memory network."""

from __future__ import annotations

import asyncio

import pytest

from shoal.cluster import Cluster, ClusterSettings, MemberStatus
from shoal.cluster.testing import advance_until, finish_shutdowns, form_cluster, run_for
from shoal.remote.testing import MemoryNetwork
from shoal.runtime import Actor, ActorRef, ShutdownPhase, Terminated
from shoal.runtime.testing import ManualClock


async def test_graceful_leave_walks_to_removed_and_shuts_the_system_down() -> None:
    clock = ManualClock()
    async with MemoryNetwork(clock=clock) as net:
        nodes = await form_cluster(net, clock, 3)
        leaver = nodes[0]  # the leader leaves: another takes over
        statuses: list[MemberStatus] = []
        nodes[1].subscribe(
            lambda e: (
                statuses.append(e.member.status)  # type: ignore[union-attr]
                if getattr(e, "member", None) is not None
                and e.member.unique_address == leaver.self_address  # type: ignore[union-attr]
                else None
            )
        )
        leaving = asyncio.ensure_future(leaver.leave())
        await advance_until(clock, leaving.done, max_time=5)
        await leaving
        assert not leaver.system.is_running
        assert leaver.system.coordinated_shutdown.reason == "cluster-leave"
        assert statuses == [MemberStatus.LEAVING, MemberStatus.EXITING, MemberStatus.REMOVED]
        await run_for(clock, 1.0)
        for c in nodes[1:]:
            assert len(c.gossip.members) == 2
            assert c.gossip.is_tombstoned(leaver.self_address)
        assert nodes[1].state.leader == nodes[1].self_address


async def test_an_operator_down_removes_the_member_and_it_stops() -> None:
    clock = ManualClock()
    async with MemoryNetwork(clock=clock) as net:
        nodes = await form_cluster(net, clock, 3)
        victim = nodes[2]
        nodes[0].down(str(victim.self_address.address))
        await advance_until(clock, lambda: not victim.system.is_running, max_time=5)
        await advance_until(
            clock, lambda: all(len(c.gossip.members) == 2 for c in nodes[:2]), max_time=5
        )
        assert victim.system.coordinated_shutdown.reason == "cluster-downed"


async def test_a_restarted_node_replaces_its_old_incarnation() -> None:
    clock = ManualClock()
    settings = ClusterSettings.testing()
    async with MemoryNetwork(clock=clock) as net:
        nodes = await form_cluster(net, clock, 3, settings)
        old = nodes[2]
        address = old.self_address.address
        remoting = await net.restart(old.system)
        new = await Cluster.start(remoting.system, nodes[2].settings)
        assert new.self_address != old.self_address
        await advance_until(clock, lambda: new.is_up, max_time=10)
        for c in (*nodes[:2], new):
            await advance_until(
                clock,
                lambda c=c: (
                    [m.unique_address for m in c.gossip.members if m.address == address]
                    == [new.self_address]
                    and all(m.status is MemberStatus.UP for m in c.gossip.members)
                ),
                max_time=5,
            )
            assert c.gossip.is_tombstoned(old.self_address)
        remoting0 = nodes[0].system.extension(type(remoting))
        assert remoting0.is_quarantined(str(address), old.self_address.uid)


class _Idle(Actor):
    def receive(self, message: object) -> None:
        pass


class _Watcher(Actor):
    def __init__(self, target: ActorRef, seen: list[Terminated]) -> None:
        self.target = target
        self.seen = seen

    def started(self) -> None:
        self.ctx.watch(self.target)

    def receive(self, message: object) -> None:
        if isinstance(message, Terminated):
            self.seen.append(message)


async def test_remote_death_watch_fires_when_a_crashed_member_is_downed() -> None:
    clock = ManualClock()
    async with MemoryNetwork(clock=clock) as net:
        nodes = await form_cluster(net, clock, 3)
        doomed = nodes[2].system.spawn(_Idle, name="doomed")
        remote = nodes[0].system.resolve(str(doomed.path))
        seen: list[Terminated] = []
        nodes[0].system.spawn(lambda: _Watcher(remote, seen), name="watcher")
        await run_for(clock, 0.5)
        net.kill(nodes[2].system)
        await advance_until(clock, lambda: bool(seen), max_time=5)
        assert seen[0].ref == remote
        assert not seen[0].existence_confirmed
        assert not nodes[0].gossip.has_member(nodes[2].self_address) or any(
            m.status is MemberStatus.DOWN for m in nodes[0].gossip.members
        )
        await finish_shutdowns(clock, nodes)


async def test_a_joiner_is_weakly_up_while_a_member_is_unreachable_then_up() -> None:
    clock = ManualClock()
    settings = ClusterSettings.testing(sbr_stable_after=30.0)  # no decision in this test
    async with MemoryNetwork(clock=clock) as net:
        a, b, c = await form_cluster(net, clock, 3, settings)
        d_remoting = await net.start_node("shoal")
        net.partition([c.system], [a.system, b.system, d_remoting])
        await advance_until(
            clock,
            lambda: any(m.unique_address == c.self_address for m in a.gossip.unreachable_members()),
            max_time=2,
        )
        d = await Cluster.start(d_remoting.system, a.settings)
        took = await advance_until(
            clock,
            lambda: (
                (m := a.gossip.member(d.self_address)) is not None
                and m.status is MemberStatus.WEAKLY_UP
            ),
            max_time=3,
        )
        assert took >= settings.weakly_up_after  # type: ignore[operator]
        assert not d.is_up
        net.heal()
        await advance_until(clock, lambda: d.is_up, max_time=3)
        assert a.gossip.member(d.self_address).status is MemberStatus.UP  # type: ignore[union-attr]


async def test_an_operator_can_make_another_member_leave() -> None:
    clock = ManualClock()
    async with MemoryNetwork(clock=clock) as net:
        nodes = await form_cluster(net, clock, 3)
        nodes[0].leave_member(str(nodes[2].self_address.address))
        await advance_until(clock, lambda: not nodes[2].system.is_running, max_time=5)
        await finish_shutdowns(clock, nodes)
        assert nodes[2].system.coordinated_shutdown.reason == "cluster-leave"
        await advance_until(clock, lambda: len(nodes[1].gossip.members) == 2, max_time=5)
        with pytest.raises(ValueError, match="address"):
            nodes[0].leave_member("shoal@nohost")
        nodes[0].leave_member(nodes[0].self_address.address)
        await advance_until(clock, lambda: not nodes[0].system.is_running, max_time=5)
        await finish_shutdowns(clock, nodes)
        assert nodes[0].system.coordinated_shutdown.reason == "cluster-leave"


def hold_hand_off(node: Cluster) -> tuple[asyncio.Event, asyncio.Event]:
    """Make ``node``'s sharding hand-off phase wait: returns the event set when the
    phase starts and the one that lets it finish."""
    started = asyncio.Event()
    release = asyncio.Event()

    async def hand_off() -> None:
        started.set()
        await release.wait()

    node.system.coordinated_shutdown.add_task(
        ShutdownPhase.CLUSTER_SHARDING_SHUTDOWN_REGION, "test-hand-off", hand_off
    )
    return started, release


async def test_a_leaving_member_is_removed_only_once_its_exit_is_done() -> None:
    # An operator makes a member leave through another node: the member's
    # shutdown starts when it sees itself Leaving, and the leader removes it
    # only after the phases that hand its work off have finished and it has
    # confirmed its exit (Akka's ExitingConfirmed).
    clock = ManualClock()
    async with MemoryNetwork(clock=clock) as net:
        nodes = await form_cluster(net, clock, 3)
        leaver, operator = nodes[2], nodes[0]
        handing_off, handed_off = hold_hand_off(leaver)
        operator.leave_member(str(leaver.self_address.address))
        await advance_until(clock, handing_off.is_set, max_time=5)
        assert leaver.system.coordinated_shutdown.reason == "cluster-leave"

        def status() -> MemberStatus | None:
            m = operator.gossip.member(leaver.self_address)
            return None if m is None else m.status

        await advance_until(clock, lambda: status() is MemberStatus.EXITING, max_time=5)
        await run_for(clock, 2.0)  # many gossip rounds: still there, still handing off
        assert status() is MemberStatus.EXITING
        assert not operator.gossip.is_tombstoned(leaver.self_address)
        handed_off.set()
        await advance_until(
            clock, lambda: operator.gossip.is_tombstoned(leaver.self_address), max_time=5
        )
        await advance_until(clock, lambda: not leaver.system.is_running, max_time=5)
        await finish_shutdowns(clock, nodes)


async def test_an_exiting_member_that_crashes_is_removed_without_its_confirmation() -> None:
    clock = ManualClock()
    async with MemoryNetwork(clock=clock) as net:
        nodes = await form_cluster(net, clock, 3, ClusterSettings.testing())
        leaver, operator = nodes[2], nodes[0]
        stuck, release = hold_hand_off(leaver)
        operator.leave_member(str(leaver.self_address.address))
        await advance_until(clock, stuck.is_set, max_time=5)
        await advance_until(
            clock,
            lambda: (
                getattr(operator.gossip.member(leaver.self_address), "status", None)
                is MemberStatus.EXITING
            ),
            max_time=5,
        )
        net.kill(leaver.system)
        await advance_until(
            clock, lambda: operator.gossip.is_tombstoned(leaver.self_address), max_time=30
        )
        release.set()
        await finish_shutdowns(clock, nodes)
