"""The split-brain resolver at work: stability tracking and the leader's decisions."""

from __future__ import annotations

from shoal.runtime import UniqueAddress

from ._gossip import Gossip
from ._leader import leader
from ._member import MemberStatus
from ._sbr import Decision, SbrView, Stability, Strategy, decide, strategy_from_settings
from ._settings import ClusterSettings

_GONE = frozenset({MemberStatus.DOWN, MemberStatus.EXITING})


class Downing:
    """Feeds the resolver each view and says when (and what) to decide.

    Every node tracks how long its view of the unreachable members (with
    the indirectly connected ones) and of the live membership has been
    unchanged; once it has been stable for ``sbr_stable_after``, the leader
    of each side (as that side sees it) takes the strategy's decision. Not
    thread-safe; owned by one node's cluster.
    """

    __slots__ = ("_stability", "settings", "strategy")

    def __init__(self, settings: ClusterSettings) -> None:
        self.settings = settings
        self.strategy: Strategy = strategy_from_settings(settings)
        self._stability = Stability()

    @property
    def decision_due(self) -> float | None:
        """When the current view, if nothing changes, becomes stable (``None``: all reachable)."""
        stability = self._stability
        if not stability.unreachable:
            return None
        return stability.since + self.settings.sbr_stable_after

    def observe(self, gossip: Gossip, self_node: UniqueAddress, now: float) -> Decision | None:
        """Record the view at ``now``; the decision to apply, if it is this node's to take."""
        view = SbrView.of(gossip, self_node)
        live = frozenset(m.unique_address for m in gossip.members if m.status not in _GONE)
        troubled = (view.unreachable | view.indirectly_connected()) & live
        self._stability = self._stability.observe(troubled, now, live)
        if not self._stability.is_stable(now, self.settings.sbr_stable_after):
            return None
        if leader(gossip, self_node) != self_node:
            return None
        return decide(self.strategy, view)
