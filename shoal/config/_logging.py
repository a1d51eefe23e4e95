"""A node's log lines: each carries the node's address, as text or as JSON."""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import TextIO

from shoal.runtime import Address, UniqueAddress

from ._sections import LogSettings, NodeConfig


def _when(record: logging.LogRecord) -> str:
    seconds = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
    return f"{seconds}.{int(record.msecs):03d}Z"


class _TextFormatter(logging.Formatter):
    def __init__(self, node: str) -> None:
        super().__init__()
        self.node = node

    def format(self, record: logging.LogRecord) -> str:
        line = (
            f"{_when(record)} {record.levelname:<7} {self.node} {record.name}: "
            f"{record.getMessage()}"
        )
        exc = self._exc(record)
        return f"{line}\n{exc}" if exc else line

    def _exc(self, record: logging.LogRecord) -> str | None:
        if record.exc_info:
            return self.formatException(record.exc_info)
        if record.exc_text:
            return record.exc_text
        if record.stack_info:
            return self.formatStack(record.stack_info)
        return None


class _JsonFormatter(_TextFormatter):
    def format(self, record: logging.LogRecord) -> str:
        return json.dumps(
            {
                "time": _when(record),
                "level": record.levelname,
                "logger": record.name,
                "node": self.node,
                "message": record.getMessage(),
                "exc": self._exc(record),
            },
            ensure_ascii=False,
            default=str,
        )


class _NodeHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """The handler ``configure_logging`` installs; found again by its class."""


def configure_logging(
    config: NodeConfig | LogSettings,
    address: Address | UniqueAddress | str,
    *,
    stream: TextIO | None = None,
) -> None:
    """Send every log record of the process to ``stream`` (stderr), tagged with ``address``.

    The format is ``config.log.format``: ``text`` lines read
    ``2026-12-03T07:05:38.123Z INFO    shoal://app@10.0.0.1:2552 shoal.remote: message``
    with a traceback below; ``json`` lines are one object each, with
    ``time`` (UTC, ISO 8601), ``level``, ``logger``, ``node``, ``message``
    and ``exc`` (the traceback, or ``null``). The root logger's level is
    ``config.log.level``.

    Idempotent: calling it again replaces the handler it installed before
    (a node that learns its port after binding calls it twice); handlers
    installed by others are left alone. Logging is the process's, so one
    process logs as one node.
    """
    settings = config.log if isinstance(config, NodeConfig) else config
    node = address if isinstance(address, str) else f"shoal://{address}"
    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, _NodeHandler)]:
        root.removeHandler(handler)
        handler.close()
    handler = _NodeHandler(stream if stream is not None else sys.stderr)
    formatter = _JsonFormatter(node) if settings.format == "json" else _TextFormatter(node)
    handler.setFormatter(formatter)
    root.addHandler(handler)
    root.setLevel(settings.level.upper())
