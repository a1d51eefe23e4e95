"""The chat cluster under load: prints one JSON object.

Three ``shoal node --app examples.chat.app:start`` processes on 127.0.0.1
share one SQLite journal (WAL). ``--workers`` client processes of their own
(asyncio with uvloop; logins through aiohttp, the sockets through a lean
RFC 6455 client, :class:`WsClient`, that times each frame as it parses it)
open ``--clients`` WebSockets spread over the three nodes, in rooms of ``--room-size``
members, then offer ``--rate`` messages per second in total, each from a
random client to its room, for ``--duration`` seconds.

Keys:

* ``clients``, ``rooms``, ``sent_per_s`` (offered), ``achieved_sent_per_s``;
* ``ack_p50_ms``, ``ack_p99_ms``: send -> its acknowledgement;
* ``delivery_p50_ms``, ``delivery_p99_ms``: send -> the last member of the
  room received it (a message some member never received counts as lost:
  ``undelivered``);
* ``max_sustained_sent_per_s``: the highest of ``--rates`` (each run for
  ``--duration``) at which delivery p99 stays <= 200 ms;
* ``server_rss_mib_per_1k_clients``: the nodes' RSS growth from before the
  clients connected to after, per 1,000 clients;
* ``server_cpu_ms_per_msg``, ``client_cpu_ms_per_msg``: CPU time (user +
  system) of the three nodes, and of the client processes, from the start of
  the phase until its load is done (every send acknowledged, no delivery for
  a second), per message offered: on a shared machine these are the figures
  to compare between runs, not the latencies; ``load_average`` at its end;
* with ``--chaos``: one node is SIGKILLed halfway through the load; its
  clients reconnect to the others, resume with their last seen sequence
  numbers and resend what was not acknowledged (same client ids). Then
  ``lost_acked_messages`` (acknowledged, not in the room's history exactly
  once), ``duplicate_messages`` (a client got a sequence number twice) and
  ``missed_messages`` (a client never got a message of its room).

Usage: ``python benchmarks/chat.py [--clients 1000] [--rate 1000] [--rates 1000,2000,3000]
[--duration 10] [--chaos] [--verbose] [--profile DIR] [--cprofile DIR]``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import hashlib
import json
import multiprocessing
import os
import queue
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlsplit

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
SECRET = "benchmark-secret"
QUIET = 1.0
"""Seconds without a delivery after which a phase's load is taken as done."""


# -- the nodes ---------------------------------------------------------------------------


class Node:
    def __init__(self, index: int, argv: list[str], env: dict[str, str], log: Path) -> None:
        self.index = index
        self.log = log.open("wb")
        self.proc = subprocess.Popen(
            argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=self.log, text=True
        )
        self.events: queue.Queue[dict[str, Any]] = queue.Queue()
        self.held: list[dict[str, Any]] = []
        self.http = ""
        self.address = ""
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with contextlib.suppress(ValueError):
                self.events.put(json.loads(line))

    def wait(self, name: str, timeout: float = 60) -> dict[str, Any]:
        for i, event in enumerate(self.held):
            if event.get("event") == name:
                return self.held.pop(i)
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"node {self.index} exited ({self.proc.returncode})")
            try:
                event = self.events.get(timeout=max(0.01, min(0.5, deadline - time.monotonic())))
            except queue.Empty:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"node {self.index}: no {name!r}") from None
                continue
            if event.get("event") == name:
                return event
            self.held.append(event)

    def cpu_s(self) -> float:
        """User + system CPU seconds of the node process so far."""
        try:
            fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, IndexError, ValueError):
            return 0.0

    def rss_mib(self) -> float:
        try:
            for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        except OSError:
            pass
        return 0.0


_CPROFILED = """
import cProfile, runpy, sys, time
out = sys.argv.pop(1)
sys.argv[0] = "shoal"
profile = cProfile.Profile(time.thread_time)  # the event loop thread's CPU time
profile.enable()
try:
    runpy.run_module("shoal.cli", run_name="__main__")
finally:
    profile.disable()
    profile.dump_stats(out)
"""


