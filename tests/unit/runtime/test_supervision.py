"""Supervision: resume, restart (with backoff and limits), stop, escalate."""

from __future__ import annotations

import asyncio

import pytest

from shoal.runtime import (
    Actor,
    ActorRef,
    ActorSystem,
    Backoff,
    Directive,
    Settings,
    SupervisorStrategy,
    Terminated,
)
from shoal.runtime.testing import ManualClock, Probe, quiesce


class Flaky(Actor):
    """Counts messages; "boom" raises. Reports lifecycle events to a probe."""

    instances = 0

    def __init__(self, probe: ActorRef | None = None) -> None:
        type(self).instances += 1
        self.count = 0
        self.probe = probe

    def receive(self, msg: object) -> object:
        if msg == "boom":
            raise ValueError("boom")
        if msg == "count":
            return self.count
        self.count += 1
        return None

    def before_restart(self, error: BaseException, message: object) -> None:
        if self.probe is not None:
            self.probe.tell(("before_restart", str(error), message))

    def after_restart(self, error: BaseException) -> None:
        if self.probe is not None:
            self.probe.tell(("after_restart", str(error)))


def supervised(strategy: SupervisorStrategy, factory: type[Actor] | None = None) -> type[Actor]:
    """A parent with ``strategy`` that spawns one child and forwards to it."""

    class Parent(Actor):
        supervisor_strategy = strategy

        def __init__(self) -> None:
            self.child = self.ctx.spawn(factory or Flaky, name="child")

        def receive(self, msg: object) -> object:
            if msg == "child":
                return self.child
            self.ctx.forward(self.child, msg)
            return None

    return Parent


async def test_resume_is_the_default_and_keeps_state(system: ActorSystem) -> None:
    ref = system.spawn(Flaky)
    ref.tell("a")
    ref.tell("boom")
    ref.tell("b")
    assert await ref.ask("count") == 2


async def test_a_failed_ask_completes_with_the_handlers_error(system: ActorSystem) -> None:
    ref = system.spawn(Flaky)
    with pytest.raises(ValueError, match="boom"):
        await ref.ask("boom")
    assert await ref.ask("count") == 0


async def test_restart_makes_a_fresh_instance_and_keeps_the_mailbox(system: ActorSystem) -> None:
    probe = Probe(system)

    class Parent(Actor):
        supervisor_strategy = SupervisorStrategy.restart()

        def __init__(self) -> None:
            self.child = self.ctx.spawn(lambda: Flaky(probe.ref), name="child")

        def receive(self, msg: object) -> object:
            return self.child

    parent = system.spawn(Parent)
    child = await parent.ask("child")
    child.tell("a")
    child.tell("boom")
    child.tell("b")  # queued behind the failure: kept for the new instance
    assert await probe.receive() == ("before_restart", "boom", "boom")
    assert await probe.receive() == ("after_restart", "boom")
    assert await child.ask("count") == 1  # only "b": state was reset


async def test_stop_directive_stops_the_child(system: ActorSystem) -> None:
    parent = system.spawn(supervised(SupervisorStrategy.stop()))
    child = await parent.ask("child")
    probe = Probe(system)

    class Watcher(Actor):
        def __init__(self) -> None:
            self.ctx.watch(child)

        def receive(self, msg: object) -> None:
            probe.ref.tell(msg)

    system.spawn(Watcher)
    child.tell("boom")
    assert await probe.receive() == Terminated(child)


