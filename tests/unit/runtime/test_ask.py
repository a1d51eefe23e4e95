"""``ask`` sends when called and returns a future; invalid timeouts send nothing."""

from __future__ import annotations

import asyncio

import pytest

from shoal.runtime import Actor, ActorPath, ActorStoppedError, ActorSystem, AskTimeout
from shoal.runtime.testing import ManualClock, quiesce


class Recorder(Actor):
    def __init__(self, seen: list[object]) -> None:
        self.seen = seen

    def receive(self, msg: object) -> object:
        self.seen.append(msg)
        return msg


async def test_ask_sends_when_called_not_when_awaited(system: ActorSystem) -> None:
    seen: list[object] = []
    ref = system.spawn(lambda: Recorder(seen))
    answer = ref.ask("hello")
    assert isinstance(answer, asyncio.Future)
    await quiesce(system)
    assert seen == ["hello"], "the ask was not sent before it was awaited"
    assert answer.done()
    assert await answer == "hello"


async def test_many_asks_are_pipelined_without_a_task_each(system: ActorSystem) -> None:
    seen: list[object] = []
    ref = system.spawn(lambda: Recorder(seen))
    tasks_before = len(asyncio.all_tasks())
    answers = [ref.ask(i) for i in range(1000)]
    assert len(asyncio.all_tasks()) == tasks_before
    assert await asyncio.gather(*answers) == list(range(1000))
    assert seen == list(range(1000))


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan"), float("inf")])
async def test_an_invalid_timeout_raises_before_anything_is_sent(
    system: ActorSystem, bad: float
) -> None:
    seen: list[object] = []
    ref = system.spawn(lambda: Recorder(seen))
    with pytest.raises(ValueError, match="timeout"):
        ref.ask("x", timeout=bad)
    dead = system.resolve(ActorPath.parse("shoal://test/user/nobody"))
    with pytest.raises(ValueError, match="timeout"):
        dead.ask("x", timeout=bad)
    await quiesce(system)
    assert seen == [], "the message was delivered although the ask raised"


async def test_a_pipelined_ask_times_out_on_the_clock(
    system: ActorSystem, clock: ManualClock
) -> None:
    class Silent(Actor):
        def receive(self, msg: object) -> None:
            self.ctx.reply_later()

    ref = system.spawn(Silent)
    answers = [ref.ask(i, timeout=1.0 + (i % 2)) for i in range(4)]
    await quiesce(system)
    clock.advance(1.0)
    await quiesce(system)
    assert [a.done() for a in answers] == [True, False, True, False]
    clock.advance(1.0)
    for answer in answers:
        with pytest.raises(AskTimeout, match="within"):
            await answer


async def test_answered_asks_are_not_kept_for_their_timeout(system: ActorSystem) -> None:
    seen: list[object] = []
    ref = system.spawn(lambda: Recorder(seen))
    for i in range(5000):
        assert await ref.ask(i, timeout=30.0) == i
    queue = system._ask_timeouts._queues[30.0]
    assert len(queue) <= 4, f"{len(queue) // 4} answered asks still held until their deadline"
    answers = [ref.ask(i, timeout=30.0) for i in range(5000)]
    await asyncio.gather(*answers)
    ref.ask("one more", timeout=30.0)
    assert len(system._ask_timeouts._queues[30.0]) <= 8  # four slots per ask


async def test_answered_asks_behind_an_unanswered_one_are_compacted_away(
    system: ActorSystem,
) -> None:
    class Silent(Actor):
        def receive(self, msg: object) -> None:
            self.ctx.reply_later()

    stuck = system.spawn(Silent).ask("never answered", timeout=30.0)
    seen: list[object] = []
    ref = system.spawn(lambda: Recorder(seen))
    for i in range(5000):
        assert await ref.ask(i, timeout=30.0) == i
    queue = system._ask_timeouts._queues[30.0]
    assert len(queue) < 4 * 1000, f"{len(queue) // 4} asks held behind one in flight"
    assert not stuck.done()
    stuck.cancel()


async def test_an_ask_to_a_dead_path_fails_at_once(system: ActorSystem) -> None:
    dead = system.resolve(ActorPath.parse("shoal://test/user/nobody"))
    answer = dead.ask("x")
    assert answer.done()
    with pytest.raises(ActorStoppedError, match="no actor at"):
        await answer
