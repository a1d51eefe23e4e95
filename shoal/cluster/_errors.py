"""The cluster's error hierarchy.

Every error :mod:`shoal.cluster` raises on purpose is defined here and
exported from the package. Each docstring says who raises it and when.
"""

from __future__ import annotations

from shoal.runtime import ShoalError


class ClusterError(ShoalError):
    """Base class of the errors of :mod:`shoal.cluster`."""


class InvalidTransitionError(ClusterError):
    """A member status change the membership state machine forbids.

    Raised by :meth:`Member.with_status` (and so by every membership
    operation built on it) for a transition outside
    :meth:`MemberStatus.can_become`, e.g. ``Up -> Joining`` or anything out
    of ``Removed``. Gossip that *claims* such a transition is never applied:
    merging keeps the status furthest along the lifecycle, so the claim is
    ignored rather than raised.
    """

    def __init__(self, member: object, current: object, requested: object) -> None:
        super().__init__(f"member {member} cannot go from {current} to {requested}")
        self.current = current
        self.requested = requested


class ProtocolError(ClusterError):
    """A cluster protocol frame that cannot be decoded into a valid message.

    Raised by the cluster's codec when a peer sends bytes that are not a
    ``ClusterEnvelope``, or one that refers to nodes it does not list,
    names an unknown status, or is otherwise inconsistent. The cluster
    refuses such a frame, counts it (``shoal_cluster_bad_input``), logs it
    at a rate limit and keeps its state; it never reaches user code.
    """