def start_nodes(n: int, data: Path, cprofile: str | None = None) -> list[Node]:
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "SHOAL_PERSISTENCE_PLUGIN": "sqlite",
        "SHOAL_PERSISTENCE_SQLITE_PATH": str(data / "journal.db"),
        "CHAT_HTTP_PORT": "0",
        "CHAT_SECRET": SECRET,
        "CHAT_OUTBOX": "10000",
    }
    nodes: list[Node] = []
    seed = ""
    for i in range(n):
        argv = [sys.executable, "-m", "shoal.cli", "node", "--app", "examples.chat.app:start",
                "--system", "chat", "--host", "127.0.0.1", "--port", "0",
                "--http-port", "0"]  # fmt: skip
        if cprofile:
            Path(cprofile).mkdir(parents=True, exist_ok=True)
            out = str(Path(cprofile, f"node{i + 1}.prof").resolve())
            argv[1:3] = ["-c", _CPROFILED, out]
        if seed:
            argv += ["--seed", seed]
        node = Node(i, argv, env, data / f"node{i + 1}.log")
        nodes.append(node)
        node.http = str(node.wait("chat")["http"])
        node.address = str(node.wait("started")["node"]).removeprefix("shoal://")
        seed = seed or node.address
    for node in nodes:
        node.wait("up")
    return nodes


def stop_nodes(nodes: list[Node]) -> None:
    for node in nodes:
        if node.proc.poll() is None:
            node.proc.send_signal(signal.SIGTERM)
    for node in nodes:
        try:
            node.proc.wait(30)
        except subprocess.TimeoutExpired:
            node.proc.kill()
            node.proc.wait()


# -- the clients (in worker processes) -------------------------------------------------


class WsError(Exception):
    """The WebSocket handshake or a frame was not what RFC 6455 allows."""


_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


