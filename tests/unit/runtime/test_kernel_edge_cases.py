"""Edge cases of the local kernel: races between lifecycle states, capacity
during a drain turn, stash with signals and restarts, deep trees, leaks,
shutdown, and serialization safety. Each test pins a bug found in review.
"""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import logging
import subprocess
import sys
import weakref

import pytest

from shoal.runtime import (
    Actor,
    ActorRef,
    ActorSystem,
    Backoff,
    DeadLetter,
    MailboxOverflow,
    SerializationError,
    Settings,
    SupervisorStrategy,
    Terminated,
)
from shoal.runtime.testing import ManualClock, Probe, quiesce

# -- 1. mailbox capacity is computed against a stale limit during a drain turn ------------


class SelfTeller(Actor):
    def __init__(self, probe: ActorRef) -> None:
        self.probe = probe

    def receive(self, msg: object) -> None:
        if isinstance(msg, int) and msg > 0:
            self.ref.tell(msg - 1)  # a follow-up to itself
        self.probe.tell(msg)


async def test_self_tell_from_a_handler_fits_an_emptied_mailbox(system: ActorSystem) -> None:
    probe = Probe(system)
    dead = Probe(system)
    system.event_stream.subscribe(dead.ref, DeadLetter)
    ref = system.spawn(lambda: SelfTeller(probe.ref), capacity=1)
    ref.tell(2)
    await quiesce(system)
    assert dead.pending() == 0, "mailbox was empty but the self-tell became a dead letter"
    assert [await probe.receive() for _ in range(3)] == [2, 1, 0]


async def test_burst_with_follow_ups_loses_nothing(system: ActorSystem) -> None:
    probe = Probe(system)
    dead = Probe(system)
    system.event_stream.subscribe(dead.ref, DeadLetter)
    ref = system.spawn(lambda: SelfTeller(probe.ref), capacity=4)
    for _ in range(4):  # exactly fills the mailbox
        ref.tell(1)
    await quiesce(system)
    assert dead.pending() == 0  # each handler took one out before adding one


async def test_drop_oldest_does_not_evict_while_there_is_room(system: ActorSystem) -> None:
    probe = Probe(system)
    ref = system.spawn(
        lambda: SelfTeller(probe.ref), capacity=3, overflow=MailboxOverflow.DROP_OLDEST
    )
    ref.tell("a")
    ref.tell(1)
    ref.tell("b")
    await quiesce(system)
    got = [await probe.receive() for _ in range(probe.pending())]
    assert got == ["a", 1, "b", 0]  # when 1 is handled only "b" waits: 0 fits


# -- 2. drop-oldest refuses the newest message when a signal is at the head ----------------


async def test_drop_oldest_evicts_the_oldest_user_message_not_the_new_one(
    system: ActorSystem, clock: ManualClock
) -> None:
    probe = Probe(system)
    gate: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    class Busy(Actor):
        def started(self) -> None:
            self.ctx.timers.start_single("t", "tick", 1.0)

        async def receive(self, msg: object) -> None:
            if msg == "block":
                await gate
            else:
                probe.ref.tell(msg)

    ref = system.spawn(Busy, capacity=2, overflow=MailboxOverflow.DROP_OLDEST)
    ref.tell("block")
    await quiesce(system)
    clock.advance(1.0)  # the timer's signal is now at the head of the mailbox
    for m in ("m1", "m2", "m3", "m4"):
        ref.tell(m)
    gate.set_result(None)
    await quiesce(system)
    got = [await probe.receive() for _ in range(probe.pending())]
    assert "m4" in got, got  # observed: ['tick', 'm1']


# -- 3. spawn accepts capacity/throughput that wedge the actor ----------------------------


class Echo(Actor):
    def receive(self, msg: object) -> object:
        return msg


async def test_spawn_refuses_a_zero_throughput(system: ActorSystem) -> None:
    with pytest.raises(ValueError, match="throughput"):  # observed: accepted; spins forever
        system.spawn(Echo, throughput=0)


async def test_spawn_refuses_a_zero_capacity(system: ActorSystem) -> None:
    with pytest.raises(ValueError, match="capacity"):  # observed: accepted; send() hangs
        system.spawn(Echo, capacity=0)


# -- 4/5. stash ------------------------------------------------------------------------------


class Gate(Actor):
    """Stashes everything until "open", then unstashes; reports to the probe."""

    def __init__(self, probe: ActorRef, open_: bool = False) -> None:
        self.probe = probe
        self.open = open_

    def receive(self, msg: object) -> object:
        if msg == "open":
            self.open = True
            self.ctx.unstash_all()
            return None
        if msg == "close":
            self.open = False
            return None
        if msg == "boom":
            raise ValueError("boom")
        if not self.open:
            self.ctx.stash()
            return None
        self.probe.tell(msg)
        return msg


