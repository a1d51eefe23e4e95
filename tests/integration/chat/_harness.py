"""Three real ``shoal node --app examples.chat.app:start`` processes and WebSocket clients."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import aiohttp

from tests.integration.cli._nodes import NodeProcess, Nodes

APP = ["--app", "examples.chat.app:start"]
SECRET = "chat-test-secret"
RECEIVE_TIMEOUT = 10.0


def chat_env(journal: Path, **extra: str) -> dict[str, str]:
    return {
        "SHOAL_PERSISTENCE_PLUGIN": "sqlite",
        "SHOAL_PERSISTENCE_SQLITE_PATH": str(journal),
        "CHAT_HTTP_PORT": "0",
        "CHAT_SECRET": SECRET,
        **extra,
    }


class ChatNode:
    def __init__(self, process: NodeProcess) -> None:
        self.process = process
        self.http = ""

    def started(self) -> None:
        self.http = str(self.process.wait_event("chat")["http"])
        self.process.wait_event("started")

    @property
    def address(self) -> str:
        return self.process.address


def start_cluster(nodes: Nodes, n: int, journal: Path, **env: str) -> list[ChatNode]:
    environment = chat_env(journal, **env)
    first = ChatNode(nodes.start(*APP, env=environment))
    first.started()
    rest = [
        ChatNode(nodes.start(*APP, "--seed", first.address, env=environment)) for _ in range(n - 1)
    ]
    for node in rest:
        node.started()
    for node in [first, *rest]:
        node.process.wait_event("up")
    return [first, *rest]


def start_node(nodes: Nodes, seed: ChatNode, journal: Path, **env: str) -> ChatNode:
    node = ChatNode(nodes.start(*APP, "--seed", seed.address, env=chat_env(journal, **env)))
    node.started()
    node.process.wait_event("up")
    return node


async def login(http: aiohttp.ClientSession, base: str, name: str) -> str:
    async with http.post(f"{base}/api/login", json={"name": name}) as answer:
        assert answer.status == 200, await answer.text()
        body = await answer.json()
    return str(body["token"])


class Client:
    """One WebSocket client; frames it did not ask for yet wait in ``backlog``."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse, user: str) -> None:
        self.ws = ws
        self.user = user
        self.backlog: list[dict[str, Any]] = []
        self.welcome: dict[str, Any] = {}

    @classmethod
    async def connect(
        cls, http: aiohttp.ClientSession, base: str, user: str, token: str | None = None
    ) -> Client:
        token = token or await login(http, base, user)
        ws = await http.ws_connect(f"{base}/ws?token={token}", max_msg_size=0)
        client = cls(ws, user)
        client.welcome = await client.expect("welcome")
        return client

    async def send(self, **fields: Any) -> None:
        await self.ws.send_str(json.dumps({"v": 1, **fields}))

    async def _next(self, timeout: float) -> dict[str, Any]:
        frame = await self.ws.receive(timeout=timeout)
        if frame.type is not aiohttp.WSMsgType.TEXT:
            raise ConnectionError(f"closed: {frame.type} {self.ws.close_code} {frame.extra}")
        body: dict[str, Any] = json.loads(frame.data)
        return body

    async def expect(
        self, kind: str, timeout: float = RECEIVE_TIMEOUT, **match: Any
    ) -> dict[str, Any]:
        """The next frame of type ``kind`` whose fields include ``match``."""

        def fits(body: dict[str, Any]) -> bool:
            return body.get("type") == kind and all(body.get(k) == v for k, v in match.items())

        return await self._first(fits, f"{kind} {match}", timeout)

    async def expect_any(
        self, kinds: tuple[str, ...], timeout: float = RECEIVE_TIMEOUT
    ) -> dict[str, Any]:
        """The next frame of one of ``kinds``."""
        return await self._first(lambda body: body.get("type") in kinds, str(kinds), timeout)

    async def _first(self, fits: Any, what: str, timeout: float) -> dict[str, Any]:
        for i, body in enumerate(self.backlog):
            if fits(body):
                return self.backlog.pop(i)
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {what} within {timeout} s; got {self.backlog}")
            try:
                body = await self._next(left)
            except TimeoutError:
                continue
            if fits(body):
                return body
            self.backlog.append(body)

    async def quiet(self, kind: str, seconds: float) -> list[dict[str, Any]]:
        """Frames of type ``kind`` that arrive within ``seconds`` (backlog included)."""
        got = [b for b in self.backlog if b.get("type") == kind]
        self.backlog = [b for b in self.backlog if b.get("type") != kind]
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            try:
                body = await self._next(left)
            except TimeoutError:
                break
            if body.get("type") == kind:
                got.append(body)
            else:
                self.backlog.append(body)
        return got

    async def join(self, room: str, **fields: Any) -> dict[str, Any]:
        await self.send(type="join", room=room, **fields)
        return await self.expect("joined", room=room)

    async def post(self, room: str, client_id: str, text: str, **fields: Any) -> dict[str, Any]:
        await self.send(type="send", room=room, id=client_id, text=text, **fields)
        return await self.expect("ack", id=client_id)

    async def close(self) -> None:
        await self.ws.close()


async def eventually_async(check: Any, timeout: float = 20.0, interval: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = await check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError("condition never held")
        await asyncio.sleep(interval)