class WsClient(asyncio.Protocol):
    """A lean WebSocket client (RFC 6455: the handshake, masked text frames out, unmasked
    frames in, ping -> pong, close): the clients share the cores with the nodes, so
    they parse what arrives in ``data_received`` without a task or a queue per frame.
    Every text frame is handed to ``on_text`` as it arrives."""

    def __init__(self, host: str, port: int, path: str, on_text: Any) -> None:
        self.on_text = on_text
        self.key = base64.b64encode(os.urandom(16))
        self.request = (
            f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {self.key.decode()}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
        self.buf = bytearray()
        self.open = False
        self.transport: asyncio.Transport | None = None
        loop = asyncio.get_running_loop()
        self.opened: asyncio.Future[None] = loop.create_future()
        self.closed: asyncio.Future[None] = loop.create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast("asyncio.Transport", transport)
        self.transport.write(self.request)

    def connection_lost(self, exc: Exception | None) -> None:
        self.open = False
        if not self.opened.done():
            self.opened.set_exception(exc or WsError("closed during the handshake"))
        if not self.closed.done():
            self.closed.set_result(None)

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        if not self.open:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(buf[:end]).decode("latin-1").split("\r\n")
            del buf[: end + 4]
            accept = base64.b64encode(hashlib.sha1(self.key + _GUID).digest()).decode()
            headers = {
                k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in head[1:])
            }
            if (
                not head[0].startswith("HTTP/1.1 101")
                or headers.get("sec-websocket-accept") != accept
            ):
                self.fail(WsError(f"handshake refused: {head[0]}"))
                return
            self.open = True
            self.opened.set_result(None)
        pos = 0
        size = len(buf)
        while size - pos >= 2:
            b0, n = buf[pos], buf[pos + 1]
            start = pos + 2
            if n & 0x80:
                self.fail(WsError("a masked frame from the server"))
                return
            if n == 126:
                if size - pos < 4:
                    break
                n = int.from_bytes(buf[pos + 2 : pos + 4], "big")
                start = pos + 4
            elif n == 127:
                if size - pos < 10:
                    break
                n = int.from_bytes(buf[pos + 2 : pos + 10], "big")
                start = pos + 10
            end = start + n
            if end > size:
                break
            payload = bytes(buf[start:end])
            pos = end
            opcode = b0 & 0x0F
            if not b0 & 0x80:
                self.fail(WsError("a fragmented frame (the server never fragments)"))
                return
            if opcode == 1:
                self.on_text(payload)
            elif opcode == 9:
                self._send(0x8A, payload)  # pong
            elif opcode == 8:
                self.close()
                return
        del buf[:pos]

    def _send(self, first: int, payload: bytes) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        n = len(payload)
        mask = os.urandom(4)
        if n < 126:
            header = bytes((first, 0x80 | n))
        elif n < 65536:
            header = bytes((first, 0x80 | 126)) + n.to_bytes(2, "big")
        else:
            header = bytes((first, 0x80 | 127)) + n.to_bytes(8, "big")
        key = (mask * (n // 4 + 1))[:n]
        masked = (int.from_bytes(payload, "big") ^ int.from_bytes(key, "big")).to_bytes(n, "big")
        transport.write(header + mask + masked)

    def send_text(self, text: str) -> None:
        if self.open:
            self._send(0x81, text.encode())

    def close(self) -> None:
        if self.open:
            self._send(0x88, (1000).to_bytes(2, "big"))
        self.open = False
        if self.transport is not None:
            self.transport.close()

    def fail(self, error: Exception) -> None:
        if not self.opened.done():
            self.opened.set_exception(error)
        self.open = False
        if self.transport is not None:
            self.transport.abort()


class BenchClient:
    """One WebSocket client: joins its room, sends, records acks and deliveries (each
    frame timed as it is parsed); reconnects to the next node and resumes when its
    socket closes."""

    def __init__(self, worker: Worker, user: str, room: str, node: int) -> None:
        self.worker = worker
        self.user = user
        self.room = room
        self.node = node
        self.ws: WsClient | None = None
        self.ready = asyncio.Event()
        self.joined_once = False
        self.last_seq = 0
        self.seen: set[int] = set()
        self.duplicates = 0
        self.pending: dict[str, str] = {}  # client id -> text, until acknowledged
        self.reconnects = 0

    async def run(self) -> None:
        urls = self.worker.urls
        loop = asyncio.get_running_loop()
        while not self.worker.stopping:
            url = urlsplit(urls[self.node % len(urls)])
            host, port = url.hostname or "127.0.0.1", url.port or 80
            path = f"/ws?token={self.worker.tokens[self.user]}"
            ws = WsClient(host, port, path, self.on_text)
            try:
                await loop.create_connection(lambda: ws, host, port)  # noqa: B023 - awaited here
                await ws.opened
                self.ws = ws
                self.join()
                await ws.closed
            except (OSError, WsError):
                pass
            self.ready.clear()
            self.ws = None
            if self.worker.stopping:
                return
            self.reconnects += 1
            self.node += 1  # the next node
            await asyncio.sleep(0.2 + random.random() * 0.3)

    def join(self) -> None:
        if self.ws is not None:
            join: dict[str, Any] = {"v": 1, "type": "join", "room": self.room}
            if self.joined_once:
                join["last_seq"] = self.last_seq
            self.ws.send_text(json.dumps(join))

    def on_text(self, payload: bytes) -> None:
        now = time.monotonic()
        body = json.loads(payload)
        kind = body.get("type")
        if kind == "msg":
            seq = int(body["seq"])
            if seq in self.seen:
                self.duplicates += 1
            self.seen.add(seq)
            if seq > self.last_seq:
                self.last_seq = seq
            self.worker.delivered(str(body["id"]), now)
        elif kind == "ack":
            client_id = str(body["id"])
            if self.pending.pop(client_id, None) is not None:
                self.worker.acked(client_id, now, self.room, int(body["seq"]))
        elif kind == "joined":
            self.joined_once = True
            self.ready.set()
            for client_id, text in list(self.pending.items()):  # resend: same ids
                self.send_frame(client_id, text)
        elif kind == "error":
            loop = asyncio.get_running_loop()
            if not self.ready.is_set() and body.get("room") == self.room:
                loop.call_later(0.5, self.rejoin)  # room unavailable
            ref = body.get("ref")
            if isinstance(ref, str) and ref in self.pending:
                code = str(body.get("code"))
                self.worker.errors[code] = self.worker.errors.get(code, 0) + 1
                loop.call_later(0.5, self.retry, ref)

    def rejoin(self) -> None:
        if not self.ready.is_set():
            self.join()

    def retry(self, client_id: str) -> None:
        text = self.pending.get(client_id)
        if text is not None and self.ready.is_set():
            self.send_frame(client_id, text)

    def send_frame(self, client_id: str, text: str) -> None:
        if self.ws is not None:
            frame = {"v": 1, "type": "send", "room": self.room, "id": client_id, "text": text}
            self.ws.send_text(json.dumps(frame))

    def send(self, client_id: str) -> None:
        self.pending[client_id] = client_id
        if self.ready.is_set():  # else sent once the (re)join is answered
            self.send_frame(client_id, client_id)


class Worker:
    def __init__(self, pipe: Connection, config: dict[str, Any]) -> None:
        self.pipe = pipe
        self.urls: list[str] = config["urls"]
        self.index: int = config["index"]
        self.members: list[tuple[str, str, int]] = config["members"]
        self.tokens: dict[str, str] = {}
        self.stopping = False
        self.sent_at: dict[str, float] = {}
        self.ack_ms: list[float] = []
        self.acks: dict[str, tuple[str, int]] = {}
        self.last_delivery: dict[str, float] = {}
        self.deliveries: dict[str, int] = {}
        self.errors: dict[str, int] = {}
        self.last_frame = 0.0
        self.tasks: set[asyncio.Task[None]] = set()

    def spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def settle(self, clients: list[BenchClient], limit: float) -> None:
        """Wait until every send is acknowledged, every client joined and no message
        arrived for ``QUIET`` seconds (at most ``limit`` seconds): the CPU figures then
        cover all the work of the phase, however slowly a loaded machine did it."""
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            await asyncio.sleep(0.25)
            if time.monotonic() - self.last_frame > QUIET and all(
                c.ready.is_set() and not c.pending for c in clients
            ):
                return

    def delivered(self, client_id: str, now: float) -> None:
        self.last_frame = now
        self.deliveries[client_id] = self.deliveries.get(client_id, 0) + 1
        if now > self.last_delivery.get(client_id, 0.0):
            self.last_delivery[client_id] = now

    def acked(self, client_id: str, now: float, room: str, seq: int) -> None:
        sent = self.sent_at.get(client_id)
        if sent is not None:
            self.ack_ms.append((now - sent) * 1000)
        self.acks[client_id] = (room, seq)

    async def main(self) -> None:
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=connector) as self.http:
            for user, _, _ in self.members:
                url = self.urls[0]
                async with self.http.post(f"{url}/api/login", json={"name": user}) as answer:
                    self.tokens[user] = (await answer.json())["token"]
            clients = [BenchClient(self, u, r, n) for u, r, n in self.members]
            for client in clients:
                self.spawn(client.run())
            await asyncio.gather(*(c.ready.wait() for c in clients))
            self.pipe.send({"ready": True})
            loop = asyncio.get_running_loop()
            while True:
                command = await loop.run_in_executor(None, self.pipe.recv)
                if command["phase"] == "stop":
                    break
                await self.load(clients, command)
            self.stopping = True
            self.pipe.send(
                {
                    "seen": {c.user: sorted(c.seen) for c in clients},
                    "rooms": {c.user: c.room for c in clients},
                    "duplicates": sum(c.duplicates for c in clients),
                    "reconnects": sum(c.reconnects for c in clients),
                    "unacked": sum(len(c.pending) for c in clients),
                    "acks": self.acks,
                }
            )
            for client in clients:
                if client.ws is not None:
                    client.ws.close()

    async def load(self, clients: list[BenchClient], command: dict[str, Any]) -> None:
        rate: float = command["rate"]
        duration: float = command["duration"]
        phase: str = command["name"]
        self.sent_at.clear()
        self.ack_ms.clear()
        self.last_delivery.clear()
        self.deliveries.clear()
        cpu_start = time.process_time()
        start = time.monotonic()
        n = 0
        total = int(rate * duration)
        while n < total:
            due = start + n / rate
            now = time.monotonic()
            if due > now:
                await asyncio.sleep(due - now)
            client = random.choice(clients)
            client_id = f"{phase}-{self.index}-{n}"
            self.sent_at[client_id] = time.monotonic()
            client.send(client_id)
            n += 1
        achieved = n / max(1e-9, time.monotonic() - start)
        await self.settle(clients, command["settle"])
        self.pipe.send(
            {
                "achieved": achieved,
                "cpu_s": time.process_time() - cpu_start,
                "sent_at": self.sent_at,
                "ack_ms": self.ack_ms,
                "acks": self.acks,
                "last_delivery": self.last_delivery,
                "deliveries": self.deliveries,
                "errors": self.errors,
            }
        )


def worker_main(pipe: Connection, config: dict[str, Any]) -> None:
    try:
        import uvloop  # noqa: PLC0415 - optional

        uvloop.run(Worker(pipe, config).main())
    except ImportError:
        asyncio.run(Worker(pipe, config).main())


# -- the run ---------------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 2)


def merge(results: list[dict[str, Any]], room_size: int) -> dict[str, Any]:
    sent_at: dict[str, float] = {}
    last: dict[str, float] = {}
    count: dict[str, int] = {}
    acks: list[float] = []
    errors: dict[str, int] = {}
    for r in results:
        sent_at.update(r["sent_at"])
        acks.extend(r["ack_ms"])
        for k, v in r["errors"].items():
            errors[k] = errors.get(k, 0) + v
        for cid, t in r["last_delivery"].items():
            last[cid] = max(last.get(cid, 0.0), t)
        for cid, c in r["deliveries"].items():
            count[cid] = count.get(cid, 0) + c
    delivery = [
        (last[cid] - t) * 1000 for cid, t in sent_at.items() if count.get(cid, 0) >= room_size
    ]
    return {
        "achieved_sent_per_s": round(sum(r["achieved"] for r in results), 1),
        "ack_p50_ms": percentile(acks, 0.5),
        "ack_p99_ms": percentile(acks, 0.99),
        "delivery_p50_ms": percentile(delivery, 0.5),
        "delivery_p99_ms": percentile(delivery, 0.99),
        "undelivered": sum(1 for cid in sent_at if count.get(cid, 0) < room_size),
        "unacknowledged": len(sent_at) - len(acks),
        "errors": errors,
        "client_cpu_ms_per_msg": round(
            sum(r["cpu_s"] for r in results) * 1000 / max(1, len(sent_at)), 3
        ),
    }


async def read_history(url: str, rooms: list[str]) -> dict[str, list[tuple[int, str]]]:
    """Every room's whole history, (seq, client id) oldest first (paced under the
    connection's rate limit; a refused frame is retried)."""
    out: dict[str, list[tuple[int, str]]] = {}
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{url}/api/login", json={"name": "auditor"}) as answer:
            token = (await answer.json())["token"]
        async with http.ws_connect(f"{url}/ws?token={token}", max_msg_size=0) as ws:

            async def ask(frame: dict[str, Any], kind: str) -> dict[str, Any]:
                for _ in range(100):
                    await asyncio.sleep(0.1)  # 10 frames/s: under the limit
                    await ws.send_str(json.dumps({"v": 1, **frame}))
                    while True:
                        raw = await ws.receive(timeout=30)
                        if raw.type is not aiohttp.WSMsgType.TEXT:
                            raise RuntimeError(f"the auditor's socket closed: {raw.type}")
                        body: dict[str, Any] = json.loads(raw.data)
                        if body.get("type") == kind and body.get("room") == frame["room"]:
                            return body
                        if body.get("type") == "error":
                            break  # refused (rate, a room still moving): again
                raise RuntimeError(f"no {kind} for {frame}")

            for room in rooms:
                await ask({"type": "join", "room": room}, "joined")
                messages: list[tuple[int, str]] = []
                before: int | None = None
                while True:
                    query = {"type": "history", "room": room, "before_seq": before, "limit": 200}
                    body = await ask(query, "history")
                    page = [(m["seq"], m["id"]) for m in body["messages"]]
                    messages = page + messages
                    if not body["more"] or not page:
                        break
                    before = page[0][0]
                await ask({"type": "leave", "room": room}, "left")
                out[room] = messages
    return out


def run(args: argparse.Namespace) -> dict[str, Any]:
    data = Path(tempfile.mkdtemp(prefix="shoal-chat-bench-"))
    nodes = start_nodes(3, data, args.cprofile)
    try:
        return measure(args, nodes)
    finally:
        stop_nodes(nodes)


def measure(args: argparse.Namespace, nodes: list[Node]) -> dict[str, Any]:
    def progress(what: str) -> None:
        if args.verbose:
            print(f"[{time.strftime('%H:%M:%S')}] {what}", file=sys.stderr, flush=True)

    urls = [n.http for n in nodes]
    tag = f"{os.getpid()}x{random.randrange(1 << 20)}"
    rooms = [f"bench-{tag}-{i}" for i in range(args.clients // args.room_size)]
    members = [
        (f"u{tag}-{i}", rooms[i // args.room_size], i % len(urls))
        for i in range(len(rooms) * args.room_size)
    ]
    rss_before = sum(n.rss_mib() for n in nodes)
    ctx = multiprocessing.get_context("spawn")
    pipes: list[Connection] = []
    procs = []
    for w in range(args.workers):
        parent, child = ctx.Pipe()
        share = members[w :: args.workers]
        config = {"urls": urls, "index": w, "members": share}
        proc = ctx.Process(target=worker_main, args=(child, config), daemon=True)
        proc.start()
        pipes.append(parent)
        procs.append(proc)
    for pipe in pipes:
        assert pipe.recv()["ready"]
    progress("clients connected and joined")
    time.sleep(1.0)
    rss_after = sum(n.rss_mib() for n in nodes)
    result: dict[str, Any] = {
        "clients": len(members),
        "rooms": len(rooms),
        "room_size": args.room_size,
        "workers": args.workers,
        "server_rss_mib_per_1k_clients": round((rss_after - rss_before) * 1000 / len(members), 1),
    }
    settle = 30.0
    # Warm up: every room and session started, SQLite and the pub/sub registry warm.
    for pipe in pipes:
        pipe.send(
            {"phase": "load", "name": "warm", "rate": len(rooms) / args.workers,
             "duration": 3.0, "settle": 1.0}
        )  # fmt: skip
    for pipe in pipes:
        pipe.recv()
    rates = sorted({args.rate, *args.rates})
    sustained = None
    for i, rate in enumerate(rates):
        chaos = args.chaos and rate == args.rate
        cpu_before = sum(n.cpu_s() for n in nodes)
        spies = profile(args, rate, [n.proc.pid for n in nodes], [p.pid for p in procs])
        for pipe in pipes:
            pipe.send(
                {
                    "phase": "load",
                    "name": f"p{i}",
                    "rate": rate / args.workers,
                    "duration": args.duration,
                    "settle": settle + (20.0 if chaos else 0.0),
                }
            )
        if chaos:
            time.sleep(args.duration / 2)
            nodes[2].proc.kill()
            nodes[2].proc.wait()
            progress("node 3 SIGKILLed")
        phase = merge([pipe.recv() for pipe in pipes], args.room_size)
        sent = rate * args.duration
        phase["server_cpu_ms_per_msg"] = round(
            (sum(n.cpu_s() for n in nodes) - cpu_before) * 1000 / sent, 3
        )
        phase["load_average"] = round(os.getloadavg()[0], 2)
        for spy in spies:
            spy.wait()
        if args.verbose:
            print(json.dumps({"rate": rate, **phase}), file=sys.stderr, flush=True)
        if rate == args.rate:
            result["sent_per_s"] = rate
            result.update(phase)
        p99 = phase["delivery_p99_ms"]
        if (
            not chaos
            and p99 is not None
            and p99 <= 200
            and phase["undelivered"] == 0
            and phase["achieved_sent_per_s"] >= 0.95 * rate
        ):
            sustained = max(sustained or 0, rate)
        if chaos:
            break
    result["max_sustained_sent_per_s"] = sustained
    for pipe in pipes:
        pipe.send({"phase": "stop"})
    finals = [pipe.recv() for pipe in pipes]
    progress("clients stopped")
    for proc in procs:
        proc.join(10)
    if args.chaos:
        live = [n.http for n in nodes if n.proc.poll() is None]
        history = asyncio.run(read_history(live[0], rooms))
        progress("histories read")
        result.update(audit(history, finals))
    return result


def profile(
    args: argparse.Namespace, rate: int, nodes: list[int | None], workers: list[int | None]
) -> list[subprocess.Popen[bytes]]:
    """With ``--profile DIR`` and at ``--rate``: py-spy records every node and client
    process during the load (collapsed stacks, ``DIR/node<i>.txt``, ``DIR/client<i>.txt``)."""
    if not args.profile or rate != args.rate:
        return []
    out = Path(args.profile)
    out.mkdir(parents=True, exist_ok=True)
    spy = str(Path(sys.executable).with_name("py-spy"))
    spies = []
    for kind, pids in (("node", nodes), ("client", workers)):
        for i, pid in enumerate(pids, 1):
            argv = [spy, "record", "--pid", str(pid), "--duration", str(int(args.duration)),
                    "--rate", "50", "--format", "raw", "--nonblocking",
                    "--output", str(out / f"{kind}{i}.txt")]  # fmt: skip
            spies.append(
                subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            )
    return spies


def audit(
    history: dict[str, list[tuple[int, str]]], finals: list[dict[str, Any]]
) -> dict[str, Any]:
    """Every acknowledged message once in its room's history; every client saw each once."""
    stored: dict[str, list[int]] = {}
    for messages in history.values():
        for seq, cid in messages:
            stored.setdefault(cid, []).append(seq)
    lost = sum(
        1 for final in finals for cid, (_, seq) in final["acks"].items() if stored.get(cid) != [seq]
    )
    missed = 0
    for final in finals:
        for user, seen in final["seen"].items():
            expected = {seq for seq, _ in history[final["rooms"][user]]}
            missed += len(expected - set(seen))
    return {
        "lost_acked_messages": lost,
        "stored_twice": sum(1 for seqs in stored.values() if len(seqs) > 1),
        "duplicate_messages": sum(f["duplicates"] for f in finals),
        "missed_messages": missed,
        "reconnects": sum(f["reconnects"] for f in finals),
        "unacked_at_end": sum(f["unacked"] for f in finals),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--room-size", type=int, default=20)
    parser.add_argument("--rate", type=int, default=1000, help="offered messages/s (main keys)")
    parser.add_argument("--rates", default="1000,2000,3000", help="rates for max_sustained")
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--chaos", action="store_true")
    parser.add_argument("--verbose", action="store_true")
    parser.add_argument("--profile", metavar="DIR", help="py-spy the processes at --rate")
    parser.add_argument(
        "--cprofile", metavar="DIR", help="cProfile each node's event loop (CPU time), whole run"
    )
    args = parser.parse_args()
    args.rates = [int(r) for r in args.rates.split(",") if r]
    result = run(args)
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