async def test_a_stashed_terminated_is_delivered_after_unstash(system: ActorSystem) -> None:
    probe = Probe(system)
    target = system.spawn(lambda: Gate(probe.ref))

    class Watcher(Gate):
        def started(self) -> None:
            self.ctx.watch(target)

    watcher = system.spawn(lambda: Watcher(probe.ref))
    await quiesce(system)
    await target.stop()
    await quiesce(system)
    watcher.tell("open")
    await quiesce(system)
    assert probe.pending() == 1, "the stashed Terminated was dropped on unstash"
    assert await probe.receive() == Terminated(target)


async def test_a_stashed_single_timer_message_is_delivered_after_unstash(
    system: ActorSystem, clock: ManualClock
) -> None:
    probe = Probe(system)

    class TimedGate(Gate):
        def started(self) -> None:
            self.ctx.timers.start_single("k", "tick", 1.0)

    ref = system.spawn(lambda: TimedGate(probe.ref))
    await quiesce(system)
    clock.advance(1.0)
    await quiesce(system)
    ref.tell("open")
    await quiesce(system)
    assert probe.pending() == 1, "the stashed timer message was dropped on unstash"
    assert await probe.receive() == "tick"


async def test_messages_stashed_by_a_failed_instance_reach_the_new_one(
    system: ActorSystem,
) -> None:
    """Akka's Stash.preRestart unstashes all: a restart must not strand stashed messages."""
    probe = Probe(system)

    class Parent(Actor):
        supervisor_strategy = SupervisorStrategy.restart()

        def __init__(self) -> None:
            self.child = self.ctx.spawn(lambda: Gate(probe.ref, open_=True), name="child")

        def receive(self, msg: object) -> object:
            return self.child

    parent = system.spawn(Parent)
    child = await parent.ask("child")
    child.tell("close")
    pending = asyncio.ensure_future(child.ask("hello", timeout=1.0))
    await quiesce(system)
    child.tell("boom")  # restart; the fresh instance is open and has no reason to unstash
    await quiesce(system)
    assert await child.ask("after") == "after"
    answered = pending.done()
    pending.cancel()
    result = (await asyncio.gather(pending, return_exceptions=True))[0]
    assert answered, "the stashed ask is stranded until AskTimeout"
    assert result == "hello"


async def test_stashing_the_same_message_twice_does_not_duplicate_it(system: ActorSystem) -> None:
    probe = Probe(system)

    class Twice(Actor):
        def __init__(self) -> None:
            self.open = False

        def receive(self, msg: object) -> None:
            if msg == "open":
                self.open = True
                self.ctx.unstash_all()
            elif not self.open:
                self.ctx.stash()
                self.ctx.stash()  # must raise (Akka: "can't stash the same message twice")
            else:
                probe.ref.tell(msg)

    ref = system.spawn(Twice)
    ref.tell("m")
    ref.tell("open")
    await quiesce(system)
    got = [await probe.receive() for _ in range(probe.pending())]
    assert got == ["m"], got  # observed: ['m', 'm']


async def test_stash_outside_a_message_is_refused(system: ActorSystem) -> None:
    probe = Probe(system)

    class NoCurrent(Actor):
        def started(self) -> None:
            try:
                self.ctx.stash()  # there is no current message
            except Exception as exc:
                probe.ref.tell(type(exc).__name__)
            self.ctx.unstash_all()

        def receive(self, msg: object) -> None:
            probe.ref.tell(("received", msg))

    system.spawn(NoCurrent)
    await quiesce(system)
    assert await probe.receive() != ("received", None), "stash() enqueued None"


# -- 6. restart of a busy actor: the old handler's cancellation corrupts the new incarnation --


