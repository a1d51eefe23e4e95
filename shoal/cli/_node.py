"""``shoal node``: one cluster node in this process, until it leaves or is downed."""

from __future__ import annotations

import argparse
import asyncio
import gc
import importlib
import inspect
import json
import logging
import os
import signal
import sys
from collections.abc import Callable
from dataclasses import replace
from typing import Any, Final

from shoal.cluster import (
    Cluster,
    ClusterError,
    LeaderChanged,
    MemberDowned,
    MemberExited,
    MemberJoined,
    MemberLeft,
    MemberRemoved,
    MemberStatus,
    MemberUp,
    MemberWeaklyUp,
    ReachableMember,
    UnreachableMember,
)
from shoal.config import ConfigError, NodeConfig, configure_logging, load_config
from shoal.management import Management, ManagementError
from shoal.persistence import Persistence
from shoal.pubsub import DistributedPubSub
from shoal.remote import Remoting, RemotingStartError
from shoal.runtime import ActorSystem, ShutdownPhase

from ._exit import EXIT_DOWNED, EXIT_OK, EXIT_START_FAILED

_log: Final = logging.getLogger("shoal.node")

_REMOVED_REASONS: Final = frozenset({"cluster-downed", "cluster-removed"})

App = Callable[[ActorSystem], Any]


def _flags(args: argparse.Namespace) -> dict[str, object]:
    return {
        "node.system": args.system,
        "node.host": args.host,
        "node.port": args.port,
        "node.http_port": args.http_port,
        "management.host": args.http_host,
        "node.seeds": list(args.seed) if args.seed else None,
        "node.roles": list(args.role) if args.role else None,
        "node.secret_file": args.secret_file,
        "log.level": args.log_level,
        "log.format": args.log_format,
        "node.app": args.app,
    }


def _load_app(spec: str) -> App:
    module_name, _, function_name = spec.partition(":")
    try:
        target: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"node.app: cannot import {module_name!r}: {exc}", []) from exc
    for part in function_name.split("."):
        target = getattr(target, part, None)
        if target is None:
            raise ConfigError(f"node.app: {module_name!r} has no {function_name!r}", [])
    if not callable(target):
        raise ConfigError(f"node.app: {spec} is not callable", [])
    app: App = target
    return app


async def _discover(management: Management, config: NodeConfig) -> None:
    decision = await management.discover(config.discovery)
    _emit("discovered", decision=decision)


def _print_event(notice: object) -> None:
    described = _describe(notice)
    if described is not None:
        event = str(described.pop("event"))
        _emit(event, **described)


def _emit(event: str, **fields: object) -> None:
    """One JSON line on stdout per milestone, for scripts and tests to wait on."""
    try:
        print(json.dumps({"event": event, **fields}), flush=True)
    except (BrokenPipeError, ValueError):  # nobody listens any more
        pass


