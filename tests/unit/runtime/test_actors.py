"""Messaging basics: tell, ask, send, ordering, async handlers, spawning, paths."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from shoal import message
from shoal.runtime import (
    Actor,
    ActorInitializationError,
    ActorPath,
    ActorSystem,
    DeadLetter,
    InvalidActorNameError,
    MailboxFullError,
    MailboxOverflow,
    Settings,
    SystemNotRunningError,
    run,
)
from shoal.runtime._run import loop_name
from shoal.runtime.testing import ManualClock, Probe, quiesce


@message
@dataclass(frozen=True, slots=True)
class Add:
    amount: int


@message
@dataclass(frozen=True, slots=True)
class Get: ...


@contextlib.contextmanager
def count_tasks() -> Iterator[list[int]]:
    """Count the tasks the running loop creates inside the block (into ``[n]``)."""
    loop = asyncio.get_running_loop()
    default_factory = loop.get_task_factory()
    created = [0]

    def counting_factory(
        loop: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any
    ) -> asyncio.Future[Any]:
        created[0] += 1
        if default_factory is not None:
            return default_factory(loop, coro, **kwargs)  # type: ignore[arg-type]
        return asyncio.Task(coro, loop=loop, **kwargs)

    loop.set_task_factory(counting_factory)  # type: ignore[arg-type]
    try:
        yield created
    finally:
        loop.set_task_factory(default_factory)


class Counter(Actor):
    def __init__(self) -> None:
        self.total = 0

    def receive(self, msg: object) -> int | None:
        match msg:
            case Add(amount):
                self.total += amount
            case Get():
                return self.total
        return None


class Recorder(Actor):
    def __init__(self) -> None:
        self.seen: list[object] = []

    def receive(self, msg: object) -> object:
        if msg == "dump":
            return list(self.seen)
        self.seen.append(msg)
        return None


async def test_tell_then_ask_sees_every_earlier_message(system: ActorSystem) -> None:
    counter = system.spawn(Counter, name="counter")
    for i in range(1, 101):
        counter.tell(Add(i))
    assert await counter.ask(Get()) == 5050


async def test_messages_from_one_sender_arrive_in_order(system: ActorSystem) -> None:
    recorder = system.spawn(Recorder)
    for i in range(5000):  # many turns of the default throughput
        recorder.tell(i)
    assert await recorder.ask("dump") == list(range(5000))


async def test_async_receive_handles_one_message_at_a_time(system: ActorSystem) -> None:
    gate = asyncio.Event()
    log: list[str] = []

    class Slow(Actor):
        async def receive(self, msg: object) -> object:
            log.append(f"start {msg}")
            if msg == 1:
                await gate.wait()
            log.append(f"end {msg}")
            return msg

    slow = system.spawn(Slow)
    first = asyncio.ensure_future(slow.ask(1))
    second = asyncio.ensure_future(slow.ask(2))
    await quiesce(system)
    assert log == ["start 1"]
    gate.set()
    assert await first == 1
    assert await second == 2
    assert log == ["start 1", "end 1", "start 2", "end 2"]


async def test_a_plain_receive_may_return_a_coroutine(system: ActorSystem) -> None:
    class Delegating(Actor):
        def receive(self, msg: object) -> object:
            return self.handle(msg)

        async def handle(self, msg: object) -> object:
            await asyncio.sleep(0)
            return ("handled", msg)

    ref = system.spawn(Delegating)
    assert await ref.ask(7) == ("handled", 7)


async def test_sender_is_available_and_replies_reach_it(system: ActorSystem) -> None:
    class Echo(Actor):
        def receive(self, msg: object) -> None:
            sender = self.ctx.sender
            assert sender is not None
            sender.tell(("echo", msg), self.ref)

    echo = system.spawn(Echo, name="echo")
    probe = Probe(system)
    echo.tell("hi", probe.ref)
    assert await probe.receive() == ("echo", "hi")
    assert probe.sender == echo


async def test_ctx_sender_of_an_ask_answers_it(system: ActorSystem) -> None:
    class Answerer(Actor):
        def receive(self, msg: object) -> None:
            sender = self.ctx.sender
            assert sender is not None
            sender.tell(f"re: {msg}")

    ref = system.spawn(Answerer)
    # The tell through ctx.sender answers first; the None return value is then ignored.
    assert await ref.ask("q") == "re: q"


async def test_reply_later_answers_after_other_messages(system: ActorSystem) -> None:
    class Deferred(Actor):
        def __init__(self) -> None:
            self.pending: list[object] = []

        def receive(self, msg: object) -> object:
            if msg == "wait":
                self.pending.append(self.ctx.reply_later())
                return "ignored"
            if msg == "release":
                for reply in self.pending:
                    reply.send("released")  # type: ignore[attr-defined]
                return "done"
            return None

    ref = system.spawn(Deferred)
    waiting = asyncio.ensure_future(ref.ask("wait"))
    await quiesce(system)
    assert not waiting.done()
    assert await ref.ask("release") == "done"
    assert await waiting == "released"


async def test_forward_keeps_the_original_asker(system: ActorSystem) -> None:
    class Doubler(Actor):
        def receive(self, msg: object) -> object:
            assert isinstance(msg, int)
            return msg * 2

    class Router(Actor):
        def __init__(self) -> None:
            self.worker = self.ctx.spawn(Doubler, name="worker")

        def receive(self, msg: object) -> None:
            self.ctx.forward(self.worker, msg)

    router = system.spawn(Router)
    assert await router.ask(21) == 42


async def test_send_waits_for_room_in_a_full_mailbox(system: ActorSystem) -> None:
    gate = asyncio.Event()

    class Blocked(Actor):
        def __init__(self) -> None:
            self.seen: list[object] = []

        async def receive(self, msg: object) -> object:
            if msg == "dump":
                return self.seen
            await gate.wait()
            self.seen.append(msg)
            return None

    ref = system.spawn(Blocked, capacity=2)
    await ref.send(0)
    await quiesce(system)  # 0 is being handled; the mailbox is empty again
    await ref.send(1)
    await ref.send(2)
    third = asyncio.ensure_future(ref.send(3))
    await quiesce(system)
    assert not third.done(), "send must wait while the mailbox is full"
    gate.set()
    await third
    assert await ref.ask("dump") == [0, 1, 2, 3]


async def test_tell_to_a_full_mailbox_is_a_dead_letter_not_an_error(system: ActorSystem) -> None:
    gate = asyncio.Event()

    class Blocked(Actor):
        async def receive(self, msg: object) -> None:
            await gate.wait()

    ref = system.spawn(Blocked, capacity=1)
    ref.tell("handled")
    await quiesce(system)
    ref.tell("queued")
    before = system.stats()["dead_letters"]
    ref.tell("overflow")
    assert system.stats()["dead_letters"] == before + 1
    gate.set()


async def test_children_have_paths_under_their_parent(system: ActorSystem) -> None:
    class Parent(Actor):
        def __init__(self) -> None:
            self.child = self.ctx.spawn(Counter, name="kid")
            self.anon = self.ctx.spawn(Counter)

        def receive(self, msg: object) -> object:
            return (self.child, self.anon, self.ctx.children)

    parent = system.spawn(Parent, name="parent")
    child, anon, children = await parent.ask("?")
    assert str(child.path) == "shoal://test/user/parent/kid"
    assert anon.path.name.startswith("$")
    assert set(children) == {child, anon}
    assert system.resolve("shoal://test/user/parent/kid") is child
    assert ActorPath.parse(str(child.path)) == child.path


async def test_names_must_be_valid_and_unique(system: ActorSystem) -> None:
    system.spawn(Counter, name="one")
    with pytest.raises(InvalidActorNameError):
        system.spawn(Counter, name="one")
    for bad in ["", "a/b", "$reserved", "has space"]:
        with pytest.raises(InvalidActorNameError):
            system.spawn(Counter, name=bad)


async def test_a_stopped_actors_name_can_be_reused(system: ActorSystem) -> None:
    first = system.spawn(Counter, name="again")
    await first.stop()
    second = system.spawn(Counter, name="again")
    second.tell(Add(1))
    assert await second.ask(Get()) == 1


async def test_factory_errors_raise_at_spawn(system: ActorSystem) -> None:
    class Broken(Actor):
        def __init__(self) -> None:
            raise RuntimeError("no config")

    with pytest.raises(ActorInitializationError, match="no config"):
        system.spawn(Broken)
    with pytest.raises(ActorInitializationError, match="not an Actor"):
        system.spawn(object)  # type: ignore[arg-type]


async def test_ctx_is_usable_in_init(system: ActorSystem) -> None:
    class SelfAware(Actor):
        def __init__(self) -> None:
            self.me = self.ctx.ref

        def receive(self, msg: object) -> object:
            return self.me

    ref = system.spawn(SelfAware)
    assert await ref.ask("who") == ref


async def test_started_runs_before_the_first_message(system: ActorSystem) -> None:
    class Initialising(Actor):
        def __init__(self) -> None:
            self.ready = False

        async def started(self) -> None:
            await asyncio.sleep(0)
            self.ready = True

        def receive(self, msg: object) -> object:
            return self.ready

    ref = system.spawn(Initialising)
    assert await ref.ask("ready?") is True


async def test_resolving_unknown_paths_gives_dead_letter_refs(system: ActorSystem) -> None:
    ghost = system.resolve("shoal://test/user/nobody")
    before = system.stats()["dead_letters"]
    ghost.tell("hello")
    assert system.stats()["dead_letters"] == before + 1
    with pytest.raises(ValueError, match="not a shoal actor path"):
        system.resolve("http://nope")


async def test_spawn_after_shutdown_fails_clearly() -> None:
    system = ActorSystem("closed", Settings.testing())
    await system.shutdown()
    with pytest.raises(SystemNotRunningError):
        system.spawn(Counter)


async def test_systems_in_one_process_share_nothing() -> None:
    async with ActorSystem("a") as a, ActorSystem("b") as b:
        a.spawn(Counter, name="c").tell(Add(1))
        b.spawn(Counter, name="c").tell(Add(2))
        assert await a.resolve("shoal://a/user/c").ask(Get()) == 1
        assert await b.resolve("shoal://b/user/c").ask(Get()) == 2


def test_a_system_needs_a_running_loop() -> None:
    with pytest.raises(SystemNotRunningError):
        ActorSystem("no-loop")


async def test_plain_receive_creates_no_task_per_message(system: ActorSystem) -> None:
    counter = system.spawn(Counter)
    await counter.ask(Get())
    with count_tasks() as created:
        for _ in range(10_000):
            counter.tell(Add(1))
        await quiesce(system)
    assert created == [0]
    assert await counter.ask(Get()) == 10_000


async def test_drop_oldest_overflow_keeps_the_newest_messages(system: ActorSystem) -> None:
    gate = asyncio.Event()
    probe = Probe(system)
    system.event_stream.subscribe(probe.ref, DeadLetter)

    class Latest(Actor):
        def __init__(self) -> None:
            self.seen: list[object] = []

        async def receive(self, msg: object) -> object:
            if msg == "dump":
                return self.seen
            if msg == "block":
                await gate.wait()
            else:
                self.seen.append(msg)
            return None

    ref = system.spawn(Latest, capacity=3, overflow=MailboxOverflow.DROP_OLDEST)
    ref.tell("block")
    await quiesce(system)
    for i in range(5):
        ref.tell(i)
    evicted = [await probe.receive(), await probe.receive()]
    assert [d.message for d in evicted if isinstance(d, DeadLetter)] == [0, 1]
    gate.set()
    await quiesce(system)  # drain first: with this policy the ask itself would evict 2
    assert await ref.ask("dump", timeout=1.0) == [2, 3, 4]


async def test_ask_to_a_full_mailbox_fails_fast(system: ActorSystem) -> None:
    gate = asyncio.Event()

    class Blocked(Actor):
        async def receive(self, msg: object) -> None:
            await gate.wait()

    ref = system.spawn(Blocked, capacity=1)
    ref.tell("in handler")
    await quiesce(system)
    ref.tell("queued")
    with pytest.raises(MailboxFullError):
        await ref.ask("one too many")
    gate.set()


async def test_shutdown_gives_up_on_actors_that_never_stop_after_the_timeout() -> None:
    clock = ManualClock()
    never = asyncio.Event()

    class Stubborn(Actor):
        def receive(self, msg: object) -> None:
            pass

        async def stopped(self) -> None:
            await never.wait()

    system = ActorSystem("stubborn", Settings.testing(clock=clock, shutdown_timeout=5.0))
    system.spawn(Stubborn)
    shutting = asyncio.ensure_future(system.shutdown())
    await quiesce(system)
    assert not shutting.done()
    clock.advance(5.0)
    await quiesce(system)
    clock.advance(5.0)  # the system guardian gets its own timeout
    await asyncio.wait_for(shutting, 5.0)


def test_run_uses_the_fastest_loop() -> None:
    async def which() -> str:
        return type(asyncio.get_running_loop()).__module__

    assert run(which()).startswith("uvloop" if loop_name() == "uvloop" else "asyncio")


async def test_a_burst_to_an_async_actor_is_handled_in_one_task_in_order(
    system: ActorSystem,
) -> None:
    class Mixed(Actor):
        def __init__(self) -> None:
            self.seen: list[object] = []

        def receive(self, msg: object) -> object:
            if isinstance(msg, int) and msg % 3 == 0:
                return self.slow(msg)  # async for some messages, plain for others
            if msg == "dump":
                return list(self.seen)
            self.seen.append(msg)
            return None

        async def slow(self, msg: int) -> None:
            await asyncio.sleep(0)
            self.seen.append(msg)

    ref = system.spawn(Mixed, throughput=1000)
    await ref.ask("dump")
    with count_tasks() as created:
        for i in range(300):
            ref.tell(i)
        assert await ref.ask("dump") == list(range(300))
    assert created == [1], "one task serves the whole burst"
