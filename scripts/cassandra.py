#!/usr/bin/env python3
"""Fetch, start and stop a throwaway single-node Apache Cassandra.

Used by Shoal's tests, benchmarks and CI on fresh machines, so it needs only
the standard library, a Java 17 (or 11) runtime and Maven. Cassandra itself
comes from Maven Central as ``cassandra-all`` plus its runtime dependencies
(the binary tarball is not published there) and is cached per version.

Python API::

    lib = fetch()                   # once per machine; later calls reuse the cache
    handle = start()                # fresh run dir, free loopback ports, waits for CQL
    handle.contact_point            # "127.0.0.1:<port>"
    stop(handle)                    # SIGTERM, then SIGKILL; removes the run dir

``launch`` and ``wait_ready`` are the two halves of ``start`` for callers that
want to do other work while the node boots.

Import it under a name other than ``cassandra`` (which would shadow
cassandra-driver), e.g.::

    spec = importlib.util.spec_from_file_location("shoal_cassandra", "scripts/cassandra.py")
    launcher = importlib.util.module_from_spec(spec)
    sys.modules["shoal_cassandra"] = launcher   # dataclasses needs the module registered
    spec.loader.exec_module(launcher)

Command line::

    python scripts/cassandra.py check
    python scripts/cassandra.py fetch
    python scripts/cassandra.py start [--run-dir D]   # prints one JSON line, leaves it running
    python scripts/cassandra.py stop --run-dir D [--keep]
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import fcntl
import functools
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

if __name__ == "cassandra":
    # Imported via sys.path as "cassandra", this file hides cassandra-driver from
    # the whole process; fail here rather than with a puzzling error later.
    raise ImportError(
        "scripts/cassandra.py must not be imported as 'cassandra' (it would shadow "
        "cassandra-driver); load it under another name with importlib"
    )

CASSANDRA_VERSION = "5.0.9"
"""Newest 5.0.x release of ``cassandra-all`` on Maven Central when this was written."""

HOST = "127.0.0.1"
READY_TIMEOUT = 240.0
STOP_GRACE = 20.0
# The heap may grow to DEFAULT_HEAP (memtables get a quarter of the maximum)
# but starts at DEFAULT_INITIAL_HEAP: Cassandra mlockall()s its memory at start
# (as root nothing limits it), so the whole initial heap becomes resident.
# Measured here: -Xms768M idles at ~1.2 GiB RSS, -Xms256M at ~650 MiB. Benchmarks
# wanting a steady state pass the same value for both.
DEFAULT_HEAP = "768M"
DEFAULT_INITIAL_HEAP = "256M"

_DEPENDENCY_PLUGIN = "org.apache.maven.plugins:maven-dependency-plugin:3.6.1"
_COMPLETE_MARKER = ".complete"
_HANDLE_FILE = "handle.json"
_READY_LINES = ("Starting listening for CQL clients", "Startup complete")
_POLL_INTERVAL = 0.2
# Preferred first. Cassandra 5.0 runs on these; 21 needs extra flags, 24+ cannot.
_SUPPORTED_JAVA = (17, 11)

# What bin/cassandra and conf/jvm17-server.options add on Java 17: Cassandra
# reaches into JDK internals and dies at start without these.
_JAVA17_MODULE_FLAGS = [
    *(
        f"--add-exports={module}=ALL-UNNAMED"
        for module in (
            "java.base/jdk.internal.misc",
            "java.management.rmi/com.sun.jmx.remote.internal.rmi",
            "java.management/com.sun.jmx.remote.security",
            "java.rmi/sun.rmi.registry",
            "java.rmi/sun.rmi.server",
            "java.sql/java.sql",
            "java.base/java.lang.ref",
            "jdk.unsupported/sun.misc",
            "jdk.compiler/com.sun.tools.javac.file",
            "jdk.attach/sun.tools.attach",
        )
    ),
    *(
        f"--add-opens={module}=ALL-UNNAMED"
        for module in (
            "java.base/java.lang.module",
            "java.base/jdk.internal.loader",
            "java.base/jdk.internal.ref",
            "java.base/jdk.internal.reflect",
            "java.base/jdk.internal.math",
            "java.base/jdk.internal.module",
            "java.base/jdk.internal.util.jar",
            "jdk.management/com.sun.management.internal",
            "java.base/sun.nio.ch",
            "java.base/java.io",
            "java.base/java.lang.reflect",
            "jdk.compiler/com.sun.tools.javac",
            "java.base/java.lang",
            "java.base/java.util",
            "java.base/java.nio",
        )
    ),
]


class CassandraError(RuntimeError):
    """Raised by this module when Cassandra cannot be fetched, started or stopped."""


@dataclasses.dataclass(frozen=True)
class CassandraHandle:
    """A Cassandra process started by :func:`launch` or :func:`start`.

    ``process`` (and ``watchdog``, see :func:`launch`) are set only in the
    Python process that spawned the node; a handle read back from a run
    directory (:func:`load_handle`) has ``None``.
    """

    host: str
    native_port: int
    storage_port: int
    pid: int
    run_dir: Path
    log_path: Path
    launched_at: float
    process: subprocess.Popen[bytes] | None = dataclasses.field(
        default=None, compare=False, repr=False
    )
    watchdog: subprocess.Popen[bytes] | None = dataclasses.field(
        default=None, compare=False, repr=False
    )

    @property
    def contact_point(self) -> str:
        """``"host:port"`` of the CQL native transport."""
        return f"{self.host}:{self.native_port}"

    def to_json(self) -> dict[str, object]:
        """The JSON-serialisable fields (all but ``process`` and ``watchdog``)."""
        return {
            "host": self.host,
            "port": self.native_port,
            "storage_port": self.storage_port,
            "pid": self.pid,
            "run_dir": str(self.run_dir),
            "log": str(self.log_path),
            "launched_at": self.launched_at,
        }


# --------------------------------------------------------------------------- tools


def _java_major(java: Path) -> int | None:
    try:
        out = subprocess.run(
            [str(java), "-XshowSettings:properties", "-version"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = re.search(r"java\.specification\.version = (\d+)", out.stderr)
    return int(match.group(1)) if match else None


@functools.cache
def find_java() -> Path | None:
    """The ``java`` executable to run Cassandra with, or ``None``.

    Prefers Java 17, then 11, looking at ``$JAVA_HOME``, ``/usr/lib/jvm/*`` and
    ``PATH`` in that order: machines often carry a newer default JDK that
    Cassandra 5.0 cannot run on.
    """
    candidates: list[Path] = []
    if java_home := os.environ.get("JAVA_HOME"):
        candidates.append(Path(java_home) / "bin" / "java")
    candidates.extend(sorted(Path("/usr/lib/jvm").glob("*/bin/java")))
    if on_path := shutil.which("java"):
        candidates.append(Path(on_path))
    fallback: Path | None = None
    for candidate in candidates:
        if not os.access(candidate, os.X_OK):
            continue
        major = _java_major(candidate)
        if major == _SUPPORTED_JAVA[0]:
            return candidate
        if major in _SUPPORTED_JAVA and fallback is None:
            fallback = candidate
    return fallback


