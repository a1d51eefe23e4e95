"""A ``shoal node --app`` application for pub/sub tests: a probe actor the test drives.

``shoal node --app tests.integration.pubsub._app:start`` (from the repository
root) starts the node's mediator and spawns ``/user/probe``. The test process
asks the probe of each node (over remoting) to subscribe inboxes, publish,
send, and report what each inbox received. Only the message classes below
cross the process boundary (registered types, never pickled).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from shoal import Actor, ActorRef, ActorSystem, message
from shoal.pubsub import DistributedPubSub


@message
@dataclass(frozen=True, slots=True)
class Note:
    origin: str
    n: int
    sent_at: float = 0.0
    """``time.time()`` at the publish (the benchmark's fan-out latency)."""


@message
@dataclass(frozen=True, slots=True)
class Sub:
    topic: str
    inbox: str
    group: str | None = None
    unsubscribe: bool = False


@message
@dataclass(frozen=True, slots=True)
class SubMany:
    prefix: str
    count: int
    inbox: str


@message
@dataclass(frozen=True, slots=True)
class Register:
    inbox: str


@message
@dataclass(frozen=True, slots=True)
class StopInbox:
    inbox: str


@message
@dataclass(frozen=True, slots=True)
class Pub:
    topic: str
    first: int
    count: int
    one_per_group: bool = False


@message
@dataclass(frozen=True, slots=True)
class Send:
    path: str
    n: int
    local_affinity: bool = True
    to_all: bool = False
    all_but_self: bool = False


@message
@dataclass(frozen=True, slots=True)
class Wait:
    topic: str
    count: int
    timeout: float


@message
@dataclass(frozen=True, slots=True)
class Seen:
    inbox: str


@message
@dataclass(frozen=True, slots=True)
class Received:
    notes: list[tuple[str, int]]
    latest: float
    """``time.time()`` when the last note arrived (0: none)."""


@message
@dataclass(frozen=True, slots=True)
class Topics:
    pass


@message
@dataclass(frozen=True, slots=True)
class Count:
    """Subscribers of a topic, or nodes with an actor registered at a path, as known."""

    key: str
    path: bool = False


class Inbox(Actor):
    def __init__(self, log: list[tuple[str, int]], times: list[float]) -> None:
        self.log = log
        self.times = times

    def receive(self, msg: Note) -> None:
        self.log.append((msg.origin, msg.n))
        self.times[0] = time.time()


class Probe(Actor):
    def __init__(self, pubsub: DistributedPubSub) -> None:
        self.pubsub = pubsub
        self.inboxes: dict[str, ActorRef] = {}
        self.logs: dict[str, list[tuple[str, int]]] = {}
        self.times: dict[str, list[float]] = {}
        self.origin = pubsub.system.address

    def inbox(self, name: str) -> ActorRef:
        ref = self.inboxes.get(name)
        if ref is None:
            log = self.logs[name] = []
            times = self.times[name] = [0.0]
            ref = self.inboxes[name] = self.ctx.spawn(lambda: Inbox(log, times), name=name)
        return ref

    async def receive(
        self,
        msg: Sub | SubMany | Register | StopInbox | Pub | Send | Wait | Seen | Topics | Count,
    ) -> object:
        ps = self.pubsub
        match msg:
            case Sub(topic, inbox, group, unsubscribe):
                if unsubscribe:
                    await ps.unsubscribe(topic, self.inbox(inbox), group)
                else:
                    await ps.subscribe(topic, self.inbox(inbox), group)
                return True
            case SubMany(prefix, count, inbox):
                ref = self.inbox(inbox)
                for i in range(count):
                    await ps.subscribe(f"{prefix}{i}", ref)
                return True
            case Register(inbox):
                await ps.register(self.inbox(inbox))
                return True
            case StopInbox(inbox):
                await self.ctx.stop(self.inboxes.pop(inbox))
                return True
            case Pub(topic, first, count, one_per_group):
                now = time.time()
                return [
                    ps.publish(topic, Note(self.origin, n, now), one_per_group=one_per_group)
                    for n in range(first, first + count)
                ]
            case Send(path, n, local_affinity, to_all, all_but_self):
                note = Note(self.origin, n, time.time())
                if to_all:
                    return ps.send_to_all(path, note, all_but_self=all_but_self)
                return ps.send(path, note, local_affinity=local_affinity)
            case Wait(topic, count, timeout):
                return await ps.wait_for_subscribers(topic, count, timeout)
            case Seen(inbox):
                return Received(list(self.logs.get(inbox, [])), self.times.get(inbox, [0.0])[0])
            case Topics():
                return len(ps.topics())
            case Count(key, path):
                return ps.registered(key) if path else ps.subscriber_count(key)
        return None


def start(system: ActorSystem) -> None:
    """The ``--app`` entry point: the mediator, and the probe at ``/user/probe``."""
    pubsub = DistributedPubSub.get(system)  # started by shoal node (its testing preset)
    system.spawn(lambda: Probe(pubsub), name="probe")
