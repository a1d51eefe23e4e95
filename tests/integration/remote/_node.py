"""A Shoal node as an OS process, driven by JSON lines on stdin (tests only).

Started as ``python -m tests.integration.remote._node [options]`` from the
repository root. It prints ``{"event": "ready", "address", "uid", "port"}``
once listening, then answers each request line ``{"id", "cmd", ...}`` with
``{"id", "ok": value}`` or ``{"id", "error": type, "message"}``; watchers
print ``{"event": "terminated", ...}`` lines as they happen, and the node
prints ``{"event": "peer", "kind", "address"}`` for each peer event
(``PeerConnected``, ``PeerDisconnected``, ``PeerQuarantined``).

Messages in requests are JSON, with ``{"$ref": path}`` for an actor ref,
``{"$replyto": [path, text]}`` for ``ReplyTo`` and ``{"$forward": [path,
payload]}`` for ``Forward``; refs in answers come back as ``{"$ref": path}``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

from shoal import Actor, ActorRef, ActorSystem, Settings, Terminated
from shoal.remote import PeerEvent, RemoteSettings, Remoting, TlsSettings

from . import _actors
from ._messages import ALL, Forward, ReplyTo


def emit(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


class PeerReporter(Actor):
    """Prints every peer event this node's remoting publishes."""

    def receive(self, msg: object) -> None:
        if isinstance(msg, PeerEvent):
            emit({"event": "peer", "kind": type(msg).__name__, "address": str(msg.address.address)})


class Node:
    def __init__(self, system: ActorSystem, remoting: Remoting) -> None:
        self.system = system
        self.remoting = remoting

    def build(self, spec: Any) -> Any:
        if isinstance(spec, list):
            return [self.build(item) for item in spec]
        if isinstance(spec, dict):
            if "$ref" in spec:
                return self.system.resolve(spec["$ref"])
            if "$replyto" in spec:
                path, text = spec["$replyto"]
                return ReplyTo(self.system.resolve(path), text)
            if "$forward" in spec:
                path, payload = spec["$forward"]
                return Forward(self.system.resolve(path), payload)
            return {key: self.build(value) for key, value in spec.items()}
        return spec

    def to_json(self, value: Any) -> Any:
        if isinstance(value, ActorRef):
            return {"$ref": str(value.path)}
        if isinstance(value, list | tuple):
            return [self.to_json(item) for item in value]
        if isinstance(value, dict):
            return {str(key): self.to_json(item) for key, item in value.items()}
        return value

    def spawn(self, kind: str, name: str, args: dict[str, Any]) -> str:
        if kind == "relay":
            target = self.system.resolve(args["target"])
            ref = self.system.spawn(lambda: _actors.Relay(target, args["suffix"]), name=name)
        elif kind == "watcher":
            target = self.system.resolve(args["target"])

            def report(msg: Terminated) -> None:
                emit(
                    {
                        "event": "terminated",
                        "watcher": name,
                        "ref": str(msg.ref.path),
                        "confirmed": msg.existence_confirmed,
                    }
                )

            ref = self.system.spawn(lambda: _actors.Watcher(target, report), name=name)
        else:
            factory = {
                "echo": _actors.Echo,
                "boom": _actors.Boom,
                "recorder": _actors.Recorder,
                "replier": _actors.Replier,
                "forwarder": _actors.Forwarder,
                "sequencer": _actors.Sequencer,
            }[kind]
            ref = self.system.spawn(factory, name=name, capacity=args.get("capacity"))
        return str(ref.path)

    async def handle(self, req: dict[str, Any]) -> Any:
        cmd = req["cmd"]
        system, remoting = self.system, self.remoting
        if cmd == "spawn":
            return self.spawn(req["kind"], req["name"], req.get("args", {}))
        if cmd == "tell":
            sender = system.resolve(req["sender"]) if req.get("sender") else None
            system.resolve(req["to"]).tell(self.build(req["msg"]), sender)
            return None
        if cmd == "ask":
            answer = await system.resolve(req["to"]).ask(
                self.build(req["msg"]), timeout=req.get("timeout")
            )
            return self.to_json(answer)
        if cmd == "stop":
            await system.resolve(req["path"]).stop()
            return None
        if cmd == "metrics":
            return remoting.metrics.snapshot()
        if cmd == "stats":
            return system.stats()
        if cmd == "peers":
            return {address: asdict(status) for address, status in remoting.peers.items()}
        if cmd == "node_gone":
            remoting.node_gone(req["address"])
            return None
        if cmd == "quarantine":
            remoting.quarantine(req["address"], req["uid"])
            return None
        raise ValueError(f"unknown command {cmd!r}")

    async def serve(self, request: dict[str, Any]) -> None:
        try:
            result = await self.handle(request)
        except Exception as exc:
            emit({"id": request.get("id"), "error": type(exc).__name__, "message": str(exc)})
        else:
            emit({"id": request.get("id"), "ok": result})


async def main(args: argparse.Namespace) -> None:
    tls = None
    if args.tls_dir:
        certs = Path(args.tls_dir)
        tls = TlsSettings(certs / "node.pem", certs / "node.key", certs / "ca.pem")
    remote = RemoteSettings.testing(
        host=args.host,
        port=args.port,
        cluster_name=args.cluster,
        cluster_secret=args.secret.encode() if args.secret else None,
        tls=tls,
    )
    async with ActorSystem(args.system, Settings.testing(messages=ALL)) as system:
        remoting = await Remoting.start(system, remote)
        node = Node(system, remoting)
        system.event_stream.subscribe(system.spawn(PeerReporter, name="peer-reporter"), PeerEvent)
        emit({"event": "ready", "address": remoting.address, "uid": remoting.uid})
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        tasks: set[asyncio.Task[None]] = set()
        while line := await reader.readline():
            request = json.loads(line)
            if request["cmd"] == "exit":
                break
            task = loop.create_task(node.serve(request))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
    emit({"event": "exited"})


def cli() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--system", default="node")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--cluster", default="shoal")
    parser.add_argument("--secret", default="")
    parser.add_argument("--tls-dir", default="")
    parser.add_argument("--loop", choices=["asyncio", "uvloop"], default="uvloop")
    args = parser.parse_args()
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s %(message)s"
    )
    if args.loop == "uvloop":
        import uvloop  # noqa: PLC0415

        uvloop.run(main(args))
    else:
        asyncio.run(main(args))


if __name__ == "__main__":
    cli()
