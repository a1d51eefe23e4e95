"""The ``DistributedPubSub`` extension: a node's mediator, its API and its registry gossip.

How messages travel, and why: registry traffic (``Status``, ``Delta`` of
``proto/pubsub.proto``) goes as bytes on remoting's control lane to the
peer's ``/system/pubsub`` actor, like the cluster's gossip, so a busy
application can neither delay nor drop it; published messages go as one
``Deliver`` frame per interested node on the user lane, so they are bounded
by the peer's outbox (overflow: dead letters and remoting's metric) and
keep their order with the publisher's other traffic to that node. The
payload inside is encoded once per publish by the system's serialization
registry (never pickled) and decoded once per receiving node, whatever its
number of subscribers.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, ClassVar, Final

from shoal._proto import pubsub_pb2 as pb
from shoal.cluster import Cluster, ClusterNotice
from shoal.remote import Remoting
from shoal.runtime import (
    ActorRef,
    Address,
    Cancellable,
    DeadLetter,
    LocalActorRef,
    RateLimitedLog,
    SerializationError,
    ShutdownPhase,
    UniqueAddress,
)

from ._codec import Codec, Deliver, FrameError, Status, valid_name
from ._errors import InvalidTopicError, PubSubError, RegistryFullError
from ._gossip import RegistryGossip
from ._local import UNGROUPED, LocalSubscribers
from ._mediator import Command, Mediator, Register, Subscribe, Unregister, Unsubscribe
from ._metrics import PubSubCollector, PubSubMetrics
from ._registry import Delta, Groups, KeyKind, Registry
from ._settings import PubSubSettings

if TYPE_CHECKING:
    from shoal.runtime import ActorSystem

_log: Final = logging.getLogger("shoal.pubsub")
MEDIATOR_NAME: Final = "pubsub"
"""The name of the system actor (``/system/pubsub``) every node's mediator runs as."""


