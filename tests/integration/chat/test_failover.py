"""The chat cluster when things move or die, with three real node processes and one SQLite
journal: dedupe across a room's move and across a SIGKILL between persist and ack; a
user session that passivates while its user is connected; a slow consumer closed with 4000."""

from __future__ import annotations

import asyncio
import re
import signal
import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from shoal.sharding import shard_id
from tests.integration.chat._harness import (
    ChatNode,
    Client,
    eventually_async,
    login,
    start_cluster,
)
from tests.integration.cli._nodes import Nodes

pytestmark = [pytest.mark.multiprocess, pytest.mark.slow]

CRASH_TEXT = "crash-after-persist"


@pytest.fixture
def nodes(tmp_path: Path) -> Iterator[Nodes]:
    lab = Nodes(tmp_path)
    yield lab
    lab.close()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        yield session


async def cluster_view(http: aiohttp.ClientSession, node: ChatNode) -> dict[str, Any]:
    async with http.get(f"{node.http}/api/cluster") as answer:
        body: dict[str, Any] = await answer.json()
    return body


async def host_of(http: aiohttp.ClientSession, via: ChatNode, room: str) -> str:
    """The node whose region hosts ``room``'s shard, as the coordinator has it (a join
    first starts the room, so that its shard is placed)."""
    toucher = await Client.connect(http, via.http, "toucher")
    await toucher.join(room)
    await toucher.close()
    shard = shard_id(room, 30)

    async def find() -> str | None:
        nodes = (await cluster_view(http, via))["sharding"]["chat-room"]["nodes"]
        for node, view in nodes.items():
            if shard in view["shards"]:
                return str(node)
        return None

    host: str = await eventually_async(find)
    return host


def by_address(cluster: list[ChatNode], node: str) -> ChatNode:
    return next(n for n in cluster if f"shoal://{n.address}" == node)