async def test_escalate_fails_the_parent_whose_parent_decides(system: ActorSystem) -> None:
    probe = Probe(system)

    class Middle(Actor):
        supervisor_strategy = SupervisorStrategy.escalate()

        def __init__(self) -> None:
            self.ctx.spawn(Flaky, name="leaf")
            probe.ref.tell("middle started")

        def receive(self, msg: object) -> object:
            return self.ctx.child("leaf")

    class Top(Actor):
        supervisor_strategy = SupervisorStrategy.restart()

        def __init__(self) -> None:
            self.middle = self.ctx.spawn(Middle, name="middle")

        def receive(self, msg: object) -> object:
            return self.middle

    top = system.spawn(Top)
    middle = await top.ask("?")
    assert await probe.receive() == "middle started"
    leaf = await middle.ask("?")
    leaf.tell("boom")
    # The middle actor is restarted by Top: a new instance, and a new leaf.
    assert await probe.receive() == "middle started"
    new_leaf = await middle.ask("?")
    assert new_leaf is not None
    assert new_leaf is not leaf


async def test_decider_can_choose_per_error(system: ActorSystem) -> None:
    def decider(error: Exception) -> Directive:
        return Directive.RESTART if isinstance(error, ValueError) else Directive.RESUME

    parent = system.spawn(supervised(SupervisorStrategy(decider)))
    child = await parent.ask("child")
    child.tell("x")
    child.tell("boom")
    assert await child.ask("count") == 0


async def test_restart_limit_stops_a_child_that_keeps_failing(system: ActorSystem) -> None:
    parent = system.spawn(supervised(SupervisorStrategy.restart(max_restarts=2, within=60)))
    child = await parent.ask("child")
    watcher = Probe(system)

    class Watch(Actor):
        def __init__(self) -> None:
            self.ctx.watch(child)

        def receive(self, msg: object) -> None:
            watcher.ref.tell(msg)

    system.spawn(Watch)
    for _ in range(3):
        child.tell("boom")
    assert await watcher.receive() == Terminated(child)


async def test_backoff_delays_restarts_on_the_clock() -> None:
    clock = ManualClock()
    async with ActorSystem("t", Settings.testing(clock=clock)) as system:
        backoff = Backoff(min_delay=1.0, max_delay=8.0, factor=2.0, jitter=0.0)
        parent = system.spawn(supervised(SupervisorStrategy.restart(backoff=backoff)))
        child = await parent.ask("child")
        before = Flaky.instances
        child.tell("boom")
        await quiesce(system)
        assert Flaky.instances == before
        asked = asyncio.ensure_future(child.ask("count", timeout=100))
        clock.advance(0.99)
        await quiesce(system)
        assert Flaky.instances == before
        assert not asked.done()
        clock.advance(0.01)
        await quiesce(system)
        assert Flaky.instances == before + 1
        assert await asked == 0
        # The second consecutive failure waits twice as long.
        child.tell("boom")
        await quiesce(system)
        clock.advance(1.5)
        await quiesce(system)
        assert Flaky.instances == before + 1
        clock.advance(0.5)
        await quiesce(system)
        assert Flaky.instances == before + 2


def test_backoff_delay_formula() -> None:
    backoff = Backoff(min_delay=0.5, max_delay=4.0, factor=2.0, jitter=0.0)
    assert [backoff.delay(n, 0.5) for n in range(6)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    jittery = Backoff(min_delay=1.0, max_delay=1.0, jitter=0.2)
    assert all(0.8 <= jittery.delay(0, r / 100) <= 1.0 for r in range(100))
    with pytest.raises(ValueError, match="min_delay"):
        Backoff(min_delay=0)


async def test_failure_in_started_goes_through_supervision(system: ActorSystem) -> None:
    attempts: list[int] = []

    class FailsOnce(Actor):
        async def started(self) -> None:
            attempts.append(1)
            if len(attempts) == 1:
                raise RuntimeError("not yet")

        def receive(self, msg: object) -> object:
            return len(attempts)

    class Parent(Actor):
        supervisor_strategy = SupervisorStrategy.restart()

        def __init__(self) -> None:
            self.child = self.ctx.spawn(FailsOnce)

        def receive(self, msg: object) -> object:
            return self.child

    child = await system.spawn(Parent).ask("?")
    assert await child.ask("attempts") == 2
