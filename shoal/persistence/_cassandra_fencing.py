"""Ownership fencing for the Cassandra journal (``CassandraSettings.fencing = "epoch"``).

Tables (in the journal's keyspace)::

    owners (persistence_id PRIMARY KEY, epoch bigint, writer text)
    owner_claims (part, bucket, claims counter, PRIMARY KEY ((part), bucket))

*Claim* (once per activation: :meth:`Journal.claim_writer`, which a
persistent actor calls when it starts, before reading its highest sequence
number): a lightweight transaction raises the id's ``epoch`` by one and
names the new ``writer`` (``INSERT ... IF NOT EXISTS`` for the first owner,
``UPDATE ... IF epoch = <read>`` after it; a lost race reads again), then
the claim counter of the id's bucket (``owner_claims``, 64 counters in one
partition) is raised. One Paxos round per activation, none per write.

*Check* (per write): the write is sent as without fencing, and once it is
acknowledged the journal checks that the writer still owns the id; only
then is the write acknowledged to its caller. The check of every write
acknowledged during one event-loop turn starts with one read of the 64
claim counters: an id whose bucket counter has not moved since its
ownership was last confirmed is still owned (a claim raises the counter
before it completes). Only the other ids' epochs are read (one
``WHERE persistence_id IN ...`` request for up to 100), confirming them at
the counter value just read. So while no other claims happen, a loop turn's
checks cost one small read in all, however many writes it acknowledges.

Guarantee. Let B claim an id after A. Every write A's caller saw
acknowledged landed before B's claim completed (A's check, which began
after A's write landed, found B's counter raise or epoch not yet there), so
B's recovery, which reads after its claim, includes it. Every later write of A fails: with
:class:`OwnershipLostError` at its check (it may be stored: B's recovery
includes it if it landed before B read; if it landed after, B's events of
the same numbers supersede it in every replay, as two writers' rows do, see
``_replay_filter``), and from then on at once, before anything is sent
(nothing stored). So no write is acknowledged to a stale owner, and the new
owner never misses an event acknowledged to the old one.
"""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import Callable
from typing import Any, Final

from cassandra import ConsistencyLevel

from ._cassandra_settings import CassandraSettings
from ._errors import JournalWriteError, OwnershipLostError

__all__ = ["CLAIM_BUCKETS", "OwnershipFence", "claim_bucket", "owners_tables"]

_CLAIM_ATTEMPTS: Final = 20
_CHECK_CHUNK: Final = 100  # ids per IN read
CLAIM_BUCKETS: Final = 64
"""Counters of claims, by a hash of the persistence id (one Cassandra partition)."""


def owners_tables(ks: str) -> tuple[str, str]:
    return (
        f"""CREATE TABLE IF NOT EXISTS {ks}.owners (
            persistence_id text PRIMARY KEY, epoch bigint, writer text)""",
        f"""CREATE TABLE IF NOT EXISTS {ks}.owner_claims (
            part int, bucket int, claims counter, PRIMARY KEY ((part), bucket))""",
    )


def claim_bucket(pid: str) -> int:
    """The ``owner_claims`` counter a claim of ``pid`` raises (a stable hash, never ``hash()``)."""
    return zlib.crc32(pid.encode("utf-8")) % CLAIM_BUCKETS


class _Owned:
    __slots__ = ("epoch", "lost", "verified_at", "writer")

    def __init__(self, writer: str, epoch: int) -> None:
        self.writer = writer
        self.epoch = epoch
        self.lost = False
        self.verified_at = -1  # the bucket's claim counter when ownership was last confirmed


_Check = tuple[int, "asyncio.Future[bool]"]


