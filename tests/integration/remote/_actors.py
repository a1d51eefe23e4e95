"""Actors the remote tests run on every node (in-process and in node processes)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from shoal import Actor, ActorRef, Terminated

from ._messages import Forward, ReplyTo, Seq


class Echo(Actor):
    """Answers every ask with the message itself."""

    def receive(self, msg: object) -> object:
        return msg


class Boom(Actor):
    """Fails on every message (so asks fail with the handler's error)."""

    def receive(self, msg: object) -> object:
        raise ValueError(f"boom: {msg}")


class Recorder(Actor):
    """Keeps what it got; ``"get"`` answers the list, ``"check"`` checks stream order.

    ``"check"`` answers ``{stream: [count, in_order]}`` where ``in_order``
    says each stream's ``Seq.n`` arrived as 0, 1, 2, ... without gaps.
    """

    def __init__(self) -> None:
        self.items: list[object] = []
        self.streams: dict[str, list[int]] = {}

    def receive(self, msg: object) -> object:
        if msg == "get":
            return list(self.items)
        if msg == "check":
            return {
                stream: [len(ns), ns == list(range(len(ns)))] for stream, ns in self.streams.items()
            }
        if isinstance(msg, Seq):
            self.streams.setdefault(msg.stream, []).append(msg.n)
            return None
        self.items.append(msg)
        return None


class Replier(Actor):
    """On ``ReplyTo(ref, text)`` tells ``ref`` the upper-cased text, as itself."""

    def receive(self, msg: object) -> None:
        if isinstance(msg, ReplyTo):
            msg.ref.tell(msg.text.upper(), self.ref)


class Forwarder(Actor):
    """On ``Forward(to, payload)`` forwards ``payload`` to ``to``, keeping the asker."""

    def receive(self, msg: object) -> None:
        if isinstance(msg, Forward):
            self.ctx.forward(msg.to, msg.payload)


class Relay(Actor):
    """Answers an ask by asking ``target`` (an async handler) and adding a suffix."""

    def __init__(self, target: ActorRef, suffix: str) -> None:
        self.target = target
        self.suffix = suffix

    async def receive(self, msg: object) -> object:
        answer = await self.target.ask(msg)
        return f"{answer}{self.suffix}"


class Sequencer(Actor):
    """On ``[target, stream, count]`` tells ``count`` ``Seq``s to ``target`` (one turn)."""

    def receive(self, msg: object) -> object:
        target, stream, count = msg  # type: ignore[misc]
        assert isinstance(target, ActorRef)
        for n in range(count):
            target.tell(Seq(stream, n), self.ref)
        return count


class Watcher(Actor):
    """Watches ``target`` and reports each ``Terminated`` through ``report``."""

    def __init__(self, target: ActorRef, report: Callable[[Terminated], Any]) -> None:
        self.report = report
        self.ctx.watch(target)

    def receive(self, msg: object) -> None:
        if isinstance(msg, Terminated):
            self.report(msg)
