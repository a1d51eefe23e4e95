"""Pytest plugin: a real Cassandra for tests marked ``@pytest.mark.cassandra``.

The session-scoped fixture ``cassandra_contact_points`` returns ``"host:port"``
strings of a live cluster:

* if ``$SHOAL_CASSANDRA_CONTACT_POINTS`` is set (comma-separated ``host:port``),
  that cluster, used as it is;
* else, if Java 17 and Maven are present and the run collected at least one
  test marked ``cassandra``, a single node started by ``scripts/cassandra.py``.
  It is launched in the background as soon as collection ends, boots while
  unmarked tests run, and is stopped when the session ends (also on Ctrl-C;
  a watchdog stops it if pytest itself is killed);
* else marked tests are skipped with the reason, or fail when ``$CI`` is
  ``true``, since CI must not pass without having run them.

A test that requests the fixture is marked ``cassandra`` automatically, so
``-m "not cassandra"`` deselects it and its use alone starts a node. Marked
tests run after all the others (keeping their relative order), so the suite
does useful work while the node boots.

The wait for the node happens before pytest-timeout arms its per-test timer,
so a slow boot (up to the launcher's 240 s, plus a first download) cannot
time out the first Cassandra test.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import sys
import threading
from collections.abc import Generator
from pathlib import Path
from types import ModuleType
from typing import Protocol, cast

import pytest

CONTACT_POINTS_ENV = "SHOAL_CASSANDRA_CONTACT_POINTS"
FIXTURE_NAME = "cassandra_contact_points"
MARKER = "cassandra"

_LAUNCHER_FILE = Path(__file__).resolve().parent.parent / "scripts" / "cassandra.py"
# Not "cassandra": that name belongs to cassandra-driver.
_LAUNCHER_MODULE = "shoal_scripts_cassandra"
# Bounds the download (cold: ~100 jars, ~70 MB) plus the spawn.
_LAUNCH_TIMEOUT = 900.0


class _Handle(Protocol):
    @property
    def contact_point(self) -> str: ...


class Launcher(Protocol):
    """The parts of ``scripts/cassandra.py`` this plugin uses."""

    def tools_available(self) -> bool: ...

    def check_message(self) -> str: ...

    def launch(self, run_dir: Path | None = None, *, stop_with_parent: bool = False) -> _Handle: ...

    def wait_ready(self, handle: _Handle) -> str | None: ...

    def stop(self, handle: _Handle) -> None: ...


def load_launcher() -> ModuleType:
    """``scripts/cassandra.py`` as a module (imported once, under a private name)."""
    if (loaded := sys.modules.get(_LAUNCHER_MODULE)) is not None:
        return loaded
    spec = importlib.util.spec_from_file_location(_LAUNCHER_MODULE, _LAUNCHER_FILE)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {_LAUNCHER_FILE}")
    module = importlib.util.module_from_spec(spec)
    # Registered before executing: dataclasses looks its module up by name.
    sys.modules[_LAUNCHER_MODULE] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[_LAUNCHER_MODULE]
        raise
    return module


def parse_contact_points(text: str) -> list[str]:
    """Split ``"h1:p1, h2:p2"`` into ``["h1:p1", "h2:p2"]``.

    Raises :class:`ValueError` for an empty list or an entry that is not
    ``host:port`` with a port in 1..65535.
    """
    points = [part.strip() for part in text.split(",") if part.strip()]
    if not points:
        raise ValueError(f"no contact points in {text!r}")
    for point in points:
        host, sep, port = point.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"contact point {point!r} is not host:port")
    return points


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() == "true"


@dataclasses.dataclass
class _Node:
    """The session's node: launched by a background thread, awaited by the main one.

    ``handle`` and ``closed`` are shared with the launching thread under ``lock``;
    everything else is touched by the main thread only.
    """

    launcher: Launcher
    lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)
    thread: threading.Thread | None = None
    handle: _Handle | None = None
    closed: bool = False
    launch_error: str | None = None
    error: str | None = None
    ready: bool = False

    def start(self) -> None:
        # Daemon: a thread stuck in Maven must not keep a finished pytest alive.
        self.thread = threading.Thread(target=self._launch, name="cassandra-launch", daemon=True)
        self.thread.start()

    def _launch(self) -> None:
        try:
            handle = self.launcher.launch(stop_with_parent=True)
        except Exception as exc:
            self.launch_error = f"could not launch Cassandra: {exc}"
            return
        with self.lock:
            if not self.closed:
                self.handle = handle
                return
        self.launcher.stop(handle)  # the session ended while the node was launching

    def wait(self) -> None:
        """Block until the node serves CQL or has failed (then ``error`` says why)."""
        if self.ready or self.error is not None:
            return
        assert self.thread is not None
        self.thread.join(_LAUNCH_TIMEOUT)
        if self.thread.is_alive():
            self.error = f"Cassandra was not launched within {_LAUNCH_TIMEOUT:.0f} s"
            return
        if self.launch_error is not None:
            self.error = self.launch_error
            return
        assert self.handle is not None
        try:
            self.launcher.wait_ready(self.handle)
        except Exception as exc:
            self.error = str(exc)
            return
        self.ready = True

    def close(self) -> None:
        """Stop the node, or make the launching thread stop it once launched."""
        with self.lock:
            self.closed = True
            handle, self.handle = self.handle, None
        if handle is not None:
            self.launcher.stop(handle)


_NODE = pytest.StashKey[_Node]()
_UNAVAILABLE = pytest.StashKey[str]()


def _contact_points(config: pytest.Config) -> list[str]:
    """The cluster for this session; skips or fails the current test without one."""
    if configured := os.environ.get(CONTACT_POINTS_ENV):
        try:
            return parse_contact_points(configured)
        except ValueError as exc:
            pytest.fail(f"${CONTACT_POINTS_ENV}: {exc}", pytrace=False)
    node = config.stash.get(_NODE, None)
    if node is None:
        reason = config.stash.get(_UNAVAILABLE, "no Cassandra was started for this session")
        if _in_ci():
            pytest.fail(f"{reason}; CI=true requires the Cassandra tests to run", pytrace=False)
        pytest.skip(reason)
    node.wait()
    if node.error is not None:
        pytest.fail(node.error, pytrace=False)
    assert node.handle is not None
    return [node.handle.contact_point]


@pytest.fixture(scope="session")
def cassandra_contact_points(pytestconfig: pytest.Config) -> list[str]:
    """``"host:port"`` strings of a live Cassandra cluster (see the module docstring)."""
    return _contact_points(pytestconfig)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # tryfirst: before "-m" deselection looks at the markers.
    for item in items:
        if FIXTURE_NAME in getattr(item, "fixturenames", ()) and not item.get_closest_marker(
            MARKER
        ):
            item.add_marker(MARKER)
    # Cassandra tests run last (otherwise in collection order) so that the
    # rest of the suite runs while the node boots.
    items.sort(key=lambda item: item.get_closest_marker(MARKER) is not None)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_finish(session: pytest.Session) -> None:
    if os.environ.get(CONTACT_POINTS_ENV):
        return
    if not any(item.get_closest_marker(MARKER) for item in session.items):
        return
    launcher = cast(Launcher, load_launcher())
    if not launcher.tools_available():
        session.config.stash[_UNAVAILABLE] = (
            f"no Cassandra: set ${CONTACT_POINTS_ENV} or install Java 17 and Maven "
            f"({launcher.check_message()})"
        )
        return
    node = _Node(launcher)
    session.config.stash[_NODE] = node
    node.start()


def pytest_report_collectionfinish(config: pytest.Config) -> str | None:
    if configured := os.environ.get(CONTACT_POINTS_ENV):
        return f"cassandra: using ${CONTACT_POINTS_ENV}={configured}"
    if config.stash.get(_NODE, None) is not None:
        return "cassandra: starting a node in the background (scripts/cassandra.py)"
    return config.stash.get(_UNAVAILABLE, None)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_protocol(item: pytest.Item) -> Generator[None, object, object]:
    # tryfirst puts this wrapper outside pytest-timeout's, so the boot wait is
    # not charged to the first Cassandra test's timeout.
    node = item.config.stash.get(_NODE, None)
    if node is not None and item.get_closest_marker(MARKER) is not None:
        node.wait()
    return (yield)


def pytest_runtest_setup(item: pytest.Item) -> None:
    # Marked tests that reach Cassandra through another fixture (or not at
    # all) are skipped or failed like the fixture's users.
    if item.get_closest_marker(MARKER) is not None:
        _contact_points(item.config)


def pytest_sessionfinish(session: pytest.Session) -> None:
    # pytest calls this on Ctrl-C too.
    if (node := session.config.stash.get(_NODE, None)) is not None:
        node.close()
