"""Test kit of ``shoal.cluster``: clusters on an in-memory network, on virtual time.

::

    clock = ManualClock()
    async with MemoryNetwork(clock=clock) as net:
        nodes = await form_cluster(net, clock, 3)          # three nodes, all Up
        net.kill(nodes[2].system)
        await advance_until(clock, lambda: len(nodes[0].gossip.members) == 2)

:func:`convergence_rounds` runs push-pull gossip among ``n`` members as pure
rounds (no network, no loop) and counts the rounds a change needs until
every member has seen it.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

from shoal.runtime import Address, UniqueAddress
from shoal.runtime.testing import ManualClock, quiesce

from ._cluster import Cluster
from ._codec import seen_digest
from ._gossip import Gossip
from ._leader import convergence
from ._member import Member, MemberStatus
from ._membership import MembershipState, leave, receive_gossip
from ._pushpull import Answer, answer_state, answer_status, select_peer
from ._settings import ClusterSettings
from ._vclock import VectorClock

if TYPE_CHECKING:
    from shoal.remote.testing import MemoryNetwork

__all__ = [
    "advance_until",
    "convergence_rounds",
    "finish_shutdowns",
    "form_cluster",
    "run_for",
    "start_node",
    "up_gossip",
]


async def advance_until(
    clock: ManualClock,
    predicate: Callable[[], bool],
    *,
    max_time: float = 60.0,
) -> float:
    """Run timers and the loop, deadline by deadline, until ``predicate()`` holds.

    Returns the virtual time that passed (the time of the first timer after
    which the predicate held, exactly). Raises ``TimeoutError`` once
    ``max_time`` virtual seconds passed without it.
    """
    start = clock.now()
    await quiesce()
    while not predicate():
        deadline = clock.next_deadline()
        if deadline is None or deadline - start > max_time:
            raise TimeoutError(f"not reached within {max_time} virtual seconds")
        clock.advance(deadline - clock.now())
        await quiesce()
    return clock.now() - start


async def run_for(clock: ManualClock, seconds: float) -> None:
    """Run timers and the loop, deadline by deadline, for ``seconds`` of virtual time."""
    end = clock.now() + seconds
    await quiesce()
    while True:
        deadline = clock.next_deadline()
        if deadline is None or deadline > end:
            clock.advance(end - clock.now())
            await quiesce()
            return
        clock.advance(deadline - clock.now())
        await quiesce()


async def finish_shutdowns(
    clock: ManualClock, nodes: Sequence[Cluster], *, max_time: float = 60.0
) -> None:
    """Run virtual time until every node whose system began shutting down has finished.

    A node that stops itself (downed, removed) may wait on its clock while it
    shuts down (an outbox flush across a partition is time-boxed): run this
    before closing the network, or the teardown waits on a clock nobody moves.
    """
    running = [
        c.system.coordinated_shutdown.run("cluster-test") for c in nodes if not c.system.is_running
    ]
    await advance_until(clock, lambda: all(f.done() for f in running), max_time=max_time)


async def start_node(net: MemoryNetwork, settings: ClusterSettings, name: str = "shoal") -> Cluster:
    """Start a node (remoting on ``net``, then its cluster with ``settings``)."""
    remoting = await net.start_node(name)
    return await Cluster.start(remoting.system, settings)


async def form_cluster(
    net: MemoryNetwork,
    clock: ManualClock,
    n: int,
    settings: ClusterSettings | None = None,
    *,
    name: str = "shoal",
    max_time: float = 60.0,
) -> list[Cluster]:
    """Start ``n`` nodes joining through the first and run until all see ``n`` Up members."""
    if n < 1:
        raise ValueError(f"a cluster has at least one node, not {n}")
    base = settings if settings is not None else ClusterSettings.testing()
    remotings = [await net.start_node(name) for _ in range(n)]
    seeded = replace(base, seed_nodes=(remotings[0].address,))
    nodes = [await Cluster.start(r.system, seeded) for r in remotings]

    def formed() -> bool:
        return all(
            len(c.gossip.members) == n
            and all(m.status is MemberStatus.UP for m in c.gossip.members)
            for c in nodes
        )

    await advance_until(clock, formed, max_time=max_time)
    return nodes


def up_gossip(n: int, *, name: str = "shoal") -> Gossip:
    """A converged state of ``n`` Up members (``name@10.0.x.y:2552``), seen by all."""
    nodes = [
        UniqueAddress(Address(name, f"10.0.{i // 250}.{i % 250 + 1}", 2552), i + 1)
        for i in range(n)
    ]
    members = [Member(node, MemberStatus.UP, up_number=i + 1) for i, node in enumerate(nodes)]
    return Gossip.of(members, version=VectorClock({nodes[0]: 1}), seen=nodes)


def convergence_rounds(n: int, *, seed: int = 1, max_rounds: int = 100) -> int:
    """Rounds of push-pull gossip from one member's status change to convergence of ``n``.

    Every member holds the converged state of :func:`up_gossip`; the last
    member starts leaving; each round, every member (in a random order)
    gossips with one peer chosen by the same rule as a node
    (:func:`~shoal.cluster._pushpull.select_peer`), exchanging what the
    protocol exchanges. Returns the number of rounds until every member has
    seen the new version (``max_rounds`` bounds the run).
    """
    rng = random.Random(seed)
    base = up_gossip(n)
    nodes = [m.unique_address for m in base.members]
    states = {node: MembershipState(node, base) for node in nodes}
    states[nodes[-1]] = leave(states[nodes[-1]], nodes[-1])
    target = states[nodes[-1]].gossip.version
    for rounds in range(1, max_rounds + 1):
        order = list(nodes)
        rng.shuffle(order)
        for node in order:
            _exchange(states, node, rng)
        if all(
            s.gossip.version == target and convergence(s.gossip, node) for node, s in states.items()
        ):
            return rounds
    return max_rounds


def _exchange(
    states: dict[UniqueAddress, MembershipState], node: UniqueAddress, rng: random.Random
) -> None:
    me = states[node]
    peer = select_peer(me.gossip, node, rng)
    if peer is None:
        return
    if me.gossip.seen_by(peer):
        other = states[peer]
        answer = answer_status(
            other.gossip,
            me.gossip.version,
            seen_digest(me.gossip.seen),
            seen_digest(other.gossip.seen),
        )
        if answer is Answer.STATE:
            _push(states, peer, node)
        elif answer is Answer.STATUS:
            _push(states, node, peer)
    else:
        _push(states, node, peer)


def _push(
    states: dict[UniqueAddress, MembershipState], sender: UniqueAddress, receiver: UniqueAddress
) -> None:
    sent = states[sender].gossip
    merged, _ = receive_gossip(states[receiver], sent)
    states[receiver] = merged
    if answer_state(sent, merged.gossip) is Answer.STATE:
        back, _ = receive_gossip(states[sender], merged.gossip)
        states[sender] = back