async def test_a_restarted_busy_actor_never_runs_two_handlers_at_once(clock: ManualClock) -> None:
    settings = Settings.testing(clock=clock, guardian_strategy=SupervisorStrategy.restart())
    async with ActorSystem("t", settings) as system:
        forever: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        overlaps: list[object] = []
        generation = 0

        class Child(Actor):
            def receive(self, msg: object) -> None:
                raise ValueError("child failed")

        class Parent(Actor):
            supervisor_strategy = SupervisorStrategy.escalate()

            def __init__(self) -> None:
                nonlocal generation
                generation += 1
                self.gen = generation
                self.running = 0
                self.child = self.ctx.spawn(Child, name="child")

            async def receive(self, msg: object) -> object:
                self.running += 1
                if self.running > 1:
                    overlaps.append((self.gen, msg))
                try:
                    if msg == "wait":
                        await forever
                    elif msg == "child":
                        return self.child
                    else:
                        for _ in range(10):
                            await asyncio.sleep(0)
                    return msg
                finally:
                    for _ in range(5):  # asynchronous cleanup, e.g. closing a connection
                        await asyncio.sleep(0)
                    self.running -= 1

        parent = system.spawn(Parent, name="p")
        child = await parent.ask("child")
        parent.tell("wait")
        await quiesce(system)
        child.tell("boom")  # escalates: the guardian restarts the busy parent
        parent.tell("m1")
        parent.tell("m2")
        await quiesce(system)
        assert generation == 2
        assert overlaps == [], f"one instance ran two handlers at once: {overlaps}"
        forever.cancel()


# -- 7. a failure escalated by a stopping child re-enters restart of a suspended parent ------


async def test_a_failure_reported_while_suspended_does_not_restart_twice(
    clock: ManualClock,
) -> None:
    strategy = SupervisorStrategy.restart(backoff=Backoff(10.0, 10.0, jitter=0))
    calls: list[str] = []
    settings = Settings.testing(clock=clock, guardian_strategy=strategy)
    async with ActorSystem("t", settings) as system:

        class Child(Actor):
            async def receive(self, msg: object) -> None:
                try:
                    await asyncio.get_running_loop().create_future()
                except asyncio.CancelledError:
                    raise RuntimeError("cleanup failed") from None

        class Parent(Actor):
            supervisor_strategy = SupervisorStrategy.escalate()

            def __init__(self) -> None:
                calls.append("created")
                self.child = self.ctx.spawn(Child, name="c")

            def receive(self, msg: object) -> None:
                if msg == "go":
                    self.child.tell("wait")
                elif msg == "boom":
                    raise ValueError("parent")

            def before_restart(self, error: BaseException, message: object) -> None:
                calls.append(f"before_restart:{error}")

        parent = system.spawn(Parent)
        parent.tell("go")
        await quiesce(system)
        parent.tell("boom")  # suspended for 10 s; its busy child is cancelled and fails
        await quiesce(system)
        # observed: [..., 'before_restart:cleanup failed'] and a second, stale backoff timer
        assert calls == ["created", "before_restart:parent"], calls


# -- 8. leaks --------------------------------------------------------------------------------


async def test_an_idle_actor_does_not_pin_the_message_its_async_handler_failed_on(
    system: ActorSystem, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.CRITICAL + 1, logger="shoal.runtime")  # records pin tracebacks

    class Payload:
        pass

    class Failing(Actor):
        async def receive(self, msg: object) -> None:
            raise ValueError("no")

    ref = system.spawn(Failing)
    payload = Payload()
    alive = weakref.ref(payload)
    ref.tell(payload)
    del payload
    await quiesce(system)
    gc.collect()
    assert alive() is None, "idle actor still holds the failed message (ctx._current)"


async def test_a_stopped_actor_does_not_pin_its_failed_instance(
    system: ActorSystem, clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.CRITICAL + 1, logger="shoal.runtime")  # records pin tracebacks
    instances: list[weakref.ref[Actor]] = []

    class Failing(Actor):
        def __init__(self) -> None:
            instances.append(weakref.ref(self))

        def receive(self, msg: object) -> None:
            raise ValueError("boom")

    class Parent(Actor):
        supervisor_strategy = SupervisorStrategy.restart(backoff=Backoff(min_delay=10.0))

        def receive(self, msg: object) -> ActorRef:
            return self.ctx.spawn(Failing, name="c")

    parent = system.spawn(Parent)
    child = await parent.ask("spawn")
    child.tell("boom")
    await quiesce(system)
    await child.stop()  # stop during the backoff; `child` is still held (a dict of workers)
    gc.collect()
    assert instances[0]() is None, "stopped cell pins the failed actor via pending_error"


async def test_a_timer_started_in_stopped_is_not_left_running(
    system: ActorSystem, clock: ManualClock
) -> None:
    class Leaky(Actor):
        def receive(self, msg: object) -> None:
            pass

        def stopped(self) -> None:
            self.ctx.timers.start_periodic("tick", "tick", 1.0)

    ref = system.spawn(Leaky)
    await quiesce(system)
    await ref.stop()
    clock.advance(10.0)
    assert clock.pending == 0, "a dead actor's periodic timer keeps re-arming forever"


