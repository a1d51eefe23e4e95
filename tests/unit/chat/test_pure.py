"""The chat example's pure parts: the frame codec, tokens and the rate limiter."""

from __future__ import annotations

import asyncio
import json

import pytest

from examples.chat import auth
from examples.chat import protocol as p
from examples.chat.connection import SLOW_CONSUMER, Outbox
from examples.chat.ratelimit import TokenBucket

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
