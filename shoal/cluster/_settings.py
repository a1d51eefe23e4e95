"""The cluster's settings: one typed object, production defaults, a testing preset."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from shoal.runtime import Address

STRATEGIES = ("keep-majority", "keep-oldest", "static-quorum", "down-all")
"""The split-brain resolver strategies ``ClusterSettings.sbr_strategy`` accepts."""


@dataclass(frozen=True, slots=True)
class ClusterSettings:
    """How a node's cluster membership behaves. Every field has a production default.

    ``ClusterSettings.testing()`` is the fast preset for tests. Invalid
    values raise ``ValueError`` naming the setting, when the object is made.
    All durations are seconds on the node's clock.
    """

    seed_nodes: tuple[str, ...] = ()
    """Addresses (``system@host:port``) of the nodes a new node joins through.
    The first seed forms the cluster when no other seed answers within
    ``seed_node_timeout``; every other node retries the seeds with backoff."""

    roles: frozenset[str] = frozenset()
    """Roles of this node (for the resolver's ``sbr_role``, singletons, sharding)."""

    gossip_interval: float = 1.0
    """Time between gossip rounds; the leader acts on the same tick. A
    change reaches all of ``N`` members in about ``log3(N)`` rounds of
    push-pull gossip, and convergence (everyone has *seen* it) takes about
    as many again."""

    seed_node_timeout: float = 5.0
    """How long a joining node waits for a seed's answer before trying again;
    the first seed forms the cluster alone after this long without an
    answer from the other seeds."""

    join_retry_min: float = 0.5
    """First delay between join attempts. Attempt ``n`` (from 0) waits
    ``min(join_retry_max, join_retry_min * 2 ** n)``."""

    join_retry_max: float = 10.0
    """Upper bound of the delay between join attempts."""

    heartbeat_interval: float = 1.0
    """Time between heartbeats to each monitored neighbour. The phi detector's
    first estimate of the interval is this value, with a standard deviation
    of a quarter of it."""

    monitored_neighbours: int = 5
    """How many ring neighbours each node sends heartbeats to (the next ``n``
    members in address order; see ``receivers``). The cost per node is
    ``n`` heartbeats per interval whatever the cluster size; each node is
    watched by ``n`` others."""

    phi_threshold: float = 8.0
    """A monitored node is unreachable once ``phi >= phi_threshold``, where
    ``phi = -log10(1 - F(t))``, ``t`` the time since its last heartbeat and
    ``F`` the normal CDF of the observed intervals with mean
    ``mean + acceptable_heartbeat_pause`` and standard deviation
    ``max(stddev, min_std_deviation)``. With the defaults (1 s intervals,
    3 s pause, 0.1 s deviation), phi reaches 8 about ``4.5`` s after the last
    heartbeat. phi 8 means a false suspicion chance of ``10**-8`` under the model."""

    acceptable_heartbeat_pause: float = 3.0
    """Pause (GC, a busy loop, a lost heartbeat) added to the mean interval
    before a node is suspected; the main knob of detection time."""

    min_std_deviation: float = 0.1
    """Floor of the interval standard deviation, so very regular heartbeats
    do not make phi jump on the first small delay."""

    max_sample_size: int = 1000
    """Heartbeat intervals kept per monitored node (a sliding window)."""

    weakly_up_after: float | None = 7.0
    """While unreachable members block convergence, a joiner the leader has
    seen Joining for this long becomes WeaklyUp (usable, not counted for
    quorum). ``None`` disables WeaklyUp."""

    prune_tombstones_after: float = 24 * 3600.0
    """How long a removed incarnation is remembered (and refused) after removal."""

    sbr_strategy: str = "keep-majority"
    """Split-brain resolver strategy: ``keep-majority`` (ties: the side with
    the lowest address survives), ``keep-oldest``, ``static-quorum`` or
    ``down-all``. The resolver is always on."""

    sbr_stable_after: float = 7.0
    """The resolver decides only after the set of unreachable members (and
    the membership) has not changed for this long. Time from a crash to the
    removal of the node is held to ``removal_bound``."""

    sbr_role: str | None = None
    """Count only members with this role in the resolver's decisions."""

    sbr_down_if_alone: bool = True
    """``keep-oldest``: if the oldest member is alone on its side, down it
    and keep the other side instead."""

    sbr_quorum_size: int | None = None
    """``static-quorum``: the side with at least this many members survives.
    Required for that strategy; a cluster larger than ``2 * quorum - 1`` is
    downed entirely."""

    def __post_init__(self) -> None:
        for name in (
            "gossip_interval",
            "seed_node_timeout",
            "join_retry_min",
            "join_retry_max",
            "heartbeat_interval",
            "acceptable_heartbeat_pause",
            "min_std_deviation",
            "sbr_stable_after",
            "prune_tombstones_after",
        ):
            value = getattr(self, name)
            if not value > 0:
                raise ValueError(f"{name} must be positive, got {value!r}")
        if self.join_retry_max < self.join_retry_min:
            raise ValueError("join_retry_max must be >= join_retry_min")
        if self.weakly_up_after is not None and not self.weakly_up_after > 0:
            raise ValueError(
                f"weakly_up_after must be positive or None, got {self.weakly_up_after}"
            )
        if self.monitored_neighbours < 1:
            raise ValueError(f"monitored_neighbours must be >= 1, got {self.monitored_neighbours}")
        if self.max_sample_size < 2:
            raise ValueError(f"max_sample_size must be >= 2, got {self.max_sample_size}")
        if not self.phi_threshold > 0:
            raise ValueError(f"phi_threshold must be positive, got {self.phi_threshold}")
        if self.sbr_strategy not in STRATEGIES:
            raise ValueError(
                f"sbr_strategy {self.sbr_strategy!r} is unknown; use one of {', '.join(STRATEGIES)}"
            )
        if self.sbr_strategy == "static-quorum" and (
            self.sbr_quorum_size is None or self.sbr_quorum_size < 1
        ):
            raise ValueError("sbr_quorum_size must be >= 1 with sbr_strategy 'static-quorum'")
        for seed in self.seed_nodes:
            try:
                address = Address.parse(seed)
            except ValueError as error:
                raise ValueError(f"seed_nodes: {error}") from None
            if not address.has_host:
                raise ValueError(f"seed_nodes: {seed!r} has no host:port")

    @property
    def seed_addresses(self) -> tuple[Address, ...]:
        """``seed_nodes``, parsed."""
        return tuple(Address.parse(seed) for seed in self.seed_nodes)

    @property
    def removal_bound(self) -> float:
        """The time a crashed member's removal is held to (issue 10's target), in seconds.

        ``acceptable_heartbeat_pause + sbr_stable_after + 2 * gossip_interval``.
        Detection itself ends a heartbeat interval and a few standard
        deviations after the pause runs out (see ``phi_threshold``), so the
        resolver's decision and the removal must together take less than two
        gossip rounds to stay under it.
        """
        return self.acceptable_heartbeat_pause + self.sbr_stable_after + 2 * self.gossip_interval

    @classmethod
    def testing(cls, **overrides: Any) -> ClusterSettings:
        """Fast gossip, detection and decisions for tests; every field can be overridden.

        Gossip every 0.1 s, heartbeats every 0.05 s, a 0.5 s acceptable
        pause, decisions after 1 s of stability: ``removal_bound`` is
        1.7 s. A crashed node is found unreachable ``0.05 + 0.5 + 5.226 *
        0.01 ~= 0.602`` s after its last heartbeat reply (phi 8 is 5.226
        standard deviations past the mean; the node checks at that moment,
        not on its next tick), so the resolver downs it at most 1.602 s
        after the crash and the leader removes it within the round trips
        that follow, 0.1 s inside the bound.
        """
        base = cls(
            gossip_interval=0.1,
            seed_node_timeout=0.5,
            join_retry_min=0.05,
            join_retry_max=0.5,
            heartbeat_interval=0.05,
            acceptable_heartbeat_pause=0.5,
            min_std_deviation=0.01,
            weakly_up_after=1.0,
            prune_tombstones_after=60.0,
            sbr_stable_after=1.0,
        )
        return replace(base, **overrides)
