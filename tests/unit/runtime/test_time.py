"""Timers, receive timeouts and ask timeouts, all on a manual clock."""

from __future__ import annotations

import asyncio

import pytest

from shoal.runtime import Actor, ActorSystem, AskTimeout, ReceiveTimeout
from shoal.runtime.testing import ManualClock, Probe, quiesce


class Timed(Actor):
    """Starts/cancels timers on command and reports what fires to a probe."""

    def __init__(self, probe: Probe) -> None:
        self.probe = probe

    def receive(self, msg: object) -> object:
        match msg:
            case ("single", key, delay):
                self.ctx.timers.start_single(key, ("fired", key), delay)
            case ("periodic", key, interval):
                self.ctx.timers.start_periodic(key, ("tick", key), interval)
            case ("cancel", key):
                self.ctx.timers.cancel(key)
            case ("active", key):
                return self.ctx.timers.is_active(key)
            case _:
                self.probe.ref.tell(msg)
        return None


async def test_single_timer_fires_once_at_its_deadline(
    system: ActorSystem, clock: ManualClock
) -> None:
    probe = Probe(system)
    ref = system.spawn(lambda: Timed(probe))
    await ref.ask(("single", "k", 2.0))
    clock.advance(1.999)
    await quiesce(system)
    assert probe.pending() == 0
    assert await ref.ask(("active", "k")) is True
    clock.advance(0.001)
    assert await probe.receive() == ("fired", "k")
    assert await ref.ask(("active", "k")) is False
    clock.advance(10)
    await quiesce(system)
    assert probe.pending() == 0


async def test_periodic_timer_ticks_until_cancelled(
    system: ActorSystem, clock: ManualClock
) -> None:
    probe = Probe(system)
    ref = system.spawn(lambda: Timed(probe))
    await ref.ask(("periodic", "p", 1.0))
    for _ in range(3):
        clock.advance(1.0)
        assert await probe.receive() == ("tick", "p")
    await ref.ask(("cancel", "p"))
    clock.advance(5.0)
    await quiesce(system)
    assert probe.pending() == 0


async def test_restarting_a_key_replaces_the_timer(system: ActorSystem, clock: ManualClock) -> None:
    probe = Probe(system)
    ref = system.spawn(lambda: Timed(probe))
    await ref.ask(("single", "k", 1.0))
    await ref.ask(("single", "k", 3.0))
    clock.advance(2.0)
    await quiesce(system)
    assert probe.pending() == 0
    clock.advance(1.0)
    assert await probe.receive() == ("fired", "k")


async def test_a_cancelled_timers_enqueued_message_is_not_delivered(
    system: ActorSystem, clock: ManualClock
) -> None:
    probe = Probe(system)
    gate = asyncio.Event()

    class Busy(Actor):
        async def receive(self, msg: object) -> None:
            if msg == "arm":
                self.ctx.timers.start_single("k", "fired", 1.0)
            elif msg == "block":
                await gate.wait()
                self.ctx.timers.cancel("k")  # the fire is already in the mailbox
            else:
                probe.ref.tell(msg)

    ref = system.spawn(Busy)
    ref.tell("arm")
    ref.tell("block")
    await quiesce(system)
    clock.advance(1.0)  # fires while the actor is blocked
    await quiesce(system)
    gate.set()
    ref.tell("after")
    assert await probe.receive() == "after"
    await quiesce(system)
    assert probe.pending() == 0


async def test_timers_are_cancelled_when_the_actor_stops(
    system: ActorSystem, clock: ManualClock
) -> None:
    probe = Probe(system)
    ref = system.spawn(lambda: Timed(probe))
    await ref.ask(("periodic", "p", 1.0))
    await ref.stop()
    clock.advance(10.0)  # also lets the ask-timeout sweep of the ask above run out
    await quiesce(system)
    assert probe.pending() == 0
    assert clock.pending == 0


async def test_receive_timeout_fires_after_idleness(
    system: ActorSystem, clock: ManualClock
) -> None:
    probe = Probe(system)

    class Sleepy(Actor):
        def __init__(self) -> None:
            self.ctx.set_receive_timeout(5.0)

        def receive(self, msg: object) -> None:
            if msg == "stop-timeout":
                self.ctx.set_receive_timeout(None)
            probe.ref.tell(msg)

    ref = system.spawn(Sleepy)
    clock.advance(3.0)
    ref.tell("activity")
    assert await probe.receive() == "activity"
    clock.advance(3.0)  # 3 s since the activity: not yet
    await quiesce(system)
    assert probe.pending() == 0
    clock.advance(2.0)
    assert await probe.receive() == ReceiveTimeout()
    clock.advance(5.0)  # it repeats for every idle period
    assert await probe.receive() == ReceiveTimeout()
    ref.tell("stop-timeout")
    assert await probe.receive() == "stop-timeout"
    clock.advance(60.0)
    await quiesce(system)
    assert probe.pending() == 0


async def test_ask_times_out_on_the_clock(system: ActorSystem, clock: ManualClock) -> None:
    class Silent(Actor):
        def receive(self, msg: object) -> None:
            self.ctx.reply_later()  # never answered

    ref = system.spawn(Silent)
    pending = asyncio.ensure_future(ref.ask("hello", timeout=3.0))
    await quiesce(system)
    clock.advance(2.9)
    await quiesce(system)
    assert not pending.done()
    clock.advance(0.1)
    with pytest.raises(AskTimeout, match=r"within 3\.0 s"):
        await pending


async def test_many_asks_with_mixed_timeouts_expire_in_deadline_order(
    system: ActorSystem, clock: ManualClock
) -> None:
    class Silent(Actor):
        def receive(self, msg: object) -> None:
            self.ctx.reply_later()

    ref = system.spawn(Silent)
    asks = {t: asyncio.ensure_future(ref.ask(t, timeout=t)) for t in (5.0, 1.0, 3.0)}
    await quiesce(system)
    for t in (1.0, 3.0, 5.0):
        clock.advance(t - clock.now())
        await quiesce(system)
        assert [k for k, f in asks.items() if f.done()] == [k for k in asks if k <= t]
    for future in asks.values():
        with pytest.raises(AskTimeout):
            await future


async def test_a_late_reply_after_timeout_is_ignored(
    system: ActorSystem, clock: ManualClock
) -> None:
    class Late(Actor):
        def __init__(self) -> None:
            self.replies: list[object] = []

        def receive(self, msg: object) -> None:
            if msg == "release":
                for reply in self.replies:
                    reply.send("late")  # type: ignore[attr-defined]
            else:
                self.replies.append(self.ctx.reply_later())

    ref = system.spawn(Late)
    pending = asyncio.ensure_future(ref.ask("q", timeout=1.0))
    await quiesce(system)
    clock.advance(1.0)
    with pytest.raises(AskTimeout):
        await pending
    ref.tell("release")
    await quiesce(system)