def find_mvn() -> Path | None:
    """The ``mvn`` executable on ``PATH``, or ``None``."""
    found = shutil.which("mvn")
    return Path(found) if found else None


def tools_available() -> bool:
    """Whether both a supported ``java`` and ``mvn`` are present."""
    return find_java() is not None and find_mvn() is not None


# --------------------------------------------------------------------------- fetch


def cache_dir(version: str = CASSANDRA_VERSION) -> Path:
    """Where ``version`` is cached: ``$SHOAL_CASSANDRA_CACHE/<version>``.

    Defaults to ``~/.cache/shoal/cassandra/<version>``.
    """
    root = os.environ.get("SHOAL_CASSANDRA_CACHE")
    base = Path(root) if root else Path.home() / ".cache" / "shoal" / "cassandra"
    return base.expanduser().resolve() / version


def _pom(version: str) -> str:
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<!-- Generated by Shoal's scripts/cassandra.py: only used to download jars. -->
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>dev.shoal.testing</groupId>
  <artifactId>cassandra-runtime</artifactId>
  <version>{version}</version>
  <dependencies>
    <dependency>
      <groupId>org.apache.cassandra</groupId>
      <artifactId>cassandra-all</artifactId>
      <version>{version}</version>
    </dependency>
  </dependencies>
