"""The chat page in headless Chromium, against three real nodes behind nginx.

Three ``shoal node --app examples.chat.app:start`` processes share one SQLite
journal; the deployment's nginx configuration (templated to loopback) is in
front of them, and every page is loaded through it, so the WebSocket upgrade,
least-connections balancing and the failover of a dead node are the ones
Compose runs.

What a person would look at is also photographed: the screenshots land in
the test's temporary directory, and in ``$BROWSER_SCREENSHOTS`` when set (that
is how ``docs/images/chat.png`` and ``docs/images/cluster.png`` are made).
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import re
import shutil
from collections import deque
from collections.abc import Callable, Coroutine, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import aiohttp
import pytest

from tests.browser_support import Nginx, http_get
from tests.integration.cli._nodes import Nodes, eventually

for _needed in ("examples.chat.app", "tests.integration.chat._harness"):
    try:
        _found = importlib.util.find_spec(_needed) is not None
    except ImportError:
        _found = False
    if not _found:
        pytest.skip(f"the chat server is not in this tree ({_needed})", allow_module_level=True)

from playwright.sync_api import TimeoutError as PlaywrightTimeoutError  # noqa: E402

from tests.integration.chat._harness import ChatNode, Client, start_cluster  # noqa: E402

if TYPE_CHECKING:
    from playwright.sync_api import Browser, BrowserContext, Page, WebSocket, WebSocketRoute

pytestmark = [pytest.mark.slow, pytest.mark.multiprocess, pytest.mark.timeout(240)]

T = TypeVar("T")
WAIT_MS = 20_000  # one step of the page: a message, a presence, a typing indicator
RECOVER_MS = 90_000  # a node killed: downed, its shards moved, the page back and resumed


@dataclass
class Deployment:
    nodes: list[ChatNode]
    nginx: Nginx
    processes: Nodes

    @property
    def url(self) -> str:
        return self.nginx.url

    def node_named(self, address: str) -> ChatNode:
        plain = address.removeprefix("shoal://")
        for node in self.nodes:
            if node.address == plain:
                return node
        raise AssertionError(f"no node {address} among {[n.address for n in self.nodes]}")


def _deploy(
    tmp: Path, nginx_runner: Callable[[Sequence[int]], Nginx], stack: ExitStack
) -> Deployment:
    processes = Nodes(tmp)
    stack.callback(processes.close)
    nodes = start_cluster(processes, 3, tmp / "journal.db")
    ports = [int(node.http.rsplit(":", 1)[1]) for node in nodes]
    nginx = nginx_runner(ports)
    for node in nodes:
        _wait_health(node.http)
    return Deployment(nodes, nginx, processes)


def _wait_health(base: str) -> None:
    # Another process's readiness: there is no event to await, so poll it.
    eventually(lambda: http_get(f"{base}/api/health")[0] == 200)


@pytest.fixture
def deployment(
    tmp_path: Path, nginx_runner: Callable[[Sequence[int]], Nginx]
) -> Iterator[Deployment]:
    with ExitStack() as stack:
        yield _deploy(tmp_path, nginx_runner, stack)


def screenshot(page: Page, tmp: Path, name: str) -> Path:
    path = tmp / name
    page.screenshot(path=str(path))
    target = os.environ.get("BROWSER_SCREENSHOTS")
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(target) / name)
    return path


class User:
    """One person: a browser context (own storage) with the chat page open."""

    def __init__(
        self,
        browser: Browser,
        url: str,
        name: str,
        prepare: Callable[[Page], None] | None = None,
    ) -> None:
        self.name = name
        self.url = url
        self.context: BrowserContext = browser.new_context(viewport={"width": 1100, "height": 680})
        self.page: Page = self.context.new_page()
        self.errors: list[str] = []
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        # The page's last WebSocket frames, for the message of a failed wait.
        self.frames: deque[str] = deque(maxlen=60)
        self.page.on("websocket", self._watch)
        if prepare is not None:
            prepare(self.page)
        self.page.goto(f"{url}/")
        self.page.fill("#name", name)
        self.page.click("#login button[type=submit]")
        self.wait_connected()

    def _watch(self, ws: WebSocket) -> None:
        self.frames.append(f"open {ws.url.split('?')[0]}")
        ws.on("framesent", lambda f: self.frames.append(f"> {str(f)[:200]}"))
        ws.on("framereceived", lambda f: self.frames.append(f"< {str(f)[:200]}"))
        ws.on("close", lambda _: self.frames.append("closed"))

    def wait_connected(self, timeout: float = WAIT_MS) -> None:
        self.page.wait_for_selector("#status[data-state=connected]", timeout=timeout)

    @property
    def node(self) -> str:
        return str(self.page.get_attribute("#node", "data-node"))

    def say(self, text: str) -> None:
        self.page.fill("#text", text)
        self.page.press("#text", "Enter")

    def join(self, room: str) -> None:
        self.page.fill("#join-room", room)
        self.page.press("#join-room", "Enter")
        self.page.wait_for_selector(f"#title:has-text('# {room} /')", timeout=WAIT_MS)
        self.wait_joined(room)

    def wait_joined(self, room: str, timeout: float = WAIT_MS) -> None:
        self.page.wait_for_function(
            "room => { const r = window.shoalChat.room(room); return r && r.joined; }",
            arg=room,
            timeout=timeout,
        )

    def channel(self, name: str) -> None:
        existing = self.page.locator(f"#channels button[data-channel='{name}']")
        if existing.count():
            existing.click()
        else:
            self.page.fill("#channel-name", name)
            self.page.press("#channel-name", "Enter")
        self.page.wait_for_selector(f"#title:has-text('/ {name}')", timeout=WAIT_MS)

    def texts(self) -> list[str]:
        """The texts of the messages on screen, in order."""
        return list(
            self.page.eval_on_selector_all("#list li .text", "els => els.map(e => e.textContent)")
        )

    def wait_text(self, text: str, state: str | None = None, timeout: float = WAIT_MS) -> None:
        try:
            self.page.wait_for_function(
                """([text, state]) => [...document.querySelectorAll('#list li')].some(
                    li => li.querySelector('.text').textContent === text
                          && (state === null || li.dataset.state === state))""",
                arg=[text, state],
                timeout=timeout,
            )
        except PlaywrightTimeoutError:
            frames = "\n".join(self.frames)
            raise AssertionError(
                f"{self.name} never showed {text!r} ({state}); last frames:\n{frames}"
            ) from None

    def record_states(self) -> None:
        """From now on, remember every (text, state) a message shows, however briefly."""
        self.page.evaluate(
            """() => {
                window.__seen = [];
                const note = li => {
                  const text = li.querySelector('.text');
                  if (text) window.__seen.push([text.textContent, li.dataset.state]);
                };
                new MutationObserver(records => {
                  for (const r of records) {
                    if (r.type === 'attributes') note(r.target);
                    for (const n of r.addedNodes) if (n.nodeName === 'LI') note(n);
                  }
                }).observe(document.getElementById('list'),
                           {subtree: true, childList: true, attributes: true,
                            attributeFilter: ['data-state']});
            }"""
        )

    def states_seen(self, text: str) -> list[str]:
        seen = self.page.evaluate("() => window.__seen")
        return [state for t, state in seen if t == text]

    def state(self, room: str) -> dict[str, Any]:
        got = self.page.evaluate("room => window.shoalChat.room(room)", room)
        assert isinstance(got, dict)
        return got


@pytest.fixture
def users(browser: Browser) -> Iterator[Callable[..., User]]:
    opened: list[User] = []

    def open_user(url: str, name: str, prepare: Callable[[Page], None] | None = None) -> User:
        user = User(browser, url, name, prepare)
        opened.append(user)
        return user

    yield open_user
    for user in opened:
        user.context.close()
    for user in opened:
        assert not user.errors, f"{user.name}'s page raised: {user.errors}"


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` on a loop of its own (Playwright's sync API holds this thread's)."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


async def _join_when_available(client: Client, room: str) -> None:
    """Join ``room``, again while it answers ``unavailable`` (it is moving off a dead node)."""
    for _ in range(30):
        await client.send(type="join", room=room)
        while True:
            frame = await client._next(30.0)
            if frame.get("type") == "joined" and frame.get("room") == room:
                return
            if frame.get("type") == "error" and frame.get("code") == "unavailable":
                break
    raise AssertionError(f"{room} stayed unavailable")


async def _history(base: str, room: str) -> list[dict[str, Any]]:
    """The room's whole history, read by a plain WebSocket client."""
    async with aiohttp.ClientSession() as http:
        client = await Client.connect(http, base, "auditor")
        await _join_when_available(client, room)
        messages: list[dict[str, Any]] = []
        before: int | None = None
        while True:
            await client.send(type="history", room=room, before_seq=before, limit=200)
            page = await client.expect("history", room=room)
            messages = page["messages"] + messages
            if not page["more"] or not page["messages"]:
                break
            before = page["messages"][0]["seq"]
        await client.close()
    return messages


