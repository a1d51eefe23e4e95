"""The remoting extension: a node's transport endpoint, its peers, and the cluster's hooks."""

from __future__ import annotations

import asyncio
import itertools
import logging
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Final

from shoal.runtime import (
    ActorPath,
    ActorRef,
    Address,
    LocalActorRef,
    RateLimitedLog,
    ShutdownPhase,
    UniqueAddress,
)

from ._association import Association
from ._errors import RemotingStartError
from ._events import PeerQuarantined, peer_address
from ._grpc import GrpcTransport
from ._inbound import Inbound
from ._link import State
from ._metrics import RemoteCollector, RemoteMetrics
from ._ref import RemoteActorRef
from ._settings import RemoteSettings

if TYPE_CHECKING:
    from shoal.runtime import ActorSystem

    from ._transport import Endpoint

_log: Final = logging.getLogger("shoal.remote")

# Bounds of the path <-> ref caches: misses only cost a path parse or a
# tree walk, so they are simply cleared when full.
_CACHE_LIMIT: Final = 50_000


@dataclass(frozen=True, slots=True)
class PeerStatus:
    """What this node knows about one peer (a snapshot)."""

    address: str
    uid: int | None
    """The peer's incarnation, once a handshake told it."""
    state: str
    """``idle``, ``connecting``, ``connected``, ``backoff`` or ``closed`` (outbound stream)."""
    queued: int
    """Envelopes waiting in its outbox."""
    watching: int
    """Its actors watched by actors of this node."""
    watched_by: int
    """Actors of this node watched by its actors."""


