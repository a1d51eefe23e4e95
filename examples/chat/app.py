"""``shoal node --app examples.chat.app:start``: one node of the chat cluster.

Starts sharding of ``chat-room`` (:class:`ChatRoom`) and ``chat-user``
(:class:`UserSession`), a small stats exchange between nodes (topic
``chat.stats``, for the cluster page), and the HTTP/WebSocket server on
``CHAT_HTTP_PORT``. Prints ``{"event": "chat", "http": URL, ...}`` on stdout
once it listens.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Final

from shoal.cluster import Cluster
from shoal.pubsub import DistributedPubSub
from shoal.runtime import Actor, ActorSystem, ShutdownPhase, message
from shoal.sharding import Sharding, ShardingSettings

from .config import ChatSettings
from .room import ChatRoom, Posted
from .session import ROOM_TYPE, TYPE_NAME, UserSession
from .web import ChatServer

STATS_TOPIC: Final = "chat.stats"
STATS_INTERVAL: Final = 2.0


@message
@dataclass(frozen=True, slots=True)
class NodeStats:
    node: str
    http: str
    connections: int
    entities: dict[str, int]


@dataclass(frozen=True, slots=True)
class _Tick:
    pass


class StatsExchange(Actor):
    """Publishes this node's figures every ``STATS_INTERVAL`` and keeps everyone's latest."""

    def __init__(self, server: ChatServer, latest: dict[str, dict[str, Any]]) -> None:
        self.server = server
        self.latest = latest

    def started(self) -> None:
        self.ctx.timers.start_periodic("tick", _Tick(), STATS_INTERVAL, initial_delay=0.1)

    def receive(self, msg: object) -> None:
        match msg:
            case NodeStats():
                self.latest[msg.node] = {
                    "http": msg.http,
                    "connections": msg.connections,
                    "entities": msg.entities,
                }
            case _Tick():
                system = self.ctx.system
                sharding = Sharding.get(system)
                entities = {t: sharding.region(t).metrics.entities for t in (ROOM_TYPE, TYPE_NAME)}
                node = f"shoal://{Cluster.get(system).self_address.address}"
                stats = NodeStats(node, self.server.url, self.server.connections, entities)
                self.receive(stats)
                DistributedPubSub.get(system).publish(STATS_TOPIC, stats)
                members = {f"shoal://{m.address}" for m in Cluster.get(system).gossip.members}
                for gone in set(self.latest) - members:
                    del self.latest[gone]


async def start(system: ActorSystem) -> ChatServer:
    """Start this node's part of the chat cluster; returns its server."""
    settings = ChatSettings.from_env()
    system.serialization.register(Posted)  # the stored event's stable manifest
    sharding = Sharding.get(system)
    shard_settings = ShardingSettings(
        number_of_shards=settings.number_of_shards,
        retry_interval=0.2,
        rebalance_interval=2.0,
        hand_off_timeout=5.0,
        passivation_idle_timeout=settings.passivate_s,
    )
    limits = settings.limits
    await sharding.start(ROOM_TYPE, ChatRoom, shard_settings)
    await sharding.start(
        TYPE_NAME,
        lambda user: UserSession(user, limits.max_rooms, limits.presence_grace_s),
        shard_settings,
    )
    latest: dict[str, dict[str, Any]] = {}
    server = ChatServer(system, settings, lambda: latest)
    url = await server.start()
    stats = system.spawn(lambda: StatsExchange(server, latest), name="chat-stats")
    await DistributedPubSub.get(system).subscribe(STATS_TOPIC, stats)
    server.ready = True
    system.coordinated_shutdown.add_task(
        ShutdownPhase.BEFORE_SERVICE_UNBIND, "chat: close sockets", server.stop
    )
    node = f"shoal://{Cluster.get(system).self_address.address}"
    print(json.dumps({"event": "chat", "http": url, "node": node}), flush=True)
    return server
