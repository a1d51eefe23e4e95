"""Lifecycle fixes: failing async started(), non-Exception failures, hook logging,
stash of None, stops that must complete, reply_later on stop, PoisonPill,
watch_with, pipe_to_self, and rate-limited failure logs."""

from __future__ import annotations

import asyncio
import gc
import logging

import pytest

from shoal.runtime import (
    Actor,
    ActorRef,
    ActorStoppedError,
    ActorSystem,
    Backoff,
    HandlerError,
    PoisonPill,
    Reply,
    Settings,
    SupervisorStrategy,
    Terminated,
)
from shoal.runtime.testing import ManualClock, quiesce

# -- 11. an async started() that raises stops the actor like a plain one ------------------


@pytest.mark.parametrize("is_async", [False, True])
async def test_a_failing_started_stops_the_actor_plain_or_async(
    system: ActorSystem, is_async: bool, caplog: pytest.LogCaptureFixture
) -> None:
    handled: list[object] = []

    class Broken(Actor):
        def started(self) -> object:
            if is_async:

                async def fail() -> None:
                    raise RuntimeError("cannot initialise")

                return fail()
            raise RuntimeError("cannot initialise")

        def receive(self, msg: object) -> None:
            handled.append(msg)

    ref = system.spawn(Broken)
    ref.tell("too early")
    await quiesce(system)
    assert not ref.is_alive, "the actor was resumed uninitialised"
    assert handled == []
    assert "started()" in caplog.text


# -- 12. a non-Exception failure fails one message; the mailbox keeps going -----------------


class Cancelled(Actor):
    def __init__(self) -> None:
        self.cancelled: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.cancelled.cancel()

    def receive(self, msg: str) -> str:
        if msg == "cancelled":
            self.cancelled.result()  # raises CancelledError: no task of ours was cancelled
        return msg


async def test_a_cancelled_error_in_a_plain_handler_fails_only_that_message(
    system: ActorSystem, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.CRITICAL + 1, logger="shoal.runtime")
    ref = system.spawn(Cancelled)
    failed = ref.ask("cancelled")
    after = ref.ask("after")  # queued behind it, in the same turn
    await quiesce(system)
    assert after.done(), "the actor stalled after the failure"
    assert after.result() == "after"
    with pytest.raises(HandlerError, match="CancelledError") as info:
        await failed
    assert isinstance(info.value.__cause__, asyncio.CancelledError)
    ref.tell("cancelled")  # a plain tell takes the fast path
    assert await ref.ask("still alive") == "still alive"


async def test_a_cancelled_error_escaping_an_async_handler_fails_only_that_message(
    system: ActorSystem, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.CRITICAL + 1, logger="shoal.runtime")

    class AsyncCancelled(Actor):
        async def receive(self, msg: str) -> str:
            if msg == "cancelled":
                future = asyncio.get_running_loop().create_future()
                future.cancel()
                await future
            return msg

    ref = system.spawn(AsyncCancelled)
    failed = ref.ask("cancelled")
    after = ref.ask("after")
    with pytest.raises(HandlerError):
        await failed
    assert await after == "after"
    assert ref.is_alive


# -- 14. a failing async stopped() during a restart is logged with the actor's path ---------


async def test_a_failing_async_stopped_hook_during_a_restart_is_logged(
    system: ActorSystem, caplog: pytest.LogCaptureFixture
) -> None:
    class Flaky(Actor):
        def receive(self, msg: object) -> None:
            raise ValueError("boom")

        async def stopped(self) -> None:
            raise OSError("cannot close")

    class Parent(Actor):
        supervisor_strategy = SupervisorStrategy.restart()

        def receive(self, msg: object) -> ActorRef:
            return self.ctx.spawn(Flaky, name="flaky")

    parent = system.spawn(Parent, name="parent")
    child = await parent.ask("spawn")
    child.tell("fail")
    await quiesce(system)
    hook_lines = [r for r in caplog.records if "stopped() hook" in r.getMessage()]
    assert hook_lines, "the failing async stopped() hook was not logged"
    assert "/user/parent/flaky" in hook_lines[0].getMessage()
    assert hook_lines[0].exc_info is not None
    assert "cannot close" in caplog.text


# -- 15. stash works for every message, None included ---------------------------------------


async def test_none_can_be_stashed_and_unstashed(system: ActorSystem) -> None:
    seen: list[object] = []

    class Gate(Actor):
        def __init__(self) -> None:
            self.open = False

        def receive(self, msg: object) -> None:
            if msg == "open":
                self.open = True
                self.ctx.unstash_all()
            elif not self.open:
                self.ctx.stash()
            else:
                seen.append(msg)

    ref = system.spawn(Gate)
    for msg in (None, None, 1, None):
        ref.tell(msg)
    ref.tell("open")
    await quiesce(system)
    assert seen == [None, None, 1, None]


