"""Death watch and stopping: Terminated exactly once, children first."""

from __future__ import annotations

import asyncio

import pytest

from shoal.runtime import (
    Actor,
    ActorRef,
    ActorStoppedError,
    ActorSystem,
    Terminated,
)
from shoal.runtime.testing import Probe, quiesce


class Idle(Actor):
    def receive(self, msg: object) -> object:
        return msg


def watcher_of(target: ActorRef, probe: Probe) -> type[Actor]:
    class Watcher(Actor):
        def __init__(self) -> None:
            self.ctx.watch(target)
            self.ctx.watch(target)  # watching twice still gives one Terminated

        def receive(self, msg: object) -> None:
            probe.ref.tell(msg)

    return Watcher


async def test_terminated_is_delivered_exactly_once(system: ActorSystem) -> None:
    target = system.spawn(Idle)
    probe = Probe(system)
    system.spawn(watcher_of(target, probe))
    await quiesce(system)
    await target.stop()
    await target.stop()  # stopping twice is harmless
    assert await probe.receive() == Terminated(target)
    await quiesce(system)
    assert probe.pending() == 0


async def test_watching_a_dead_actor_gives_terminated_at_once(system: ActorSystem) -> None:
    target = system.spawn(Idle)
    await target.stop()
    probe = Probe(system)
    system.spawn(watcher_of(target, probe))
    assert await probe.receive() == Terminated(target)


async def test_unwatch_drops_a_terminated_not_yet_handled(system: ActorSystem) -> None:
    target = system.spawn(Idle)
    probe = Probe(system)

    class Fickle(Actor):
        def receive(self, msg: object) -> None:
            if msg == "watch":
                self.ctx.watch(target)
            elif msg == "stop-and-unwatch":
                target.stop()
                self.ctx.unwatch(target)
            else:
                probe.ref.tell(msg)

    fickle = system.spawn(Fickle)
    fickle.tell("watch")
    fickle.tell("stop-and-unwatch")
    fickle.tell("after")
    assert await probe.receive() == "after"
    await quiesce(system)
    assert probe.pending() == 0


async def test_stop_stops_children_before_the_parent(system: ActorSystem) -> None:
    order: list[str] = []

    class Node(Actor):
        def __init__(self, name: str, depth: int) -> None:
            self.name = name
            for i in range(2 if depth else 0):
                self.ctx.spawn(lambda i=i: Node(f"{name}.{i}", depth - 1), name=str(i))

        def receive(self, msg: object) -> None:
            pass

        def stopped(self) -> None:
            order.append(self.name)

    root = system.spawn(lambda: Node("r", 2))
    await root.stop()
    assert order.index("r") == len(order) - 1
    for name in order:
        for child in (f"{name}.0", f"{name}.1"):
            if child in order:
                assert order.index(child) < order.index(name)
    assert len(order) == 7


async def test_pending_asks_fail_when_the_target_stops(system: ActorSystem) -> None:
    gate = asyncio.Event()

    class Busy(Actor):
        async def receive(self, msg: object) -> object:
            await gate.wait()
            return msg

    busy = system.spawn(Busy)
    in_handler = asyncio.ensure_future(busy.ask("first"))
    queued = asyncio.ensure_future(busy.ask("second"))
    await quiesce(system)
    await busy.stop()
    with pytest.raises(ActorStoppedError):
        await in_handler
    with pytest.raises(ActorStoppedError):
        await queued
    with pytest.raises(ActorStoppedError):
        await busy.ask("third")


async def test_self_stop_in_async_handler_finishes_the_handler(system: ActorSystem) -> None:
    class Quitter(Actor):
        async def receive(self, msg: object) -> object:
            self.ctx.stop()
            await asyncio.sleep(0)
            return "bye"

    quitter = system.spawn(Quitter)
    assert await quitter.ask("quit") == "bye"
    await quiesce(system)
    assert not quitter.is_alive


async def test_messages_to_a_stopped_actor_are_dead_letters(system: ActorSystem) -> None:
    ref = system.spawn(Idle)
    ref.tell("queued")
    await ref.stop()
    before = system.stats()["dead_letters"]
    ref.tell("late")
    assert system.stats()["dead_letters"] == before + 1


async def test_stopped_hook_may_be_async(system: ActorSystem) -> None:
    done: list[str] = []

    class Closing(Actor):
        def receive(self, msg: object) -> None:
            pass

        async def stopped(self) -> None:
            await asyncio.sleep(0)
            done.append("closed")

    ref = system.spawn(Closing)
    await ref.stop()
    assert done == ["closed"]


async def test_shutdown_stops_every_actor(system: ActorSystem) -> None:
    stopped: list[int] = []

    class Tracked(Actor):
        def __init__(self, n: int) -> None:
            self.n = n

        def receive(self, msg: object) -> None:
            pass

        def stopped(self) -> None:
            stopped.append(self.n)

    for n in range(10):
        system.spawn(lambda n=n: Tracked(n))
    await system.shutdown()
    assert sorted(stopped) == list(range(10))
    assert not system.is_running