def _describe(notice: object) -> dict[str, object] | None:
    """A cluster event as a JSON-ready milestone (``--events``); None for the snapshot."""
    match notice:
        case LeaderChanged(leader=leader):
            return {
                "event": "LeaderChanged",
                "leader": None if leader is None else f"shoal://{leader.address}",
            }
        case MemberRemoved(member=m, previous_status=previous):
            return {
                "event": "MemberRemoved",
                "node": f"shoal://{m.address}",
                "uid": str(m.unique_address.uid),
                "previous": previous.value,
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
            return {
                "event": type(notice).__name__,
                "node": f"shoal://{m.address}",
                "uid": str(m.unique_address.uid),
            }
    return None


def run_node(args: argparse.Namespace) -> int:
    """Run the node ``args`` describe; returns the process exit status."""
    try:
        config = load_config(args.config, os.environ, _flags(args), args.preset)
        app = _load_app(config.node.app) if config.node.app else None
        if config.discovery.method == "dns" and config.cluster.seed_nodes:
            raise ConfigError(  # noqa: TRY301 - reported like every configuration error
                "discovery.method dns and node.seeds (cluster.seed_nodes) exclude each other", []
            )
    except ConfigError as exc:
        print(f"shoal node: {exc}", file=sys.stderr)
        return EXIT_START_FAILED
    try:
        import uvloop  # noqa: PLC0415 - optional speed-up

        return uvloop.run(_serve(config, app, events=args.events))
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        return asyncio.run(_serve(config, app, events=args.events))


_YOUNG_GC_THRESHOLD: Final = 20_000


def _tune_gc() -> None:
    """Freeze what start-up allocated and collect the young generation less often."""
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(_YOUNG_GC_THRESHOLD, middle, old)


async def _serve(config: NodeConfig, app: App | None, *, events: bool = False) -> int:
    remote = config.remote
    configure_logging(config, f"{config.node.system}@{remote.host}:{remote.port}")
    system = ActorSystem(config.node.system, config.runtime)
    terminated = asyncio.Event()

    async def mark_terminated() -> None:
        terminated.set()

    system.coordinated_shutdown.add_task(
        ShutdownPhase.ACTOR_SYSTEM_TERMINATE, "shoal node: exit", mark_terminated
    )
    try:
        remoting = await Remoting.start(system, remote)
        configure_logging(config, remoting.unique_address)
        Persistence.configure(system, config.persistence.settings())
        cluster_settings = config.cluster
        if config.discovery.method != "dns" and not cluster_settings.seed_nodes:
            # No seeds: this node is its own (only) seed and forms a cluster at once.
            cluster_settings = replace(cluster_settings, seed_nodes=(remoting.address,))
        cluster = await Cluster.start(system, cluster_settings)
        if events:
            cluster.subscribe(_print_event)
        management = await Management.start(system, config.management)
        # Every node runs the mediator: a node without one would refuse the
        # others' registry gossip. The application reaches it with .get().
        DistributedPubSub.start(system, config.pubsub)
        if app is not None:
            started = app(system)
            if inspect.isawaitable(started):
                await started
    except (RemotingStartError, ClusterError, ManagementError, OSError, ValueError) as exc:
        _log.error("the node could not start: %s", exc)
        await system.shutdown("start-failed")
        return EXIT_START_FAILED
    except Exception:
        _log.exception("the node's application failed to start")
        await system.shutdown("start-failed")
        return EXIT_START_FAILED

    if config.node.tune_gc:
        _tune_gc()
    _emit(
        "started",
        node=f"shoal://{remoting.address}",
        uid=str(remoting.unique_address.uid),
        http=management.url,
    )
    loop = asyncio.get_running_loop()
    tasks: set[asyncio.Task[None]] = set()

    async def announce_up() -> None:
        try:
            await cluster.wait_up()
        except ClusterError:
            return
        up = sum(1 for m in cluster.gossip.members if m.status is MemberStatus.UP)
        _emit(
            "up",
            node=f"shoal://{remoting.address}",
            uid=str(remoting.unique_address.uid),
            members=up,
        )

    def spawn(coro: Any) -> None:
        task = loop.create_task(coro)
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    async def leave() -> None:
        # The leave runs the coordinated shutdown: shards handed off and
        # singletons stopped while this node is still a member, then its exit
        # confirmed and its removal awaited; each phase is time-boxed.
        timeout = sum(
            system.coordinated_shutdown.timeout(phase)
            for phase in (
                ShutdownPhase.CLUSTER_SHARDING_SHUTDOWN_REGION,
                ShutdownPhase.CLUSTER_LEAVE,
                ShutdownPhase.CLUSTER_EXITING,
                ShutdownPhase.CLUSTER_EXITING_DONE,
            )
        )
        try:
            await asyncio.wait_for(cluster.leave(), timeout)
        except TimeoutError:
            _log.warning("leaving took longer than %.1f s; shutting down without it", timeout)
            await system.shutdown("leave-timeout")

    signals = {"count": 0}

    def on_signal(signum: int) -> None:
        signals["count"] += 1
        if signals["count"] == 1:
            _log.info("%s: leaving the cluster", signal.Signals(signum).name)
            spawn(leave())
        elif signum == signal.SIGINT:
            _log.warning("second SIGINT: stopping now")
            spawn(system.shutdown("signal"))

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signum)
    spawn(announce_up())
    if config.discovery.method == "dns":
        spawn(_discover(management, config))
    await terminated.wait()
    await system.shutdown()
    for task in list(tasks):
        task.cancel()
    reason = system.coordinated_shutdown.reason or "system-shutdown"
    code = EXIT_DOWNED if reason in _REMOVED_REASONS else EXIT_OK
    _emit("stopped", node=f"shoal://{remoting.address}", reason=reason, exit=code)
    return code