# -- 16. stop() completes even if the async handler's task never took a step ---------------


async def test_stop_right_after_an_async_handler_was_scheduled_completes(
    system: ActorSystem,
) -> None:
    class Slow(Actor):
        async def receive(self, msg: object) -> object:
            await asyncio.sleep(0)
            return msg

    ref = system.spawn(Slow)
    await quiesce(system)
    answer = ref.ask("x")
    stopping: list[asyncio.Future[None]] = []
    # Queued after the actor's run: the stop lands after the handler's task was created
    # and before it took its first step.
    asyncio.get_running_loop().call_soon(lambda: stopping.append(ref.stop()))
    await quiesce(system)
    assert stopping
    assert stopping[0].done(), "stop() hangs: the task's cleanup never ran"
    assert not ref.is_alive
    with pytest.raises(ActorStoppedError):
        await answer


async def test_replies_promised_later_fail_when_the_actor_stops(system: ActorSystem) -> None:
    held: list[Reply] = []

    class Later(Actor):
        def receive(self, msg: object) -> None:
            held.append(self.ctx.reply_later())

    ref = system.spawn(Later)
    answers = [ref.ask(i, timeout=100.0) for i in range(3)]
    await quiesce(system)
    held[1].send("answered")
    await ref.stop()
    assert await answers[1] == "answered"
    for answer in (answers[0], answers[2]):
        with pytest.raises(ActorStoppedError, match="before replying"):
            await answer


# -- 17. PoisonPill stops in order; watch_with ---------------------------------------------


async def test_a_poison_pill_stops_after_what_was_queued_before_it(system: ActorSystem) -> None:
    seen: list[object] = []

    class Recorder(Actor):
        def receive(self, msg: object) -> object:
            seen.append(msg)
            return msg

    ref = system.spawn(Recorder)
    before = [ref.ask(i) for i in range(3)]
    ref.tell(PoisonPill())
    after = ref.ask("too late")
    assert await asyncio.gather(*before) == [0, 1, 2]
    with pytest.raises(ActorStoppedError):
        await after
    await quiesce(system)
    assert seen == [0, 1, 2]
    assert not ref.is_alive


async def test_a_poison_pill_reaches_an_async_actor_in_order(system: ActorSystem) -> None:
    seen: list[object] = []

    class AsyncRecorder(Actor):
        async def receive(self, msg: object) -> None:
            await asyncio.sleep(0)
            seen.append(msg)

    ref = system.spawn(AsyncRecorder)
    for msg in ("a", "b"):
        ref.tell(msg)
    asked = ref.ask(PoisonPill())
    ref.tell("c")
    assert await asked is None
    await quiesce(system)
    assert seen == ["a", "b"]
    assert not ref.is_alive


async def test_watch_with_delivers_the_given_message_once(system: ActorSystem) -> None:
    seen: list[object] = []

    class Watcher(Actor):
        def receive(self, msg: object) -> None:
            if isinstance(msg, tuple) and msg[0] == "watch":
                self.ctx.watch_with(msg[1], ("gone", msg[2]))
            elif isinstance(msg, tuple) and msg[0] == "unwatch":
                self.ctx.unwatch(msg[1])
            else:
                seen.append(msg)

    class Idle(Actor):
        def receive(self, msg: object) -> None:
            pass

    watcher = system.spawn(Watcher)
    a, b = system.spawn(Idle), system.spawn(Idle)
    watcher.tell(("watch", a, "a"))
    watcher.tell(("watch", b, "b"))
    watcher.tell(("unwatch", b))
    await quiesce(system)
    await a.stop()
    await b.stop()
    await quiesce(system)
    assert seen == [("gone", "a")]
    assert Terminated(a) not in seen


# -- pipe_to_self ---------------------------------------------------------------------------