</project>
"""


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    # Two test sessions (or CI jobs sharing a cache) may fetch at once; the
    # second waits and then finds the marker.
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _java_env(java: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["JAVA_HOME"] = str(java.resolve().parent.parent)
    return env


def fetch(version: str = CASSANDRA_VERSION, *, quiet: bool = True) -> Path:
    """Download ``cassandra-all`` ``version`` and its runtime jars; return the lib dir.

    Idempotent and safe to call concurrently: the first call runs Maven, later
    calls return the cached directory at once. Raises :class:`CassandraError`
    if ``java`` or ``mvn`` is missing or Maven fails.
    """
    root = cache_dir(version)
    lib = root / "lib"
    if (root / _COMPLETE_MARKER).exists():
        return lib
    java, mvn = find_java(), find_mvn()
    if java is None or mvn is None:
        raise CassandraError(f"fetching Cassandra needs java 17 and mvn ({check_message()})")
    with _locked(root / ".lock"):
        if (root / _COMPLETE_MARKER).exists():
            return lib
        (root / "pom.xml").write_text(_pom(version))
        partial = root / "lib.partial"
        shutil.rmtree(partial, ignore_errors=True)
        shutil.rmtree(lib, ignore_errors=True)
        cmd = [
            str(mvn),
            "-B",
            *(["-q"] if quiet else []),
            "-f",
            str(root / "pom.xml"),
            f"{_DEPENDENCY_PLUGIN}:copy-dependencies",
            "-DincludeScope=runtime",
            f"-DoutputDirectory={partial}",
        ]
        result = subprocess.run(
            cmd, env=_java_env(java), capture_output=quiet, text=True, check=False
        )
        if result.returncode != 0:
            output = (result.stdout or "") + (result.stderr or "")
            raise CassandraError(
                f"mvn failed with exit code {result.returncode}: {' '.join(cmd)}\n"
                + _tail(output.splitlines(), 40)
            )
        _jamm_jar(partial)  # a download without it cannot start; do not mark it complete
        partial.rename(lib)
        (root / _COMPLETE_MARKER).write_text(f"{version}\n")
    return lib


def _jamm_jar(lib: Path) -> Path:
    jars = sorted(lib.glob("jamm-*.jar"))
    if not jars:
        raise CassandraError(f"no jamm-*.jar in {lib}: the download is incomplete")
    return jars[-1]


# --------------------------------------------------------------------------- start


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _cassandra_yaml(run_dir: Path, storage_port: int, native_port: int) -> str:
    data = run_dir / "data"
    # Tuned for a disposable single node on a small (2-core) machine: small
    # caches and thread pools, nothing kept across runs. Every key was checked
    # against 5.0.9, which refuses unknown keys.
    return f"""\
cluster_name: shoal-test
partitioner: org.apache.cassandra.dht.Murmur3Partitioner
endpoint_snitch: SimpleSnitch
num_tokens: 1
initial_token: 0
listen_address: {HOST}
rpc_address: {HOST}
storage_port: {storage_port}
native_transport_port: {native_port}
start_native_transport: true
seed_provider:
  - class_name: org.apache.cassandra.locator.SimpleSeedProvider
    parameters:
      - seeds: "{HOST}:{storage_port}"
data_file_directories: ["{data / "data"}"]
commitlog_directory: "{data / "commitlog"}"
saved_caches_directory: "{data / "saved_caches"}"
hints_directory: "{data / "hints"}"
cdc_raw_directory: "{data / "cdc_raw"}"
commitlog_sync: periodic
commitlog_sync_period: 10000ms
commitlog_segment_size: 16MiB
# Dropped tables are not kept as snapshots: the data dies with the run.
auto_snapshot: false
# One node: there is no peer to keep hints for or to rank by latency.
hinted_handoff_enabled: false
dynamic_snitch: false
# A fresh cluster never shares disks with 4.x, so use 5.0's own formats.
storage_compatibility_mode: NONE
concurrent_reads: 8
concurrent_writes: 8
concurrent_counter_writes: 4
concurrent_materialized_view_writes: 2
concurrent_compactors: 1
memtable_flush_writers: 1
native_transport_max_threads: 32
key_cache_size: 16MiB
counter_cache_size: 0MiB
file_cache_size: 32MiB
networking_cache_size: 16MiB
prepared_statements_cache_size: 8MiB
index_summary_capacity: 8MiB
"""


def _logback_xml(log_path: Path) -> str:
    return f"""\
