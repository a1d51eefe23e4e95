"""Cluster membership: members, their lifecycle, cluster events, settings, and
the split-brain resolver's strategies.

This first part is the pure core of the cluster, with no event loop, socket
or clock: the membership state machine (``Joining -> (WeaklyUp) -> Up ->
Leaving -> Exiting -> Removed``, and ``Down -> Removed``), the gossip state
and its merge, convergence, the leader and its actions, reachability, the
phi-accrual failure detector's arithmetic, the heartbeat ring and the
split-brain resolver's decisions. It follows Akka's membership model
(design §4); where it departs from Akka, the docstring of the rule says so.

:class:`Cluster` is a node's handle on it (``Cluster.start(system)`` after
remoting): joining through seed nodes, push-pull gossip and heartbeats on
remoting's control lane (``proto/cluster.proto``), the phi-accrual failure
detector, the split-brain resolver (on by default), ``leave``, ``down``,
``wait_up`` and event subscriptions. The same code runs over gRPC and over
:class:`shoal.remote.testing.MemoryNetwork` on a manual clock;
:mod:`shoal.cluster.testing` forms clusters there. ``shoal node`` (see
:mod:`shoal.cli`) runs one node as a process.
"""

from ._cluster import Cluster as Cluster
from ._errors import ClusterError as ClusterError
from ._errors import InvalidTransitionError as InvalidTransitionError
from ._errors import ProtocolError as ProtocolError
from ._events import ClusterEvent as ClusterEvent
from ._events import CurrentClusterState as CurrentClusterState
from ._events import LeaderChanged as LeaderChanged
from ._events import MemberDowned as MemberDowned
from ._events import MemberEvent as MemberEvent
from ._events import MemberExited as MemberExited
from ._events import MemberJoined as MemberJoined
from ._events import MemberLeft as MemberLeft
from ._events import MemberRemoved as MemberRemoved
from ._events import MemberUp as MemberUp
from ._events import MemberWeaklyUp as MemberWeaklyUp
from ._events import ReachableMember as ReachableMember
from ._events import UnreachableMember as UnreachableMember
from ._member import Member as Member
from ._member import MemberStatus as MemberStatus
from ._sbr import DownAll as DownAll
from ._sbr import KeepMajority as KeepMajority
from ._sbr import KeepOldest as KeepOldest
from ._sbr import StaticQuorum as StaticQuorum
from ._sbr import Strategy as Strategy
from ._settings import ClusterSettings as ClusterSettings
from ._subscription import ClusterNotice as ClusterNotice
from ._subscription import Subscriber as Subscriber
from ._subscription import Subscription as Subscription

__all__ = [
    # the node's handle
    "Cluster",
    "Subscriber",
    "Subscription",
    "ClusterNotice",
    # members
    "Member",
    "MemberStatus",
    # events
    "ClusterEvent",
    "MemberEvent",
    "CurrentClusterState",
    "MemberJoined",
    "MemberWeaklyUp",
    "MemberUp",
    "MemberLeft",
    "MemberExited",
    "MemberDowned",
    "MemberRemoved",
    "UnreachableMember",
    "ReachableMember",
    "LeaderChanged",
    # settings and split-brain resolver strategies
    "ClusterSettings",
    "Strategy",
    "KeepMajority",
    "KeepOldest",
    "StaticQuorum",
    "DownAll",
    # errors
    "ClusterError",
    "InvalidTransitionError",
    "ProtocolError",
]