async def test_pipe_to_self_delivers_results_and_failures_as_messages(
    system: ActorSystem, clock: ManualClock
) -> None:
    seen: list[object] = []

    class Fetcher(Actor):
        def receive(self, msg: object) -> None:
            if msg == "ok":
                self.ctx.pipe_to_self(self.work(2.0, 42), map_ok=lambda v: ("done", v))
            elif msg == "fail":
                self.ctx.pipe_to_self(self.work(1.0, None), map_err=lambda e: ("failed", str(e)))
            elif msg == "raw failure":
                self.ctx.pipe_to_self(self.work(1.0, None))
            else:
                seen.append(msg)

        async def work(self, delay: float, value: int | None) -> int:
            await self.ctx.clock.sleep(delay)
            if value is None:
                raise LookupError("not found")
            return value

    ref = system.spawn(Fetcher)
    ref.tell("ok")
    ref.tell("fail")
    ref.tell("raw failure")
    ref.tell("meanwhile")  # handled while the work runs
    await quiesce(system)
    assert seen == ["meanwhile"]
    await clock.run_until_idle(system)
    assert seen[1] == ("failed", "not found")
    assert isinstance(seen[2], LookupError)
    assert seen[3] == ("done", 42)


async def test_pipe_to_self_delivers_nothing_after_the_actor_stopped(
    system: ActorSystem,
) -> None:
    dead_letters = system.stats()["dead_letters"]
    gate: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    class Piper(Actor):
        def receive(self, msg: object) -> None:
            self.ctx.pipe_to_self(gate)

    ref = system.spawn(Piper)
    ref.tell("go")
    await quiesce(system)
    await ref.stop()
    gate.set_result(1)
    await quiesce(system)
    assert system.stats()["dead_letters"] == dead_letters


async def test_work_failing_after_the_actor_stopped_is_not_reported_as_never_retrieved(
    system: ActorSystem,
) -> None:
    loop = asyncio.get_running_loop()
    reported: list[dict[str, object]] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, context: reported.append(context))
    gate: asyncio.Future[None] = loop.create_future()

    async def work() -> None:
        await gate
        raise LookupError("gone")

    class Piper(Actor):
        def receive(self, msg: object) -> None:
            self.ctx.pipe_to_self(work())

    try:
        ref = system.spawn(Piper)
        ref.tell("go")
        await quiesce(system)
        await ref.stop()
        gate.set_result(None)
        await quiesce(system)
        gc.collect()  # an unretrieved failure is reported when its task is collected
        assert reported == []
    finally:
        loop.set_exception_handler(previous)


# -- failure logs are rate-limited ----------------------------------------------------------


async def test_a_handler_failing_on_every_message_logs_a_bounded_number_of_lines(
    clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    class AlwaysFails(Actor):
        def receive(self, msg: object) -> None:
            raise ValueError("bad input")

    settings = Settings.testing(clock=clock, failure_log_limit=3, failure_log_interval=60.0)
    async with ActorSystem("noisy", settings) as system:
        ref = system.spawn(AlwaysFails)
        for i in range(100):
            ref.tell(i)
        await quiesce(system)
        failures = [r for r in caplog.records if "resumed" in r.getMessage()]
        assert len(failures) == 3
        clock.advance(60.0)
        ref.tell("one more")
        await quiesce(system)
        assert "97 more" in caplog.text


async def test_restart_failures_are_rate_limited_too(
    clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    class Fails(Actor):
        def receive(self, msg: object) -> None:
            raise ValueError("boom")

    class Parent(Actor):
        supervisor_strategy = SupervisorStrategy.restart(backoff=Backoff(min_delay=0.001))

        def receive(self, msg: object) -> ActorRef:
            return self.ctx.spawn(Fails)

    settings = Settings.testing(clock=clock, failure_log_limit=2, failure_log_interval=3600.0)
    async with ActorSystem("noisy", settings) as system:
        child = await system.spawn(Parent).ask("spawn")
        for _ in range(20):
            child.tell("x")
            await clock.run_until_idle(system, max_time=1.0)
        restarts = [r for r in caplog.records if "restarting" in r.getMessage()]
        assert len(restarts) == 2


async def test_an_actor_stopping_itself_with_a_cause_fails_every_later_ask_with_it(
    system: ActorSystem,
) -> None:
    class Broken(Actor):
        def receive(self, message: object) -> None:
            self.ctx.stop(cause=ValueError("the disk is gone"))

    ref = system.spawn(Broken)
    await ref.ask("break")
    await ref.stop()
    with pytest.raises(ActorStoppedError, match="the disk is gone") as info:
        await ref.ask("anything")
    assert isinstance(info.value.__cause__, ValueError)


async def test_a_cause_is_only_for_stopping_oneself(system: ActorSystem) -> None:
    other = system.spawn(Actor)
    failures: list[Exception] = []

    class Stopper(Actor):
        def receive(self, message: object) -> None:
            try:
                self.ctx.stop(other, cause=ValueError("no"))
            except ValueError as exc:
                failures.append(exc)

    await system.spawn(Stopper).ask("go")
    assert len(failures) == 1
    assert other.is_alive