async def test_ask_timeout_queues_do_not_grow_with_distinct_timeouts(
    system: ActorSystem, clock: ManualClock
) -> None:
    ref = system.spawn(Echo)
    for i in range(200):
        assert await ref.ask(i, timeout=1.0 + i / 1000) == i  # e.g. "time left" timeouts
    clock.advance(5.0)  # every deadline passed, nothing in flight
    queues = system._ask_timeouts._queues
    assert len(queues) <= 1, f"{len(queues)} queues kept (and scanned on every fire)"


# -- 9. deep trees ---------------------------------------------------------------------------


async def test_stopping_a_deep_chain_of_actors_works() -> None:
    class Link(Actor):
        def receive(self, depth: int) -> None:
            if depth:
                self.ctx.spawn(Link, name="n").tell(depth - 1)

    asyncio.get_running_loop().set_exception_handler(lambda _l, _c: None)
    system = ActorSystem("deep", Settings.testing(shutdown_timeout=0.5))  # real clock
    try:
        top = system.spawn(Link, name="chain")
        top.tell(400)  # built by messages, one level per turn
        await quiesce(system)
        stop = top.stop()
        await quiesce(system)  # a fix may take a loop turn per level
        assert stop.done(), "RecursionError in _finalize: the stop never completes"
    finally:
        await system.shutdown()


# -- 10. asks that hang forever after shutdown -----------------------------------------------


async def test_an_ask_to_an_actor_that_outlived_shutdown_still_times_out() -> None:
    clock = ManualClock()
    system = ActorSystem("t", Settings.testing(clock=clock, shutdown_timeout=1.0))
    never: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    class Stuck(Actor):
        def receive(self, msg: object) -> object:
            return msg

        async def stopped(self) -> None:
            await never  # e.g. a hung close()

    ref = system.spawn(Stuck)
    assert await ref.ask("a", timeout=50.0) == "a"  # leaves a clock callback armed for t=50
    shutdown = asyncio.ensure_future(system.shutdown())
    await quiesce(system)
    clock.advance(1.0)  # user actors did not stop in time
    await quiesce(system)
    clock.advance(1.0)
    await quiesce(system)
    assert shutdown.done()
    late = asyncio.ensure_future(ref.ask("c", timeout=100.0))  # its mailbox is still open
    await quiesce(system)
    clock.advance(1000.0)
    await quiesce(system)
    done = late.done()
    late.cancel()
    never.set_result(None)
    await quiesce(system)
    assert done, "ask hangs forever: shutdown closed the ask timeouts"


# -- 11. BaseException in an async handler wedges the actor ------------------------------------


class Fatal(BaseException):
    """e.g. pytest's Failed/Skipped, or a library's BaseException subclass."""


async def test_an_async_handler_raising_a_base_exception_does_not_wedge_the_actor() -> None:
    class Wedge(Actor):
        async def receive(self, msg: object) -> object:
            if msg == "fatal":
                raise Fatal
            return msg

    asyncio.get_running_loop().set_exception_handler(lambda _l, _c: None)
    system = ActorSystem("t", Settings.testing(shutdown_timeout=0.2))  # real clock
    try:
        ref = system.spawn(Wedge)
        ref.tell("fatal")
        await quiesce(system)
        stop = ref.stop()
        await quiesce(system)
        assert stop.done(), "actor stuck BUSY forever: stop() never completes"
    finally:
        await system.shutdown()


# -- 12. lifecycle state overwritten ---------------------------------------------------------


async def test_stopped_is_not_called_without_started(system: ActorSystem) -> None:
    calls: list[str] = []

    class Hooks(Actor):
        def started(self) -> None:
            calls.append("started")

        def stopped(self) -> None:
            calls.append("stopped")

        def receive(self, msg: object) -> None:
            pass

    ref = system.spawn(Hooks)
    await ref.stop()  # before its first turn
    assert calls in ([], ["started", "stopped"]), calls  # observed: ['stopped']


async def test_stop_requested_in_init_is_not_undone_by_spawn(system: ActorSystem) -> None:
    class Idle(Actor):
        def receive(self, msg: object) -> None:
            pass

    class Quitter(Actor):
        def __init__(self) -> None:
            self.ctx.spawn(Idle, name="helper")
            self.ctx.stop()  # e.g. invalid configuration

        def receive(self, msg: object) -> object:
            return "still running"

    ref = system.spawn(Quitter)
    await quiesce(system)
    assert not ref.is_alive, "the actor asked to stop in __init__ keeps running"


# -- 13. serialization -----------------------------------------------------------------------


