"""Node-to-node messaging over gRPC: remote actor refs, remote ask and death watch.

Start remoting once per actor system; from then on actors of other nodes are
reached exactly like local ones::

    async with ActorSystem("app") as system:
        remoting = await Remoting.start(system, RemoteSettings(port=2552))
        counter = system.resolve("shoal://app@10.0.0.2:2552/user/counter")
        counter.tell(Add(1))
        total = await counter.ask(Get())

One ordered gRPC stream carries everything from one node to another;
envelopes are batched per peer and flushed at the end of the loop turn (a
small batch that keeps growing waits a few turns more). A
node whose peer already has a call open to it writes on that call's server
side instead of opening its own, so two nodes usually share one connection.
Refs inside messages travel as paths, so replies and forwarding work across
nodes. See ``proto/remote.proto`` for the wire format.

Safe by default: a node listens on loopback unless told otherwise, and
listening on any other address needs ``cluster_secret`` or ``tls`` (or the
logged opt-out ``allow_unauthenticated``). Peers may address user actors
only (system actors opt in with ``Remoting.accept_control``), never stop a
guardian, and send death-watch frames only for watches that exist. A node
dials only addresses its own code resolved (or ``Remoting.reach``), never
one merely named in a peer's frame; refs arriving in messages keep no state
until used; every per-peer queue and table is bounded (see
``RemoteSettings``). The system's own messages (death watch, remote stop,
``Remoting.send_control``) travel on a control lane written before user
traffic, so a slow user flow neither delays nor drops them.

The network is a :class:`Transport` (``RemoteSettings.transport``): gRPC by
default, or :class:`shoal.remote.testing.MemoryNetwork`, many nodes in one
process with faults (partition, drop, delay, kill, restart) as methods.

Latency: with grpcio's default EventEngine endpoints every stream operation
wakes another gRPC thread. Nodes started with
``GRPC_EXPERIMENTS=-event_engine_client,-event_engine_listener`` in their
environment use gRPC's previous socket layer and answer a remote ask ~30 us
sooner on a small machine (``benchmarks/remote.py --grpc-io`` measures both).
"""

from ._errors import NodeGoneError as NodeGoneError
from ._errors import OutboxFullError as OutboxFullError
from ._errors import RemoteAskError as RemoteAskError
from ._errors import RemoteError as RemoteError
from ._errors import RemotingStartError as RemotingStartError
from ._errors import UnreachableError as UnreachableError
from ._events import PeerConnected as PeerConnected
from ._events import PeerDisconnected as PeerDisconnected
from ._events import PeerEvent as PeerEvent
from ._events import PeerQuarantined as PeerQuarantined
from ._grpc import GrpcTransport as GrpcTransport
from ._metrics import RemoteMetrics as RemoteMetrics
from ._ref import RemoteActorRef as RemoteActorRef
from ._remoting import PeerStatus as PeerStatus
from ._remoting import Remoting as Remoting
from ._settings import RemoteSettings as RemoteSettings
from ._settings import TlsSettings as TlsSettings
from ._transport import Transport as Transport

__all__ = [
    # the transport
    "Remoting",
    "RemoteActorRef",
    "PeerStatus",
    "RemoteMetrics",
    # events on the system's event stream
    "PeerEvent",
    "PeerConnected",
    "PeerDisconnected",
    "PeerQuarantined",
    # the network under it (the in-memory one is in shoal.remote.testing)
    "Transport",
    "GrpcTransport",
    # settings
    "RemoteSettings",
    "TlsSettings",
    # errors
    "NodeGoneError",
    "OutboxFullError",
    "RemoteAskError",
    "RemoteError",
    "RemotingStartError",
    "UnreachableError",
]
