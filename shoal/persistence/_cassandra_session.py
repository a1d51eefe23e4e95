"""A cassandra-driver session bridged to asyncio, shared by the Cassandra journal and snapshots.

The driver does its I/O on its own reactor thread and reports each request
through ``ResponseFuture.add_callbacks``. The callbacks only append the
outcome to a list and, when the list was empty, schedule one drain on the
event loop with ``call_soon_threadsafe``; under load one loop wake-up thus
settles many requests. The loop never blocks: the few blocking driver calls
(connecting, schema changes, preparing statements, shutdown) run on the
loop's default executor, once.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, TypeVar

from cassandra import ConsistencyLevel
from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile
from cassandra.connection import DefaultEndPoint
from cassandra.policies import DCAwareRoundRobinPolicy, TokenAwarePolicy
from cassandra.query import tuple_factory

__all__ = ["CassandraSession", "CassandraSettings"]

_T = TypeVar("_T")
_IDENT: Final = re.compile(r"[a-z][a-z0-9_]{0,47}")
_CONSISTENCY: Final = frozenset(
    {"ANY", "ONE", "TWO", "THREE", "QUORUM", "ALL", "LOCAL_QUORUM", "EACH_QUORUM", "LOCAL_ONE"}
)


def _default_replication() -> dict[str, str | int]:
    return {"class": "SimpleStrategy", "replication_factor": 1}


@dataclass(frozen=True, slots=True)
class CassandraSettings:
    """Settings of the Cassandra journal and snapshot store.

    ``contact_points`` are ``"host:port"`` (or ``"host"`` for port 9042).
    ``replication`` is the keyspace's replication map, used only when
    ``keyspace_autocreate`` creates it; production clusters want e.g.
    ``{"class": "NetworkTopologyStrategy", "dc1": 3}``.

    ``partition_size``: events per Cassandra partition,
    ``partition_nr = (sequence_nr - 1) // partition_size``; one write may
    hold at most this many events. Never change it for a keyspace that
    already holds events: rows would be looked up in the wrong partitions.

    Consistency levels name ``cassandra.ConsistencyLevel`` members; the
    default ``LOCAL_QUORUM`` for both reads and writes means a read sees
    every acknowledged write. ``request_timeout_s`` bounds each request on
    the client side.

    Group commit (see ``_cassandra_grouping``): writes queued in one loop
    turn share UNLOGGED batches of at most ``group_max_partitions`` writes
    and ``group_max_bytes``. The defaults stay under Cassandra's default
    ``unlogged_batch_across_partitions_warn_threshold`` (10) and
    ``batch_size_warn_threshold`` (5 KiB), so the server neither warns nor
    refuses; raise them together with those server settings. 1 turns
    grouping off.
    """

    contact_points: tuple[str, ...] = ("127.0.0.1:9042",)
    keyspace: str = "shoal"
    replication: Mapping[str, str | int] = field(default_factory=_default_replication)
    keyspace_autocreate: bool = True
    tables_autocreate: bool = True
    partition_size: int = 500_000
    write_consistency: str = "LOCAL_QUORUM"
    read_consistency: str = "LOCAL_QUORUM"
    local_datacenter: str | None = None
    protocol_version: int = 5
    request_timeout_s: float = 10.0
    replay_chunk_size: int = 5000
    connect_timeout_s: float = 10.0
    group_max_partitions: int = 10
    group_max_bytes: int = 4096

    def __post_init__(self) -> None:
        if not _IDENT.fullmatch(self.keyspace):
            raise ValueError(f"invalid keyspace name {self.keyspace!r}")
        if self.partition_size < 1:
            raise ValueError("partition_size must be positive")
        if not 1 <= self.replay_chunk_size <= 50_000:
            raise ValueError("replay_chunk_size must be within 1..50000")
        for level in (self.write_consistency, self.read_consistency):
            if level not in _CONSISTENCY:
                raise ValueError(f"unknown consistency level {level!r}")
        if not self.contact_points:
            raise ValueError("at least one contact point is needed")
        if self.group_max_partitions < 1 or self.group_max_bytes < 1:
            raise ValueError("group_max_partitions and group_max_bytes must be positive")

    def replication_cql(self) -> str:
        """The replication map as a CQL literal."""
        parts = []
        for key, value in self.replication.items():
            if not re.fullmatch(r"[A-Za-z0-9_.\-]+", key) or not re.fullmatch(
                r"[A-Za-z0-9_.\-]+", str(value)
            ):
                raise ValueError(f"invalid replication setting {key!r}: {value!r}")
            parts.append(f"'{key}': '{value}'")
        return "{" + ", ".join(parts) + "}"


def _endpoints(contact_points: tuple[str, ...]) -> list[Any]:
    result = []
    for point in contact_points:
        host, sep, port = point.rpartition(":")
        if not sep:
            host, port = point, "9042"
        result.append(DefaultEndPoint(host.strip("[]"), int(port)))
    return result


class CassandraSession:
    """One driver ``Cluster``/``Session`` for a keyspace, with an asyncio face.

    :meth:`start` connects (idempotent; concurrent callers share one
    attempt, a failed attempt is retried by the next call). :meth:`execute`
    must be called from the loop that started it.
    """

    def __init__(self, settings: CassandraSettings) -> None:
        self.settings = settings
        self._cluster: Any = None
        self._session: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._starting: asyncio.Future[None] | None = None
        self._lock = threading.Lock()  # guards _done between driver threads and the loop
        self._done: list[tuple[asyncio.Future[Any], Any, BaseException | None]] = []
        self._closed = False

    @property
    def keyspace(self) -> str:
        return self.settings.keyspace

    async def start(self) -> None:
        """Connect and create the keyspace if configured; no-op once done."""
        if self._session is not None:
            return
        if self._starting is None or (self._starting.done() and self._starting.exception()):
            self._loop = asyncio.get_running_loop()
            self._starting = asyncio.ensure_future(self._loop.run_in_executor(None, self._connect))
        await asyncio.shield(self._starting)

    def _connect(self) -> None:
        s = self.settings
        profile = ExecutionProfile(
            load_balancing_policy=TokenAwarePolicy(DCAwareRoundRobinPolicy(s.local_datacenter)),
            consistency_level=ConsistencyLevel.name_to_value[s.read_consistency],
            request_timeout=s.request_timeout_s,
            row_factory=tuple_factory,  # rows as plain tuples: the fastest factory
        )
        cluster = Cluster(
            _endpoints(s.contact_points),
            protocol_version=s.protocol_version,
            execution_profiles={EXEC_PROFILE_DEFAULT: profile},
            connect_timeout=s.connect_timeout_s,
            compression=False,  # small rows; avoids an optional lz4 dependency
        )
        try:
            session = cluster.connect()
            session.default_fetch_size = 50_000  # replay chunks are one page each
            if s.keyspace_autocreate:
                session.execute(
                    f"CREATE KEYSPACE IF NOT EXISTS {s.keyspace} "
                    f"WITH replication = {s.replication_cql()}"
                )
        except BaseException:
            cluster.shutdown()
            raise
        self._cluster, self._session = cluster, session

    async def run_blocking(self, fn: Callable[[Any], _T]) -> _T:
        """Run ``fn(session)`` on the default executor (schema changes, preparing)."""
        await self.start()
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, fn, self._session)

    def execute(self, statement: Any, params: Any = None) -> asyncio.Future[list[Any]]:
        """Send one statement; the future gets its rows (tuples) or the driver's error.

        Must follow a completed :meth:`start`. Cancelling the future does not
        cancel the request: it may still be applied.
        """
        loop = self._loop
        assert loop is not None, "execute() before start()"
        assert self._session is not None, "execute() after close()"
        fut: asyncio.Future[list[Any]] = loop.create_future()
        response = self._session.execute_async(statement, params)
        response.add_callbacks(
            self._on_result, self._on_error, callback_args=(fut,), errback_args=(fut,)
        )
        return fut

    # Driver-thread side: record, and wake the loop only for the first of a burst.
    def _on_result(self, rows: Any, fut: asyncio.Future[Any]) -> None:
        self._push(fut, rows, None)

    def _on_error(self, exc: BaseException, fut: asyncio.Future[Any]) -> None:
        self._push(fut, None, exc)

    def _push(self, fut: asyncio.Future[Any], rows: Any, exc: BaseException | None) -> None:
        with self._lock:
            self._done.append((fut, rows, exc))
            wake = len(self._done) == 1
        if wake and self._loop is not None:
            with contextlib.suppress(RuntimeError):  # loop closed: nobody waits any more
                self._loop.call_soon_threadsafe(self._drain)

    def _drain(self) -> None:
        with self._lock:
            done, self._done = self._done, []
        for fut, rows, exc in done:
            if fut.done():
                continue
            if exc is not None:
                fut.set_exception(exc)
            else:
                fut.set_result(rows if rows is not None else [])

    async def close(self) -> None:
        """Shut the driver down (idempotent)."""
        if self._closed:
            return
        self._closed = True
        if self._starting is not None and not self._starting.done():
            with contextlib.suppress(Exception):
                await asyncio.shield(self._starting)
        cluster, self._cluster, self._session = self._cluster, None, None
        if cluster is not None:
            await asyncio.get_running_loop().run_in_executor(None, cluster.shutdown)