class DistributedPubSub:
    """A node's publish-subscribe mediator (design §7): start it on every node.

    ::

        pubsub = DistributedPubSub.get(system)            # after Cluster.start
        await pubsub.subscribe("room.42", session_ref)     # acknowledged
        sent_to = pubsub.publish("room.42", Posted(...))   # nodes it went to

    ``publish`` sends one copy to every node with subscribers of the topic;
    that node's mediator hands it to each of its subscribers. Delivery is at
    most once, like ``tell``; per publisher and subscriber, order is kept.
    Subscribers that stop are removed. Every node gossips its own
    registrations as versioned deltas (see :mod:`._registry`): at once when
    they change, and in a status round every gossip interval.

    Start it on every node of the cluster: a node without a mediator refuses
    (and counts as ``forbidden_target``) the registry frames the others send.
    Everything is called on the system's event loop; nothing blocks.
    """

    depends_on: ClassVar[tuple[type, ...]] = (Cluster,)
    shutdown_phase: ClassVar[ShutdownPhase] = ShutdownPhase.CLOSE_EXTENSIONS

    def __init__(self, system: ActorSystem) -> None:
        # Created by ``system.extension(DistributedPubSub)``; ``start()`` does the rest.
        self.system = system
        self.settings = PubSubSettings()
        self.metrics = PubSubMetrics()
        self._bad_log = RateLimitedLog(_log, system.clock, 5, 10.0)
        self._started = False
        self._closed = False

    # -- lifecycle ----------------------------------------------------------------------

    @classmethod
    def start(
        cls, system: ActorSystem, settings: PubSubSettings | None = None
    ) -> DistributedPubSub:
        """Start this node's mediator; the cluster must be started (``ClusterError``).

        Raises :class:`PubSubError` if it already runs on this system.
        """
        pubsub = system.extension(cls)
        if pubsub._started:  # noqa: SLF001 (its own class)
            raise PubSubError(f"pub/sub already runs on {system.name}")
        pubsub._begin(settings if settings is not None else PubSubSettings())  # noqa: SLF001
        return pubsub

    @classmethod
    def get(cls, system: ActorSystem) -> DistributedPubSub:
        """This node's mediator, started with default settings if it is not running yet."""
        pubsub = system.extension(cls)
        if not pubsub._started:  # noqa: SLF001 (its own class)
            pubsub._begin(PubSubSettings())  # noqa: SLF001
        return pubsub

    def _begin(self, settings: PubSubSettings) -> None:
        system = self.system
        cluster = Cluster.get(system)
        self.settings = settings
        self._cluster = cluster
        self._remoting = Remoting.get(system)
        self._self = self._remoting.unique_address
        self._address: Address = self._self.address
        self._registry = Registry(self._self)
        self._local = LocalSubscribers()
        self._codec = Codec(
            max_entries=max(settings.max_keys, settings.max_delta_entries),
            max_name_length=settings.max_name_length,
        )
        self._peers: dict[Address, ActorRef] = {}
        self._gossip = RegistryGossip(
            self._registry,
            settings,
            self.metrics,
            system.clock,
            system.random,
            self._control,
            self._wake_waiters,
            self._refuse,
        )
        self._waiters: list[tuple[str, int, asyncio.Future[int]]] = []
        self._flush_due = False
        self._tick: Cancellable | None = None
        self._actor = system.spawn_system_actor(lambda: Mediator(lambda: self), name=MEDIATOR_NAME)
        self._remoting.accept_control(self._actor)
        system.event_stream.subscribe(self._actor, DeadLetter)
        self._collector = PubSubCollector(str(self._address), self.metrics, self._gauges)
        system.metrics.register(self._collector)
        self._started = True
        self._subscription = cluster.subscribe(self._on_cluster)
        self._schedule_tick()

    async def aclose(self) -> None:
        """Stop gossiping and fail pending ``wait_for_subscribers`` (the system's shutdown)."""
        if not self._started or self._closed:
            return
        self._closed = True
        self._subscription.cancel()
        self.system.event_stream.unsubscribe(self._actor)
        if self._tick is not None:
            self._tick.cancel()
        self.system.metrics.unregister(self._collector)
        for _, _, future in self._waiters:
            if not future.done():
                future.set_exception(PubSubError(f"{self._address} shut down"))
                future.exception()
        self._waiters.clear()

    @property
    def _gossip_interval(self) -> float:
        interval = self.settings.gossip_interval
        return interval if interval is not None else self._cluster.settings.gossip_interval

    def _schedule_tick(self) -> None:
        self._tick = self.system.clock.call_later(self._gossip_interval, self._on_tick)

    # -- subscribing --------------------------------------------------------------------

    async def subscribe(self, topic: str, ref: ActorRef, group: str | None = None) -> None:
        """Subscribe ``ref`` (an actor of this node) to ``topic``, in ``group`` if given.

        Returns once this node's registry has it: from then on, publishes made
        on this node reach ``ref``, and other nodes' publishes do once the
        change reached them (``wait_for_subscribers`` there waits for it).
        Subscribing twice is harmless. :class:`InvalidTopicError` for a bad
        topic or group, :class:`PubSubError` for a ref of another node,
        :class:`RegistryFullError` beyond ``max_keys`` topics.
        """
        self._running()
        self._check(topic, "topic")
        if group is not None:
            self._check(group, "group")
        self._check_ref(ref)
        await self._ask(Subscribe(topic, group or UNGROUPED, ref))

    async def unsubscribe(self, topic: str, ref: ActorRef, group: str | None = None) -> None:
        """Undo :meth:`subscribe`; returns once this node's registry has it. Idempotent."""
        self._running()
        self._check(topic, "topic")
        if group is not None:
            self._check(group, "group")
        await self._ask(Unsubscribe(topic, group or UNGROUPED, ref))

    async def register(self, ref: ActorRef) -> None:
        """Make ``ref`` (an actor of this node) reachable by :meth:`send` to its path.

        The key is the path without the node (``/user/service``), so actors
        at the same path on several nodes share it. A stopped actor is
        unregistered. :class:`PubSubError` for a ref of another node.
        """
        self._running()
        self._check_ref(ref)
        await self._ask(Register(_path_key(ref), ref))

    async def unregister(self, path: str) -> None:
        """Undo :meth:`register` for ``path`` (``/user/service``). Idempotent."""
        self._running()
        self._check(path, "path")
        await self._ask(Unregister(path))

    async def _ask(self, command: Command) -> None:
        self._running()
        error = await self._actor.ask(command)
        if isinstance(error, PubSubError):
            raise error

    def _require_started(self) -> None:
        if not self._started:
            raise PubSubError(f"pub/sub is not started on {self.system.name}")

    def _running(self) -> None:
        self._require_started()
        if self._closed:
            raise PubSubError(f"pub/sub of {self._address} shut down")

    def _check(self, name: str, what: str) -> None:
        if not isinstance(name, str) or not valid_name(name, self.settings.max_name_length):
            error = (
                f"a {what} is a printable string of 1 to {self.settings.max_name_length} "
                f"characters, not {str(name)[:80]!r}"
            )
            self._refuse("invalid-name", error)
            raise InvalidTopicError(error)

    def _check_ref(self, ref: ActorRef) -> None:
        if type(ref) is not LocalActorRef or ref.path.node != self._address:
            error = f"only actors of this node ({self._address}) subscribe here, not {ref}"
            self._refuse("foreign-ref", error)
            raise PubSubError(error)

    # -- publishing ---------------------------------------------------------------------

    def publish(
        self,
        topic: str,
        message: object,
        *,
        one_per_group: bool = False,
        sender: ActorRef | None = None,
    ) -> int:
        """Send ``message`` to the subscribers of ``topic`` on every node; returns the number
        of nodes it was sent to (0: nobody was subscribed, as far as this node knows).

        One copy goes to each node with subscribers; that node hands it to
        every subscriber, or with ``one_per_group`` to one random subscriber
        of each group (weighted by the groups' sizes on each node;
        subscribers without a group get nothing, as in Akka). ``sender``
        becomes the subscribers' ``ctx.sender``. A message that must leave
        this node and is not serializable raises ``SerializationError``
        before anything is sent.
        """
        self._running()
        self._check(topic, "topic")
        self.metrics.published += 1
        nodes = self._registry.nodes((KeyKind.TOPIC, topic))
        if not nodes:
            return 0
        if not one_per_group:
            return self._deliver(pb.PUBLISH, topic, message, sender, dict.fromkeys(nodes, ()))
        return self._deliver(
            pb.PUBLISH_ONE_PER_GROUP, topic, message, sender, self._pick_groups(nodes)
        )

    def _pick_groups(self, nodes: Mapping[Address, Groups]) -> dict[Address, tuple[str, ...]]:
        by_group: dict[str, tuple[list[Address], list[int]]] = {}
        for address, groups in nodes.items():
            for group, count in groups:
                if group != UNGROUPED:
                    where, weights = by_group.setdefault(group, ([], []))
                    where.append(address)
                    weights.append(count)
        chosen: dict[Address, list[str]] = {}
        rng = self.system.random
        for group, (where, weights) in sorted(by_group.items()):
            address = where[0] if len(where) == 1 else rng.choices(where, weights)[0]
            chosen.setdefault(address, []).append(group)
        return {a: tuple(gs) for a, gs in chosen.items()}

    def send(
        self,
        path: str,
        message: object,
        *,
        local_affinity: bool = True,
        sender: ActorRef | None = None,
    ) -> int:
        """Send ``message`` to one actor registered at ``path`` (:meth:`register`);
        returns 1, or 0 when no node has one.

        With ``local_affinity`` this node's own actor is preferred; otherwise
        (or when it has none) a random node with one is chosen.
        """
        self._running()
        self._check(path, "path")
        self.metrics.published += 1
        nodes = self._registry.nodes((KeyKind.PATH, path))
        if not nodes:
            return 0
        if local_affinity and self._address in nodes:
            target = self._address
        else:
            where = sorted(nodes)
            target = where[0] if len(where) == 1 else self.system.random.choice(where)
        return self._deliver(pb.SEND, path, message, sender, {target: ()})

    def send_to_all(
        self,
        path: str,
        message: object,
        *,
        all_but_self: bool = False,
        sender: ActorRef | None = None,
    ) -> int:
        """Send ``message`` to the actor registered at ``path`` on every node that has one
        (but this one, with ``all_but_self``); returns the number of nodes."""
        self._running()
        self._check(path, "path")
        self.metrics.published += 1
        nodes = self._registry.nodes((KeyKind.PATH, path))
        targets = {a: () for a in nodes if not (all_but_self and a == self._address)}
        return self._deliver(pb.SEND, path, message, sender, targets) if targets else 0

    def _deliver(
        self,
        mode: int,
        key: str,
        message: object,
        sender: ActorRef | None,
        targets: Mapping[Address, tuple[str, ...]],
    ) -> int:
        me = self._address
        if not targets:
            return 0
        if len(targets) > 1 or me not in targets:
            serialized = self.system.serialization.serialize(message)
            frames: dict[tuple[str, ...], bytes] = {}
            for address, groups in targets.items():
                if address == me:
                    continue
                data = frames.get(groups)
                if data is None:
                    body = Deliver(mode, key, groups, *serialized)
                    data = frames[groups] = self._codec.encode(self.system.name, self._self, body)
                self._peer(address).tell(data, sender)
        local = targets.get(me)
        if local is not None:
            self._deliver_locally(mode, key, local, message, sender)
        return len(targets)

    def _deliver_locally(
        self,
        mode: int,
        key: str,
        groups: tuple[str, ...],
        message: object,
        sender: ActorRef | None,
    ) -> None:
        delivered = 0
        if mode == pb.PUBLISH:
            for subscribers in self._local.topics.get(key, {}).values():
                for ref in subscribers:
                    ref.tell(message, sender)
                delivered += len(subscribers)
        elif mode == pb.PUBLISH_ONE_PER_GROUP:
            by_group = self._local.topics.get(key, {})
            rng = self.system.random
            for group in groups:
                refs = by_group.get(group)
                if refs:
                    pick = list(refs)
                    pick[0 if len(pick) == 1 else rng.randrange(len(pick))].tell(message, sender)
                    delivered += 1
        else:
            target = self._local.paths.get(key)
            if target is not None:
                target.tell(message, sender)
                delivered = 1
        if delivered:
            self.metrics.delivered += delivered
        else:
            self.metrics.dropped += 1

    def _peer(self, address: Address) -> ActorRef:
        ref = self._peers.get(address)
        if ref is None:
            self._remoting.reach(str(address))
            ref = self._peers[address] = self.system.resolve(
                f"shoal://{address}/system/{MEDIATOR_NAME}"
            )
        return ref

    # -- reading ------------------------------------------------------------------------

    def topics(self) -> set[str]:
        """Every topic with subscribers on some node, as this node knows it."""
        self._require_started()
        return set(self._registry.keys(KeyKind.TOPIC))

    def subscriber_count(self, topic: str) -> int:
        """Subscribers of ``topic`` on every node, as this node knows it."""
        self._require_started()
        nodes = self._registry.nodes((KeyKind.TOPIC, topic))
        return sum(n for groups in nodes.values() for _, n in groups)

    def registered(self, path: str) -> int:
        """Nodes with an actor registered at ``path``, as this node knows it."""
        self._require_started()
        return len(self._registry.nodes((KeyKind.PATH, path)))

    async def wait_for_subscribers(self, topic: str, n: int = 1, timeout: float = 5.0) -> int:
        """Wait until this node knows at least ``n`` subscribers of ``topic`` cluster-wide.

        Returns their number; ``TimeoutError`` after ``timeout`` seconds of the
        system's clock (``ValueError`` for one that is not positive and finite);
        :class:`PubSubError` if the node shuts down meanwhile. After it
        returns, a :meth:`publish` on this node reaches them (closing the race
        between a subscribe on one node and a publish on another).
        """
        self._running()
        self._check(topic, "topic")
        if not 0 < timeout < float("inf"):
            raise ValueError(f"timeout must be positive and finite, not {timeout!r}")
        count = self.subscriber_count(topic)
        if count >= n:
            return count
        future: asyncio.Future[int] = self.system.loop.create_future()
        entry = (topic, n, future)
        self._waiters.append(entry)

        def expire() -> None:
            if not future.done():
                future.set_exception(
                    TimeoutError(
                        f"{self.subscriber_count(topic)} of {n} subscribers of {topic!r} "
                        f"after {timeout} s"
                    )
                )

        timer = self.system.clock.call_later(timeout, expire)
        try:
            return await future
        finally:
            timer.cancel()
            if entry in self._waiters:
                self._waiters.remove(entry)

    def _wake_waiters(self) -> None:
        for topic, n, future in self._waiters:
            if not future.done():
                count = self.subscriber_count(topic)
                if count >= n:
                    future.set_result(count)

    # -- the mediator actor's callbacks --------------------------------------------------

    def on_command(
        self, command: Command
    ) -> tuple[ActorRef | None, ActorRef | None, Exception | None]:
        local = self._local
        match command:
            case Subscribe(topic=topic, group=group, ref=ref):
                watched = ref in local.by_ref
                if topic not in local.topics and self._full():
                    return None, None, self._registry_full(topic)
                if local.add(topic, group, ref):
                    self._changed_topic(topic)
                return (None if watched else ref), None, None
            case Unsubscribe(topic=topic, group=group, ref=ref):
                if local.remove(topic, group, ref):
                    self._changed_topic(topic)
                return None, (None if ref in local.by_ref else ref), None
            case Register(path=path, ref=ref):
                watched = ref in local.by_ref
                if path not in local.paths and self._full():
                    return None, None, self._registry_full(path)
                old = local.put_path(path, ref)
                self._put((KeyKind.PATH, path), {UNGROUPED: 1})
                unwatch = old if old is not None and old not in local.by_ref else None
                return (None if watched else ref), unwatch, None
            case Unregister(path=path):
                old = local.remove_path(path)
                if old is None:
                    return None, None, None
                self._put((KeyKind.PATH, path), {})
                return None, (None if old in local.by_ref else old), None

    def _registry_full(self, key: str) -> RegistryFullError:
        error = f"{self._address} already registers max_keys={self.settings.max_keys}: {key!r}"
        self._refuse("registry-full", error)
        return RegistryFullError(error)

    def _full(self) -> bool:
        return len(self._local.topics) + len(self._local.paths) >= self.settings.max_keys

    def on_terminated(self, ref: ActorRef) -> None:
        items = self._local.by_ref.get(ref)
        for item in list(items or ()):
            if isinstance(item, tuple):
                self._local.remove(item[0], item[1], ref)
                self._changed_topic(item[0])
            elif self._local.paths.get(item) == ref:
                self._local.remove_path(item)
                self._put((KeyKind.PATH, item), {})

    def on_dead_letter(self, letter: DeadLetter) -> None:
        if letter.reason == "mailbox-full" and letter.recipient in self._local.by_ref:
            self.metrics.overflow += 1

    def on_other(self, message: object, sender: ActorRef | None) -> None:
        self._refuse("unexpected", f"a {type(message).__name__} from {sender}")

    def _changed_topic(self, topic: str) -> None:
        self._put((KeyKind.TOPIC, topic), self._local.counts(topic))

    def _put(self, key: tuple[KeyKind, str], groups: dict[str, int]) -> None:
        self._gossip.changed(self._registry.put_local(key, groups))
        self._wake_waiters()
        if not self._flush_due:
            self._flush_due = True
            self.system.loop.call_soon(self._flush)

    # -- registry gossip -----------------------------------------------------------------

    def _flush(self) -> None:
        self._flush_due = False
        if not self._closed:
            self._gossip.flush()

    def _control(self, peer: UniqueAddress, body: Status | Delta) -> None:
        data = self._codec.encode(self.system.name, self._self, body)
        self._remoting.send_control(self._peer(peer.address), data, self._actor)

    def _on_tick(self) -> None:
        if self._closed:
            return
        self._schedule_tick()
        self._gossip.tick()

    def _on_cluster(self, notice: ClusterNotice) -> None:
        if self._closed:
            return
        members = {m.unique_address for m in self._cluster.gossip.members}
        members.discard(self._self)
        self._gossip.members(members)

    def on_frame(self, data: bytes, sender: ActorRef | None) -> None:
        if self._closed:
            return
        try:
            frame = self._codec.decode(data)
        except FrameError as error:
            self._refuse("undecodable", str(error))
            return
        body, frm = frame.body, frame.sender
        if frame.cluster != self.system.name:
            self._refuse("other-cluster", f"from cluster {frame.cluster!r} ({frm})")
        elif type(body) is Deliver:
            self._on_deliver(body, sender)
        elif sender is None or sender.path.node != frm.address or frm == self._self:
            self._refuse("spoofed-sender", f"{frm}'s bucket sent by {sender}")
        elif not self._gossip.is_member(frm):
            self._refuse("unknown-sender", f"{frm} is not a member")
        elif type(body) is Status:
            self._gossip.on_status(frm, body)
        else:
            assert isinstance(body, Delta)
            self._gossip.on_delta(frm, body)

    def _on_deliver(self, deliver: Deliver, sender: ActorRef | None) -> None:
        try:
            message = self.system.serialization.deserialize(
                deliver.serializer_id, deliver.manifest, deliver.payload
            )
        except SerializationError as error:
            self._refuse("undecodable-payload", str(error))
            return
        self._deliver_locally(deliver.mode, deliver.key, deliver.groups, message, sender)

    def _refuse(self, kind: str, detail: str) -> None:
        self.metrics.count_bad(kind)
        self._bad_log.report(
            f"pubsub-{kind}", "[%s] pub/sub refused (%s): %s", self._address, kind, detail
        )

    def _gauges(self) -> tuple[int, int, int]:
        local = self._local
        return (
            sum(1 for _ in self._registry.keys(KeyKind.TOPIC)),
            len(local.topics),
            local.subscriber_count(),
        )

    def __repr__(self) -> str:
        return f"<DistributedPubSub {self._address if self._started else self.system.name}>"


def _path_key(ref: ActorRef) -> str:
    """The registry key of a ref: its path without the node (``/user/service``)."""
    return "/" + "/".join(ref.path.elements)
