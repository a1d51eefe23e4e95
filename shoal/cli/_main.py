"""Argument parsing and dispatch of ``shoal``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from ._admin import DEFAULT_NODE_URL
from ._exit import EXIT_CODES

_NODE_EPILOG = f"""\
configuration: --config FILE (TOML), then SHOAL_<SECTION>_<KEY> environment
variables, then these flags (flags win); docs/configuration.md lists every
setting. The cluster secret comes from SHOAL_NODE_SECRET or --secret-file,
never from a flag; nodes beyond loopback need one.

output: one JSON line on stdout per milestone ({{"event": "started" | "up" |
"stopped", ...}}); logs go to stderr.

signals: SIGTERM or SIGINT leaves the cluster gracefully, then exits; a
second SIGINT stops at once.

exit status: {", ".join(f"{code} {why}" for why, code in EXIT_CODES.items())}.
"""

_ADMIN_EPILOG = f"""\
The node is reached at --node (default {DEFAULT_NODE_URL}). Changes need the
node's management token when it has one: SHOAL_MANAGEMENT_TOKEN or
--token-file. Exit status: 0 on success, 1 with a one-line reason on stderr.
"""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="shoal",
        description="Run a Shoal cluster node, or operate a running cluster.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    node = sub.add_parser(
        "node",
        help="run a cluster node",
        description="Run a cluster node until it leaves, is downed, or is signalled.",
        epilog=_NODE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    node.add_argument("--config", metavar="FILE", help="TOML configuration file")
    node.add_argument(
        "--preset",
        choices=["production", "testing"],
        default="production",
        help="defaults to start from (testing: fast gossip and detection, in-memory journal)",
    )
    node.add_argument("--system", help="actor system name, the same on every node (node.system)")
    node.add_argument("--host", help="address to bind and be reached at (node.host)")
    node.add_argument("--port", help="remoting port, 0 for any free one (node.port)")
    node.add_argument(
        "--http-port", help="management HTTP port, 0 for any free one (node.http_port)"
    )
    node.add_argument("--http-host", help="management HTTP bind address (management.host)")
    node.add_argument(
        "--seed",
        action="append",
        metavar="ADDRESS",
        help="seed node system@host:port; repeat for several (node.seeds)",
    )
    node.add_argument(
        "--role", action="append", metavar="ROLE", help="a role of this node; repeatable"
    )
    node.add_argument(
        "--secret-file", metavar="FILE", help="file holding the cluster secret (node.secret_file)"
    )
    node.add_argument(
        "--log-level", choices=["debug", "info", "warning", "error", "critical"], help="log.level"
    )
    node.add_argument("--log-format", choices=["text", "json"], help="log.format")
    node.add_argument(
        "--events",
        action="store_true",
        help="also print every cluster event as a JSON line (MemberUp, MemberRemoved, ...)",
    )
    node.add_argument(
        "--app",
        metavar="MODULE:FUNCTION",
        help="called with the node's ActorSystem once the node started (may be async): "
        "start your actors there (node.app)",
    )

    def admin(name: str, help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(
            name,
            help=help_text,
            description=help_text[0].upper() + help_text[1:] + ".",
            epilog=_ADMIN_EPILOG,
        )
        p.add_argument(
            "--node",
            default=DEFAULT_NODE_URL,
            metavar="URL",
            help=f"management HTTP URL of any node (default {DEFAULT_NODE_URL})",
        )
        p.add_argument(
            "--timeout", type=float, default=5.0, metavar="SECONDS", help="HTTP timeout (5)"
        )
        return p

    members = admin("members", "list the cluster's members as a node sees them")
    members.add_argument("--json", action="store_true", help="print the API's JSON")
    for name, verb in (("leave", "make a member leave gracefully"), ("down", "mark a member Down")):
        p = admin(name, verb)
        p.add_argument("address", metavar="ADDRESS", help="the member: [shoal://]system@host:port")
        p.add_argument("--token-file", metavar="FILE", help="file holding the management token")
        p.add_argument("--json", action="store_true", help="print the API's JSON")
    shards = admin("shards", "show the shards of an entity type")
    shards.add_argument("type_name", metavar="TYPE", help="the entity type name")
    shards.add_argument("--json", action="store_true", help="print the API's JSON")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``shoal`` with ``argv`` (default: the process's); returns the exit status."""
    args = _parser().parse_args(argv)
    # Imported on use: the admin commands start without loading a node's layers.
    if args.command == "node":
        from ._node import run_node  # noqa: PLC0415

        return run_node(args)
    from ._admin import run_admin  # noqa: PLC0415

    return run_admin(args, sys.stdout, sys.stderr)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