async def _post_many(base: str, room: str, count: int, senders: int) -> None:
    """``count`` messages into ``room`` from ``senders`` connections (each within its burst)."""
    async with aiohttp.ClientSession() as http:
        clients = [await Client.connect(http, base, f"writer{i}") for i in range(senders)]
        for client in clients:
            await client.join(room)
        share = count // senders

        async def write(index: int, client: Client) -> None:
            for n in range(share):
                await client.post(room, f"w{index}-{n}", f"old message {index}-{n}")

        await asyncio.gather(*(write(i, c) for i, c in enumerate(clients)))
        for client in clients:
            await client.close()


def test_two_users_on_two_nodes_chat_in_a_room_and_a_channel(
    deployment: Deployment, users: Callable[..., User], tmp_path: Path
) -> None:
    alice = users(deployment.url, "alice")
    bob = users(deployment.url, "bob")
    # Through nginx (least connections), the two sockets are on two different nodes.
    assert alice.node
    assert bob.node
    assert alice.node != bob.node
    deployment.node_named(alice.node)
    deployment.node_named(bob.node)

    # Presence: each sees the other online in the lobby.
    alice.page.wait_for_selector("#presence li[data-user=bob]", timeout=WAIT_MS)
    bob.page.wait_for_selector("#presence li[data-user=alice]", timeout=WAIT_MS)

    alice.say("hello bob")
    alice.wait_text("hello bob", state="acked")
    bob.wait_text("hello bob", state="received")
    bob.say("hi alice, from another node")
    alice.wait_text("hi alice, from another node")

    # Typing: bob types, alice sees it (and it goes away on its own).
    bob.page.type("#text", "typing something")
    alice.page.wait_for_selector("#typing[data-users=bob]", timeout=WAIT_MS)
    assert "bob is typing" in alice.page.inner_text("#typing")
    bob.page.fill("#text", "")

    # HTML is text: no element, no script.
    hostile = (
        '<img src=x onerror="window.__owned=1"><b>bold</b> & <script>window.__owned=2</script>'
    )
    bob.say(hostile)
    alice.wait_text(hostile)
    bob.wait_text(hostile, state="acked")
    for user in (alice, bob):
        assert user.page.locator("#list img, #list b, #list script").count() == 0
        assert user.page.evaluate("window.__owned") is None

    # A channel: only the channel's messages are in its view.
    alice.channel("dev")
    bob.channel("dev")
    alice.wait_joined("lobby")
    bob.wait_joined("lobby")
    bob.say("in the dev channel")
    alice.wait_text("in the dev channel")
    assert alice.texts() == ["in the dev channel"]
    alice.channel("default")
    assert "in the dev channel" not in alice.texts()
    assert alice.texts()[-1] == hostile

    # A second room.
    alice.join("ops")
    bob.join("ops")
    alice.say("ops room opened")
    bob.wait_text("ops room opened")
    alice.join("lobby")
    alice.page.wait_for_selector("#presence li[data-user=bob]", timeout=WAIT_MS)
    bob.page.click("#rooms button[data-room=lobby]")
    bob.channel("default")
    bob.page.type("#text", "see you")
    alice.page.wait_for_selector("#typing[data-users=bob]", timeout=WAIT_MS)
    screenshot(alice.page, tmp_path, "chat.png")

    # A reload restores the rooms, the channel on screen and the history, each message once.
    bob.page.fill("#text", "")
    bob.page.reload()
    bob.wait_connected()
    bob.wait_text(hostile)
    expected = ["hello bob", "hi alice, from another node", hostile]
    assert bob.texts() == expected
    assert bob.page.locator("#list li[data-state=pending]").count() == 0
    assert [b.get_attribute("data-room") for b in bob.page.locator("#rooms button").all()] == [
        "lobby",
        "ops",
    ]
    bob.channel("dev")
    bob.wait_text("in the dev channel")
    assert bob.texts() == ["in the dev channel"]
    # The page and the journal agree.
    history = run_async(_history(deployment.nodes[0].http, "lobby"))
    assert [m["text"] for m in history if m["channel"] == "default"] == expected
    assert bob.state("lobby")["seqs"] == [m["seq"] for m in history]

    # Bob leaves (his page closes): after the grace period alice sees him go.
    bob.context.close()
    alice.page.wait_for_selector("#presence li[data-user=bob]", state="detached", timeout=WAIT_MS)
    alice.page.wait_for_selector("#presence li[data-user=alice]", timeout=WAIT_MS)


