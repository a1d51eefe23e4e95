"""The public surface of shoal.cluster is pinned: changing it must be a deliberate diff."""

from __future__ import annotations

import shoal.cluster
import shoal.cluster.testing
from shoal.runtime import ShoalError


def test_cluster_exports() -> None:
    assert sorted(shoal.cluster.__all__) == [
        "Cluster",
        "ClusterError",
        "ClusterEvent",
        "ClusterNotice",
        "ClusterSettings",
        "CurrentClusterState",
        "DownAll",
        "InvalidTransitionError",
        "KeepMajority",
        "KeepOldest",
        "LeaderChanged",
        "Member",
        "MemberDowned",
        "MemberEvent",
        "MemberExited",
        "MemberJoined",
        "MemberLeft",
        "MemberRemoved",
        "MemberStatus",
        "MemberUp",
        "MemberWeaklyUp",
        "ProtocolError",
        "ReachableMember",
        "StaticQuorum",
        "Strategy",
        "Subscriber",
        "Subscription",
        "UnreachableMember",
    ]
    for name in shoal.cluster.__all__:
        assert getattr(shoal.cluster, name) is not None


def test_errors_form_one_hierarchy() -> None:
    assert issubclass(shoal.cluster.InvalidTransitionError, shoal.cluster.ClusterError)
    assert issubclass(shoal.cluster.ProtocolError, shoal.cluster.ClusterError)
    assert issubclass(shoal.cluster.ClusterError, ShoalError)


def test_testing_kit_exports() -> None:
    assert sorted(shoal.cluster.testing.__all__) == [
        "advance_until",
        "convergence_rounds",
        "finish_shutdowns",
        "form_cluster",
        "run_for",
        "start_node",
        "up_gossip",
    ]
