"""Stash/unstash and the dead-letter stream."""

from __future__ import annotations

import asyncio

import pytest
from prometheus_client import REGISTRY, generate_latest

from shoal.runtime import (
    Actor,
    ActorSystem,
    DeadLetter,
    Settings,
    StashOverflowError,
)
from shoal.runtime.testing import Probe, quiesce


class Gate(Actor):
    """Stashes everything until "open", then handles messages in order."""

    def __init__(self) -> None:
        self.open = False
        self.seen: list[object] = []

    def receive(self, msg: object) -> object:
        if msg == "open":
            self.open = True
            self.ctx.unstash_all()
            return None
        if not self.open:
            self.ctx.stash()
            return None
        if msg == "dump":
            return list(self.seen)
        self.seen.append(msg)
        return f"handled {msg}"


async def test_unstash_replays_in_order_before_newer_messages(system: ActorSystem) -> None:
    gate = system.spawn(Gate)
    for i in range(5):
        gate.tell(i)
    gate.tell("open")
    gate.tell("after")
    assert await gate.ask("dump") == [0, 1, 2, 3, 4, "after"]


async def test_a_stashed_ask_is_answered_when_handled_again(system: ActorSystem) -> None:
    gate = system.spawn(Gate)
    pending = asyncio.ensure_future(gate.ask("question"))
    await quiesce(system)
    assert not pending.done()
    gate.tell("open")
    assert await pending == "handled question"


async def test_stash_capacity_is_enforced() -> None:
    async with ActorSystem("t", Settings.testing(stash_capacity=2)) as system:
        gate = system.spawn(Gate)
        gate.tell(1)
        gate.tell(2)
        with pytest.raises(StashOverflowError):
            await gate.ask(3)


async def test_stashed_messages_are_dead_letters_when_the_actor_stops(
    system: ActorSystem,
) -> None:
    probe = Probe(system)
    system.event_stream.subscribe(probe.ref, DeadLetter)
    gate = system.spawn(Gate, name="gate")
    gate.tell("stashed")
    await quiesce(system)
    await gate.stop()
    letter = await probe.receive()
    assert isinstance(letter, DeadLetter)
    assert letter.message == "stashed"
    assert letter.reason == "stopped"
    assert letter.recipient == gate


async def test_dead_letter_subscribers_get_every_undeliverable_message(
    system: ActorSystem,
) -> None:
    probe = Probe(system)
    system.event_stream.subscribe(probe.ref, DeadLetter)
    system.resolve("shoal://test/user/missing").tell("to nobody")
    system.dead_letters.tell("explicit")
    first = await probe.receive()
    second = await probe.receive()
    assert isinstance(first, DeadLetter)
    assert first.reason == "no-such-actor"
    assert isinstance(second, DeadLetter)
    assert second.message == "explicit"
    system.event_stream.unsubscribe(probe.ref)
    system.dead_letters.tell("unseen")
    await quiesce(system)
    assert probe.pending() == 0


async def test_dead_letter_logging_is_rate_limited(
    system: ActorSystem, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO", logger="shoal.runtime")
    for i in range(100):
        system.dead_letters.tell(i)
    lines = [r for r in caplog.records if "dead letter" in r.getMessage()]
    assert len(lines) == system.settings.dead_letter_log_limit
    assert system.stats()["dead_letters"] == 100


async def test_metrics_are_per_system_and_read_at_scrape_time(system: ActorSystem) -> None:
    gate = system.spawn(Gate)
    gate.tell("open")
    await gate.ask("dump")
    system.dead_letters.tell("lost")
    text = generate_latest(system.metrics).decode()
    assert 'shoal_dead_letters_total{address="test"} 1.0' in text
    assert 'shoal_actors_live{address="test"} 1.0' in text
    assert "shoal_messages_processed_total" in text
    assert REGISTRY.get_sample_value("shoal_dead_letters_total", {"address": "test"}) is None