def test_history_loads_older_pages_on_scroll(
    deployment: Deployment, users: Callable[..., User]
) -> None:
    # Four writers, each within its rate limit's burst (a join and 30 sends).
    run_async(_post_many(deployment.nodes[1].http, "archive", 120, senders=4))
    carol = users(deployment.url, "carol")
    carol.join("archive")
    carol.wait_text("old message 3-29")
    first = carol.state("archive")
    assert len(first["seqs"]) == 50
    assert first["more"] is True
    assert carol.page.locator("#older").is_visible()
    # Scrolling to the top reads the previous page, and the one before it.
    for expected in (100, 120):
        carol.page.eval_on_selector("#messages", "el => { el.scrollTop = 0; }")
        carol.page.wait_for_function(
            "n => window.shoalChat.room('archive').seqs.length >= n", arg=expected, timeout=WAIT_MS
        )
    carol.page.wait_for_selector("#beginning:not([hidden])", timeout=WAIT_MS)
    final = carol.state("archive")
    assert final["seqs"] == list(range(1, 121))
    assert final["more"] is False
    assert len(carol.texts()) == 120
    assert len(set(carol.texts())) == 120


def test_the_cluster_page_shows_members_leader_and_shards(
    deployment: Deployment, users: Callable[..., User], tmp_path: Path
) -> None:
    # Some entities to show: a user with a room.
    dave = users(deployment.url, "dave")
    dave.say("hello cluster")
    dave.wait_text("hello cluster", state="acked")
    page = dave.context.new_page()
    page.goto(f"{deployment.url}/cluster")
    page.wait_for_function(
        "() => document.querySelectorAll('#members tbody tr[data-status=up]').length === 3",
        timeout=WAIT_MS,
    )
    page.wait_for_selector("#shards tbody tr[data-type=chat-room]", timeout=WAIT_MS)
    page.wait_for_selector("#status[data-state=connected]", timeout=WAIT_MS)
    status, body = http_get(f"{deployment.url}/api/cluster")
    assert status == 200
    cluster = json.loads(body)
    leader = cluster["leader"].removeprefix("shoal://")
    assert page.inner_text("#leader") == leader
    assert page.inner_text("#unreachable") == "none"
    rows = page.locator("#members tbody tr")
    assert sorted(r.get_attribute("data-node") or "" for r in rows.all()) == sorted(
        m["node"] for m in cluster["members"]
    )
    page.wait_for_timeout(2500)  # the nodes share their entity counts every 2 s
    screenshot(page, tmp_path, "cluster.png")
    page.close()


