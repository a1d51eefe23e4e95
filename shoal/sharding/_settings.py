"""``ShardingSettings``: one typed object per entity type, with a fast testing preset."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from ._allocation import RebalanceLimits


@dataclass(frozen=True, slots=True)
class ShardingSettings:
    """How one entity type is sharded. Frozen; every node of the type uses the same.

    ``number_of_shards``: entities are grouped into this many shards (the unit
    of placement and hand-off), by a stable hash of the entity id. It must
    never change while the type has state in the cluster. Guidance (Akka's):
    about ten times the largest number of nodes the type will run on — few
    enough that the coordinator's work stays small, many enough that shards
    spread evenly; the default 100 suits up to ~10 nodes.

    ``role``: only members with this role host entities (others start a
    proxy). ``buffer_size``: messages a region keeps while shards are located
    or handed off (overflow: dead letters, counted, asks fail with
    ``BufferFullError``). ``retry_interval``: how often a region repeats its
    registration and its shard-home requests while unanswered.
    ``rebalance_interval``: how often the coordinator considers a rebalance
    round, within ``rebalance_limits``. ``hand_off_timeout``: how long the
    coordinator waits for the regions' acknowledgements of a hand-off before
    going on without the silent ones. ``ready_timeout``: ``/health/ready``
    waits for this node's regions to be registered with their coordinator,
    but no longer than this after sharding started.
    ``passivation_idle_timeout``: an entity that received no message for
    this long is passivated (stopped once its mailbox drained; the next
    message starts it again); ``None`` keeps entities until they passivate
    themselves or move. Checked every quarter of it, so an idle entity stops
    between 1 and 1.25 times the timeout after its last message.

    ``active_entity_limit``: at most this many entities run in this node's
    region (all its shards together); starting one more passivates the least
    recently used (the one whose last message is the oldest), the same way
    as an idle one. ``None``: no limit.

    ``remember_entities``: each shard keeps the ids of its running entities
    in the system's journal (persistence id ``sharding/<type>/<shard>``,
    events ``EntityStarted`` / ``EntityStopped``, a snapshot every
    ``REMEMBER_SNAPSHOT_EVERY`` events) and, wherever the shard starts
    again (after a hand-off, a crash, a restart of the cluster), restarts
    them without waiting for a message. Passivation (by the entity, idle or
    over the limit) forgets an entity; a hand-off or a node stopping does
    not. With it on, the coordinator places every shard, not only those
    asked for, so remembered entities come back with no message sent.
    ``remembered_restarts_per_s``: how fast one shard restarts its
    remembered entities, in batches of ``ceil(rate / 10)`` every
    ``batch / rate`` seconds (so a node taking over many shards does not
    start all their entities in one burst).
    """

    number_of_shards: int = 100
    role: str | None = None
    buffer_size: int = 10_000
    retry_interval: float = 2.0
    rebalance_interval: float = 10.0
    rebalance_limits: RebalanceLimits = field(default_factory=RebalanceLimits)
    hand_off_timeout: float = 10.0
    ready_timeout: float = 30.0
    passivation_idle_timeout: float | None = None
    active_entity_limit: int | None = None
    remember_entities: bool = False
    remembered_restarts_per_s: float = 1000.0

    def __post_init__(self) -> None:
        if self.number_of_shards < 1:
            raise ValueError(f"number_of_shards must be >= 1, not {self.number_of_shards}")
        if self.buffer_size < 0:
            raise ValueError(f"buffer_size must be >= 0, not {self.buffer_size}")
        for name in ("retry_interval", "rebalance_interval", "hand_off_timeout", "ready_timeout"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, not {getattr(self, name)}")
        idle = self.passivation_idle_timeout
        if idle is not None and idle <= 0:
            raise ValueError(f"passivation_idle_timeout must be positive, not {idle}")
        limit = self.active_entity_limit
        if limit is not None and limit < 1:
            raise ValueError(f"active_entity_limit must be >= 1, not {limit}")
        if not self.remembered_restarts_per_s > 0:
            raise ValueError(
                f"remembered_restarts_per_s must be positive, not {self.remembered_restarts_per_s}"
            )

    @classmethod
    def testing(cls, **overrides: Any) -> ShardingSettings:
        """Fast timers for tests (retries 0.1 s, rebalance 0.5 s, hand-off 2 s, ready 5 s)."""
        base = cls(
            retry_interval=0.1, rebalance_interval=0.5, hand_off_timeout=2.0, ready_timeout=5.0
        )
        return replace(base, **overrides)
