"""``shoal members | leave | down | shards``: clients of a node's management HTTP API."""

from __future__ import annotations

import argparse
import json
import os
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, Final, TextIO

DEFAULT_NODE_URL: Final = "http://127.0.0.1:8558"
_SCHEME: Final = "shoal://"


class _Failure(Exception):
    """A one-line reason for the command's failure."""


def _token(args: argparse.Namespace) -> str | None:
    path = getattr(args, "token_file", None)
    if path:
        try:
            with open(path, encoding="utf-8") as f:
                token = f.read().removesuffix("\n").removesuffix("\r")
        except OSError as exc:
            raise _Failure(f"cannot read the token file: {exc}") from None
        if not token.strip():
            raise _Failure(f"the token file {path} is empty")
        return token
    return os.environ.get("SHOAL_MANAGEMENT_TOKEN") or None


def _request(
    args: argparse.Namespace, method: str, path: str, form: dict[str, str] | None = None
) -> Any:
    base = args.node.rstrip("/")
    if not base.startswith(("http://", "https://")):
        raise _Failure(f"--node must be an http(s) URL, not {args.node!r}")
    headers = {"Accept": "application/json"}
    data = None
    if form is not None:
        data = urllib.parse.urlencode(form).encode()
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    if method != "GET":
        token = _token(args)
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(base + path, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=args.timeout) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:
        raise _Failure(_http_error(exc)) from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise _Failure(f"cannot reach {base}: {reason}") from None
    except ValueError as exc:
        raise _Failure(f"{base} answered something that is not JSON: {exc}") from None


def _http_error(exc: urllib.error.HTTPError) -> str:
    try:
        body = json.loads(exc.read())
        message = body.get("error") or body.get("message") or ""
    except (ValueError, AttributeError, OSError):
        message = exc.reason
    return f"{exc.code}: {message}" if message else f"HTTP {exc.code}"


def _member_path(address: str) -> str:
    full = address if address.startswith(_SCHEME) else _SCHEME + address
    return "/cluster/members/" + urllib.parse.quote(full, safe="")


def _table(rows: list[list[str]], out: TextIO) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        out.write("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
        out.write("\n")


def _print_members(body: dict[str, Any], out: TextIO) -> None:
    unreachable = {u["node"]: u["observedBy"] for u in body.get("unreachable", [])}
    rows = [["NODE", "UID", "STATUS", "ROLES", "NOTES"]]
    for m in body["members"]:
        notes = []
        if m["node"] == body.get("selfNode"):
            notes.append("self")
        if m["node"] == body.get("leader"):
            notes.append("leader")
        if m["node"] == body.get("oldest"):
            notes.append("oldest")
        if m["node"] in unreachable:
            notes.append("unreachable")
        rows.append(
            [m["node"], m["nodeUid"], m["status"], ",".join(m["roles"]) or "-", ",".join(notes)]
        )
    _table(rows, out)


def _print_shards(body: dict[str, Any], out: TextIO) -> None:
    regions = body.get("regions")
    if not isinstance(regions, list) or not regions:
        out.write(json.dumps(body, indent=2) + "\n")
        return
    rows = [["SHARD", "ENTITIES"]]
    rows.extend(
        [str(region.get("shardId", "?")), str(region.get("numberOfEntities", "?"))]
        for region in regions
    )
    _table(rows, out)


def run_admin(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Run one admin command; 0 on success, 1 with a one-line reason on ``err``."""
    try:
        if args.command == "members":
            body = _request(args, "GET", "/cluster/members")
            if args.json:
                out.write(json.dumps(body, indent=2) + "\n")
            else:
                _print_members(body, out)
        elif args.command in ("leave", "down"):
            operation = "Leave" if args.command == "leave" else "Down"
            body = _request(args, "PUT", _member_path(args.address), {"operation": operation})
            out.write((json.dumps(body) if args.json else str(body.get("message", body))) + "\n")
        else:
            path = "/cluster/shards/" + urllib.parse.quote(args.type_name, safe="")
            body = _request(args, "GET", path)
            if args.json:
                out.write(json.dumps(body, indent=2) + "\n")
            else:
                _print_shards(body, out)
    except _Failure as exc:
        err.write(f"shoal {args.command}: {exc}\n")
        return 1
    return 0
