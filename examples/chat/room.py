"""``ChatRoom``: a sharded, persistent room that stores each message, then publishes it.

The room's sequence number of a message is the sequence number of its
``Posted`` event in the journal (persistence id ``chat-room|<room>``), so
history is read straight from the journal by sequence number.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any, Final

from shoal.persistence import JournalQueries, PersistentActor, decode_event
from shoal.pubsub import DistributedPubSub
from shoal.runtime import Reply, message

DEDUPE_WINDOW: Final = 256
"""Client message ids remembered per user and room (rebuilt by replay)."""

ONLINE_TTL: Final = 15.0
"""Seconds an online user stays listed without a refresh from their session."""

_SWEEP: Final = "sweep"

_KILL_AFTER_PERSIST: Final = os.environ.get("CHAT_FAULT_KILL_AFTER_PERSIST") or None
"""Fault injection for tests: a message with exactly this text SIGKILLs the room's node
after it is persisted and before it is acknowledged or published."""


def persistence_id(room: str) -> str:
    return f"chat-room|{room}"


def topic(room: str) -> str:
    return f"room.{room}"


# -- commands (asked or told across nodes) ---------------------------------------------


@message
@dataclass(frozen=True, slots=True)
class Post:
    """Store a message; answered with :class:`Acked` once it is persisted (told to the
    sender, or as the answer of an ask)."""

    user: str
    channel: str
    client_id: str
    text: str


@message
@dataclass(frozen=True, slots=True)
class Acked:
    """The answer to a :class:`Post` (told to its sender): stored as ``seq``."""

    seq: int
    ts: int
    duplicate: bool
    room: str
    client_id: str


@message
@dataclass(frozen=True, slots=True)
class Info:
    """Answered with :class:`RoomState`."""


@message
@dataclass(frozen=True, slots=True)
class RoomState:
    head: int
    online: list[str]


@message
@dataclass(frozen=True, slots=True)
class SetOnline:
    """From a user's session: the user is (still) online in the room, or not any more."""

    user: str
    online: bool


# -- the event ---------------------------------------------------------------------------


@message(manifest="chat.Posted.v1")
@dataclass(frozen=True, slots=True)
class Posted:
    user: str
    channel: str
    client_id: str
    text: str
    ts: int


# -- published on room.<id> -----------------------------------------------------------------


@message
@dataclass(frozen=True, slots=True)
class Delivered:
    room: str
    seq: int
    channel: str
    user: str
    client_id: str
    text: str
    ts: int

    def fields(self) -> dict[str, Any]:
        return {
            "room": self.room,
            "channel": self.channel,
            "seq": self.seq,
            "id": self.client_id,
            "user": self.user,
            "text": self.text,
            "ts": self.ts,
        }


@message
@dataclass(frozen=True, slots=True)
class PresenceEvent:
    room: str
    user: str
    status: str  # "online" | "offline"


@message
@dataclass(frozen=True, slots=True)
class TypingEvent:
    room: str
    channel: str
    user: str


@dataclass(frozen=True, slots=True)
class _Sweep:
    pass


@dataclass(frozen=True, slots=True)
class _Flush:
    pass


@dataclass(slots=True)
class _Pending:
    post: Post
    ts: int
    replies: list[Reply]


