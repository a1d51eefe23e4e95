"""Every log line carries the node's address, as text or as one JSON object per line."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from shoal.config import LogSettings, NodeConfig, configure_logging
from shoal.runtime import Address, UniqueAddress

ADDRESS = Address("chat", "10.0.0.5", 2552)


@pytest.fixture(autouse=True)
def _restore_root_logger() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in root.handlers:
        if handler not in handlers:
            root.removeHandler(handler)
            handler.close()
    root.setLevel(level)


def test_json_lines_parse_and_carry_the_node() -> None:
    stream = io.StringIO()
    configure_logging(NodeConfig(log=LogSettings(format="json")), ADDRESS, stream=stream)
    log = logging.getLogger("shoal.test")
    log.info("hello %s", "world")
    log.error("failed", exc_info=RuntimeError("boom\nsecond line"))
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2
    first, second = (json.loads(line) for line in lines)
    assert set(first) == {"time", "level", "logger", "node", "message", "exc"}
    assert first["node"] == "shoal://chat@10.0.0.5:2552"
    assert (first["level"], first["logger"], first["message"]) == (
        "INFO",
        "shoal.test",
        "hello world",
    )
    assert first["exc"] is None
    assert first["time"].endswith("Z")
    assert second["level"] == "ERROR"
    assert "RuntimeError: boom" in second["exc"]


def test_text_lines_carry_the_node() -> None:
    stream = io.StringIO()
    configure_logging(LogSettings(level="warning"), UniqueAddress(ADDRESS, 7), stream=stream)
    logging.getLogger("other.library").warning("careful")
    logging.getLogger("shoal.test").info("not shown below the level")
    [line] = stream.getvalue().splitlines()
    assert "WARNING" in line
    assert "shoal://chat@10.0.0.5:2552#7 other.library: careful" in line


def test_configuring_again_replaces_the_handler() -> None:
    root = logging.getLogger()
    before = len(root.handlers)
    first, second = io.StringIO(), io.StringIO()
    configure_logging(LogSettings(), "shoal://chat@127.0.0.1:0", stream=first)
    configure_logging(LogSettings(format="json"), ADDRESS, stream=second)
    assert len(root.handlers) == before + 1
    logging.getLogger("shoal.test").warning("once")
    assert first.getvalue() == ""
    assert json.loads(second.getvalue())["message"] == "once"
    assert root.level == logging.INFO
