"""The chat example's pure parts: the frame codec, tokens, the rate limiter, the outbox and
the room hub's delivery rule."""

from __future__ import annotations

import asyncio
import json
from typing import Any, cast

import pytest

from examples.chat import auth
from examples.chat import protocol as p
from examples.chat.connection import HIGH_WATER, SLOW_CONSUMER, Outbox
from examples.chat.fanout import View, frame_payload, hub_deliver, msg_frame, text_frame
from examples.chat.ratelimit import TokenBucket
from examples.chat.room import Delivered
from shoal.runtime import ActorRef

LIMITS = p.Limits()


def frame(**fields: object) -> str:
    return json.dumps({"v": 1, **fields})


def refused(raw: str | bytes) -> p.ProtocolError:
    with pytest.raises(p.ProtocolError) as caught:
        p.decode(raw, LIMITS)
    return caught.value


def test_decodes_every_client_type_with_defaults() -> None:
    assert p.decode(frame(type="join", room="r"), LIMITS) == p.Join("r", ("default",), None)
    assert p.decode(frame(type="join", room="r", channels=["a", "a", "b"], last_seq=4), LIMITS) == (
        p.Join("r", ("a", "b"), 4)
    )
    assert p.decode(frame(type="leave", room="r"), LIMITS) == p.Leave("r")
    assert p.decode(frame(type="send", room="r", id="1", text="hi"), LIMITS) == p.Send(
        "r", "default", "1", "hi"
    )
    assert p.decode(frame(type="history", room="r"), LIMITS) == p.History("r", None, 50)
    assert p.decode(frame(type="history", room="r", before_seq=9, limit=10**6), LIMITS) == (
        p.History("r", 9, LIMITS.history_max)
    )
    assert p.decode(frame(type="typing", room="r", channel="c"), LIMITS) == p.Typing("r", "c")
    assert p.decode(frame(type="ping"), LIMITS) == p.Ping()


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        ("{", "bad_json"),
        ("3", "bad_json"),
        (b"{}", "bad_json"),
        ('{"type": "ping"}', "bad_version"),
        ('{"v": true, "type": "ping"}', "bad_version"),
        (frame(type="nope"), "unknown_type"),
        (frame(type="join", room=""), "bad_frame"),
        (frame(type="join", room="r", channels="default"), "bad_frame"),
        (frame(type="join", room="r", last_seq=-1), "bad_frame"),
        (frame(type="join", room="r", last_seq=True), "bad_frame"),
        (frame(type="join", room="r", channels=[str(i) for i in range(17)]), "too_many_channels"),
        (frame(type="send", room="r", id="a b", text="x"), "bad_frame"),
        (frame(type="send", room="r", id="a", text="  "), "bad_frame"),
        (frame(type="send", room="r", id="a", text="x" * 4001), "too_large"),
        (frame(type="send", room="r", id="a", text="x", user="mallory"), "forbidden"),
        (frame(type="history", room="r", limit="5"), "bad_frame"),
        (frame(type="ping", pad="x" * 20_000), "too_large"),
    ],
)
def test_refuses_with_the_documented_code(raw: str | bytes, code: str) -> None:
    assert refused(raw).code == code


def test_an_error_frame_names_the_refused_frame() -> None:
    error = refused(frame(type="send", room="r", id="m7", text=""))
    body = json.loads(error.to_frame())
    assert body == {
        "v": 1,
        "type": "error",
        "code": "bad_frame",
        "message": error.message,
        "ref": "m7",
        "room": "r",
    }


def test_tokens_carry_the_user_and_refuse_tampering_and_expiry() -> None:
    secret = b"s" * 32
    token, expires = auth.issue(secret, "alice", now=1000.0, ttl=60)
    assert expires == 1060
    assert auth.verify(secret, token, now=1059.0) == "alice"
    with pytest.raises(auth.TokenError, match="expired"):
        auth.verify(secret, token, now=1060.0)
    with pytest.raises(auth.TokenError, match="signature"):
        auth.verify(b"other", token, now=1000.0)
    forged, _ = auth.issue(b"other", "bob", now=1000.0)
    with pytest.raises(auth.TokenError, match="signature"):
        auth.verify(secret, forged.split(".")[0] + "." + token.split(".")[1], now=1000.0)
    for bad in (None, "", "abc", "a.b", "!!.??", "x" * 2000):
        with pytest.raises(auth.TokenError):
            auth.verify(secret, bad, now=1000.0)
    with pytest.raises(ValueError, match="user name"):
        auth.issue(secret, "no spaces", now=0)