class ChatRoom(PersistentActor):
    """One room: persists ``Posted`` events, dedupes client ids, tracks who is online."""

    def __init__(self, room: str) -> None:
        self.room = room
        self.topic = topic(room)
        # user -> client id -> (seq, ts), insertion-ordered, at most DEDUPE_WINDOW each
        self.recent: dict[str, dict[str, tuple[int, int]]] = {}
        self.online: dict[str, float] = {}  # user -> last refresh (system clock)
        # Posts waiting for the next write: every Post that arrives while one write
        # is in flight goes into the next one (one journal round trip for many).
        self.batch: dict[tuple[str, str], _Pending] = {}
        self.recovered_head = 0

    @property
    def persistence_id(self) -> str:
        return persistence_id(self.room)

    def recovery_completed(self) -> None:
        # Messages up to here were stored by an earlier incarnation, which may have died
        # between persisting and publishing one: a retry publishes it again.
        self.recovered_head = self.last_sequence_nr
        self.ctx.timers.start_periodic(_SWEEP, _Sweep(), ONLINE_TTL / 3)

    def on_event(self, event: Posted) -> None:
        window = self.recent.setdefault(event.user, {})
        window[event.client_id] = (self.last_sequence_nr, event.ts)
        if len(window) > DEDUPE_WINDOW:
            del window[next(iter(window))]

    def on_command(self, command: object) -> object:
        match command:
            case Post():
                return self._post(command)
            case _Flush():
                return self._flush()
            case Info():
                return RoomState(self.last_sequence_nr, sorted(self.online))
            case SetOnline(user=user, online=True):
                if user not in self.online:
                    self._publish(PresenceEvent(self.room, user, "online"))
                self.online[user] = self.ctx.clock.now()
            case SetOnline(user=user, online=False):
                # Announced even for a user this incarnation did not list (it may have
                # just moved here): clients treat presence frames as idempotent.
                self.online.pop(user, None)
                self._publish(PresenceEvent(self.room, user, "offline"))
            case _Sweep():
                limit = self.ctx.clock.now() - ONLINE_TTL
                for user in [u for u, seen in self.online.items() if seen < limit]:
                    del self.online[user]
                    self._publish(PresenceEvent(self.room, user, "offline"))
        return None

    def _post(self, post: Post) -> Coroutine[Any, Any, None] | None:
        reply = self.ctx.reply_later()
        known = self.recent.get(post.user, {}).get(post.client_id)
        if known is not None:
            acked = Acked(known[0], known[1], True, self.room, post.client_id)
            if acked.seq > self.recovered_head:  # this incarnation stored and published it
                reply.send(acked)
                return None
            return self._duplicate(acked, reply)
        key = (post.user, post.client_id)
        waiting = self.batch.get(key)
        if waiting is not None:  # a retry of a post in the next write
            waiting.replies.append(reply)
            return None
        if not self.batch:
            self.ctx.ref.tell(_Flush())  # behind every Post already in the mailbox
        self.batch[key] = _Pending(post, int(time.time() * 1000), [reply])
        return None

    async def _duplicate(self, acked: Acked, reply: Reply) -> None:
        await self._republish(acked.seq)
        reply.send(acked)

    async def _flush(self) -> None:
        pending = list(self.batch.values())
        self.batch.clear()
        if not pending:
            return
        events = [Posted(p.post.user, p.post.channel, p.post.client_id, p.post.text, p.ts)
                  for p in pending]  # fmt: skip
        first = self.last_sequence_nr + 1
        try:
            await self.persist_all(events)
        except Exception as exc:
            for p in pending:
                for reply in p.replies:
                    reply.fail(exc)
            raise
        for seq, (p, event) in enumerate(zip(pending, events, strict=True), first):
            if event.text == _KILL_AFTER_PERSIST:
                os.kill(os.getpid(), signal.SIGKILL)
            self._publish(
                Delivered(self.room, seq, event.channel, event.user, event.client_id, event.text,
                          event.ts)
            )  # fmt: skip
            for reply in p.replies:
                reply.send(Acked(seq, event.ts, False, self.room, event.client_id))

    async def _republish(self, seq: int) -> None:
        """Publish stored message ``seq`` again: a retry may follow a crash between
        persisting and publishing. Connections drop what they already delivered."""
        queries = JournalQueries(self.persistence.journal)
        serialization = self.ctx.system.serialization
        async for stored in queries.current_events_by_persistence_id(self.persistence_id, seq, seq):
            event = decode_event(serialization, stored)
            if isinstance(event, Posted):
                self._publish(
                    Delivered(
                        self.room, seq, event.channel, event.user, event.client_id, event.text,
                        event.ts,
                    )
                )  # fmt: skip

    def _publish(self, item: object) -> None:
        DistributedPubSub.get(self.ctx.system).publish(self.topic, item)
