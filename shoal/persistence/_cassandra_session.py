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
import threading
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, Final, Generic, TypeVar

from cassandra import ConsistencyLevel
from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile, NoHostAvailable
from cassandra.connection import ConnectionBusy, DefaultEndPoint
from cassandra.policies import DCAwareRoundRobinPolicy, TokenAwarePolicy
from cassandra.query import tuple_factory

from ._cassandra_settings import CassandraSettings

__all__ = ["CassandraSession", "CassandraSettings", "Once"]

_T = TypeVar("_T")


def prepare_at(session: Any, cql: str, consistency_level: int) -> Any:
    """``session.prepare(cql)`` at ``consistency_level`` (blocking: call it on the executor)."""
    stmt = session.prepare(cql)
    stmt.consistency_level = consistency_level
    return stmt


def consistency_levels(settings: CassandraSettings) -> tuple[int, int]:
    """The driver's values of the settings' write and read consistency levels."""
    return (
        ConsistencyLevel.name_to_value[settings.write_consistency],
        ConsistencyLevel.name_to_value[settings.read_consistency],
    )


class Once(Generic[_T]):
    """An async setup run once: concurrent callers share one attempt; a failure is retried.

    The next :meth:`get` after a failed (or cancelled) attempt starts a new one.
    """

    __slots__ = ("_attempt",)

    def __init__(self) -> None:
        self._attempt: asyncio.Future[_T] | None = None

    async def get(self, make: Callable[[], Awaitable[_T]]) -> _T:
        attempt = self._attempt
        if attempt is None or (
            attempt.done() and (attempt.cancelled() or attempt.exception() is not None)
        ):
            attempt = self._attempt = asyncio.ensure_future(make())
        return await asyncio.shield(attempt)


# Resending a request refused unsent (socket buffer full): first delay, doubling to the cap.
_BUSY_FIRST_DELAY: Final = 0.001
_BUSY_MAX_DELAY: Final = 0.05


class _Request:
    __slots__ = ("busy_retries", "busy_waited", "fut", "params", "statement")

    def __init__(self, statement: Any, params: Any, fut: asyncio.Future[list[Any]]) -> None:
        self.statement = statement
        self.params = params
        self.fut = fut
        self.busy_retries = 0
        self.busy_waited = 0.0


def _unsent_busy(exc: BaseException) -> bool:
    """Whether the driver refused a request *unsent*: every host's connection was busy."""
    if isinstance(exc, ConnectionBusy):
        return True
    if not isinstance(exc, NoHostAvailable):
        return False
    errors: dict[Any, Any] = getattr(exc, "errors", None) or {}
    return bool(errors) and all(isinstance(e, ConnectionBusy) for e in errors.values())


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
        self._done: list[tuple[_Request, Any, BaseException | None]] = []
        self._in_flight = 0  # requests sent and not yet drained (loop side)
        self._waiting: deque[_Request] = deque()
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

        Must follow a completed :meth:`start`. At most ``max_in_flight``
        requests are out at once; later ones wait their turn, in order. A
        request the driver refuses unsent because its connection's socket
        buffer is full (``ConnectionBusy``, e.g. under a burst of large
        rows) is sent again after a short backoff (1 ms doubling to 50 ms),
        for up to ``request_timeout_s`` in all. Cancelling
        the future does not cancel the request: it may still be applied.
        """
        loop = self._loop
        assert loop is not None, "execute() before start()"
        assert self._session is not None, "execute() after close()"
        request = _Request(statement, params, loop.create_future())
        if self._in_flight < self.settings.max_in_flight and not self._waiting:
            self._send(request)
        else:
            self._waiting.append(request)
        return request.fut

    def _send(self, request: _Request) -> None:
        assert self._session is not None
        try:
            response = self._session.execute_async(request.statement, request.params)
        except Exception as exc:  # refused synchronously (e.g. the driver shut down)
            if not request.fut.done():
                request.fut.set_exception(exc)
            return
        self._in_flight += 1
        response.add_callbacks(
            self._on_result, self._on_error, callback_args=(request,), errback_args=(request,)
        )

    # Driver-thread side: record, and wake the loop only for the first of a burst.
    def _on_result(self, rows: Any, request: _Request) -> None:
        self._push(request, rows, None)

    def _on_error(self, exc: BaseException, request: _Request) -> None:
        self._push(request, None, exc)

    def _push(self, request: _Request, rows: Any, exc: BaseException | None) -> None:
        with self._lock:
            self._done.append((request, rows, exc))
            wake = len(self._done) == 1
        if wake and self._loop is not None:
            with contextlib.suppress(RuntimeError):  # loop closed: nobody waits any more
                self._loop.call_soon_threadsafe(self._drain)

    def _drain(self) -> None:
        """On the loop: settle finished requests, resend refused ones, send what waits."""
        with self._lock:
            done, self._done = self._done, []
        loop = asyncio.get_running_loop()
        for request, rows, exc in done:
            self._in_flight -= 1
            fut = request.fut
            if exc is not None and not fut.done() and _unsent_busy(exc):
                # Never sent: the socket buffer was full. Try again a little later,
                # backing off, until the request's own timeout has passed.
                delay = min(_BUSY_MAX_DELAY, _BUSY_FIRST_DELAY * 2**request.busy_retries)
                request.busy_retries += 1
                request.busy_waited += delay
                if request.busy_waited <= self.settings.request_timeout_s:
                    loop.call_later(delay, self._resend, request)
                    continue
            if fut.done():
                continue
            if exc is not None:
                fut.set_exception(exc)
            else:
                fut.set_result(rows if rows is not None else [])
        self._send_waiting()

    def _resend(self, request: _Request) -> None:
        if self._session is None:
            if not request.fut.done():
                request.fut.set_exception(ConnectionBusy("the session closed before a resend"))
            return
        self._waiting.appendleft(request)
        self._send_waiting()

    def _send_waiting(self) -> None:
        limit = self.settings.max_in_flight
        while self._waiting and self._in_flight < limit and self._session is not None:
            self._send(self._waiting.popleft())

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