def test_a_killed_node_s_users_reconnect_and_resume_with_nothing_lost_or_doubled(
    deployment: Deployment, users: Callable[..., User], tmp_path: Path
) -> None:
    alice = users(deployment.url, "alice")
    bob = users(deployment.url, "bob")
    assert alice.node != bob.node
    alice.join("resilient")
    bob.join("resilient")
    for i in range(3):
        alice.say(f"before {i}")
        bob.wait_text(f"before {i}")

    victim = deployment.node_named(alice.node)
    alice.record_states()
    victim.process.kill()
    alice.page.wait_for_selector("#status:not([data-state=connected])", timeout=WAIT_MS)

    # While alice is away: bob keeps talking, alice writes (pending until she is back).
    for i in range(5):
        bob.say(f"while away {i}")
    alice.say("written while disconnected")

    alice.wait_connected(timeout=RECOVER_MS)
    assert alice.node != victim.address
    alice.wait_text("written while disconnected", state="acked", timeout=RECOVER_MS)
    seen = alice.states_seen("written while disconnected")
    assert seen[0] == "pending"
    assert seen[-1] == "acked"
    for i in range(5):
        bob.wait_text(f"while away {i}", state="acked", timeout=RECOVER_MS)
        alice.wait_text(f"while away {i}", timeout=RECOVER_MS)
    bob.wait_text("written while disconnected", timeout=RECOVER_MS)
    alice.say("after")
    bob.wait_text("after", timeout=RECOVER_MS)
    alice.wait_text("after", state="acked", timeout=RECOVER_MS)
    screenshot(alice.page, tmp_path, "resumed.png")

    survivor = next(n for n in deployment.nodes if n is not victim)
    history = run_async(_history(survivor.http, "resilient"))
    texts = [m["text"] for m in history]
    expected = {
        *(f"before {i}" for i in range(3)),
        *(f"while away {i}" for i in range(5)),
        "written while disconnected",
        "after",
    }
    # Stored exactly once each, and shown exactly once each, in the journal's order.
    assert sorted(texts) == sorted(expected)
    for user in (alice, bob):
        assert user.texts() == texts, user.name
        assert user.state("resilient")["seqs"] == [m["seq"] for m in history]
        assert user.page.locator("#list li[data-state=pending]").count() == 0

    # The cluster page shows the dead node unreachable, or already removed.
    page = bob.context.new_page()
    page.goto(f"{deployment.url}/cluster")
    page.wait_for_function(
        """victim => {
            const rows = [...document.querySelectorAll('#members tbody tr')];
            const row = rows.find(r => r.dataset.node === victim);
            return rows.length > 0 && (!row || row.dataset.reachable === 'false'
                                       || ['down', 'removed'].includes(row.dataset.status));
        }""",
        arg=f"shoal://{victim.address}",
        timeout=RECOVER_MS,
    )
    screenshot(page, tmp_path, "cluster-after-kill.png")
    page.close()


