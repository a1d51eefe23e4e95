"""Frames a peer must not be able to use against a mediator, and a slow subscriber.

Each refused frame is counted by kind (``shoal_pubsub_bad_input``) and leaves
the registry as it was.
"""

from __future__ import annotations

import asyncio

from shoal import Actor, ActorRef
from shoal.cluster.testing import run_for
from shoal.pubsub._codec import Status, encode
from shoal.pubsub._registry import Delta, Entry, KeyKind
from shoal.remote import Remoting
from shoal.runtime import UniqueAddress

from .test_memory import Env, Note, cluster


def _delta(owner: UniqueAddress, topic: str) -> Delta:
    return Delta(owner, 0, 1, 1, False, (((KeyKind.TOPIC, topic), Entry(1, (("", 1),))),))


def _mediator_of(env: Env, target: int, through: int) -> tuple[Remoting, ActorRef, ActorRef]:
    """Node ``through``'s remoting, its ref to node ``target``'s mediator, and its own."""
    system = env.nodes[through].system
    remoting = Remoting.get(system)
    target_address = env.nodes[target].self_address.address
    remoting.reach(str(target_address))
    ref = system.resolve(f"shoal://{target_address}/system/pubsub")
    own = system.resolve(f"shoal://{env.nodes[through].self_address.address}/system/pubsub")
    return remoting, ref, own


async def test_a_delta_claiming_another_node_s_bucket_is_refused() -> None:
    async with cluster() as env:
        a = env.pubsubs[0]
        remoting, to_a, c_mediator = _mediator_of(env, 0, 2)
        b_node = env.nodes[1].self_address
        # c writes a delta of b's bucket (and a status in b's name)
        for body in (_delta(b_node, "forged"), Status(9, 0)):
            remoting.send_control(to_a, encode("shoal", b_node, body), c_mediator)
        await run_for(env.clock, 0.1)
        assert a.metrics.bad_input == {"spoofed-sender": 2}
        assert a.topics() == set()


async def test_frames_of_strangers_other_clusters_and_itself_are_refused() -> None:
    async with cluster() as env:
        a = env.pubsubs[0]
        remoting, to_a, c_mediator = _mediator_of(env, 0, 2)
        c_node = env.nodes[2].self_address
        stranger = UniqueAddress(c_node.address, c_node.uid + 1)  # not the member
        frames = [
            encode("other", c_node, _delta(c_node, "x")),
            encode("shoal", stranger, _delta(stranger, "x")),
        ]
        for data in frames:
            remoting.send_control(to_a, data, c_mediator)
        # a's own bucket, sent back to it by a itself
        a_node = env.nodes[0].self_address
        a_system = env.nodes[0].system
        a_system.resolve(f"shoal://{a_node.address}/system/pubsub").tell(
            encode("shoal", a_node, _delta(a_node, "x")),
            a_system.resolve(f"shoal://{a_node.address}/system/pubsub"),
        )
        await run_for(env.clock, 0.1)
        assert a.metrics.bad_input == {
            "other-cluster": 1,
            "unknown-sender": 1,
            "spoofed-sender": 1,
        }
        assert a.topics() == set()
        # ... and the mediator goes on working
        seen: list[tuple[str, int]] = []
        await env.pubsubs[2].subscribe("t", env.inbox(2, seen, "x"))
        await env.until(lambda: a.subscriber_count("t") == 1)


async def test_a_bucket_beyond_max_keys_is_refused() -> None:
    async with cluster(2) as env:
        a, _ = env.pubsubs
        remoting, to_a, b_mediator = _mediator_of(env, 0, 1)
        b_node = env.nodes[1].self_address
        limit = a.settings.max_keys
        entries = tuple(
            ((KeyKind.TOPIC, f"t{i}"), Entry(i + 1, (("", 1),))) for i in range(limit + 1)
        )
        delta = Delta(b_node, 0, limit + 1, limit + 1, False, entries)
        remoting.send_control(to_a, encode("shoal", b_node, delta), b_mediator)
        await run_for(env.clock, 0.1)
        assert a.metrics.bad_input == {"undecodable": 1}
        assert a.topics() == set()


class Slow(Actor):
    """Takes one message, then waits for ``release`` before the next."""

    def __init__(self, release: asyncio.Event, seen: list[int]) -> None:
        self.release = release
        self.seen = seen

    async def receive(self, msg: Note) -> None:
        self.seen.append(msg.n)
        await self.release.wait()


async def test_a_slow_subscriber_s_overflow_goes_to_dead_letters_and_is_counted() -> None:
    async with cluster(2) as env:
        a, b = env.pubsubs
        release = asyncio.Event()
        seen: list[int] = []
        slow = env.nodes[1].system.spawn(lambda: Slow(release, seen), name="slow", capacity=3)
        await b.subscribe("t", slow)
        await env.until(lambda: a.subscriber_count("t") == 1)
        for n in range(10):
            a.publish("t", Note(n))
        await env.until(lambda: b.metrics.overflow == 7)  # 3 queued
        release.set()
        await env.until(lambda: len(seen) == 3)
        await run_for(env.clock, 0.5)
        assert seen == [0, 1, 2]
        assert b.metrics.delivered == 10  # handed over; the mailbox refused seven
        assert env.nodes[1].system.stats()["dead_letters"] >= 7
