"""The settings of the pub/sub mediator."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class PubSubSettings:
    """How a node's mediator gossips its registry and what it accepts.

    Defaults suit production; :meth:`testing` is the same with a short
    tombstone lifetime.
    """

    gossip_interval: float | None = None
    """Seconds between two status rounds (each to one random member); ``None``: the
    cluster's ``gossip_interval``. Changes are also pushed at once to every member
    (at the end of the loop turn they happen in), so this only bounds the repair
    of a lost delta: within ``members x gossip_interval`` on average."""
    max_delta_entries: int = 2_000
    """Entries per delta; a peer further behind pulls the rest at once, chunk by chunk
    (one round trip each). A full bucket (a peer older than a pruned tombstone, or a
    new incarnation) travels in one frame: ``max_keys`` bounds it (~40 bytes an entry)."""
    max_keys: int = 50_000
    """Topics and paths this node registers, and accepts in a peer's bucket."""
    max_name_length: int = 1_024
    """Characters in a topic, group or path."""
    tombstone_ttl: float = 120.0
    """Seconds a removed topic is remembered for peers that have not seen it; a peer
    behind by more gets the whole live bucket instead of a delta."""

    def __post_init__(self) -> None:
        if self.gossip_interval is not None and not self.gossip_interval > 0:
            raise ValueError(f"gossip_interval must be > 0, not {self.gossip_interval!r}")
        if self.max_delta_entries < 1 or self.max_keys < 1 or self.max_name_length < 1:
            raise ValueError("max_delta_entries, max_keys and max_name_length must be >= 1")
        if not self.tombstone_ttl > 0:
            raise ValueError(f"tombstone_ttl must be > 0, not {self.tombstone_ttl!r}")

    @classmethod
    def testing(cls) -> PubSubSettings:
        """Short tombstone lifetime, for tests on virtual or real time."""
        return cls(tombstone_ttl=5.0)
