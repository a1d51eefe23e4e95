"""Real browsers, nginx and Compose for the chat example's tests.

* ``browser``: headless Chromium (Debian's ``/usr/bin/chromium``, or
  ``$BROWSER_CHROMIUM``) driven by Playwright's sync API. Playwright's own
  browser download is never used.
* ``nginx_runner``: starts Debian's nginx on loopback with the chat
  example's deployment configuration (``examples/chat/deploy/nginx.conf``),
  its upstreams templated to local ports, in a temporary prefix, after
  ``nginx -t`` accepted it.
* ``docker_compose``: the path of a Compose loader (``docker-compose`` from
  Debian; ``config`` needs no engine).

Each skips with the reason on a machine that lacks the tool, and fails when
``$CI`` is ``true``: CI must not pass without having run them (``.ci/run``
installs them).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import pytest

if TYPE_CHECKING:
    from playwright.sync_api import Browser

ROOT = Path(__file__).resolve().parent.parent
NGINX_CONF = ROOT / "examples" / "chat" / "deploy" / "nginx.conf"
COMPOSE_FILE = ROOT / "docker-compose.yml"
CHROMIUM_ENV = "BROWSER_CHROMIUM"
DEFAULT_CHROMIUM = "/usr/bin/chromium"


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() == "true"


def unavailable(reason: str) -> NoReturn:
    """Skip with ``reason``; fail instead under ``CI=true``."""
    if in_ci():
        pytest.fail(f"{reason}; CI=true requires the browser and deployment tests to run")
    pytest.skip(reason)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- Chromium -------------------------------------------------------------------------------


def chromium_path() -> str | None:
    path = os.environ.get(CHROMIUM_ENV, DEFAULT_CHROMIUM)
    return path if os.access(path, os.X_OK) else None


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """One headless Chromium per test module; close every context you open.

    Not per session: Playwright's sync API keeps an event loop running in this
    thread while it is open, and the async tests of later modules need the
    thread free.
    """
    path = chromium_path()
    if path is None:
        wanted = os.environ.get(CHROMIUM_ENV, DEFAULT_CHROMIUM)
        unavailable(f"no Chromium at {wanted} (apt-get install chromium, or set ${CHROMIUM_ENV})")
    try:
        from playwright.sync_api import sync_playwright  # noqa: PLC0415
    except ImportError:
        unavailable("Playwright is not installed (pip install -e '.[test]')")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=path, headless=True)
        try:
            yield launched
        finally:
            launched.close()


# -- nginx ----------------------------------------------------------------------------------

_UPSTREAM_SERVER = re.compile(r"^(\s*)server\s+node(\d+):(\d+)(.*);[ \t]*$", re.MULTILINE)
_LISTEN = re.compile(r"^(\s*)listen\s+(\d+)\s*;[ \t]*$", re.MULTILINE)
_ACCESS_LOG = re.compile(r"^(\s*)access_log\s+\S+(.*);[ \t]*$", re.MULTILINE)
_ERROR_LOG = re.compile(r"^(\s*)error_log\s+\S+(.*);[ \t]*$", re.MULTILINE)
_HTTP_OPEN = re.compile(r"^http\s*\{[ \t]*$", re.MULTILINE)


def render_local_nginx(
    conf: str, *, listen_port: int, upstream_ports: Sequence[int], prefix: Path
) -> str:
    """The deployment configuration with its addresses moved to loopback.

    ``server nodeN:PORT ...;`` becomes ``server 127.0.0.1:<upstream_ports[N-1]> ...;``
    (keeping its parameters), ``listen PORT;`` becomes ``listen 127.0.0.1:<listen_port>;``,
    and the logs and temporary files go under ``prefix``. Everything else --
    the WebSocket upgrade, timeouts, balancing -- is what Compose runs.
    Raises ``ValueError`` when the configuration no longer has the lines the
    template relies on, so a drift fails the test instead of testing less.
    """
    servers = _UPSTREAM_SERVER.findall(conf)
    if len(servers) != len(upstream_ports):
        raise ValueError(
            f"{len(servers)} 'server nodeN:PORT' lines in the configuration, "
            f"{len(upstream_ports)} local ports given"
        )

    def server(m: re.Match[str]) -> str:
        index = int(m.group(2)) - 1
        if not 0 <= index < len(upstream_ports):
            raise ValueError(f"upstream node{m.group(2)} has no local port")
        return f"{m.group(1)}server 127.0.0.1:{upstream_ports[index]}{m.group(4)};"

    out = _UPSTREAM_SERVER.sub(server, conf)
    out, listens = _LISTEN.subn(lambda m: f"{m.group(1)}listen 127.0.0.1:{listen_port};", out)
    if listens != 1:
        raise ValueError(f"expected one 'listen PORT;' line, found {listens}")
    out = _ACCESS_LOG.sub(
        lambda m: f"{m.group(1)}access_log {prefix / 'access.log'}{m.group(2)};", out
    )
    out = _ERROR_LOG.sub(
        lambda m: f"{m.group(1)}error_log {prefix / 'error.log'}{m.group(2)};", out
    )
    temp = "".join(
        f"    {kind}_temp_path {prefix / kind};\n"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    out, https = _HTTP_OPEN.subn(lambda m: f"{m.group(0)}\n{temp}", out)
    if https != 1:
        raise ValueError("expected one top-level 'http {' block")
    return f"pid {prefix / 'nginx.pid'};\n{out}"


@dataclasses.dataclass
class Nginx:
    """A running nginx in front of local upstreams."""

    port: int
    prefix: Path
    conf: Path
    process: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def error_log(self) -> str:
        path = self.prefix / "error.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


def nginx_binary() -> str | None:
    for candidate in (shutil.which("nginx"), "/usr/sbin/nginx"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


def nginx_check(binary: str, prefix: Path, conf: Path) -> subprocess.CompletedProcess[str]:
    """``nginx -t`` on ``conf`` (never touches the system's configuration or logs)."""
    return subprocess.run(
        [binary, "-t", "-p", str(prefix), "-e", str(prefix / "error.log"), "-c", str(conf)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def _wait_listening(port: int, process: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"nginx exited with {process.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        # A process start has no event to await: poll its port.
        time.sleep(0.05)
    raise TimeoutError(f"nginx did not listen on {port} within {timeout} s")


@pytest.fixture
def nginx_runner(tmp_path: Path) -> Iterator[Callable[[Sequence[int]], Nginx]]:
    """``start(upstream_ports) -> Nginx``: the deployment config on loopback.

    Fails the test if ``nginx -t`` rejects the rendered configuration; every
    nginx started is stopped at teardown.
    """
    binary = nginx_binary()
    if binary is None:
        unavailable("nginx is not installed (apt-get install nginx)")
    started: list[Nginx] = []

    def start(upstream_ports: Sequence[int]) -> Nginx:
        prefix = Path(tempfile.mkdtemp(prefix="nginx-", dir=tmp_path))
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
            (prefix / kind).mkdir()
        port = free_port()
        conf = prefix / "nginx.conf"
        conf.write_text(
            render_local_nginx(
                NGINX_CONF.read_text(),
                listen_port=port,
                upstream_ports=upstream_ports,
                prefix=prefix,
            )
        )
        checked = nginx_check(binary, prefix, conf)
        assert checked.returncode == 0, f"nginx -t rejected the configuration:\n{checked.stderr}"
        extra = "daemon off;"
        if os.geteuid() == 0:
            # Workers would otherwise run as nobody, without access to the temporary prefix.
            extra += " user root;"
        process = subprocess.Popen(
            [
                binary,
                "-p",
                str(prefix),
                "-e",
                str(prefix / "error.log"),
                "-c",
                str(conf),
                "-g",
                extra,
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        running = Nginx(port=port, prefix=prefix, conf=conf, process=process)
        started.append(running)
        try:
            _wait_listening(port, process, 10.0)
        except (RuntimeError, TimeoutError) as e:
            running.stop()
            raise AssertionError(f"{e}\n{running.error_log()}") from e
        return running

    try:
        yield start
    finally:
        for running in started:
            running.stop()


def http_get(url: str, timeout: float = 5.0) -> tuple[int, bytes]:
    """GET ``url``: (status, body); an HTTP error status is returned, not raised."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return int(response.status), response.read()
    except urllib.error.HTTPError as e:
        return int(e.code), e.read()


# -- Compose --------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def docker_compose() -> str:
    """The path of ``docker-compose`` (a loader; no Docker engine is needed for ``config``)."""
    path = shutil.which("docker-compose")
    if path is None:
        unavailable("docker-compose is not installed (apt-get install docker-compose)")
    return path
