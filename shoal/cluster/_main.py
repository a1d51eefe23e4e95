"""``python -m shoal.cluster``: run one cluster node until it leaves or is downed.

::

    python -m shoal.cluster --system app --host 127.0.0.1 --port 2552 \\
        --seed app@127.0.0.1:2552 --roles web,api [--testing] [--secret-file F]

Prints one JSON line, ``{"event": "up", "address", "uid", "members"}``, once
the node is Up (with ``--events``, one line per cluster event as well), and
``{"event": "stopped", "reason"}`` at the end. SIGTERM or SIGINT leaves the
cluster gracefully; the process then exits 0. A node that is downed (the
losing side of a partition, an operator) or cannot start exits 1; bad
arguments exit 2 with a message naming the setting.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from shoal.remote import RemoteSettings, Remoting, RemotingStartError
from shoal.runtime import ActorSystem, Settings, ShoalError, ShutdownPhase, run

from ._cluster import Cluster
from ._events import (
    CurrentClusterState,
    LeaderChanged,
    MemberDowned,
    MemberExited,
    MemberJoined,
    MemberLeft,
    MemberRemoved,
    MemberUp,
    MemberWeaklyUp,
    ReachableMember,
    UnreachableMember,
)
from ._member import MemberStatus
from ._settings import ClusterSettings
from ._subscription import ClusterNotice


def _emit(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line (``--help`` lists it)."""
    parser = argparse.ArgumentParser(prog="python -m shoal.cluster", description=__doc__)
    parser.add_argument("--system", default="shoal", help="actor system (cluster) name")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=2552, help="port (0: any free port)")
    parser.add_argument(
        "--seed", action="append", default=[], help="seed node system@host:port (repeatable)"
    )
    parser.add_argument("--roles", default="", help="comma-separated roles of this node")
    parser.add_argument("--testing", action="store_true", help="the fast testing presets")
    parser.add_argument("--secret-file", type=Path, help="file holding the cluster secret")
    parser.add_argument("--events", action="store_true", help="print every cluster event")
    return parser.parse_args(argv)


def _settings(args: argparse.Namespace) -> tuple[RemoteSettings, ClusterSettings]:
    secret = args.secret_file.read_bytes().strip() if args.secret_file is not None else None
    remote_base = RemoteSettings.testing() if args.testing else RemoteSettings()
    remote = replace(remote_base, host=args.host, port=args.port, cluster_secret=secret or None)
    roles = frozenset(r.strip() for r in args.roles.split(",") if r.strip())
    base = ClusterSettings.testing() if args.testing else ClusterSettings()
    return remote, replace(base, seed_nodes=tuple(args.seed), roles=roles)


def _describe(notice: ClusterNotice) -> dict[str, Any] | None:
    match notice:
        case CurrentClusterState():
            return None
        case LeaderChanged(leader=leader):
            return {"event": "LeaderChanged", "leader": None if leader is None else str(leader)}
        case MemberRemoved(member=m, previous_status=previous):
            return {
                "event": "MemberRemoved",
                "node": str(m.address),
                "uid": m.unique_address.uid,
                "previous": str(previous),
            }
        case (
            MemberJoined(member=m)
            | MemberWeaklyUp(member=m)
            | MemberUp(member=m)
            | MemberLeft(member=m)
            | MemberExited(member=m)
            | MemberDowned(member=m)
            | UnreachableMember(member=m)
            | ReachableMember(member=m)
        ):
            name = type(notice).__name__
            return {"event": name, "node": str(m.address), "uid": m.unique_address.uid}


async def _node(args: argparse.Namespace) -> int:
    remote_settings, cluster_settings = _settings(args)
    system = ActorSystem(args.system, Settings())
    stopping = asyncio.Event()

    async def notice() -> None:
        stopping.set()

    system.coordinated_shutdown.add_task(ShutdownPhase.BEFORE_SERVICE_UNBIND, "cli", notice)
    try:
        await Remoting.start(system, remote_settings)
        cluster = await Cluster.start(system, cluster_settings)
    except (RemotingStartError, ShoalError, ValueError) as error:
        sys.stderr.write(f"cannot start the node: {error}\n")
        await system.shutdown("start-failed")
        return 1
    if args.events:

        def print_event(notice: ClusterNotice) -> None:
            described = _describe(notice)
            if described is not None:
                _emit(described)

        cluster.subscribe(print_event)
    loop = asyncio.get_running_loop()
    leaving: list[asyncio.Task[None]] = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda: leaving.append(loop.create_task(cluster.leave())))

    async def announce() -> None:
        await cluster.wait_up()
        up = sum(1 for m in cluster.gossip.members if m.status is MemberStatus.UP)
        _emit(
            {
                "event": "up",
                "address": str(cluster.self_address.address),
                "uid": cluster.self_address.uid,
                "members": up,
            }
        )

    announcing = loop.create_task(announce())
    await stopping.wait()
    reason = system.coordinated_shutdown.reason or "unknown"
    await system.coordinated_shutdown.run(reason)
    announcing.cancel()
    _emit({"event": "stopped", "reason": reason})
    return 0 if reason == "cluster-leave" else 1


def main(argv: list[str] | None = None) -> int:
    """Run a node (see the module docstring); returns the exit code."""
    args = parse_args(argv)
    try:
        _settings(args)
    except (ValueError, OSError) as error:
        sys.stderr.write(f"python -m shoal.cluster: {error}\n")
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    return run(_node(args))
