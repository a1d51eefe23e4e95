"""Coordinated shutdown: phases in order, tasks concurrent, each phase time-boxed."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import pytest

from shoal.runtime import (
    Actor,
    ActorSystem,
    CoordinatedShutdown,
    Settings,
    ShutdownPhase,
    SystemNotRunningError,
)
from shoal.runtime.testing import ManualClock, settle

P = ShutdownPhase


def test_the_phases_run_in_the_documented_order() -> None:
    assert [p.value for p in ShutdownPhase] == [
        "before-service-unbind",
        "service-unbind",
        "service-requests-done",
        "cluster-sharding-shutdown-region",
        "cluster-leave",
        "cluster-exiting",
        "cluster-exiting-done",
        "stop-user-actors",
        "close-extensions",
        "close-remoting",
        "close-journals",
        "stop-system-actors",
        "actor-system-terminate",
    ]
    assert [p.order for p in ShutdownPhase] == list(range(len(ShutdownPhase)))


async def test_phases_run_in_order_and_tasks_of_a_phase_together(
    system: ActorSystem, clock: ManualClock
) -> None:
    log: list[str] = []
    gate = asyncio.Event()

    def task(name: str, wait: bool = False) -> Callable[[], Awaitable[None]]:
        async def run() -> None:
            log.append(f"{name} starts")
            if wait:
                await gate.wait()
            log.append(f"{name} ends")

        return run

    cs = system.coordinated_shutdown
    # Registered out of order on purpose: the phase decides, not the registration.
    cs.add_task(P.CLOSE_JOURNALS, "journal", task("journal"))
    cs.add_task(P.SERVICE_UNBIND, "http-a", task("http-a", wait=True))
    cs.add_task(P.SERVICE_UNBIND, "http-b", task("http-b"))
    cs.add_task(P.BEFORE_SERVICE_UNBIND, "not-ready", task("not-ready"))
    shutting = asyncio.ensure_future(system.shutdown())
    await settle()
    assert log == [
        "not-ready starts",
        "not-ready ends",
        "http-a starts",
        "http-b starts",
        "http-b ends",
    ]
    assert cs.phase is P.SERVICE_UNBIND
    gate.set()
    await shutting
    assert log[-2:] == ["journal starts", "journal ends"]
    assert cs.phase is P.ACTOR_SYSTEM_TERMINATE
    assert clock.now() == 0.0  # nothing waited for a time box


async def test_a_phase_that_overruns_is_cancelled_logged_and_the_next_one_starts(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = ManualClock()
    system = ActorSystem(
        "t",
        Settings.testing(
            clock=clock,
            shutdown_timeout=3.0,
            shutdown_phase_timeouts={P.CLUSTER_LEAVE: 2.0, "cluster-exiting": 0.5},
        ),
    )
    started: dict[str, float] = {}
    cancelled: list[str] = []

    def task(name: str, forever: bool) -> Callable[[], Awaitable[None]]:
        async def run() -> None:
            started[name] = clock.now()
            if forever:
                try:
                    await asyncio.get_running_loop().create_future()
                except asyncio.CancelledError:
                    cancelled.append(name)
                    raise

        return run

    cs = system.coordinated_shutdown
    cs.add_task(P.CLUSTER_LEAVE, "leave", task("leave", forever=True))
    cs.add_task(P.CLUSTER_LEAVE, "quick", task("quick", forever=False))
    cs.add_task(P.CLUSTER_EXITING, "exiting", task("exiting", forever=True))
    cs.add_task(P.CLOSE_JOURNALS, "journal", task("journal", forever=True))
    cs.add_task(P.ACTOR_SYSTEM_TERMINATE, "last", task("last", forever=False))
    assert cs.timeout(P.CLUSTER_LEAVE) == 2.0
    assert cs.timeout(P.CLUSTER_EXITING) == 0.5
    assert cs.timeout(P.CLOSE_JOURNALS) == 3.0  # the default
    shutting = asyncio.ensure_future(system.shutdown())
    await settle()
    clock.advance(1.999)
    await settle()
    assert started == {"leave": 0.0, "quick": 0.0}
    clock.advance(0.001)
    await settle()
    assert started["exiting"] == 2.0
    assert cancelled == ["leave"]
    clock.advance(0.5)
    await settle()
    assert started["journal"] == 2.5
    clock.advance(3.0)
    await shutting
    assert started["last"] == 5.5
    assert cancelled == ["leave", "exiting", "journal"]
    timeouts = [r.getMessage() for r in caplog.records if "timed out" in r.getMessage()]
    assert timeouts == [
        "[t] shutdown phase cluster-leave timed out after 2.0 s; cancelling leave",
        "[t] shutdown phase cluster-exiting timed out after 0.5 s; cancelling exiting",
        "[t] shutdown phase close-journals timed out after 3.0 s; cancelling journal",
    ]


async def test_a_failing_task_is_logged_and_the_shutdown_goes_on(
    system: ActorSystem, caplog: pytest.LogCaptureFixture
) -> None:
    ran: list[str] = []

    async def broken() -> None:
        raise RuntimeError("disk on fire")

    def not_even_a_coroutine() -> None:
        raise ValueError("raised when called")

    async def later() -> None:
        ran.append("later")

    cs = system.coordinated_shutdown
    cs.add_task(P.SERVICE_UNBIND, "broken", broken)
    cs.add_task(P.SERVICE_UNBIND, "sync-broken", not_even_a_coroutine)  # type: ignore[arg-type]
    cs.add_task(P.CLUSTER_LEAVE, "later", later)
    with caplog.at_level(logging.ERROR, "shoal.runtime"):
        await system.shutdown()
    assert ran == ["later"]
    failures = {
        r.getMessage(): str(r.exc_info[1]) for r in caplog.records if r.exc_info is not None
    }
    assert failures == {
        "[test] shutdown task 'broken' of phase service-unbind failed": "disk on fire",
        "[test] shutdown task 'sync-broken' of phase service-unbind failed": "raised when called",
    }


async def test_the_first_reason_is_kept_and_shutdown_is_idempotent(system: ActorSystem) -> None:
    calls: list[str] = []

    async def once() -> None:
        calls.append("run")

    cs = system.coordinated_shutdown
    cs.add_task(P.SERVICE_UNBIND, "once", once)
    assert cs.reason is None
    first = cs.run("cluster-downing")  # e.g. the cluster downed this node
    assert not system.is_running  # refuses new work from the start
    second = asyncio.ensure_future(system.shutdown("second"))
    await asyncio.gather(first, second)
    await system.shutdown()
    assert calls == ["run"]
    assert cs.reason == "cluster-downing"
    with pytest.raises(SystemNotRunningError):
        system.spawn(Actor)


async def test_cancelling_a_waiter_does_not_cancel_the_shutdown(system: ActorSystem) -> None:
    gate = asyncio.Event()
    done: list[str] = []

    async def slow() -> None:
        await gate.wait()
        done.append("slow")

    system.coordinated_shutdown.add_task(P.SERVICE_UNBIND, "slow", slow)
    waiter = asyncio.ensure_future(system.shutdown())
    await settle()
    waiter.cancel()
    await settle()
    gate.set()
    await system.shutdown()
    assert done == ["slow"]


async def test_a_cancelled_registration_does_not_run_and_a_late_one_is_refused(
    system: ActorSystem, caplog: pytest.LogCaptureFixture
) -> None:
    ran: list[str] = []

    def task(name: str) -> Callable[[], Awaitable[None]]:
        async def run() -> None:
            ran.append(name)
            if name == "during":
                cs.add_task(P.SERVICE_UNBIND, "too-late", task("too-late"))
                cs.add_task(P.CLOSE_JOURNALS, "still-in-time", task("still-in-time"))

        return run

    cs: CoordinatedShutdown = system.coordinated_shutdown
    cs.add_task(P.SERVICE_UNBIND, "withdrawn", task("withdrawn")).cancel()
    cs.add_task(P.CLUSTER_LEAVE, "during", task("during"))
    await system.shutdown()
    assert ran == ["during", "still-in-time"]
    assert any(
        "'too-late' added to phase service-unbind, which has already run" in r.getMessage()
        for r in caplog.records
    )


async def test_user_actors_stop_before_extensions_close_and_system_actors_after(
    clock: ManualClock,
) -> None:
    log: list[str] = []

    class Noting(Actor):
        def __init__(self, name: str) -> None:
            self.name = name

        def receive(self, message: object) -> None:
            pass

        def stopped(self) -> None:
            log.append(f"{self.name} stopped")

    class Closing:
        def __init__(self, system: ActorSystem) -> None:
            pass

        async def aclose(self) -> None:
            log.append("extension closed")

    system = ActorSystem("t", Settings.testing(clock=clock))
    system.spawn_system_actor(lambda: Noting("system actor"))
    system.spawn(lambda: Noting("user actor"))
    system.extension(Closing)
    await system.shutdown()
    assert log == ["user actor stopped", "extension closed", "system actor stopped"]


def test_phase_time_boxes_are_validated() -> None:
    with pytest.raises(ValueError, match="not a shutdown phase: 'cluster-lave'"):
        Settings(shutdown_phase_timeouts={"cluster-lave": 1.0})
    with pytest.raises(ValueError, match="phase cluster-leave must be positive"):
        Settings(shutdown_phase_timeouts={P.CLUSTER_LEAVE: 0.0})
