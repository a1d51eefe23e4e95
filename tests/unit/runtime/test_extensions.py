"""Extensions: created once, after their dependencies; closed before them, in their phase."""

from __future__ import annotations

import asyncio
from typing import ClassVar

import pytest

from shoal.runtime import (
    ActorSystem,
    ExtensionError,
    Settings,
    ShutdownPhase,
    SystemNotRunningError,
)
from shoal.runtime.testing import ManualClock, settle

LOG: list[str] = []


class _Ext:
    def __init__(self, system: ActorSystem) -> None:
        self.system = system
        LOG.append(f"start {type(self).__name__}")

    async def aclose(self) -> None:
        LOG.append(f"close {type(self).__name__}")


class Transport(_Ext):
    shutdown_phase: ClassVar = ShutdownPhase.CLOSE_REMOTING


class Journal(_Ext):
    shutdown_phase: ClassVar = ShutdownPhase.CLOSE_JOURNALS


class Membership(_Ext):
    depends_on: ClassVar = (Transport,)


class Sharding(_Ext):
    depends_on: ClassVar = (Membership, Journal)


class Metrics(_Ext):
    pass


@pytest.fixture(autouse=True)
def _clear_log() -> None:
    LOG.clear()


async def test_dependencies_start_first_and_close_last(system: ActorSystem) -> None:
    metrics = system.extension(Metrics)
    sharding = system.extension(Sharding)
    assert system.extension(Sharding) is sharding
    assert system.extension(Metrics) is metrics
    assert LOG == [
        "start Metrics",
        "start Transport",
        "start Membership",
        "start Journal",
        "start Sharding",
    ]
    LOG.clear()
    await system.shutdown()
    # close-extensions (last created first), then close-remoting, then close-journals.
    assert LOG == [
        "close Sharding",
        "close Membership",
        "close Metrics",
        "close Transport",
        "close Journal",
    ]


async def test_a_plain_factory_function_is_an_extension(system: ActorSystem) -> None:
    def make(system: ActorSystem) -> dict[str, str]:
        return {"system": system.name}

    assert system.extension(make) == {"system": "test"}
    assert system.extension(make) is system.extension(make)


class CycleA(_Ext):
    depends_on: ClassVar[tuple[object, ...]] = ()


class CycleB(_Ext):
    depends_on: ClassVar = (CycleA,)


CycleA.depends_on = (CycleB,)


async def test_a_dependency_cycle_is_an_error_naming_it(system: ActorSystem) -> None:
    with pytest.raises(ExtensionError, match="dependency cycle: CycleA -> CycleB -> CycleA"):
        system.extension(CycleA)
    assert LOG == []


async def test_a_constructor_asking_for_itself_is_a_cycle(system: ActorSystem) -> None:
    class Selfish:
        def __init__(self, system: ActorSystem) -> None:
            system.extension(Selfish)

    with pytest.raises(ExtensionError, match=r"cycle: .*Selfish -> .*Selfish"):
        system.extension(Selfish)


async def test_a_dependency_that_is_not_a_factory_is_an_error(system: ActorSystem) -> None:
    class Broken(_Ext):
        depends_on: ClassVar = ("Transport",)

    with pytest.raises(ExtensionError, match="depends on 'Transport', which is not an extension"):
        system.extension(Broken)


async def test_a_dependency_that_fails_to_start_is_an_error_naming_both(
    system: ActorSystem,
) -> None:
    class Failing:
        def __init__(self, system: ActorSystem) -> None:
            raise OSError("port in use")

    class User(_Ext):
        depends_on: ClassVar = (Failing,)

    with pytest.raises(ExtensionError, match=r"User depends on .*Failing, which failed to start: "):
        system.extension(User)
    assert LOG == []
    with pytest.raises(OSError, match="port in use"):  # nothing was registered: it is retried
        system.extension(Failing)


async def test_a_dependency_must_not_close_before_its_dependent(system: ActorSystem) -> None:
    class LateCloser(_Ext):
        shutdown_phase: ClassVar = ShutdownPhase.CLOSE_JOURNALS
        depends_on: ClassVar = (Transport,)

    with pytest.raises(ExtensionError, match="closes in phase close-journals, after Transport"):
        system.extension(LateCloser)
    assert LOG == []


async def test_an_invalid_phase_is_an_error(system: ActorSystem) -> None:
    class Odd(_Ext):
        shutdown_phase: ClassVar = "close-remoting"

    with pytest.raises(ExtensionError, match="shutdown_phase must be a ShutdownPhase"):
        system.extension(Odd)


async def test_no_extension_is_created_once_shutdown_began(system: ActorSystem) -> None:
    await system.shutdown()
    with pytest.raises(SystemNotRunningError):
        system.extension(Metrics)


async def test_a_failing_close_is_logged_and_the_others_still_close(
    system: ActorSystem, caplog: pytest.LogCaptureFixture
) -> None:
    class Bad(_Ext):
        async def aclose(self) -> None:
            raise RuntimeError("flush failed")

    system.extension(Metrics)
    system.extension(Bad)
    await system.shutdown()
    assert LOG[-1] == "close Metrics"
    assert any("closing extension" in r.getMessage() for r in caplog.records)


async def test_a_hung_close_is_cut_off_by_its_phase_time_box() -> None:
    clock = ManualClock()
    never: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    class Hung(_Ext):
        async def aclose(self) -> None:
            await never

    system = ActorSystem(
        "t",
        Settings.testing(clock=clock, shutdown_phase_timeouts={"close-extensions": 4.0}),
    )
    system.extension(Hung)
    system.extension(Journal)
    shutting = asyncio.ensure_future(system.shutdown())
    await settle()
    clock.advance(3.9)
    await settle()
    assert LOG == ["start Hung", "start Journal"]
    clock.advance(0.1)
    await shutting
    assert LOG[-1] == "close Journal"
    assert never.cancelled()