class OwnershipFence:
    """The owners this journal instance claimed, the claims and the per-write checks.

    Lives on the journal's event loop; ``send`` is the session's ``execute``.
    """

    def __init__(
        self,
        session: Any,
        settings: CassandraSettings,
        send: Callable[..., asyncio.Future[list[Any]]],
    ) -> None:
        ks = settings.keyspace
        write_cl = ConsistencyLevel.name_to_value[settings.write_consistency]
        read_cl = ConsistencyLevel.name_to_value[settings.read_consistency]
        self._send = send
        self._read = session.prepare(
            f"SELECT epoch, writer FROM {ks}.owners WHERE persistence_id = ?"
        )
        self._read.consistency_level = ConsistencyLevel.SERIAL  # sees Paxos rounds in progress
        self._first = session.prepare(
            f"INSERT INTO {ks}.owners (persistence_id, epoch, writer) VALUES (?, 1, ?) "
            "IF NOT EXISTS"
        )
        self._next = session.prepare(
            f"UPDATE {ks}.owners SET epoch = ?, writer = ? WHERE persistence_id = ? IF epoch = ?"
        )
        for stmt in (self._first, self._next):
            stmt.consistency_level = write_cl  # the commit; the Paxos round is SERIAL
            stmt.serial_consistency_level = ConsistencyLevel.SERIAL
        self._count = session.prepare(
            f"UPDATE {ks}.owner_claims SET claims = claims + 1 WHERE part = 0 AND bucket = ?"
        )
        self._count.consistency_level = write_cl
        self._counters = session.prepare(
            f"SELECT bucket, claims FROM {ks}.owner_claims WHERE part = 0"
        )
        self._counters.consistency_level = read_cl
        self._epochs = session.prepare(
            f"SELECT persistence_id, epoch FROM {ks}.owners WHERE persistence_id IN ?"
        )
        self._epochs.consistency_level = read_cl
        self._owned: dict[str, _Owned] = {}
        self._checks: dict[str, list[_Check]] = {}
        self._running: set[asyncio.Task[None]] = set()

    async def claim(self, pid: str, writer: str) -> None:
        """Make ``writer`` the owner of ``pid`` under a new epoch (a Paxos round)."""
        for _ in range(_CLAIM_ATTEMPTS):
            rows = await self._send(self._read, (pid,))
            if not rows:
                result = await self._send(self._first, (pid, writer))
                epoch = 1
            else:
                current = int(rows[0][0])
                epoch = current + 1
                result = await self._send(self._next, (epoch, writer, pid, current))
            if result and result[0][0]:  # [applied]
                self._owned[pid] = _Owned(writer, epoch)
                # Raised before the claim completes: see the module docstring.
                await self._send(self._count, (claim_bucket(pid),))
                return
        raise JournalWriteError(
            f"cassandra: claiming {pid!r} for writer {writer!r} lost {_CLAIM_ATTEMPTS} races "
            "to other claims"
        )

    async def before_write(self, pid: str, writer: str) -> int:
        """The epoch ``writer`` writes ``pid`` under; refuse if it is not the owner here.

        A writer that never claimed (a direct user of the journal, not a
        persistent actor) claims at its first write.
        """
        owned = self._owned.get(pid)
        if owned is None:
            await self.claim(pid, writer)
            owned = self._owned[pid]
        if owned.writer != writer or owned.lost:
            raise OwnershipLostError(
                f"write to {pid!r} refused (nothing stored): writer {writer!r} no longer owns "
                f"it (owner {owned.writer!r} here{', which lost it too' if owned.lost else ''})"
            )
        return owned.epoch

    async def after_write(self, pid: str, writer: str, epoch: int, first: int, last: int) -> None:
        """Check, once ``pid``'s write is stored, that ``epoch`` still owns ``pid``."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[bool] = loop.create_future()
        if not self._checks:
            loop.call_soon(self._start_checks)
        self._checks.setdefault(pid, []).append((epoch, fut))
        try:
            still = await fut
        except Exception as exc:
            raise JournalWriteError(
                f"cassandra write of {pid!r} sequence numbers {first}..{last} is stored, but "
                f"whether {writer!r} still owns it could not be read: {exc}"
            ) from exc
        if not still:
            owned = self._owned.get(pid)
            if owned is not None and owned.writer == writer:
                owned.lost = True
            raise OwnershipLostError(
                f"write of {pid!r} sequence numbers {first}..{last} by {writer!r} not "
                "acknowledged: another writer claimed the id meanwhile (the events may be "
                "stored; the new owner's events supersede them)"
            )

    def _start_checks(self) -> None:
        task = asyncio.ensure_future(self._run_checks())
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    async def _run_checks(self) -> None:
        """Settle every check queued in the last loop turn (see the module docstring)."""
        checks, self._checks = self._checks, {}
        try:
            counters = {int(b): int(c) for b, c in await self._send(self._counters)}
            unsure: list[str] = []
            for pid, waiting in checks.items():
                owned = self._owned.get(pid)
                if owned is not None and owned.verified_at == counters.get(claim_bucket(pid), 0):
                    _settle(waiting, owned.epoch)
                else:
                    unsure.append(pid)
            for start in range(0, len(unsure), _CHECK_CHUNK):
                chunk = unsure[start : start + _CHECK_CHUNK]
                epochs = {str(p): int(e) for p, e in await self._send(self._epochs, (chunk,))}
                for pid in chunk:
                    epoch = epochs.get(pid, 0)
                    owned = self._owned.get(pid)
                    if owned is not None and owned.epoch == epoch:
                        owned.verified_at = counters.get(claim_bucket(pid), 0)
                    _settle(checks[pid], epoch)
        except Exception as exc:
            for waiting in checks.values():
                for _, fut in waiting:
                    if not fut.done():
                        fut.set_exception(exc)


def _settle(waiting: list[_Check], epoch: int) -> None:
    for mine, fut in waiting:
        if not fut.done():
            fut.set_result(mine == epoch)