class Remoting:
    """A node's remote transport: start it once per :class:`ActorSystem`.

    ::

        remoting = await Remoting.start(system, RemoteSettings(port=2552))
        ref = system.resolve("shoal://app@10.0.0.2:2552/user/counter")
        ref.tell(Add(1))

    After ``start`` the system's address is ``name@host:port`` and every
    local ref's path carries it; ``system.resolve`` returns
    :class:`RemoteActorRef` for other nodes' paths. The extension is closed
    with the system (``aclose`` flushes outboxes, then closes streams).

    Hooks for the cluster layer: :meth:`node_gone` and :meth:`quarantine`.
    All methods are called on the system's event loop.
    """

    shutdown_phase: ClassVar[ShutdownPhase] = ShutdownPhase.CLOSE_REMOTING
    """``aclose`` runs in this phase of the system's coordinated shutdown."""

    def __init__(self, system: ActorSystem) -> None:
        # Created by ``system.extension(Remoting)``; ``start()`` does the rest.
        self.system = system
        self.loop = system.loop
        self.settings = RemoteSettings()
        self.metrics = RemoteMetrics()
        self.uid = 0
        self.port = 0
        self.rng = system.random
        self.bad_log = RateLimitedLog(_log, system.clock, 5, 10.0)
        self.link_log = RateLimitedLog(_log, system.clock, 5, 10.0, level=logging.INFO)
        self.next_id = itertools.count(1).__next__
        self._address = system.name
        self._unique_address = UniqueAddress(Address(system.name), 0)
        self._prefix = ""
        self.inbound = Inbound(self)
        """Delivers what peers send, on their calls to this node and on this node's to them."""
        self._endpoint: Endpoint | None = None
        self._collector: RemoteCollector | None = None
        self._associations: dict[str, Association] = {}
        self._remote_refs: dict[str, RemoteActorRef] = {}
        self._local_refs: dict[str, LocalActorRef] = {}
        self._paths: dict[ActorRef, str] = {}
        self.quarantined: dict[tuple[str, int], float] = {}
        """Peer incarnations (address, uid) this node refuses, with when (system clock),
        oldest first; bounded by ``quarantine_max_entries`` and ``quarantine_max_age``."""
        self._dialable: set[str] = set()
        self._control_targets: set[str] = set()
        self.redirects: dict[ActorRef, ActorRef] = {}
        """Local actors whose messages from peers go to another ref first (see
        :meth:`redirect_inbound`); read by the inbound once per route of a frame."""
        self.receiving = False
        """Set while a peer's frame is decoded: refs resolved meanwhile were named by
        the peer, not asked for by this node's code, and do not make it dial."""
        self._started = False
        self._closed = False

    # -- lifecycle -----------------------------------------------------------------------

    @classmethod
    async def start(cls, system: ActorSystem, settings: RemoteSettings | None = None) -> Remoting:
        """Listen on ``settings.host:port`` and make ``system`` reachable from other nodes.

        Raises :class:`RemotingStartError` if remoting already runs on this
        system, the address cannot be bound, or the TLS files cannot be read.
        """
        remoting = system.extension(cls)
        await remoting._start_once(  # noqa: SLF001 (its own class)
            settings if settings is not None else RemoteSettings()
        )
        return remoting

    @classmethod
    def get(cls, system: ActorSystem) -> Remoting:
        """The started remoting of ``system``; raises :class:`RemotingStartError` if none."""
        remoting = system.extension(cls)
        if not remoting.is_started:
            raise RemotingStartError(f"remoting is not started on {system.name}")
        return remoting

    @property
    def is_started(self) -> bool:
        """Whether :meth:`start` has made this node reachable."""
        return self._started

    async def _start_once(self, settings: RemoteSettings) -> None:
        if self._started:
            raise RemotingStartError(f"remoting already runs on {self.address}")
        await self._start(settings)

    async def _start(self, settings: RemoteSettings) -> None:
        self._check_authentication(settings)
        self.settings = settings
        self.rng = settings.rng if settings.rng is not None else self.system.random
        self.bad_log = RateLimitedLog(
            _log, self.system.clock, settings.bad_input_log_limit, settings.bad_input_log_interval
        )
        self.link_log = RateLimitedLog(
            _log,
            self.system.clock,
            settings.bad_input_log_limit,
            settings.bad_input_log_interval,
            level=logging.INFO,
        )
        # Not drawn from ``self.rng``: two nodes seeded alike must still differ.
        self.uid = settings.uid if settings.uid is not None else secrets.randbits(63) or 1
        self.inbound = Inbound(self)  # with these settings
        transport = settings.transport if settings.transport is not None else GrpcTransport()
        endpoint = self._endpoint = await transport.bind(
            settings, self.system.clock, self.inbound.serve
        )
        port = endpoint.port
        host = settings.public_host
        self.port = port
        self._unique_address = UniqueAddress(Address(self.system.name, host, port), self.uid)
        self._address = str(self._unique_address.address)
        self._prefix = f"shoal://{self._address}/"
        try:
            self.system.install_provider(self)
        except ValueError as exc:
            self._endpoint = None
            await endpoint.close()
            raise RemotingStartError(str(exc)) from exc
        await endpoint.start()
        self._collector = RemoteCollector(self._address, self.metrics, self._gauges)
        self.system.metrics.register(self._collector)
        self._started = True
        _log.info("[%s] remoting listening (uid %d)", self._address, self.uid)

    def _check_authentication(self, settings: RemoteSettings) -> None:
        """Refuse to listen beyond loopback without a cluster secret or mutual TLS."""
        if settings.loopback or settings.cluster_secret is not None or settings.tls is not None:
            return
        if settings.allow_unauthenticated:
            _log.warning(
                "[%s] remoting listens on %s without a cluster secret or TLS "
                "(allow_unauthenticated=True): anyone who can reach it can send to "
                "and stop this node's actors",
                self.system.name,
                settings.host or "every interface",
            )
            return
        raise RemotingStartError(
            f"remoting would listen on {settings.host or 'every interface'!r}, which is not "
            "a loopback address, without authentication: set "
            "RemoteSettings(cluster_secret=...) (the same secret on every node), or "
            "tls=TlsSettings(...) for mutual TLS, or allow_unauthenticated=True on a "
            "trusted network"
        )

    async def aclose(self) -> None:
        """Flush outboxes (bounded by ``shutdown_flush_timeout``), close streams and the server.

        Idempotent; called by the system's shutdown. Asks still waiting fail
        with :class:`UnreachableError`.
        """
        if not self._started or self._closed:
            return
        self._closed = True
        await asyncio.gather(*(a.aclose() for a in list(self._associations.values())))
        if self._endpoint is not None:
            await self._endpoint.close()
        if self._collector is not None:
            self.system.metrics.unregister(self._collector)
        _log.info("[%s] remoting closed", self._address)

    @property
    def endpoint(self) -> Endpoint:
        """This node's endpoint on its transport (listening, and dialing peers)."""
        if self._endpoint is None:
            raise RemotingStartError(f"remoting is not started on {self.system.name}")
        return self._endpoint

    # -- identity and the RefProvider protocol --------------------------------------------

    @property
    def address(self) -> str:
        """This node's address, ``system@host:port``."""
        return self._address

    @property
    def unique_address(self) -> UniqueAddress:
        """This node's typed address and incarnation uid (uid 0 before ``start``)."""
        return self._unique_address

    def resolve(self, path: ActorPath) -> ActorRef:
        """A ref for ``path`` on another node (called by ``system.resolve``).

        Resolved by this node's code, it lets the node dial the path's address;
        resolved while a peer's frame is decoded (a sender, a ref inside a
        message) it does not (see :meth:`may_dial`).
        """
        ref = self.remote_ref(str(path))
        if not self.receiving:
            self._dialable.add(ref.address)
        return ref

    def reach(self, address: str) -> None:
        """Allow this node to open calls to ``address`` (``system@host:port``).

        ``system.resolve`` does it for the paths this node's code resolves;
        the cluster layer calls it for members.
        """
        self._dialable.add(address)

    def may_dial(self, address: str) -> bool:
        """Whether this node opens calls to ``address``.

        Only to addresses its own code asked to reach (:meth:`reach`,
        ``system.resolve``), never to one merely named in a peer's frame: a
        reply to such a sender is written on the call its node opened to this
        one, or waits for such a call (or for local code to resolve the
        address) until ``unreachable_drop_after``, and then fails like one to
        an unreachable peer.
        """
        return address in self._dialable

    def accept_control(self, ref: ActorRef) -> None:
        """Let peers send ``ref`` (a system actor of this node) control messages.

        Peers may address user actors (``/user/...``) only; a message to a
        guardian or a system actor arriving from the network is refused and
        counted (``forbidden_target``), unless the actor was exposed here.
        For the cluster's daemons (heartbeats, gossip), sent with
        :meth:`send_control`.
        """
        path = str(ref.path)
        if not path.startswith(self._prefix + "system/"):
            raise ValueError(f"only system actors of this node take control messages: {path}")
        self._control_targets.add(path)

    def redirect_inbound(self, ref: ActorRef, receiver: ActorRef | None) -> None:
        """Give the messages and asks peers send local actor ``ref`` to ``receiver`` first.

        For a layer that can handle some of them without a turn of ``ref``'s
        actor (cluster sharding hands an entity's message from the network
        straight to the running entity). ``receiver.tell``/``deliver`` are
        called instead of ``ref``'s, on the loop, in arrival order, with the
        decoded message, its sender and (``deliver``) the ask's promise; they
        must not block or raise, and pass on to ``ref`` whatever they do not
        handle themselves (a promise belongs to whoever takes its message).
        Addressability checks, stops and watches still concern ``ref``.
        ``receiver=None`` removes the redirect.
        """
        if receiver is None:
            self.redirects.pop(ref, None)
        else:
            self.redirects[ref] = receiver

    def is_control_target(self, path: str) -> bool:
        return path in self._control_targets

    def send_control(
        self, target: ActorRef, message: object, sender: ActorRef | None = None
    ) -> None:
        """Send ``message`` to a system actor of another node on the control lane.

        The control lane is written before user traffic and is not bounded by
        the user outbox (see ``RemoteSettings.control_outbox_capacity``): a
        slow user flow does not delay it. The target must have been exposed
        with :meth:`accept_control` on its node. Like ``tell``, it never
        raises: what cannot be sent goes to dead letters.
        """
        if type(target) is not RemoteActorRef:
            raise TypeError(f"send_control needs a ref of another node, not {target!r}")
        target.bound().send_control(target.path_str, message, sender)

    @property
    def peers(self) -> dict[str, PeerStatus]:
        """A snapshot of every peer this node has talked to, by address."""
        return {
            address: PeerStatus(
                address,
                a.uid,
                a.link.state.value,
                a.queued,
                sum(len(w) for w in a.watches.watching.values()),
                sum(len(w) for w in a.watches.watched_by.values()),
            )
            for address, a in self._associations.items()
        }

    # -- hooks for the cluster layer ------------------------------------------------------

    def node_gone(self, address: str) -> None:
        """Declare the node at ``address`` gone (its current incarnation).

        Every actor of this node watching one of its actors gets
        ``Terminated(ref, existence_confirmed=False)``; its watches of this
        node's actors are dropped; asks waiting for it fail with
        :class:`NodeGoneError`; its outbox goes to dead letters. Talking to
        the address later starts afresh. Idempotent.
        """
        assoc = self._associations.get(address)
        if assoc is not None:
            assoc.declare_gone("gone")

    def quarantine(self, address: str, uid: int) -> None:
        """Refuse incarnation ``uid`` of ``address`` from now on, and declare it gone.

        Its streams to this node are closed and its handshakes refused;
        frames this node would send it go to dead letters. A new incarnation
        (another uid) at the same address is accepted. Idempotent.
        """
        key = (address, uid)
        if key in self.quarantined:
            return
        self._add_quarantine(key)
        self.metrics.quarantines += 1
        _log.warning("[%s] quarantined %s uid %d", self._address, address, uid)
        self.system.event_stream.publish(PeerQuarantined(peer_address(address, uid), "quarantined"))
        assoc = self._associations.get(address)
        if assoc is not None and assoc.uid in (uid, None):
            assoc.declare_gone("quarantined")
            assoc.link.abort()

    def _add_quarantine(self, key: tuple[str, int]) -> None:
        quarantined = self.quarantined
        now = self.system.clock.now()
        quarantined[key] = now
        oldest = now - self.settings.quarantine_max_age
        limit = self.settings.quarantine_max_entries
        for entry, since in list(quarantined.items()):  # oldest first
            if since > oldest and len(quarantined) <= limit:
                break
            del quarantined[entry]
            self.metrics.quarantine_evicted += 1

    def is_quarantined(self, address: str, uid: int) -> bool:
        since = self.quarantined.get((address, uid))
        if since is None:
            return False
        if self.system.clock.now() - since >= self.settings.quarantine_max_age:
            del self.quarantined[address, uid]
            self.metrics.quarantine_evicted += 1
            return False
        return True

    def incarnation_in_use(self, assoc: Association, uid: int) -> bool:
        """Whether another incarnation than ``uid`` holds ``assoc``'s address with a
        healthy stream (an inbound handshake claiming the address is then refused:
        replacing a live incarnation is the cluster layer's decision, through
        :meth:`quarantine`)."""
        old = assoc.uid
        return old is not None and old != uid and assoc.link.has_stream_of(old)

    def learned_uid(self, assoc: Association, uid: int) -> None:
        """A handshake (either direction) told the peer's incarnation."""
        old = assoc.uid
        if old == uid:
            return
        assoc.uid = uid
        if old is None:
            return
        # A new incarnation at the same address: the old one is gone for good.
        self.metrics.incarnations_replaced += 1
        self._add_quarantine((assoc.address, old))
        self.system.event_stream.publish(
            PeerQuarantined(peer_address(assoc.address, old), "restarted")
        )
        self.link_log.report(
            "restarted",
            "[%s] %s restarted (uid %d, was %d)",
            self._address,
            assoc.address,
            uid,
            old,
        )
        assoc.incarnation_gone("restarted")
        assoc.link.incarnation_replaced(old)

    # -- peers, refs and paths -------------------------------------------------------------

    def _check_address(self, address: str) -> None:
        system, at, host_port = address.partition("@")
        _, colon, port = host_port.rpartition(":")
        if system != self.system.name or not at or not colon or not port.isdigit():
            raise ValueError(f"not a peer address of system {self.system.name}: {address!r}")

    def association(self, address: str) -> Association:
        """The state kept for peer ``address``, made if need be; ``ValueError`` for a bad
        address."""
        assoc = self._associations.get(address)
        if assoc is None:
            self._check_address(address)
            if address == self._address:
                raise ValueError(f"{address} is this node")
            if len(self._associations) >= self.settings.max_idle_associations:
                self._evict_idle(self._associations.values())
            assoc = self._associations[address] = Association(self, address)
            if self._closed:
                assoc.closed = True  # refs still resolve; what they send is dead
        return assoc

    def _evict_idle(self, assocs: Iterable[Association]) -> None:
        """Forget idle peers, oldest first, until at most ``max_idle_associations`` are idle."""
        idle = [a for a in assocs if a.is_idle()]
        for assoc in idle[: max(0, len(idle) + 1 - self.settings.max_idle_associations)]:
            assoc.retired = True
            del self._associations[assoc.address]
            self.metrics.associations_evicted += 1

    def remote_ref(self, path: str) -> RemoteActorRef:
        """The (cached) ref for an actor path of another node; ``ValueError`` if malformed.

        A ref holds no state for its peer: the peer's :class:`Association` is
        made when the ref is first used to send or watch.
        """
        ref = self._remote_refs.get(path)
        if ref is None:
            parsed = ActorPath.parse(path)
            if parsed.host_port is None:
                raise ValueError(f"actor path without a host and port: {path!r}")
            self._check_address(parsed.address)
            ref = RemoteActorRef(self, parsed, path)
            if len(self._remote_refs) >= _CACHE_LIMIT:
                self._remote_refs.clear()
            self._remote_refs[path] = ref
        return ref

    def path_of(self, ref: ActorRef) -> str:
        """``str(ref.path)``, cached: senders and watchers are encoded on the hot path."""
        path = self._paths.get(ref)
        if path is None:
            if type(ref) is RemoteActorRef:
                return ref.path_str
            path = str(ref.path)
            if len(self._paths) >= _CACHE_LIMIT:
                self._paths.clear()
            self._paths[ref] = path
        return path

    def local_target(self, path: str) -> ActorRef | None:
        """The live local actor at ``path``, a dead-letter ref for a path of this node
        with no actor, or ``None`` for a path that is not of this node."""
        ref = self._local_refs.get(path)
        if ref is not None and ref.is_alive:
            return ref
        if not path.startswith(self._prefix):
            return None
        try:
            found = self.system.resolve(path)
        except ValueError:
            return None
        if type(found) is LocalActorRef:
            if len(self._local_refs) >= _CACHE_LIMIT:
                self._local_refs.clear()
            self._local_refs[path] = found
        return found

    def resolve_or_none(self, path: str) -> ActorRef | None:
        """Any ref for ``path`` (local, remote or dead), ``None`` if empty or malformed."""
        if not path:
            return None
        ref = self._remote_refs.get(path)
        if ref is not None:
            return ref
        if path.startswith(self._prefix):
            return self.local_target(path)
        try:
            return self.system.resolve(path)
        except ValueError:
            return None

    def _gauges(self) -> dict[str, tuple[str, float]]:
        assocs = self._associations.values()
        return {
            "shoal_remote_peers_connected": (
                "Peers with an open outbound stream.",
                sum(1 for a in assocs if a.link.state is State.CONNECTED),
            ),
            "shoal_remote_inbound_streams": (
                "Calls from peers this node is serving.",
                self.inbound.streams,
            ),
            "shoal_remote_outbox_envelopes": (
                "Envelopes queued for peers (both lanes).",
                sum(a.queued for a in assocs),
            ),
            "shoal_remote_outbox_bytes": (
                "Payload bytes queued for peers on the user lane (outbox_max_bytes each).",
                sum(a.queued_bytes for a in assocs),
            ),
            "shoal_remote_control_queued": (
                "Envelopes queued for peers on the control lane (control_outbox_capacity each).",
                sum(a.control_queued for a in assocs),
            ),
            "shoal_remote_associations": (
                "Peers this node keeps state for (max_idle_associations idle ones).",
                len(self._associations),
            ),
            "shoal_remote_quarantined": (
                "Quarantined incarnations remembered (quarantine_max_entries).",
                len(self.quarantined),
            ),
        }

    def __repr__(self) -> str:
        return f"<Remoting {self._address} uid={self.uid}>"