<configuration>
  <appender name="FILE" class="ch.qos.logback.core.FileAppender">
    <file>{log_path}</file>
    <encoder>
      <pattern>%-5level [%thread] %date{{ISO8601}} %F:%L - %msg%n</pattern>
    </encoder>
  </appender>
  <root level="INFO">
    <appender-ref ref="FILE"/>
  </root>
</configuration>
"""


def _check_run_dir(run_dir: Path | None) -> Path | None:
    if run_dir is None:
        return None
    run_dir = run_dir.expanduser().resolve()
    # Old data from another run (another cluster name, tokens or ports) makes
    # the node refuse to start or behave differently, so only empty dirs.
    if run_dir.exists() and any(run_dir.iterdir()):
        raise CassandraError(f"run directory {run_dir} is not empty")
    return run_dir


def _make_run_dir(run_dir: Path | None) -> Path:
    if run_dir is None:
        return Path(tempfile.mkdtemp(prefix="shoal-cassandra-"))
    run_dir.mkdir(parents=True, exist_ok=True)
    return run_dir


def launch(
    run_dir: Path | None = None,
    *,
    version: str = CASSANDRA_VERSION,
    heap: str = DEFAULT_HEAP,
    initial_heap: str = DEFAULT_INITIAL_HEAP,
    stop_with_parent: bool = False,
) -> CassandraHandle:
    """Spawn Cassandra without waiting for it; pair with :func:`wait_ready`.

    Fetches ``version`` first if needed. ``run_dir`` must be missing or empty;
    by default a new temporary directory is used. The node runs in its own
    process group, listens on free loopback ports and logs to
    ``run_dir/logs/system.log``; ``run_dir/handle.json`` describes it for
    :func:`load_handle`.

    With ``stop_with_parent`` a small watchdog process stops the node once
    this Python process is gone, however it died (even SIGKILL), so a killed
    test run does not leave a JVM behind.
    """
    run_dir = _check_run_dir(run_dir)  # before the download, which may take minutes
    lib = fetch(version)
    java = find_java()
    if java is None:
        raise CassandraError(f"no supported java found ({check_message()})")
    run_dir = _make_run_dir(run_dir)
    logs = run_dir / "logs"
    logs.mkdir()
    storage_port, native_port = _free_port(), _free_port()
    while native_port == storage_port:
        native_port = _free_port()
    config = run_dir / "cassandra.yaml"
    config.write_text(_cassandra_yaml(run_dir, storage_port, native_port))
    log_path = logs / "system.log"
    logback = run_dir / "logback.xml"
    logback.write_text(_logback_xml(log_path))
    cmd = [
        str(java),
        f"-javaagent:{_jamm_jar(lib)}",
        *_JAVA17_MODULE_FLAGS,
        f"-Xms{initial_heap}",
        f"-Xmx{heap}",
        "-Xss256k",
        "-XX:+UseG1GC",
        "-XX:+PerfDisableSharedMem",
        # A node out of heap is useless to a test; dying shows up at once.
        "-XX:+ExitOnOutOfMemoryError",
        f"-XX:ErrorFile={logs}/hs_err_%p.log",
        "-ea",
        "-Djdk.attach.allowAttachSelf=true",
        "-Djava.net.preferIPv4Stack=true",
        f"-Dcassandra.config={config.as_uri()}",
        f"-Dcassandra.storagedir={run_dir / 'data'}",
        f"-Dcassandra.logdir={logs}",
        f"-Dlogback.configurationFile={logback}",
        # Keeps stdout/stderr open so errors before logging starts are captured.
        "-Dcassandra-foreground=yes",
        "-Dcassandra.skip_wait_for_gossip_to_settle=0",
        # A single node has nobody to tell it is leaving; saves 2 s per stop.
        "-Dcassandra.shutdown_announce_in_ms=0",
        "-cp",
        f"{lib}/*",
        "org.apache.cassandra.service.CassandraDaemon",
    ]
    with (logs / "stdout.log").open("wb") as out:
        process = subprocess.Popen(
            cmd,
            cwd=run_dir,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=_java_env(java),
            start_new_session=True,
        )
    handle = CassandraHandle(
        host=HOST,
        native_port=native_port,
        storage_port=storage_port,
        pid=process.pid,
        run_dir=run_dir,
        log_path=log_path,
        launched_at=time.time(),
        process=process,
    )
    (run_dir / _HANDLE_FILE).write_text(json.dumps(handle.to_json()) + "\n")
    if stop_with_parent:
        handle = dataclasses.replace(handle, watchdog=_spawn_watchdog(run_dir))
    return handle


def _spawn_watchdog(run_dir: Path) -> subprocess.Popen[bytes]:
    # The watchdog blocks reading a pipe whose only writer is this process
    # (Popen closes inherited fds in other children), so it sees end-of-file
    # exactly when this process exits or stop() closes the pipe.
    with (run_dir / "logs" / "watchdog.log").open("wb") as out:
        return subprocess.Popen(
            [
                sys.executable,
                "-I",
                str(Path(__file__).resolve()),
                "watch",
                "--run-dir",
                str(run_dir),
            ],
            stdin=subprocess.PIPE,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def load_handle(run_dir: Path) -> CassandraHandle:
    """The handle of a node launched into ``run_dir`` (possibly by another process)."""
    try:
        raw = json.loads((Path(run_dir) / _HANDLE_FILE).read_text())
    except FileNotFoundError:
        raise CassandraError(f"no Cassandra was started in {run_dir}") from None
    return CassandraHandle(
        host=str(raw["host"]),
        native_port=int(raw["port"]),
        storage_port=int(raw["storage_port"]),
        pid=int(raw["pid"]),
        run_dir=Path(raw["run_dir"]),
        log_path=Path(raw["log"]),
        launched_at=float(raw["launched_at"]),
    )


def _tail(lines: Sequence[str], count: int, width: int = 400) -> str:
    # Capped width: Cassandra logs its whole configuration and classpath on
    # one line each, which would bury the lines that explain a failure.
    return "\n".join(
        line if len(line) <= width else f"{line[:width]}... [{len(line) - width} more]"
        for line in lines[-count:]
    )


def log_tail(handle: CassandraHandle, count: int = 40) -> str:
    """The last ``count`` lines of the node's log and of its stdout/stderr."""
    parts = []
    for path in (handle.log_path, handle.log_path.parent / "stdout.log"):
        with contextlib.suppress(OSError):
            lines = path.read_text(errors="replace").splitlines()
            parts.append(f"--- {path} (last {min(count, len(lines))} lines)\n{_tail(lines, count)}")
    return "\n".join(parts) or "(no log written)"


