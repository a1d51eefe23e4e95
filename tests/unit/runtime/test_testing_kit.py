"""The deterministic test kit: ``quiesce`` and ``ManualClock.run_until_idle``."""

from __future__ import annotations

import asyncio

import pytest

from shoal.runtime import Actor, ActorRef, ActorSystem, Terminated
from shoal.runtime.testing import ManualClock, QuiesceError, quiesce


class Relay(Actor):
    """Passes a countdown back and forth with its peer: one loop turn per hop."""

    def __init__(self, log: list[int]) -> None:
        self.log = log
        self.peer: ActorRef | None = None

    def receive(self, msg: object) -> None:
        if isinstance(msg, ActorRef):
            self.peer = msg
        elif isinstance(msg, int):
            self.log.append(msg)
            if msg and self.peer is not None:
                self.peer.tell(msg - 1)


async def test_quiesce_waits_for_a_chain_longer_than_any_fixed_turn_count(
    system: ActorSystem,
) -> None:
    log: list[int] = []
    a = system.spawn(lambda: Relay(log))
    b = system.spawn(lambda: Relay(log))
    a.tell(b)
    b.tell(a)
    a.tell(500)
    await quiesce(system)
    assert log == list(range(500, -1, -1))


async def test_quiesce_waits_for_stops_and_their_terminated(system: ActorSystem) -> None:
    seen: list[object] = []

    class Watcher(Actor):
        def __init__(self, target: ActorRef) -> None:
            self.ctx.watch(target)

        def receive(self, msg: object) -> None:
            seen.append(msg)

    class Parent(Actor):
        def __init__(self) -> None:
            for i in range(3):
                self.ctx.spawn(Parent if i == 0 and depth.pop() else Leaf)

        def receive(self, msg: object) -> None:
            pass

    class Leaf(Actor):
        def receive(self, msg: object) -> None:
            pass

    depth = [False, True, True]
    top = system.spawn(Parent)
    system.spawn(lambda: Watcher(top))
    top.stop()
    await quiesce(system)
    assert seen == [Terminated(top)]


async def test_quiesce_fails_clearly_on_an_actor_that_never_idles(system: ActorSystem) -> None:
    class Spinner(Actor):
        def receive(self, msg: object) -> None:
            self.ref.tell(msg)

    system.spawn(Spinner, name="spinner").tell("again")
    with pytest.raises(QuiesceError, match="spinner"):
        await quiesce(system, max_turns=50)


async def test_quiesce_returns_while_an_actor_waits_for_the_clock(
    system: ActorSystem, clock: ManualClock
) -> None:
    done: list[str] = []

    class Sleeper(Actor):
        async def receive(self, msg: str) -> None:
            await self.ctx.clock.sleep(10.0)
            done.append(msg)

    ref = system.spawn(Sleeper)
    ref.tell("a")
    ref.tell("b")  # queued behind the sleeping handler: waits for the timer too
    await quiesce(system)
    assert done == []
    clock.advance(10.0)
    await quiesce(system)
    assert done == ["a"]


class Chain(Actor):
    """Re-arms a single timer with growing delays: 1 + 2 + 3 seconds."""

    def __init__(self, fired: list[float]) -> None:
        self.fired = fired
        self.ctx.timers.start_single("t", 1, 1.0)

    def receive(self, msg: int) -> None:
        self.fired.append(self.ctx.clock.now())
        if msg < 3:
            self.ctx.timers.start_single("t", msg + 1, msg + 1.0)


async def test_run_until_idle_runs_timers_and_messages_until_none_is_left(
    system: ActorSystem, clock: ManualClock
) -> None:
    fired: list[float] = []
    system.spawn(lambda: Chain(fired))
    elapsed = await clock.run_until_idle(system)
    assert fired == [1.0, 3.0, 6.0]
    assert elapsed == 6.0
    assert clock.next_deadline() is None


async def test_run_until_idle_stops_at_its_virtual_time_limit(
    system: ActorSystem, clock: ManualClock
) -> None:
    ticks: list[float] = []

    class Ticker(Actor):
        def __init__(self) -> None:
            self.ctx.timers.start_periodic("tick", "tick", 1.0)

        def receive(self, msg: object) -> None:
            ticks.append(self.ctx.clock.now())

    system.spawn(Ticker)
    assert await clock.run_until_idle(system, max_time=5.5) == 5.5
    assert ticks == [1.0, 2.0, 3.0, 4.0, 5.0]
    assert clock.now() == 5.5


async def test_quiesce_without_a_system_waits_for_the_loops_tasks() -> None:
    steps: list[int] = []

    async def chain(n: int) -> None:
        for i in range(n):
            steps.append(i)
            await asyncio.sleep(0)

    task = asyncio.ensure_future(chain(50))
    await quiesce()
    assert task.done()
    assert steps == list(range(50))
