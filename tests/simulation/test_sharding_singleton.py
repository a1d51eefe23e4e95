"""Cluster singleton on the in-memory network and the manual clock: where it runs, hand-over
on leave, restart after a crash only once the old node is gone, never two instances across a
partition, and the proxy's bounded buffer."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import pytest

from shoal.cluster import Cluster, ClusterSettings
from shoal.cluster.testing import advance_until, finish_shutdowns, form_cluster, run_for
from shoal.remote.testing import MemoryNetwork
from shoal.runtime import Actor, ActorRef, AskTimeout, DeadLetter, message
from shoal.runtime.testing import ManualClock
from shoal.sharding import BufferFullError, ClusterSingleton, ShardingError, SingletonSettings


@message
@dataclass(frozen=True, slots=True)
class WhereAreYou:
    pass


Record = tuple[float, str, str]


class Instance(Actor):
    """Records its start and stop (time, event, node) and answers with its node."""

    def __init__(self, log: list[Record], node: str) -> None:
        self.log = log
        self.node = node

    def started(self) -> None:
        self.log.append((self.ctx.clock.now(), "start", self.node))

    def stopped(self) -> None:
        self.log.append((self.ctx.clock.now(), "stop", self.node))

    def receive(self, msg: WhereAreYou) -> str:
        return self.node


def init_all(
    nodes: list[Cluster], log: list[Record], settings: SingletonSettings | None = None
) -> list[ActorRef]:
    proxies = []
    for c in nodes:
        node = str(c.self_address.address)
        proxies.append(
            ClusterSingleton.get(c.system).init(
                "single",
                lambda node=node: Instance(log, node),  # type: ignore[misc]
                settings if settings is not None else SingletonSettings.testing(),
            )
        )
    return proxies


def running(log: list[Record]) -> set[str]:
    alive: set[str] = set()
    for _, event, node in log:
        (alive.add if event == "start" else alive.discard)(node)
    return alive


def assert_never_two(log: list[Record]) -> None:
    """At no time do two nodes run the singleton (in recording order: one process, so that is
    the order things happened in)."""
    alive: set[str] = set()
    for _, event, node in log:
        if event == "start":
            assert not alive, f"{node} started while {alive} ran: {log}"
            alive.add(node)
        else:
            alive.discard(node)


async def ask(clock: ManualClock, proxy: ActorRef, max_time: float = 30.0) -> Any:
    future = proxy.ask(WhereAreYou(), timeout=max_time)
    await advance_until(clock, future.done, max_time=max_time + 1)
    return future.result()


def addr(c: Cluster) -> str:
    return str(c.self_address.address)


async def test_runs_once_on_the_oldest_and_every_proxy_reaches_it() -> None:
    clock = ManualClock()
    async with MemoryNetwork(clock=clock) as net:
        nodes = await form_cluster(net, clock, 3)
        log: list[Record] = []
        proxies = init_all(nodes, log)
        await run_for(clock, 1.0)
        assert running(log) == {addr(nodes[0])}
        assert [r[1:] for r in log] == [("start", addr(nodes[0]))]
        for proxy in proxies:
            assert await ask(clock, proxy) == addr(nodes[0])
        assert ClusterSingleton.get(nodes[0].system).metrics("single").running == 1
        assert ClusterSingleton.get(nodes[1].system).metrics("single").running == 0
        await finish_shutdowns(clock, nodes)


async def test_a_singleton_initialised_before_the_node_joined_starts_once_it_is_up() -> None:
    clock = ManualClock()
    async with MemoryNetwork(clock=clock) as net:
        remotings = [await net.start_node("shoal") for _ in range(2)]
        # Two seeds: the first asks the other before it forms alone, so for a
        # while neither node is a member.
        settings = ClusterSettings.testing(seed_nodes=tuple(r.address for r in remotings))
        nodes = [await Cluster.start(r.system, settings) for r in remotings]
        assert nodes[0].self_member is None
        log: list[Record] = []
        proxies = init_all(nodes, log)
        await advance_until(clock, lambda: running(log) == {addr(nodes[0])})
        assert await ask(clock, proxies[1]) == addr(nodes[0])
        await finish_shutdowns(clock, nodes)


async def test_only_members_with_the_role_host_it() -> None:
    clock = ManualClock()
    async with MemoryNetwork(clock=clock) as net:
        base = ClusterSettings.testing()
        remotings = [await net.start_node("shoal") for _ in range(3)]
        seeded = replace(base, seed_nodes=(remotings[0].address,))
        nodes = [
            await Cluster.start(
                r.system, replace(seeded, roles=frozenset({"w"}) if i else seeded.roles)
            )
            for i, r in enumerate(remotings)
        ]
        await advance_until(
            clock,
            lambda: all(c.is_up for c in nodes) and all(len(c.gossip.members) == 3 for c in nodes),
        )
        log: list[Record] = []
        proxies = init_all(nodes, log, SingletonSettings.testing(role="w"))
        await run_for(clock, 1.0)
        oldest_worker = min(nodes[1:], key=lambda c: (c.self_member.up_number, addr(c)))  # type: ignore[union-attr]
        assert running(log) == {addr(oldest_worker)}
        assert await ask(clock, proxies[0]) == addr(oldest_worker)
        await finish_shutdowns(clock, nodes)


async def test_a_leaving_oldest_hands_over_before_the_next_starts() -> None:
    clock = ManualClock()
    async with MemoryNetwork(clock=clock) as net:
        nodes = await form_cluster(net, clock, 3)
        log: list[Record] = []
        proxies = init_all(nodes, log)
        await run_for(clock, 1.0)
        nodes[0].leave_member(nodes[0].self_address.address)
        # Asks sent during the hand-over are buffered by the proxy, then answered.
        futures = [proxies[2].ask(WhereAreYou(), timeout=20.0) for _ in range(5)]
        await advance_until(clock, lambda: running(log) == {addr(nodes[1])}, max_time=20)
        await advance_until(clock, lambda: all(f.done() for f in futures), max_time=20)
        assert {f.result() for f in futures} <= {addr(nodes[0]), addr(nodes[1])}
        assert [r[1:] for r in log] == [
            ("start", addr(nodes[0])),
            ("stop", addr(nodes[0])),
            ("start", addr(nodes[1])),
        ]
        assert_never_two(log)
        # A graceful hand-over does not wait for the crash margin.
        stop_at, start_at = log[1][0], log[2][0]
        assert start_at - stop_at < nodes[1].settings.sbr_stable_after
        assert await ask(clock, proxies[2]) == addr(nodes[1])
        await finish_shutdowns(clock, nodes)


async def test_after_a_crash_the_next_starts_only_once_the_old_node_is_removed() -> None:
    clock = ManualClock()
    async with MemoryNetwork(clock=clock) as net:
        nodes = await form_cluster(net, clock, 3)
        log: list[Record] = []
        proxies = init_all(nodes, log)
        removed: list[float] = []
        nodes[1].subscribe(
            lambda e: removed.append(clock.now()) if type(e).__name__ == "MemberRemoved" else None
        )
        await run_for(clock, 1.0)
        net.kill(nodes[0].system)
        await advance_until(clock, lambda: addr(nodes[1]) in running(log), max_time=30)
        start_at = next(t for t, event, node in log if event == "start" and node == addr(nodes[1]))
        assert removed
        margin = nodes[1].settings.sbr_stable_after
        assert start_at >= removed[0] + margin
        assert start_at <= removed[0] + margin + 0.2  # plus at most a retry interval or two
        assert_never_two(log)
        assert await ask(clock, proxies[2]) == addr(nodes[1])
        await finish_shutdowns(clock, nodes)


async def test_a_partition_resolved_by_the_resolver_never_shows_two_instances() -> None:
    clock = ManualClock()
    async with MemoryNetwork(clock=clock) as net:
        nodes = await form_cluster(net, clock, 5)
        log: list[Record] = []
        proxies = init_all(nodes, log)
        await run_for(clock, 1.0)
        assert running(log) == {addr(nodes[0])}
        # The oldest is on the minority side: keep-majority downs it.
        net.partition([c.system for c in nodes[:2]], [c.system for c in nodes[2:]])
        await advance_until(
            clock,
            lambda: running(log) == {addr(nodes[2])} and not nodes[0].system.is_running,
            max_time=30,
        )
        await run_for(clock, 5.0)
        assert_never_two(log)
        assert running(log) == {addr(nodes[2])}
        assert await ask(clock, proxies[4]) == addr(nodes[2])
        await finish_shutdowns(clock, nodes)


async def test_the_proxy_buffer_is_bounded_and_overflow_is_dead_lettered() -> None:
    clock = ManualClock()
    async with MemoryNetwork(clock=clock) as net:
        nodes = await form_cluster(net, clock, 2)
        log: list[Record] = []
        # No member has the role: the singleton never runs, the proxy buffers.
        settings = SingletonSettings.testing(role="nobody", buffer_size=2)
        proxies = init_all(nodes, log, settings)
        dead: list[object] = []
        probe = nodes[1].system.spawn(lambda: _Collect(dead))
        nodes[1].system.event_stream.subscribe(probe, DeadLetter)
        futures = [proxies[1].ask(WhereAreYou(), timeout=5.0) for _ in range(3)]
        await run_for(clock, 0.5)
        assert not futures[0].done()
        assert not futures[1].done()
        with pytest.raises(BufferFullError):
            futures[2].result()
        metrics = ClusterSingleton.get(nodes[1].system).metrics("single")
        assert (metrics.buffered, metrics.dropped) == (2, 1)
        assert [type(d).__name__ for d in dead] == ["DeadLetter"]
        await run_for(clock, 6.0)
        # The buffered asks were never answered: each ends with its own timeout.
        for future in futures[:2]:
            with pytest.raises(AskTimeout):
                future.result()
        await finish_shutdowns(clock, nodes)


class _Collect(Actor):
    def __init__(self, into: list[object]) -> None:
        self.into = into

    def receive(self, msg: object) -> None:
        self.into.append(msg)


class _Idle(Actor):
    def receive(self, msg: object) -> None:
        return None


async def test_bad_names_and_conflicting_settings_are_refused() -> None:
    clock = ManualClock()
    async with MemoryNetwork(clock=clock) as net:
        nodes = await form_cluster(net, clock, 1)
        singletons = ClusterSingleton.get(nodes[0].system)
        for bad in ("", "a/b", "x" * 101, "-x"):
            with pytest.raises(ValueError, match="invalid singleton name"):
                singletons.init(bad, _Idle)
        first = singletons.init("s", _Idle)
        assert singletons.init("s", _Idle) is first
        with pytest.raises(ShardingError):
            singletons.init("s", _Idle, SingletonSettings(buffer_size=3))
        with pytest.raises(ValueError, match="buffer_size"):
            SingletonSettings(buffer_size=-1)
        await finish_shutdowns(clock, nodes)
