"""The registry gossip as pure rounds: nodes exchange frames through a lossy list.

No loop, no network: each node's :class:`RegistryGossip` sends into a queue
that a round delivers (or drops); the status rounds must repair every loss.
"""

from __future__ import annotations

import random
from collections import deque

import pytest

from shoal.pubsub._codec import Status
from shoal.pubsub._gossip import RegistryGossip
from shoal.pubsub._metrics import PubSubMetrics
from shoal.pubsub._registry import Delta, KeyKind, Registry
from shoal.pubsub._settings import PubSubSettings
from shoal.runtime import Address, UniqueAddress
from shoal.runtime.testing import ManualClock

Frame = tuple[UniqueAddress, UniqueAddress, Status | Delta]


class Sim:
    def __init__(self, n: int, *, drop: float, seed: int, max_delta_entries: int = 3) -> None:
        self.rng = random.Random(seed)
        self.drop = drop
        self.clock = ManualClock()
        self.settings = PubSubSettings(max_delta_entries=max_delta_entries, tombstone_ttl=5.0)
        self.wire: deque[Frame] = deque()
        self.nodes = [UniqueAddress(Address("s", f"10.0.0.{i + 1}", 2552), i + 1) for i in range(n)]
        self.registries = {node: Registry(node) for node in self.nodes}
        self.refused: list[str] = []
        self.gossips = {node: self._gossip(node) for node in self.nodes}

    def _gossip(self, node: UniqueAddress) -> RegistryGossip:
        def send(peer: UniqueAddress, body: Status | Delta) -> None:
            self.wire.append((node, peer, body))

        return RegistryGossip(
            self.registries[node],
            self.settings,
            PubSubMetrics(),
            self.clock,
            self.rng,
            send,
            lambda: None,
            lambda kind, detail: self.refused.append(kind),
        )

    def join_all(self) -> None:
        for node, gossip in self.gossips.items():
            gossip.members({n for n in self.nodes if n != node})

    def put(self, node: UniqueAddress, topic: str, count: int) -> None:
        entry = self.registries[node].put_local(
            (KeyKind.TOPIC, topic), {"": count} if count else {}
        )
        self.gossips[node].changed(entry)

    def deliver(self, *, lossy: bool = True) -> None:
        while self.wire:
            src, dst, body = self.wire.popleft()
            if lossy and self.rng.random() < self.drop:
                continue
            if isinstance(body, Status):
                self.gossips[dst].on_status(src, body)
            else:
                self.gossips[dst].on_delta(src, body)

    def round(self, *, lossy: bool = True) -> None:
        self.clock.advance(1.0)
        for gossip in self.gossips.values():
            gossip.tick()
        self.deliver(lossy=lossy)

    def converged(self) -> bool:
        want = {
            node: {k: e for k, e in reg.own.entries.items() if not e.removed}
            for node, reg in self.registries.items()
        }
        for node, reg in self.registries.items():
            for owner, entries in want.items():
                if owner == node:
                    continue
                copy = reg.peers.get(owner.address)
                held = dict(copy.entries) if copy is not None else {}
                if held != entries:
                    return False
        return True


@pytest.mark.parametrize("seed", range(10))
def test_every_copy_converges_despite_lost_frames(seed: int) -> None:
    sim = Sim(5, drop=0.3, seed=seed)
    sim.join_all()
    for step in range(60):
        node = sim.rng.choice(sim.nodes)
        sim.put(node, f"t{sim.rng.randrange(12)}", sim.rng.randrange(3))
        for gossip in sim.gossips.values():
            gossip.flush()  # the end of the loop turn
        if step % 5 == 0:
            sim.round()
        else:
            sim.deliver()
    rounds = 0
    while not sim.converged():
        sim.round()
        rounds += 1
        assert rounds < 200, "the copies never converged"
    assert sim.refused == []


def test_without_loss_one_flush_converges_everyone() -> None:
    sim = Sim(4, drop=0.0, seed=1)
    sim.join_all()
    sim.deliver()
    for i in range(10):
        sim.put(sim.nodes[i % 4], f"t{i}", 1)
    for gossip in sim.gossips.values():
        gossip.flush()
    sim.deliver()
    assert sim.converged()


def test_a_peer_behind_a_pruned_tombstone_gets_the_whole_bucket() -> None:
    sim = Sim(2, drop=0.0, seed=1)
    a, b = sim.nodes
    sim.join_all()
    sim.deliver()
    sim.put(a, "x", 1)
    sim.put(a, "y", 1)
    sim.gossips[a].flush()
    sim.wire.clear()  # b never hears of x and y ...
    sim.put(a, "x", 0)  # ... nor of x's removal, which is pruned after the ttl
    sim.wire.clear()
    for _ in range(7):
        sim.clock.advance(1.0)
        sim.gossips[a].tick()
        sim.wire.clear()
    assert sim.registries[a].own.pruned_through == 3
    sim.round(lossy=False)
    sim.round(lossy=False)
    assert sim.converged()
    assert set(sim.registries[b].peers[a.address].entries) == {(KeyKind.TOPIC, "y")}


def test_a_member_that_leaves_has_its_copy_dropped() -> None:
    sim = Sim(3, drop=0.0, seed=1)
    a, b, c = sim.nodes
    sim.join_all()
    sim.put(c, "x", 1)
    sim.gossips[c].flush()
    sim.deliver()
    assert c.address in sim.registries[a].peers
    sim.gossips[a].members({b})
    assert c.address not in sim.registries[a].peers
    assert not sim.gossips[a].is_member(c)
