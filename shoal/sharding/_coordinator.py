"""The shard coordinator: a cluster singleton per entity type that decides shard homes.

Its state is what the regions tell it: each region registers (again, after
every coordinator failover) with the shards it hosts, so a new instance
rebuilds the allocation from the regions' reports; there is no stored state
to corrupt. A new instance places no shard until every Up member with
the role has registered (or ``hand_off_timeout`` passed), so a shard is
never placed anew while its host has yet to report it. A shard reported by
two regions (impossible by protocol) keeps its first region and the other
is told to hand it off.

Allocation: least shards (:func:`allocate`). Rebalance: every
``rebalance_interval``, when every member is Up and reachable, one round of
:func:`rebalance` at a time. A hand-off: ``BeginHandOff`` to every region
(they buffer the shard), then, once all acknowledged (or
``hand_off_timeout`` passed), ``HandOff`` to the owner, whose entities drain
and stop; its ``ShardStopped`` frees the shard, and the next
``GetShardHome`` places it anew. A region that disappears (its node removed)
frees its shards only ``removal_margin`` later (the cluster's
``sbr_stable_after``): the time the other side of a partition needs to
stop, so no entity runs twice.

With ``remember_entities`` the coordinator also places every shard nobody
hosts, every ``retry_interval`` (not only those asked for): a shard that
lost its node comes back, with its remembered entities, unasked.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from shoal.cluster import Cluster, MemberStatus
from shoal.runtime import Actor, ActorRef, Terminated

from ._allocation import allocate, rebalance
from ._inspection import AllocationQuery
from ._protocol import (
    BeginHandOff,
    BeginHandOffAck,
    GetShardHome,
    GracefulLeave,
    HandOff,
    Register,
    RegisterAck,
    ShardHome,
    ShardStopped,
    Tick,
)

if TYPE_CHECKING:
    from ._region import RegionMetrics
    from ._settings import ShardingSettings


@dataclass(slots=True)
class _HandOff:
    owner: ActorRef
    waiting: set[ActorRef]
    deadline: float
    sent: bool = False
    requesters: set[ActorRef] = field(default_factory=set)


@dataclass(frozen=True, slots=True)
class _HandOffTimeout:
    shard: int


@dataclass(frozen=True, slots=True)
class _PlaceAll:
    """Periodic with ``remember_entities``: place every shard that has no home."""


class Coordinator(Actor):
    """Allocates shards of one entity type to regions and moves them (see the module doc)."""

    def __init__(self, type_name: str, settings: ShardingSettings, metrics: RegionMetrics) -> None:
        self._type_name = type_name
        self._settings = settings
        self._metrics = metrics
        self._cluster = Cluster.get(self.ctx.system)
        self._margin = self._cluster.settings.sbr_stable_after
        self._regions: dict[ActorRef, set[int]] = {}  # hosting regions and their shards
        self._proxies: set[ActorRef] = set()
        self._homes: dict[int, ActorRef] = {}
        self._leaving: set[ActorRef] = set()
        self._hand_offs: dict[int, _HandOff] = {}
        self._blocked_until: dict[int, float] = {}
        self._round: set[int] = set()
        self._started_at = self.ctx.clock.now()
        self._allocating = False

    def started(self) -> None:
        self.ctx.timers.start_periodic("rebalance", Tick(), self._settings.rebalance_interval)
        if self._settings.remember_entities:
            self.ctx.timers.start_periodic("place", _PlaceAll(), self._settings.retry_interval)

    def receive(self, msg: object) -> dict[str, list[int]] | None:
        match msg:
            case Register(region, hosting, shards):
                self._register(region, hosting, shards)
            case GetShardHome(shard, region):
                self._get_home(shard, region)
            case BeginHandOffAck(shard, region):
                hand_off = self._hand_offs.get(shard)
                if hand_off is not None:
                    hand_off.waiting.discard(region)
                    self._continue(shard)
            case ShardStopped(shard, region):
                self._stopped(shard, region)
            case GracefulLeave(region):
                self._leave(region)
            case Terminated(ref):
                self._gone(ref)
            case _HandOffTimeout(shard):
                hand_off = self._hand_offs.get(shard)
                if hand_off is not None:
                    hand_off.waiting.clear()
                    self._continue(shard)
            case Tick():
                self._rebalance()
            case _PlaceAll():
                self._place_all()
            case AllocationQuery():
                return self.allocation()
            case _:
                self.ctx.log.warning("coordinator got an unexpected %r", type(msg))
        return None

    # -- regions ----------------------------------------------------------------------

    def _register(self, region: ActorRef, hosting: bool, shards: list[int]) -> None:
        if hosting:
            if region not in self._regions:
                self._regions[region] = set()
                self.ctx.watch(region)
            for shard in shards:
                if not 0 <= shard < self._settings.number_of_shards:
                    continue
                owner = self._homes.get(shard)
                if owner is None:
                    self._homes[shard] = region
                    self._regions[region].add(shard)
                elif owner != region:
                    region.tell(HandOff(shard), self.ctx.ref)  # a duplicate: keep the first
        elif region not in self._proxies:
            self._proxies.add(region)
            self.ctx.watch(region)
        region.tell(RegisterAck(self.ctx.ref), self.ctx.ref)

    def _gone(self, region: ActorRef) -> None:
        self._proxies.discard(region)
        shards = self._regions.pop(region, None)
        self._leaving.discard(region)
        if shards is None:
            return
        until = self.ctx.clock.now() + self._margin
        for shard in shards:
            if self._homes.get(shard) == region:
                del self._homes[shard]
                self._blocked_until[shard] = until
        for shard, hand_off in list(self._hand_offs.items()):
            hand_off.waiting.discard(region)
            if hand_off.owner == region:
                del self._hand_offs[shard]
                self._round.discard(shard)
            else:
                self._continue(shard)

    def _leave(self, region: ActorRef) -> None:
        if region not in self._regions:
            return
        self._leaving.add(region)
        for shard in sorted(self._regions[region]):
            self._begin_hand_off(shard)

    # -- homes ------------------------------------------------------------------------

    def _get_home(self, shard: int, requester: ActorRef, *, answer: bool = True) -> None:
        if not 0 <= shard < self._settings.number_of_shards:
            return
        hand_off = self._hand_offs.get(shard)
        if hand_off is not None:
            hand_off.requesters.add(requester)  # answered once it has stopped
            return
        home = self._homes.get(shard)
        if home is None:
            if not self._may_allocate():
                return  # the requester asks again
            blocked = self._blocked_until.get(shard)
            if blocked is not None:
                if self.ctx.clock.now() < blocked:
                    return  # its last owner may still be stopping on the other side
                del self._blocked_until[shard]
            candidates = {r: s for r, s in self._regions.items() if r not in self._leaving}
            if not candidates:
                return
            by_name = {str(r.path): r for r in candidates}
            home = by_name[allocate({str(r.path): s for r, s in candidates.items()})]
            self._homes[shard] = home
            self._regions[home].add(shard)
            if home != requester or not answer:
                home.tell(ShardHome(shard, home), self.ctx.ref)
        if answer:
            requester.tell(ShardHome(shard, home), self.ctx.ref)

    def _place_all(self) -> None:
        if not self._regions or not self._may_allocate():
            return
        for shard in range(self._settings.number_of_shards):
            if shard not in self._homes and shard not in self._hand_offs:
                candidates = [r for r in self._regions if r not in self._leaving]
                if not candidates:
                    return
                self._get_home(shard, candidates[0], answer=False)

    def _may_allocate(self) -> bool:
        """Whether this instance may place shards yet.

        A new coordinator (first start or failover) waits until every Up
        member with the role has registered its region, which reports the
        shards it already hosts, or ``hand_off_timeout`` passed: placing a
        shard before its host re-registered would start it twice.
        """
        if self._allocating:
            return True
        known = {r.path.node for r in self._regions} | {r.path.node for r in self._proxies}
        role = self._settings.role
        up = {
            m.address
            for m in self._cluster.state.members
            if m.status is MemberStatus.UP and m.has_role(role)
        }
        if (
            up <= known
            or self.ctx.clock.now() - self._started_at >= self._settings.hand_off_timeout
        ):
            self._allocating = True
        return self._allocating

    # -- hand-off ---------------------------------------------------------------------

    def _begin_hand_off(self, shard: int) -> None:
        owner = self._homes.get(shard)
        if owner is None or shard in self._hand_offs:
            return
        waiting = set(self._regions) | self._proxies
        deadline = self.ctx.clock.now() + self._settings.hand_off_timeout
        self._hand_offs[shard] = _HandOff(owner, waiting, deadline)
        for region in waiting:
            region.tell(BeginHandOff(shard), self.ctx.ref)
        self.ctx.timers.start_single(
            ("hand-off", shard), _HandOffTimeout(shard), self._settings.hand_off_timeout
        )

    def _continue(self, shard: int) -> None:
        hand_off = self._hand_offs.get(shard)
        if hand_off is None or hand_off.waiting or hand_off.sent:
            return
        hand_off.sent = True
        hand_off.owner.tell(HandOff(shard), self.ctx.ref)

    def _stopped(self, shard: int, region: ActorRef) -> None:
        if self._homes.get(shard) == region:
            del self._homes[shard]
            self._regions.get(region, set()).discard(shard)
        hand_off = self._hand_offs.pop(shard, None)
        self._round.discard(shard)
        if hand_off is not None:
            self.ctx.timers.cancel(("hand-off", shard))
            # Place it at once (not at the next request): the new owner starts
            # it, and every region that asked meanwhile learns where it is.
            self._get_home(shard, hand_off.owner, answer=False)
            home = self._homes.get(shard)
            if home is not None:
                for requester in hand_off.requesters - {home}:
                    requester.tell(ShardHome(shard, home), self.ctx.ref)

    # -- rebalance --------------------------------------------------------------------

    def _rebalance(self) -> None:
        if self._round or not self._may_allocate() or not self._stable():
            return
        allocation = {
            str(r.path): frozenset(s) for r, s in self._regions.items() if r not in self._leaving
        }
        moves = rebalance(allocation, frozenset(self._hand_offs), self._settings.rebalance_limits)
        if moves:
            self._round = set(moves)
            self._metrics.rebalances += 1
            for shard in sorted(moves):
                self._begin_hand_off(shard)

    def _stable(self) -> bool:
        """Every member Up and reachable: no rebalance while the cluster changes."""
        state = self._cluster.state
        return not state.unreachable and all(m.status is MemberStatus.UP for m in state.members)

    # -- inspection -------------------------------------------------------------------

    def allocation(self) -> dict[str, list[int]]:
        """Region path -> its shards (sorted), for inspection and tests."""
        return {str(r.path): sorted(s) for r, s in self._regions.items()}
