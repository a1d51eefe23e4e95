"""``UserSession``: a sharded entity per user: connections, rooms, presence, typing.

Not persisted. Its state is the attachments its connections register
(``Attach``: the connection, its rooms with their channels and last seen
sequence numbers), again every ``attach_interval``; when it passivates or
moves, the next attachments rebuild it and the user notices nothing. It
watches every connection, so a dead node's connections are removed.

Presence: a user is online in a room while any of their connections has it
joined; when the last one leaves or closes, ``offline`` is told to the room
only after the grace period (a reconnect within it shows nothing).
Typing: forwarded at most once per ``TYPING_THROTTLE`` per room and channel.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from shoal.pubsub import DistributedPubSub
from shoal.runtime import Actor, ActorRef, Terminated, message
from shoal.sharding import EntityRef, Sharding

from .room import SetOnline, TypingEvent, topic

TYPE_NAME: Final = "chat-user"
ROOM_TYPE: Final = "chat-room"
TYPING_THROTTLE: Final = 1.0
REFRESH_INTERVAL: Final = 5.0
"""How often a session tells its rooms that its user is still online."""


@message
@dataclass(frozen=True, slots=True)
class Attach:
    """A connection's attachment: its rooms (room -> channels) and last seen sequences."""

    conn: ActorRef
    rooms: dict[str, list[str]]
    last_seen: dict[str, int]


@message
@dataclass(frozen=True, slots=True)
class JoinRoom:
    """Asked by a connection; answered ``"ok"`` or ``"too_many_rooms"``."""

    conn: ActorRef
    room: str
    channels: list[str]


@message
@dataclass(frozen=True, slots=True)
class LeaveRoom:
    conn: ActorRef
    room: str


@message
@dataclass(frozen=True, slots=True)
class Detach:
    conn: ActorRef


@message
@dataclass(frozen=True, slots=True)
class TypingNotice:
    room: str
    channel: str


@message
@dataclass(frozen=True, slots=True)
class SessionView:
    """Asked: answered with the session's connections' rooms (for tests and the page)."""


@dataclass(frozen=True, slots=True)
class _Grace:
    room: str


@dataclass(frozen=True, slots=True)
class _Refresh:
    pass


@dataclass(slots=True)
class _Conn:
    rooms: dict[str, list[str]] = field(default_factory=dict)


class UserSession(Actor):
    """One user's connections (on any node), rooms, presence and typing throttle."""

    def __init__(self, user: str, max_rooms: int = 50, grace: float = 5.0) -> None:
        self.user = user
        self.max_rooms = max_rooms
        self.grace = grace
        self.conns: dict[ActorRef, _Conn] = {}
        self.online: set[str] = set()  # rooms announced online (grace included)
        self.typing_at: dict[tuple[str, str], float] = {}

    def started(self) -> None:
        self.ctx.timers.start_periodic("refresh", _Refresh(), REFRESH_INTERVAL)

    def _rooms(self) -> set[str]:
        return {room for c in self.conns.values() for room in c.rooms}

    def _conn(self, ref: ActorRef) -> _Conn:
        conn = self.conns.get(ref)
        if conn is None:
            conn = self.conns[ref] = _Conn()
            self.ctx.watch(ref)
        return conn

    def receive(self, msg: object) -> object:
        match msg:
            case Attach(conn=ref, rooms=rooms):
                self._conn(ref).rooms = {r: list(ch) for r, ch in rooms.items()}
                self._update()
            case JoinRoom(conn=ref, room=room, channels=channels):
                if room not in self._rooms() and len(self._rooms()) >= self.max_rooms:
                    return "too_many_rooms"
                self._conn(ref).rooms[room] = list(channels)
                self._update()
                return "ok"
            case LeaveRoom(conn=ref, room=room):
                conn = self.conns.get(ref)
                if conn is not None:
                    conn.rooms.pop(room, None)
                    self._update()
            case Detach(conn=ref):
                if self.conns.pop(ref, None) is not None:
                    self.ctx.unwatch(ref)
                    self._update()
            case Terminated(ref=ref):
                if self.conns.pop(ref, None) is not None:
                    self._update()
            case TypingNotice(room=room, channel=channel):
                now = self.ctx.clock.now()
                last = self.typing_at.get((room, channel))
                # The connection checked that it joined the room and channel; a session
                # just rebuilt may not know the room yet, and typing must not wait for it.
                if last is None or now - last >= TYPING_THROTTLE:
                    self.typing_at[(room, channel)] = now
                    pubsub = DistributedPubSub.get(self.ctx.system)
                    pubsub.publish(topic(room), TypingEvent(room, channel, self.user))
            case _Grace(room=room):
                if room in self.online and room not in self._rooms():
                    self.online.discard(room)
                    self._room(room).tell(SetOnline(self.user, online=False))
            case _Refresh():
                for room in self._rooms():
                    self._room(room).tell(SetOnline(self.user, online=True))
            case SessionView():
                return {
                    "user": self.user,
                    "connections": len(self.conns),
                    "rooms": sorted(self._rooms()),
                }
        return None

    def _room(self, room: str) -> EntityRef:
        return Sharding.get(self.ctx.system).region(ROOM_TYPE).entity(room)

    def _update(self) -> None:
        """Announce rooms that came online; start the grace period of rooms left."""
        joined = self._rooms()
        for room in joined:
            self.ctx.timers.cancel(("grace", room))
            if room not in self.online:
                self.online.add(room)
                self._room(room).tell(SetOnline(self.user, online=True))
        for room in self.online - joined:
            key = ("grace", room)
            if not self.ctx.timers.is_active(key):
                self.ctx.timers.start_single(key, _Grace(room), self.grace)