def test_token_bucket_allows_a_burst_then_the_rate() -> None:
    bucket = TokenBucket(rate=10.0, burst=3, now=0.0)
    assert [bucket.take(0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    wait = bucket.take(0.0)
    assert wait == pytest.approx(0.1)
    assert bucket.take(0.05) == pytest.approx(0.05)
    assert bucket.take(0.1) == 0.0
    assert bucket.take(10.0) == 0.0  # refilled, but never above the burst
    assert [bucket.take(10.0) for _ in range(3)][-1] > 0
    with pytest.raises(ValueError, match="rate"):
        TokenBucket(rate=0, burst=1, now=0)


async def test_outbox_never_waits_and_closes_with_4000_on_overflow() -> None:
    aborted: list[bool] = []
    outbox = Outbox(capacity=2, stuck_after=0.01)
    outbox.abort = lambda: aborted.append(True)
    assert outbox.push("a")
    assert outbox.push("b")
    assert not outbox.push("c")  # full: closed, never blocked
    assert outbox.close_code == SLOW_CONSUMER
    assert outbox.close_reason == "slow consumer: resume"
    assert len(outbox) == 0
    assert not outbox.push("d")
    await asyncio.sleep(0.05)
    assert aborted == [True]  # no writer took the close frame: the connection is cut


class _Conn:
    def __init__(self) -> None:
        self.told: list[object] = []

    def tell(self, message: object, sender: object = None) -> None:
        self.told.append(message)


def _view(last: int, channels: set[str]) -> tuple[View, _Conn, Outbox]:
    conn = _Conn()
    outbox = Outbox(capacity=10)
    return View("u", cast("ActorRef", conn), outbox, channels, last), conn, outbox


def _msg(seq: int, channel: str = "default") -> Delivered:
    return Delivered("r", seq, channel, "bob", f"c{seq}", "hi", 1)


def test_text_frames_carry_their_payload_whatever_its_length() -> None:
    for size, header in ((5, b"\x81\x05"), (200, b"\x81\x7e\x00\xc8"), (70_000, b"\x81\x7f")):
        payload = b"x" * size
        wire = text_frame(payload)
        assert wire.startswith(header)
        assert frame_payload(wire) == payload
    wire = msg_frame(_msg(3))
    assert json.loads(frame_payload(wire)) == {
        "v": 1, "type": "msg", "room": "r", "channel": "default", "seq": 3, "id": "c3",
        "user": "bob", "text": "hi", "ts": 1,
    }  # fmt: skip


def test_a_hub_delivers_only_the_next_sequence_number_and_leaves_gaps_to_the_connection() -> None:
    view, conn, outbox = _view(4, {"default"})
    other, other_conn, other_outbox = _view(4, {"side"})
    hub_deliver([view, other], _msg(5))
    assert (view.last, other.last) == (5, 5)  # both advance, only the joined channel is sent
    assert (len(outbox), len(other_outbox)) == (1, 0)
    hub_deliver([view, other], _msg(5))  # a duplicate: dropped
    hub_deliver([view, other], _msg(3))
    assert (len(outbox), conn.told, other_conn.told) == (1, [], [])
    hub_deliver([view, other], _msg(7))  # a gap: the connection reads the journal first
    assert (view.last, len(outbox), conn.told, other_conn.told) == (5, 1, [_msg(7)], [_msg(7)])


class _Transport:
    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.buffered = 0

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def is_closing(self) -> bool:
        return False

    def get_write_buffer_size(self) -> int:
        return self.buffered


class _Ws:
    closed = False
    compress = False

    def __init__(self) -> None:
        self.sent: list[bytes] = []

    async def send_frame(self, message: bytes, opcode: object) -> None:
        self.sent.append(message)

    async def close(self, code: int, message: bytes) -> None:
        self.closed = True


async def test_an_outbox_writes_directly_unless_frames_wait_or_the_transport_is_backed_up() -> None:
    outbox = Outbox(capacity=10)
    ws, transport = _Ws(), _Transport()
    assert outbox.push("welcome")  # the writer is not running yet: queued
    writer = asyncio.create_task(outbox.run(cast("Any", ws), cast("Any", transport)))
    await asyncio.sleep(0)
    assert ws.sent == [b"welcome"]
    assert outbox.push(text_frame(b"one"))
    assert transport.written == [text_frame(b"one")]  # written at once, in order
    transport.buffered = HIGH_WATER
    assert outbox.push("two")
    assert outbox.push("three")
    assert len(outbox) == 2  # backed up: queued for the writer (flow control)
    transport.buffered = 0
    assert outbox.push("four")  # still behind the queued ones
    await asyncio.sleep(0)
    assert ws.sent == [b"welcome", b"two", b"three", b"four"]
    assert transport.written == [text_frame(b"one")]
    outbox.close(1000, "")
    await writer
    assert ws.closed
