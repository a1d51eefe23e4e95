"""``python -m examples.chat`` (``make chat``): the chat cluster on this machine.

Starts ``--nodes`` (3) ``shoal node --app examples.chat.app:start`` processes
on 127.0.0.1 sharing one journal (one SQLite file in WAL mode, or Cassandra),
prints the pages' URLs once every node is up, and on Ctrl-C (or SIGTERM)
asks every node to leave (SIGTERM) and waits for them.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import secrets
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT = 60.0
STOP_TIMEOUT = 30.0


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m examples.chat", description="Run the chat cluster on 127.0.0.1."
    )
    parser.add_argument("--nodes", type=int, default=3, help="how many nodes (default 3)")
    parser.add_argument(
        "--http-port", type=int, default=8081, help="first node's HTTP port (0: free ports)"
    )
    parser.add_argument(
        "--remote-port", type=int, default=25521, help="first node's cluster port (0: free ports)"
    )
    parser.add_argument("--data", type=Path, default=ROOT / ".chat-data", help="journal and logs")
    parser.add_argument("--journal", choices=("sqlite", "cassandra"), default="sqlite")
    parser.add_argument(
        "--contact-points",
        default=None,
        help="Cassandra host:port,... (default: start one with scripts/cassandra.py)",
    )
    parser.add_argument("--keyspace", default="shoal_chat", help="Cassandra keyspace")
    args = parser.parse_args(argv)
    if not 1 <= args.nodes <= 9:
        parser.error("--nodes is between 1 and 9")
    return args


class _Node:
    def __init__(self, index: int, argv: list[str], env: dict[str, str], log: Path) -> None:
        self.index = index
        self.log = log.open("ab")
        self.proc = subprocess.Popen(
            argv,
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=self.log,
            text=True,
            start_new_session=True,  # Ctrl-C reaches the launcher only; it stops the nodes
        )
        self.events: queue.Queue[dict[str, Any]] = queue.Queue()
        self.http = ""
        self.held: list[dict[str, Any]] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                self.events.put(json.loads(line))
            except ValueError:
                continue

    def wait(self, name: str, deadline: float) -> dict[str, Any]:
        """The next ``name`` milestone; others meanwhile are kept for later calls."""
        for i, held in enumerate(self.held):
            if held.get("event") == name:
                return self.held.pop(i)
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or self.proc.poll() is not None:
                raise RuntimeError(
                    f"node {self.index} did not report {name!r} (exit {self.proc.poll()}); "
                    f"see {self.log.name}"
                )
            try:
                event = self.events.get(timeout=min(left, 0.5))
            except queue.Empty:
                continue
            if event.get("event") == name:
                return event
            self.held.append(event)


def _cassandra(args: argparse.Namespace) -> tuple[str, Any]:
    """Contact points, and the handle of a Cassandra this launcher started (or None)."""
    if args.contact_points:
        return str(args.contact_points), None
    import importlib.util  # noqa: PLC0415 - only with --journal cassandra

    spec = importlib.util.spec_from_file_location("shoal_cassandra", ROOT / "scripts/cassandra.py")
    assert spec is not None
    assert spec.loader is not None
    launcher = importlib.util.module_from_spec(spec)
    sys.modules["shoal_cassandra"] = launcher
    spec.loader.exec_module(launcher)
    print("starting Cassandra (scripts/cassandra.py) ...", flush=True)
    handle = launcher.start()
    return str(handle.contact_point), (launcher, handle)


def main(argv: list[str] | None = None) -> int:
    args = _arguments(argv)
    data: Path = args.data.resolve()
    data.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        "CHAT_SECRET": os.environ.get("CHAT_SECRET") or secrets.token_hex(32),
    }
    cassandra: Any = None
    if args.journal == "cassandra":
        contact_points, cassandra = _cassandra(args)
        env["SHOAL_PERSISTENCE_PLUGIN"] = "cassandra"
        env["SHOAL_PERSISTENCE_CASSANDRA_CONTACT_POINTS"] = contact_points
        env["SHOAL_PERSISTENCE_CASSANDRA_KEYSPACE"] = args.keyspace
        journal = f"Cassandra at {contact_points}, keyspace {args.keyspace}"
    else:
        env["SHOAL_PERSISTENCE_PLUGIN"] = "sqlite"
        env["SHOAL_PERSISTENCE_SQLITE_PATH"] = str(data / "journal.db")
        journal = f"SQLite {data / 'journal.db'} (WAL, shared by every node)"
    first = f"chat@127.0.0.1:{args.remote_port}" if args.remote_port else ""
    nodes: list[_Node] = []
    stopping = {"now": False}

    def on_signal(signum: int, frame: object) -> None:
        stopping["now"] = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    started = time.monotonic()
    try:
        deadline = time.monotonic() + START_TIMEOUT
        for i in range(args.nodes):
            remote_port = args.remote_port + i if args.remote_port else 0
            argv_node = [
                sys.executable, "-m", "shoal.cli", "node",
                "--app", "examples.chat.app:start",
                "--system", "chat",
                "--host", "127.0.0.1",
                "--port", str(remote_port),
                "--http-port", "0",
            ]  # fmt: skip
            if first:
                argv_node += ["--seed", first]
            http_port = args.http_port + i if args.http_port else 0
            node_env = {**env, "CHAT_HTTP_PORT": str(http_port)}
            nodes.append(_Node(i, argv_node, node_env, data / f"node{i + 1}.log"))
            if not first:  # --remote-port 0: the first node's address is known once it started
                first = str(nodes[0].wait("started", deadline)["node"]).removeprefix("shoal://")
        for node in nodes:
            node.http = str(node.wait("chat", deadline)["http"])
        for node in nodes:
            node.wait("up", deadline)
    except RuntimeError as exc:
        print(f"chat: {exc}", file=sys.stderr)
        _stop(nodes)
        _stop_cassandra(cassandra)
        return 1
    print(f"\nThe chat cluster is up ({time.monotonic() - started:.1f} s); journal: {journal}")
    for node in nodes:
        print(f"  node {node.index + 1}: chat {node.http}/   cluster page {node.http}/cluster")
    print(f"Logs in {data}. Ctrl-C stops every node.\n", flush=True)
    while not stopping["now"]:
        if any(node.proc.poll() is not None for node in nodes):
            gone = [n.index + 1 for n in nodes if n.proc.poll() is not None]
            print(f"chat: node(s) {gone} exited; stopping the others", file=sys.stderr)
            break
        time.sleep(0.2)
    codes = _stop(nodes)
    _stop_cassandra(cassandra)
    print(f"chat: stopped (exit codes {codes})", flush=True)
    return 0 if all(code == 0 for code in codes) else 1


def _stop(nodes: list[_Node]) -> list[int | None]:
    """SIGTERM (each node leaves the cluster), then wait; SIGKILL whoever hangs."""
    for node in nodes:
        if node.proc.poll() is None:
            node.proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT
    codes: list[int | None] = []
    for node in nodes:
        try:
            codes.append(node.proc.wait(max(0.1, deadline - time.monotonic())))
        except subprocess.TimeoutExpired:
            node.proc.kill()
            codes.append(node.proc.wait())
    return codes


def _stop_cassandra(cassandra: Any) -> None:
    if cassandra is not None:
        launcher, handle = cassandra
        launcher.stop(handle)


if __name__ == "__main__":
    sys.exit(main())
