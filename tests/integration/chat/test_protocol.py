"""The chat WebSocket protocol against three real node processes sharing one SQLite journal:
every message type, every error frame, and the node unaffected afterwards."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import AsyncIterator, Iterator

import aiohttp
import pytest

from tests.integration.chat._harness import ChatNode, Client, login, start_cluster
from tests.integration.cli._nodes import Nodes

pytestmark = [pytest.mark.multiprocess, pytest.mark.slow]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[ChatNode]]:
    tmp = tmp_path_factory.mktemp("chat")
    lab = Nodes(tmp)
    try:
        yield start_cluster(
            lab, 3, tmp / "journal.db", CHAT_RATE_PER_S="20", CHAT_BURST="40", CHAT_MAX_ROOMS="3"
        )
    finally:
        lab.close()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        yield session


def room() -> str:
    return f"r-{uuid.uuid4().hex[:12]}"


async def test_login_and_token_checks(cluster: list[ChatNode], http: aiohttp.ClientSession) -> None:
    a, b, _ = cluster
    for bad in ({"name": ""}, {"name": "a b"}, {"name": "x" * 33}, ["alice"], {"nom": "alice"}):
        async with http.post(f"{a.http}/api/login", json=bad) as answer:
            assert answer.status == 400
            assert (await answer.json())["error"]["code"] == "bad_name"
    async with http.post(f"{a.http}/api/login", data=b"{not json") as answer:
        assert answer.status == 400
    # A token from one node works on another; the user comes from it.
    token = await login(http, a.http, "alice")
    client = await Client.connect(http, b.http, "alice", token)
    assert client.welcome["user"] == "alice"
    assert client.welcome["v"] == 1
    assert client.welcome["limits"]["max_text"] == 4000
    await client.close()
    # No token, a tampered one (another user's name under alice's signature), garbage.
    _, _, signature = token.partition(".")
    bob_payload = base64.urlsafe_b64encode(b'{"u":"bob","exp":9999999999}').rstrip(b"=").decode()
    for query in ("", "?token=", f"?token={bob_payload}.{signature}", "?token=garbage"):
        async with http.get(f"{b.http}/ws{query}") as answer:
            assert answer.status == 401
            assert (await answer.json())["error"]["code"] == "unauthorized"


async def test_send_ack_dedupe_and_fan_out_across_nodes(
    cluster: list[ChatNode], http: aiohttp.ClientSession
) -> None:
    a, b, c = cluster
    r = room()
    alice = await Client.connect(http, a.http, "alice")
    bob = await Client.connect(http, b.http, "bob")
    carol = await Client.connect(http, c.http, "carol")
    joined = await alice.join(r)
    assert joined["head"] == 0
    assert joined["channels"] == ["default"]
    await bob.join(r)
    await carol.join(r, channels=["other"])
    ack = await alice.post(r, "m1", "hello <b>bob</b>")
    assert ack["seq"] == 1
    assert ack["duplicate"] is False
    got = await bob.expect("msg", room=r, seq=1)
    assert got["text"] == "hello <b>bob</b>"
    assert got["user"] == "alice"
    assert got["id"] == "m1"
    assert got["channel"] == "default"
    await alice.expect("msg", room=r, seq=1)  # the sender's own message too
    # A retry with the same client id: stored once, same number.
    again = await alice.post(r, "m1", "hello <b>bob</b>")
    assert again["seq"] == 1
    assert again["duplicate"] is True
    ack2 = await bob.post(r, "b1", "hi")
    assert ack2["seq"] == 2
    await alice.expect("msg", room=r, seq=2)
    # Channels: carol joined only "other".
    ack3 = await carol.post(r, "c1", "side talk", channel="other")
    assert ack3["seq"] == 3
    assert (await carol.expect("msg", room=r, seq=3))["channel"] == "other"
    assert [m for m in await bob.quiet("msg", 0.5) if m["seq"] == 3] == []
    assert await carol.quiet("msg", 0.3) == []  # never the default channel's 1 and 2
    # Sending to a channel not joined.
    await carol.send(type="send", room=r, id="c2", text="x")
    err = await carol.expect("error", ref="c2")
    assert err["code"] == "not_joined"
    for client in (alice, bob, carol):
        await client.close()


async def test_history_paging(cluster: list[ChatNode], http: aiohttp.ClientSession) -> None:
    a, b, _ = cluster
    r = room()
    alice = await Client.connect(http, a.http, "alice")
    await alice.join(r, channels=["default", "x"])
    for i in range(1, 8):
        ack = await alice.post(r, f"h{i}", f"text {i}", channel="x" if i % 2 else "default")
        assert ack["seq"] == i
    bob = await Client.connect(http, b.http, "bob")
    await bob.send(type="history", room=r)
    err = await bob.expect("error", room=r)
    assert err["code"] == "not_joined"
    joined = await bob.join(r)
    assert joined["head"] == 7
    await bob.send(type="history", room=r, limit=3)
    page = await bob.expect("history", room=r)
    assert [m["seq"] for m in page["messages"]] == [5, 6, 7]
    assert page["more"] is True
    await bob.send(type="history", room=r, before_seq=5, limit=3)
    page = await bob.expect("history", room=r)
    assert [m["seq"] for m in page["messages"]] == [2, 3, 4]
    await bob.send(type="history", room=r, before_seq=2, limit=1000)
    page = await bob.expect("history", room=r)
    assert [m["seq"] for m in page["messages"]] == [1]
    assert page["more"] is False
    assert page["messages"][0]["text"] == "text 1"
    assert page["messages"][0]["channel"] == "x"
    await alice.close()
    await bob.close()


async def test_resume_gap_then_live_and_reset(
    cluster: list[ChatNode], http: aiohttp.ClientSession
) -> None:
    a, b, c = cluster
    r = room()
    alice = await Client.connect(http, a.http, "alice")
    await alice.join(r)
    for i in range(1, 6):
        await alice.post(r, f"p{i}", f"p{i}")
    # bob saw up to 2; reconnects to another node: gets 3..5, then live 6, nothing twice.
    bob = await Client.connect(http, b.http, "bob")
    joined = await bob.join(r, last_seq=2)
    assert joined["head"] == 5
    await alice.post(r, "p6", "p6")
    seen = [m["seq"] for m in await bob.quiet("msg", 2.5)]
    assert seen == [3, 4, 5, 6]
    # A last_seq beyond the head: reset.
    carol = await Client.connect(http, c.http, "carol")
    await carol.join(r, last_seq=99)
    reset = await carol.expect("reset", room=r)
    assert reset["head"] == 6
    for client in (alice, bob, carol):
        await client.close()


async def test_presence_and_typing(cluster: list[ChatNode], http: aiohttp.ClientSession) -> None:
    a, b, _ = cluster
    r = room()
    alice = await Client.connect(http, a.http, "alice2")
    await alice.join(r)
    bob = await Client.connect(http, b.http, "bob2")
    joined = await bob.join(r)
    assert "alice2" in joined["online"]
    await alice.expect("presence", room=r, user="bob2", status="online")
    await bob.send(type="typing", room=r)
    typing = await alice.expect("typing", room=r, user="bob2")
    assert typing["expires_ms"] == 3000
    # Throttled: a second notice within a second is not forwarded.
    await bob.send(type="typing", room=r)
    assert await alice.quiet("typing", 0.5) == []
    assert await bob.quiet("typing", 0.1) == []  # never to the typist
    # bob leaves and comes back within the grace period: no offline.
    await bob.close()
    bob = await Client.connect(http, a.http, "bob2")
    await bob.join(r)
    assert [p for p in await alice.quiet("presence", 1.0) if p["status"] == "offline"] == []
    await bob.close()
    offline = await alice.expect("presence", timeout=15, room=r, user="bob2", status="offline")
    assert offline["status"] == "offline"
    await alice.close()


async def test_every_error_frame_and_the_node_carries_on(
    cluster: list[ChatNode], http: aiohttp.ClientSession
) -> None:
    a, *_ = cluster
    client = await Client.connect(http, a.http, "errors")

    async def refused(raw: str | bytes, code: str) -> dict[str, object]:
        if isinstance(raw, bytes):
            await client.ws.send_bytes(raw)
        else:
            await client.ws.send_str(raw)
        err = await client.expect("error")
        assert err["code"] == code, (raw, err)
        return err

    await refused("{not json", "bad_json")
    await refused("[1, 2]", "bad_json")
    await refused(b"\x00\x01", "bad_json")
    await refused(json.dumps({"type": "ping"}), "bad_version")
    await refused(json.dumps({"v": 2, "type": "ping"}), "bad_version")
    await refused(json.dumps({"v": 1, "type": "dance"}), "unknown_type")
    await refused(json.dumps({"v": 1}), "unknown_type")
    await refused(json.dumps({"v": 1, "type": "join", "room": "bad room"}), "bad_frame")
    await refused(json.dumps({"v": 1, "type": "join", "room": "r", "channels": []}), "bad_frame")
    err = await refused(
        json.dumps({"v": 1, "type": "send", "room": "r", "id": "x1", "text": "hi", "user": "bob"}),
        "forbidden",
    )
    assert err["ref"] == "x1"
    await refused(
        json.dumps({"v": 1, "type": "send", "room": "r", "id": "x2", "text": ""}), "bad_frame"
    )
    await refused(
        json.dumps({"v": 1, "type": "send", "room": "r", "id": "x3", "text": "a" * 4001}),
        "too_large",
    )
    await refused(json.dumps({"v": 1, "type": "ping", "pad": "a" * 17_000}), "too_large")
    await refused(
        json.dumps({"v": 1, "type": "join", "room": "r", "channels": [f"c{i}" for i in range(17)]}),
        "too_many_channels",
    )
    await refused(
        json.dumps({"v": 1, "type": "send", "room": "nope", "id": "x4", "text": "a"}), "not_joined"
    )
    await refused(json.dumps({"v": 1, "type": "leave", "room": "nope"}), "not_joined")
    await refused(json.dumps({"v": 1, "type": "history", "room": "r", "limit": 0}), "bad_frame")
    await client.send(type="ping")
    await client.expect("pong")
    r = room()
    await client.join(r)
    await client.send(type="leave", room=r)
    await client.expect("left", room=r)
    await client.close()


async def test_flood_over_the_rate_limit(
    cluster: list[ChatNode], http: aiohttp.ClientSession
) -> None:
    a, *_ = cluster
    client = await Client.connect(http, a.http, "flood")
    for _ in range(100):
        await client.send(type="ping")
    pongs = await client.quiet("pong", 1.0)
    errors = [e for e in client.backlog if e.get("type") == "error"]
    assert 40 <= len(pongs) < 100
    assert errors
    assert {e["code"] for e in errors} == {"rate_limited"}
    assert all(e["retry_after_ms"] > 0 for e in errors)
    await client.close()
    # The node serves others as before.
    other = await Client.connect(http, a.http, "after-flood")
    await other.send(type="ping")
    await other.expect("pong")
    await other.close()


async def test_oversized_frame_closes_with_1009(
    cluster: list[ChatNode], http: aiohttp.ClientSession
) -> None:
    a, *_ = cluster
    client = await Client.connect(http, a.http, "huge")
    await client.ws.send_str("x" * 70_000)
    frame = await client.ws.receive(timeout=5)
    assert frame.type in (
        aiohttp.WSMsgType.CLOSE,
        aiohttp.WSMsgType.CLOSED,
        aiohttp.WSMsgType.CLOSING,
    )
    assert client.ws.close_code == 1009
    other = await Client.connect(http, a.http, "after-huge")
    await other.send(type="ping")
    await other.expect("pong")
    await other.close()


async def test_too_many_rooms(cluster: list[ChatNode], http: aiohttp.ClientSession) -> None:
    a, b, _ = cluster
    one = await Client.connect(http, a.http, "roomy")
    two = await Client.connect(http, b.http, "roomy")
    base = room()
    for i in range(3):
        await one.join(f"{base}-{i}")
    # The limit counts the user's rooms over all connections (this cluster: 3 per user).
    await two.send(type="join", room=f"{base}-x")
    err = await two.expect("error")
    assert err["code"] == "too_many_rooms"
    await two.join(f"{base}-1")  # a room the user is already in is fine
    await one.close()
    await two.close()


async def test_cluster_endpoint(cluster: list[ChatNode], http: aiohttp.ClientSession) -> None:
    a, b, _ = cluster
    async with http.get(f"{b.http}/api/cluster") as answer:
        body = await answer.json()
    assert body["v"] == 1
    nodes = {f"shoal://{n.address}" for n in cluster}
    assert {m["node"] for m in body["members"]} == nodes
    assert all(m["status"] == "up" and m["reachable"] for m in body["members"])
    assert body["leader"] in nodes
    assert body["unreachable"] == []
    assert set(body["sharding"]) == {"chat-room", "chat-user"}
    assert body["sharding"]["chat-room"]["shards"] == 30
    async with http.get(f"{a.http}/api/health") as answer:
        assert answer.status == 200