async def post_until_acked(
    client: Client, room: str, client_id: str, text: str, timeout: float = 60
) -> dict[str, Any]:
    """Send, and resend the same client id after every refusal, until acknowledged."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    refusals: list[dict[str, Any]] = []
    while loop.time() < deadline:
        await client.send(type="send", room=room, id=client_id, text=text)
        while True:
            frame = await client.expect_any(("ack", "error"), timeout=15)
            if frame.get("id") == client_id or frame.get("ref") == client_id:
                break
        if frame["type"] == "ack":
            return frame
        refusals.append(frame)
        await asyncio.sleep(0.5)
    raise AssertionError(f"{client_id} never acknowledged: {refusals[-3:]}")


async def history(client: Client, room: str) -> list[dict[str, Any]]:
    await client.send(type="history", room=room, limit=200)
    page = await client.expect("history", room=room)
    messages: list[dict[str, Any]] = page["messages"]
    return messages


async def test_dedupe_survives_a_room_moving_off_a_leaving_node(
    nodes: Nodes, tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    cluster = start_cluster(nodes, 3, tmp_path / "journal.db")
    room = f"move-{uuid.uuid4().hex[:8]}"
    host = by_address(cluster, await host_of(http, cluster[0], room))
    other = next(n for n in cluster if n is not host)
    alice = await Client.connect(http, other.http, "alice")
    await alice.join(room)
    first = await alice.post(room, "m1", "before the move")
    assert first["seq"] == 1
    host.process.signal(signal.SIGTERM)  # leaves: its shards are handed off
    assert host.process.wait_exit() == 0
    again = await post_until_acked(alice, room, "m1", "before the move")
    assert again["seq"] == 1
    assert again["duplicate"] is True
    second = await post_until_acked(alice, room, "m2", "after the move")
    assert second["seq"] == 2
    assert second["duplicate"] is False
    assert [m["id"] for m in await history(alice, room)] == ["m1", "m2"]
    await alice.close()


async def test_dedupe_survives_a_sigkill_between_persist_and_ack(
    nodes: Nodes, tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    cluster = start_cluster(
        nodes, 3, tmp_path / "journal.db", CHAT_FAULT_KILL_AFTER_PERSIST=CRASH_TEXT
    )
    room = f"kill-{uuid.uuid4().hex[:8]}"
    host = by_address(cluster, await host_of(http, cluster[0], room))
    survivors = [n for n in cluster if n is not host]
    alice = await Client.connect(http, survivors[0].http, "alice")
    bob = await Client.connect(http, survivors[1].http, "bob")
    await alice.join(room)
    await bob.join(room)
    await alice.post(room, "k0", "first")
    # Persisted, then the room's node dies before the ack.
    await alice.send(type="send", room=room, id="k1", text=CRASH_TEXT)
    assert host.process.wait_exit() == -signal.SIGKILL
    ack = await post_until_acked(alice, room, "k1", CRASH_TEXT)
    assert ack["seq"] == 2
    assert ack["duplicate"] is True
    after = await post_until_acked(alice, room, "k2", "after the crash")
    assert after["seq"] == 3
    assert [m["id"] for m in await history(bob, room)] == ["k0", "k1", "k2"]
    # bob saw each exactly once, the lost publication of k1 filled from the journal.
    seen = [m["seq"] for m in await bob.quiet("msg", 3.0)]
    assert seen == [1, 2, 3]
    await alice.close()
    await bob.close()


def passivations(metrics: str) -> int:
    pattern = r'shoal_sharding_passivations_total\{[^}]*type="chat-user"[^}]*\} ([0-9.e+]+)'
    return sum(int(float(v)) for v in re.findall(pattern, metrics))


async def test_a_passivated_session_is_rebuilt_and_the_user_notices_nothing(
    nodes: Nodes, tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    cluster = start_cluster(
        nodes,
        3,
        tmp_path / "journal.db",
        CHAT_PASSIVATE_S="0.5",
        CHAT_ATTACH_S="1.5",
        CHAT_PRESENCE_GRACE_S="3",
    )
    a, b, _ = cluster
    room = f"pass-{uuid.uuid4().hex[:8]}"
    alice = await Client.connect(http, a.http, "alice")
    bob = await Client.connect(http, b.http, "bob")
    await alice.join(room)
    await bob.join(room)

    async def passivated() -> bool:
        total = 0
        for node in cluster:
            async with http.get(f"{node.process.http}/metrics") as answer:
                total += passivations(await answer.text())
        return total >= 4

    await eventually_async(passivated, timeout=30)
    # Still online, typing and messages flow, nothing doubled.
    await bob.send(type="typing", room=room)
    await alice.expect("typing", room=room, user="bob")
    ack = await bob.post(room, "b1", "still here")
    assert (await alice.expect("msg", room=room, seq=ack["seq"]))["text"] == "still here"
    await alice.post(room, "a1", "me too")
    # alice drops and resumes on another node: the gap, then live, nothing twice.
    await alice.close()
    await bob.post(room, "b2", "while you were away")
    alice = await Client.connect(http, b.http, "alice")
    await alice.join(room, last_seq=ack["seq"])
    await bob.post(room, "b3", "welcome back")
    seen = [m["id"] for m in await alice.quiet("msg", 2.0)]
    assert seen == ["a1", "b2", "b3"]
    presence = [p for p in await bob.quiet("presence", 0.5) if p["status"] == "offline"]
    assert presence == []  # no flapping through the passivations and the reconnect
    await alice.close()
    await bob.close()


async def test_a_slow_consumer_is_closed_with_4000_and_resumes(
    nodes: Nodes, tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    cluster = start_cluster(
        nodes,
        1,
        tmp_path / "journal.db",
        CHAT_OUTBOX="8",
        CHAT_STUCK_S="120",
        CHAT_RATE_PER_S="100000",
        CHAT_BURST="100000",
    )
    (a,) = cluster
    room = f"slow-{uuid.uuid4().hex[:8]}"
    token = await login(http, a.http, "sloth")
    # A raw client with a tiny receive buffer that never reads.
    host, port = a.http.removeprefix("http://").split(":")
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect((host, int(port)))
    reader, writer = await asyncio.open_connection(sock=sock)
    writer.write(
        (
            f"GET /ws?token={token} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    await writer.drain()
    status = await reader.readline()
    assert b"101" in status
    join = b'{"v":1,"type":"join","room":"' + room.encode() + b'"}'
    writer.write(bytes([0x81, 0x80 | len(join)]) + b"\0\0\0\0" + join)  # masked, zero key
    await writer.drain()
    fast = await Client.connect(http, a.http, "fast")
    await fast.join(room)
    await asyncio.sleep(0.5)
    text = "x" * 3900
    sent = 1500
    for i in range(sent):  # one at a time: the fast client's own outbox stays near empty
        ack = await fast.post(room, f"f{i}", text)
        assert ack["seq"] == i + 1
        fast.backlog.clear()
    # The sloth's socket was closed with 4000; read what is left to find the close frame.
    data = b""
    try:
        while chunk := await asyncio.wait_for(reader.read(1 << 20), 10):
            data += chunk
    except TimeoutError:
        pass
    writer.close()
    assert b"\x88" in data  # a close frame
    assert (4000).to_bytes(2, "big") + b"slow consumer: resume" in data
    # The fast client was never affected, and the sloth resumes with no gap.
    sloth = await Client.connect(http, a.http, "sloth")
    await sloth.join(room, last_seq=sent - 5)
    seen = [m["seq"] for m in await sloth.quiet("msg", 2.0)]
    assert seen == list(range(sent - 4, sent + 1))
    await fast.close()
    await sloth.close()


async def test_a_dead_nodes_users_go_offline_and_its_clients_resume_elsewhere(
    nodes: Nodes, tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    cluster = start_cluster(nodes, 3, tmp_path / "journal.db", CHAT_PRESENCE_GRACE_S="1")
    a, b, c = cluster
    room = f"dead-{uuid.uuid4().hex[:8]}"
    alice = await Client.connect(http, a.http, "alice")
    await alice.join(room)
    bob = await Client.connect(http, c.http, "bob")
    carol = await Client.connect(http, c.http, "carol")
    await bob.join(room)
    await carol.join(room)
    await alice.expect("presence", room=room, user="bob", status="online")
    for i in range(3):
        await alice.post(room, f"a{i}", f"before {i}")
    seen = [m["seq"] for m in await carol.quiet("msg", 1.0)]
    assert seen == [1, 2, 3]
    c.process.proc.kill()
    c.process.proc.wait()
    # bob does not come back: offline once the cluster removed the node (or the room's
    # refresh window passed), whichever of its session and room died with it.
    await alice.expect("presence", timeout=60, room=room, user="bob", status="offline")
    # carol reconnects to another node and resumes from what she saw.
    await post_until_acked(alice, room, "a3", "while carol was away")
    carol = await Client.connect(http, b.http, "carol")
    await carol.join(room, last_seq=3)
    await post_until_acked(alice, room, "a4", "welcome back")
    got = [m["id"] for m in await carol.quiet("msg", 2.0)]
    assert got == ["a3", "a4"]
    await alice.close()
    await carol.close()