def is_running(handle: CassandraHandle) -> bool:
    """Whether the node's process is still alive (a zombie counts as dead)."""
    if handle.process is not None:
        return handle.process.poll() is None
    try:
        stat = Path(f"/proc/{handle.pid}/stat").read_text()
        cmdline = Path(f"/proc/{handle.pid}/cmdline").read_bytes()
    except OSError:
        return False
    # Guards against a recycled pid: the process must be ours and not a zombie.
    state = stat.rsplit(")", 1)[1].split()[0]
    return state != "Z" and str(handle.run_dir).encode() in cmdline


def rss_bytes(handle: CassandraHandle) -> int | None:
    """Resident memory of the node's JVM, or ``None`` if it is not running."""
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{handle.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return None


def _log_is_ready(log_path: Path) -> bool:
    try:
        text = log_path.read_text(errors="replace")
    except OSError:
        return False
    return all(line in text for line in _READY_LINES)


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


def _query_release_version(host: str, port: int) -> str | None:
    """``release_version`` via cassandra-driver, or ``None`` if the driver is absent."""
    # Imported here: the driver is optional and this module must stay stdlib-only.
    try:
        from cassandra.cluster import (  # noqa: PLC0415
            EXEC_PROFILE_DEFAULT,
            Cluster,
            ExecutionProfile,
        )
        from cassandra.policies import RoundRobinPolicy  # noqa: PLC0415
    except ImportError:
        return None

    # An explicit policy keeps the driver from logging a warning about its default.
    profile = ExecutionProfile(load_balancing_policy=RoundRobinPolicy(), request_timeout=10)
    cluster = Cluster(
        [host],
        port=port,
        execution_profiles={EXEC_PROFILE_DEFAULT: profile},
        connect_timeout=5,
        control_connection_timeout=5,
    )
    try:
        session = cluster.connect()
        row = session.execute("SELECT release_version FROM system.local").one()
        return str(row.release_version)
    finally:
        cluster.shutdown()


def wait_ready(
    handle: CassandraHandle,
    timeout: float = READY_TIMEOUT,
    *,
    query: bool = True,
) -> str | None:
    """Block until the node serves CQL; return its ``release_version`` if queried.

    Ready means the log shows both "Starting listening for CQL clients" and
    "Startup complete", the native port accepts a TCP connection and, when
    ``query`` is true and cassandra-driver is importable, ``SELECT
    release_version FROM system.local`` answers. Raises :class:`CassandraError`
    with the log's tail if the process dies or ``timeout`` seconds pass; the
    process is left as it is (call :func:`stop`).
    """
    deadline = time.monotonic() + timeout
    while True:
        if not is_running(handle):
            code = handle.process.returncode if handle.process is not None else None
            raise CassandraError(
                f"Cassandra (pid {handle.pid}) exited with code {code} before it was ready\n"
                + log_tail(handle)
            )
        if _log_is_ready(handle.log_path) and _port_open(handle.host, handle.native_port):
            break
        if time.monotonic() > deadline:
            raise CassandraError(
                f"Cassandra (pid {handle.pid}) not ready after {timeout:.0f} s\n" + log_tail(handle)
            )
        time.sleep(_POLL_INTERVAL)
    if not query:
        return None
    try:
        return _query_release_version(handle.host, handle.native_port)
    except Exception as exc:
        raise CassandraError(
            f"Cassandra at {handle.contact_point} listens but does not answer CQL: {exc!r}\n"
            + log_tail(handle)
        ) from exc


def start(
    run_dir: Path | None = None,
    *,
    version: str = CASSANDRA_VERSION,
    heap: str = DEFAULT_HEAP,
    initial_heap: str = DEFAULT_INITIAL_HEAP,
    timeout: float = READY_TIMEOUT,
) -> CassandraHandle:
    """Launch Cassandra and wait until it serves CQL (see :func:`launch`, :func:`wait_ready`).

    On failure the process is stopped, the run directory kept for inspection,
    and :class:`CassandraError` raised with the log's tail.
    """
    return _start(run_dir, version=version, heap=heap, initial_heap=initial_heap, timeout=timeout)[
        0
    ]


def _start(
    run_dir: Path | None, *, version: str, heap: str, initial_heap: str, timeout: float
) -> tuple[CassandraHandle, str | None]:
    handle = launch(run_dir, version=version, heap=heap, initial_heap=initial_heap)
    try:
        release = wait_ready(handle, timeout)
    except BaseException:
        stop(handle, keep_run_dir=True)
        raise
    return handle, release


# --------------------------------------------------------------------------- stop


def _signal_group(handle: CassandraHandle, sig: signal.Signals) -> None:
    # The node leads its own process group (start_new_session), so this also
    # reaches anything it forked.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(handle.pid, sig)


def _wait_exit(handle: CassandraHandle, timeout: float) -> bool:
    if handle.process is not None:
        try:
            handle.process.wait(timeout)
            return True
        except subprocess.TimeoutExpired:
            return False
    deadline = time.monotonic() + timeout
    while is_running(handle):
        if time.monotonic() > deadline:
            return False
        time.sleep(_POLL_INTERVAL)
    return True


def stop(handle: CassandraHandle, *, grace: float = STOP_GRACE, keep_run_dir: bool = False) -> None:
    """Stop the node: SIGTERM its process group, SIGKILL after ``grace`` seconds.

    Removes the run directory unless ``keep_run_dir``. Safe to call twice and
    on a node that already exited. Raises :class:`CassandraError` if the
    process survives SIGKILL.
    """
    if is_running(handle):
        _signal_group(handle, signal.SIGTERM)
        if not _wait_exit(handle, grace):
            _signal_group(handle, signal.SIGKILL)
            if not _wait_exit(handle, 10.0):
                raise CassandraError(f"Cassandra (pid {handle.pid}) survived SIGKILL")
    if handle.watchdog is not None and handle.watchdog.stdin is not None:
        # The node is gone, so the watchdog wakes up, finds nothing to do and
        # exits; it must be done before the run dir (its handle file) goes.
        handle.watchdog.stdin.close()
        try:
            handle.watchdog.wait(10.0)
        except subprocess.TimeoutExpired:
            handle.watchdog.kill()
            handle.watchdog.wait()
    if not keep_run_dir:
        shutil.rmtree(handle.run_dir, ignore_errors=True)


# --------------------------------------------------------------------------- CLI


def check_message() -> str:
    """One line saying which of java and mvn were found."""
    java, mvn = find_java(), find_mvn()
    java_text = f"java: {java}" if java else "java 17/11: missing"
    mvn_text = f"mvn: {mvn}" if mvn else "mvn: missing"
    return f"{java_text}; {mvn_text}"


def _cmd_check(_: argparse.Namespace) -> int:
    print(check_message())
    return 0 if tools_available() else 1


def _cmd_fetch(args: argparse.Namespace) -> int:
    began = time.monotonic()
    lib = fetch(args.version, quiet=not args.verbose)
    jars = len(list(lib.glob("*.jar")))
    print(json.dumps({"lib": str(lib), "jars": jars, "seconds": time.monotonic() - began}))
    return 0


def _cmd_start(args: argparse.Namespace) -> int:
    handle, release = _start(
        args.run_dir,
        version=args.version,
        heap=args.heap,
        initial_heap=args.initial_heap,
        timeout=args.timeout,
    )
    rss = rss_bytes(handle)
    info = {
        **handle.to_json(),
        "release_version": release,
        "ready_seconds": round(time.time() - handle.launched_at, 2),
        "rss_mib": round(rss / 2**20) if rss else None,
    }
    print(json.dumps(info), flush=True)
    return 0


def _cmd_stop(args: argparse.Namespace) -> int:
    stop(load_handle(args.run_dir), grace=args.grace, keep_run_dir=args.keep)
    return 0


def _cmd_watch(args: argparse.Namespace) -> int:
    sys.stdin.buffer.read()  # returns at end-of-file: the launching process is gone
    handle = load_handle(args.run_dir)
    if is_running(handle):
        print(f"launching process gone; stopping Cassandra pid {handle.pid}", flush=True)
        stop(handle)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("check", help="say whether java and mvn are present").set_defaults(
        func=_cmd_check
    )
    fetch_parser = sub.add_parser("fetch", help="download and cache the jars")
    fetch_parser.add_argument("--verbose", action="store_true", help="show Maven's output")
    fetch_parser.set_defaults(func=_cmd_fetch)
    start_parser = sub.add_parser("start", help="start a node and leave it running")
    start_parser.add_argument("--run-dir", type=Path, default=None)
    start_parser.add_argument("--heap", default=DEFAULT_HEAP, help="maximum heap (-Xmx)")
    start_parser.add_argument(
        "--initial-heap", default=DEFAULT_INITIAL_HEAP, help="initial heap (-Xms)"
    )
    start_parser.add_argument("--timeout", type=float, default=READY_TIMEOUT)
    start_parser.set_defaults(func=_cmd_start)
    stop_parser = sub.add_parser("stop", help="stop the node started in --run-dir")
    stop_parser.add_argument("--run-dir", type=Path, required=True)
    stop_parser.add_argument("--keep", action="store_true", help="keep the run directory")
    stop_parser.add_argument("--grace", type=float, default=STOP_GRACE)
    stop_parser.set_defaults(func=_cmd_stop)
    watch_parser = sub.add_parser("watch", help="internal: see launch(stop_with_parent=True)")
    watch_parser.add_argument("--run-dir", type=Path, required=True)
    watch_parser.set_defaults(func=_cmd_watch)
    for each in (fetch_parser, start_parser):
        each.add_argument("--version", default=CASSANDRA_VERSION)
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except CassandraError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    # Run as a script, this file's folder heads sys.path, where its name would
    # shadow the cassandra-driver package that wait_ready imports.
    if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
        del sys.path[0]
    sys.exit(main())