def test_a_manifest_cannot_make_shoal_import_a_module() -> None:
    code = (
        "import sys\n"
        "from shoal.runtime import ActorRef, Serialization, SerializationError\n"
        "s = Serialization(ActorRef, lambda p: None)\n"
        "try:\n"
        "    s.deserialize(4, 'concurrent.futures:ProcessPoolExecutor', b'\\x80')\n"
        "except SerializationError:\n"
        "    pass\n"
        "print('concurrent.futures.process' in sys.modules, 'multiprocessing' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    assert out == ["False", "False"], f"decoding a manifest imported modules: {out}"


def test_deeply_nested_primitive_payload_is_a_serialization_error(system: ActorSystem) -> None:
    payload = b"\x91" * 100_000 + b"\xc0"  # [[[[...None...]]]]
    with pytest.raises(SerializationError):  # observed: RecursionError
        system.serialization.deserialize(2, "", payload)


@dataclasses.dataclass(frozen=True)
class NotAMessage:
    secret: str


def test_unregistered_types_nested_in_primitives_are_refused(system: ActorSystem) -> None:
    with pytest.raises(SerializationError):  # observed: encoded as {"x": {"secret": "s"}}
        system.serialization.serialize({"x": NotAMessage("s")})


# -- semantics adopted from the review -------------------------------------------------------


async def test_a_failed_instance_is_stopped_before_its_replacement_starts(
    system: ActorSystem,
) -> None:
    calls: list[str] = []

    class Resource(Actor):
        def __init__(self) -> None:
            self.n = len([c for c in calls if c.startswith("started")])

        async def started(self) -> None:
            calls.append(f"started {self.n}")

        async def stopped(self) -> None:
            await asyncio.sleep(0)  # e.g. closing a connection
            calls.append(f"stopped {self.n}")

        def receive(self, msg: object) -> object:
            if msg == "boom":
                raise ValueError("boom")
            return self.n

    class Parent(Actor):
        supervisor_strategy = SupervisorStrategy.restart()

        def __init__(self) -> None:
            self.child = self.ctx.spawn(Resource)

        def receive(self, msg: object) -> object:
            return self.child

    child = await system.spawn(Parent).ask("?")
    child.tell("boom")
    assert await child.ask("n") == 1
    await child.stop()
    assert calls == ["started 0", "stopped 0", "started 1", "stopped 1"]


async def test_a_failing_started_stops_the_actor_under_the_default_strategy(
    system: ActorSystem, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.CRITICAL + 1, logger="shoal.runtime")

    class Unready(Actor):
        def started(self) -> None:
            raise RuntimeError("cannot connect")

        def receive(self, msg: object) -> None:
            pass

    ref = system.spawn(Unready)
    probe = Probe(system)

    class Watch(Actor):
        def __init__(self) -> None:
            self.ctx.watch(ref)

        def receive(self, msg: object) -> None:
            probe.ref.tell(msg)

    system.spawn(Watch)
    assert await probe.receive() == Terminated(ref)


async def test_send_to_a_stopping_actor_does_not_wait_forever(system: ActorSystem) -> None:
    never: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    class SlowStop(Actor):
        def receive(self, msg: object) -> None:
            pass

        async def stopped(self) -> None:
            await never

    gate = asyncio.Event()

    class Blocker(SlowStop):
        async def receive(self, msg: object) -> None:
            await gate.wait()

    ref = system.spawn(Blocker, capacity=1)
    ref.tell("in handler")
    await quiesce(system)
    ref.tell("queued")
    waiting = asyncio.ensure_future(ref.send("more"))
    await quiesce(system)
    assert not waiting.done()
    ref.stop()
    await quiesce(system)
    assert waiting.done(), "a sender waited on an actor that will never drain"
    never.set_result(None)


async def test_ask_timeouts_must_be_positive_and_finite(system: ActorSystem) -> None:
    ref = system.spawn(Echo)
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="timeout"):
            await ref.ask("x", timeout=bad)


async def test_dot_names_are_refused(system: ActorSystem) -> None:
    for bad in (".", ".."):
        with pytest.raises(ValueError, match="invalid actor name"):
            system.spawn(Echo, name=bad)


async def test_an_actor_telling_itself_is_run_once_per_loop_turn(system: ActorSystem) -> None:
    class Spinner(Actor):
        def receive(self, msg: object) -> None:
            self.ref.tell(msg)

    ref = system.spawn(Spinner, throughput=1)
    ref.tell("again")
    for _ in range(12):  # counting turns is the point here: one run per turn
        await asyncio.sleep(0)
    processed = system.stats()["messages_processed"]
    assert processed <= 13, f"{processed} messages in 12 turns: runs double every turn"
    await ref.stop()