class _Tap:
    """The page's WebSocket through Playwright: can hold the server's frames and close it."""

    def __init__(self) -> None:
        self.sockets: list[tuple[WebSocketRoute, WebSocketRoute]] = []
        self.holding = False
        self.held = 0

    def install(self, page: Page) -> None:
        page.route_web_socket(re.compile(r".*/ws\?.*"), self._route)

    def _route(self, route: WebSocketRoute) -> None:
        server = route.connect_to_server()
        self.sockets.append((route, server))

        def to_page(message: str | bytes) -> None:
            if self.holding:
                self.held += 1
            else:
                route.send(message)

        server.on_message(to_page)

    def inject(self, frame: dict[str, Any]) -> None:
        """A frame to the page as if the server had sent it."""
        self.sockets[-1][0].send(json.dumps(frame))

    def close_current(self, code: int, reason: str) -> None:
        route, server = self.sockets[-1]
        route.close(code=code, reason=reason)
        server.close()


def test_a_socket_closed_to_resume_gets_the_gap_from_history_once(
    deployment: Deployment, users: Callable[..., User]
) -> None:
    tap = _Tap()
    alice = users(deployment.url, "alice", tap.install)
    bob = users(deployment.url, "bob")
    alice.join("gap")
    bob.join("gap")
    bob.say("one")
    alice.wait_text("one")
    # Frames to alice are lost from here on (as in an overflowing outbound queue) ...
    tap.holding = True
    for text in ("two", "three", "four"):
        bob.say(text)
        bob.wait_text(text, state="acked")
    assert "two" not in alice.texts()
    # ... until the server closes her socket with 4000, "slow consumer: resume".
    tap.holding = False
    tap.close_current(4000, "slow consumer: resume")
    alice.wait_connected()
    assert len(tap.sockets) == 2
    for text in ("two", "three", "four"):
        alice.wait_text(text)
    bob.say("five")
    alice.wait_text("five")
    assert alice.texts() == ["one", "two", "three", "four", "five"]
    assert alice.state("gap")["seqs"] == bob.state("gap")["seqs"]
    # The resume asked for what came after the last message alice had seen.
    joins = [f for f in alice.frames if f.startswith("> ") and '"join"' in f and '"gap"' in f]
    assert '"last_seq":1' in joins[-1]

    # A reset (the range could not be served) reloads the room from history: same view.
    head = alice.state("gap")["lastSeq"]
    tap.inject({"v": 1, "type": "reset", "room": "gap", "head": head, "reason": "test"})
    alice.page.wait_for_selector("#notice:has-text('reloaded')", timeout=WAIT_MS)
    alice.wait_text("five")
    assert alice.texts() == ["one", "two", "three", "four", "five"]
    bob.say("six")
    alice.wait_text("six")
    assert alice.texts()[-1] == "six"
    assert len(alice.texts()) == 6
