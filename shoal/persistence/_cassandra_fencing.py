"""Ownership fencing for the Cassandra journal (``CassandraSettings.fencing = "epoch"``).

Tables (in the journal's keyspace)::

    owners (persistence_id PRIMARY KEY, epoch bigint, writer text)
    owner_claims (part, bucket, claims counter, PRIMARY KEY ((part), bucket))

*Claim* (once per activation: :meth:`Journal.claim_writer`, which a
persistent actor calls when it starts, before reading its highest sequence
number): a lightweight transaction raises the id's ``epoch`` by one and
names the new ``writer`` (``INSERT ... IF NOT EXISTS`` for the first owner,
``UPDATE ... IF epoch = <read>`` after it; a lost race reads again); then
the claim counter of the id's bucket (``owner_claims``: 64 counters by a
hash of the id, in one partition) is raised; then the claimant waits one
lease (``CassandraSettings.fencing_lease_s``) before the claim completes.
One Paxos round and one lease of waiting per activation, nothing per write.

*Leases* (per write, without I/O): a write is acknowledged to its caller
only if, when its acknowledgement arrives, the writer's ownership was
confirmed by a *round* that began less than 0.9 lease before. A round reads
the 64 claim counters (one small read); an owned id whose bucket counter
has not moved since its last confirmation is confirmed, the others have
their epoch read (``WHERE persistence_id IN ...``, 100 ids a request):
still theirs, confirmed; another's, lost. A round considers only the ids
written within the last lease. While writes come, rounds run
every third of a lease in the background, so a write normally waits for
nothing; a write whose confirmation is too old waits for the next round.

Guarantee. Let B claim an id after A, its counter raised at time C. A round
that began after C sees the raised counter, so every round that confirmed A
began before C, and every write acknowledged to A was acknowledged (so
stored) before C + 0.9 lease; B's claim completes at C + lease and only
then does B read its highest sequence number: B's recovery includes every
write acknowledged to A. (Only durations are compared, each on one
machine's monotonic clock; the 10% margin covers their drift.) A's later
writes fail with :class:`OwnershipLostError`: the first one when a round
finds the new epoch (it may be stored: B's recovery includes it if it landed
before B read; if not, and B writes the same numbers, B's events supersede
it in every replay, since the stored writer id carries the epoch, see
``_replay_filter``), and from then on at once, before anything is sent
(nothing stored).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import zlib
from collections.abc import Callable
from typing import Any, Final

from cassandra import ConsistencyLevel

from shoal.runtime import Clock

from ._cassandra_session import consistency_levels, prepare_at
from ._cassandra_settings import CassandraSettings
from ._errors import JournalWriteError, OwnershipLostError

__all__ = ["CLAIM_BUCKETS", "OwnershipFence", "claim_bucket", "owners_tables"]

_log = logging.getLogger("shoal.persistence")

_CLAIM_ATTEMPTS: Final = 20
_SAFE_FRACTION: Final = 0.9  # of a lease: the margin covers clock-rate drift between machines
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
    __slots__ = ("epoch", "last_write", "lost", "valid_until", "verified_at", "writer")

    def __init__(self, writer: str, epoch: int, valid_until: float) -> None:
        self.writer = writer
        self.epoch = epoch
        self.lost = False
        self.verified_at = -1  # the bucket's claim counter when ownership was last confirmed
        self.valid_until = valid_until  # acknowledgements before this (clock time) are safe
        self.last_write = 0.0  # rounds confirm only ids written within the last lease


class OwnershipFence:
    """The owners this journal instance claimed, the claims and the leases.

    Lives on the journal's event loop; ``send`` is the session's ``execute``,
    ``clock`` gives the journal's clock (leases and rounds run on it).
    """

    def __init__(
        self,
        session: Any,
        settings: CassandraSettings,
        send: Callable[..., asyncio.Future[list[Any]]],
        clock: Callable[[], Clock],
    ) -> None:
        ks = settings.keyspace
        write_cl, read_cl = consistency_levels(settings)
        self._send = send
        self._clock = clock
        self._lease = settings.fencing_lease_s
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
        self._count = prepare_at(
            session,
            f"UPDATE {ks}.owner_claims SET claims = claims + 1 WHERE part = 0 AND bucket = ?",
            write_cl,
        )
        self._counters = prepare_at(
            session,
            f"SELECT bucket, claims FROM {ks}.owner_claims WHERE part = 0",
            read_cl,
        )
        self._epochs = prepare_at(
            session,
            f"SELECT persistence_id, epoch FROM {ks}.owners WHERE persistence_id IN ?",
            read_cl,
        )
        self._owned: dict[str, _Owned] = {}
        self._round: asyncio.Future[None] | None = None  # the round running, if any
        self._rounds: asyncio.Task[None] | None = None  # the background loop, while writes come
        self._last_write = 0.0
        self._closed = False

    def _safe_for(self) -> float:
        return self._lease * _SAFE_FRACTION

    async def claim(self, pid: str, writer: str) -> None:
        """Make ``writer`` the owner of ``pid`` under a new epoch (see the module docstring)."""
        clock = self._clock()
        for _ in range(_CLAIM_ATTEMPTS):
            began = clock.now()
            rows = await self._send(self._read, (pid,))
            if not rows:
                result = await self._send(self._first, (pid, writer))
                epoch = 1
            else:
                current = int(rows[0][0])
                epoch = current + 1
                result = await self._send(self._next, (epoch, writer, pid, current))
            if result and result[0][0]:  # [applied]
                # A later claim raises a counter after this one applied, so after `began`.
                self._owned[pid] = _Owned(writer, epoch, began + self._safe_for())
                await self._send(self._count, (claim_bucket(pid),))
                # The previous owner's confirmations run out within a lease from now.
                await clock.sleep(self._lease)
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
        """Return once ``epoch``'s ownership of ``pid`` covers now; raise if it was lost."""
        clock = self._clock()
        self._last_write = clock.now()
        mine = self._owned.get(pid)
        if mine is not None:
            mine.last_write = self._last_write
        if self._rounds is None and not self._closed:
            self._rounds = asyncio.ensure_future(self._run_rounds())
        while True:
            owned = self._owned.get(pid)
            if owned is None or owned.epoch != epoch or owned.lost:
                if owned is not None and owned.writer == writer:
                    owned.lost = True
                raise OwnershipLostError(
                    f"write of {pid!r} sequence numbers {first}..{last} by {writer!r} not "
                    "acknowledged: another writer claimed the id meanwhile (the events may be "
                    "stored; the new owner's events supersede them)"
                )
            if clock.now() < owned.valid_until:
                return
            try:
                await asyncio.shield(self._next_round())
            except Exception as exc:
                raise JournalWriteError(
                    f"cassandra write of {pid!r} sequence numbers {first}..{last} is stored, "
                    f"but whether {writer!r} still owns it could not be read: {exc}"
                ) from exc

    def _next_round(self) -> asyncio.Future[None]:
        """The round running now, or a new one (it begins after every write landed so far)."""
        if self._round is None or self._round.done():
            self._round = asyncio.ensure_future(self._confirm())
        return self._round

    async def _run_rounds(self) -> None:
        """While writes come: a round every third of a lease, so writes rarely wait."""
        clock = self._clock()
        try:
            while not self._closed and clock.now() - self._last_write < self._lease:
                try:
                    await asyncio.shield(self._next_round())
                except Exception as exc:  # the writes waiting for it report it
                    _log.debug("cassandra journal: ownership round failed: %s", exc)
                await clock.sleep(self._lease / 3)
        finally:
            self._rounds = None

    async def _confirm(self) -> None:
        """One round: confirm (or find lost) every owned id; see the module docstring."""
        clock = self._clock()
        began = clock.now()
        until = began + self._safe_for()
        counters = {int(b): int(c) for b, c in await self._send(self._counters)}
        unsure: list[str] = []
        for pid, owned in self._owned.items():
            if owned.lost or began - owned.last_write > self._lease:
                continue  # lost, or idle: its next write waits for a round
            if owned.verified_at == counters.get(claim_bucket(pid), 0):
                owned.valid_until = max(owned.valid_until, until)
            else:
                unsure.append(pid)
        for start in range(0, len(unsure), _CHECK_CHUNK):
            chunk = unsure[start : start + _CHECK_CHUNK]
            epochs = {str(p): int(e) for p, e in await self._send(self._epochs, (chunk,))}
            for pid in chunk:
                entry = self._owned.get(pid)
                if entry is None:
                    continue
                if epochs.get(pid, 0) == entry.epoch:
                    entry.verified_at = counters.get(claim_bucket(pid), 0)
                    entry.valid_until = max(entry.valid_until, until)
                else:
                    entry.lost = True

    async def close(self) -> None:
        """Stop the background rounds."""
        self._closed = True
        rounds = self._rounds
        if rounds is not None:
            rounds.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await rounds
