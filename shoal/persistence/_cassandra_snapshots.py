"""The Cassandra snapshot store.

Table (in the configured keyspace, created on demand)::

    snapshots (persistence_id, sequence_nr, timestamp, ser_id, ser_manifest, snapshot,
               PRIMARY KEY (persistence_id, sequence_nr))  -- newest first

One partition per persistence id; a save is one INSERT (atomic). A load reads
the newest snapshots within the sequence-number bounds a few at a time and
returns the first inside the timestamp bounds; deletes without timestamp
bounds are one range tombstone, with them one row delete per match.
"""

from __future__ import annotations

import functools
from typing import Any, Final

from ._cassandra_session import (
    CassandraSession,
    CassandraSettings,
    Once,
    consistency_levels,
    prepare_at,
)
from ._errors import PluginClosedError, SnapshotStoreError
from ._journal import MAX_SEQUENCE_NR, check_persistence_id
from ._snapshot import (
    LATEST,
    SnapshotMetadata,
    SnapshotRecord,
    SnapshotSelectionCriteria,
    SnapshotStore,
)

__all__ = ["CassandraSnapshotStore"]

_LOAD_PAGE: Final = 8  # candidates read per round trip while looking for a timestamp match


class _Statements:
    def __init__(self, session: Any, settings: CassandraSettings) -> None:
        ks = settings.keyspace
        write_cl, read_cl = consistency_levels(settings)

        prepare = functools.partial(prepare_at, session)

        self.insert = prepare(
            f"INSERT INTO {ks}.snapshots (persistence_id, sequence_nr, timestamp, ser_id, "
            "ser_manifest, snapshot) VALUES (?, ?, ?, ?, ?, ?)",
            write_cl,
        )
        self.select = prepare(
            f"SELECT sequence_nr, timestamp, ser_id, ser_manifest, snapshot FROM {ks}.snapshots "
            "WHERE persistence_id = ? AND sequence_nr >= ? AND sequence_nr <= ? LIMIT ?",
            read_cl,
        )
        self.delete_range = prepare(
            f"DELETE FROM {ks}.snapshots WHERE persistence_id = ? "
            "AND sequence_nr >= ? AND sequence_nr <= ?",
            write_cl,
        )
        self.delete_one = prepare(
            f"DELETE FROM {ks}.snapshots WHERE persistence_id = ? AND sequence_nr = ?", write_cl
        )


def _table(ks: str) -> str:
    return f"""CREATE TABLE IF NOT EXISTS {ks}.snapshots (
        persistence_id text, sequence_nr bigint, timestamp bigint, ser_id int,
        ser_manifest text, snapshot blob,
        PRIMARY KEY (persistence_id, sequence_nr))
        WITH CLUSTERING ORDER BY (sequence_nr DESC)"""


def _has_time_bounds(criteria: SnapshotSelectionCriteria) -> bool:
    return criteria.min_timestamp > 0 or criteria.max_timestamp < MAX_SEQUENCE_NR


class CassandraSnapshotStore(SnapshotStore):
    """Snapshots on Apache Cassandra; pass ``session`` to share the journal's driver session."""

    def __init__(
        self, settings: CassandraSettings, *, session: CassandraSession | None = None
    ) -> None:
        self.settings = settings
        self._owns_session = session is None
        self._session = session if session is not None else CassandraSession(settings)
        self._statements: _Statements | None = None
        self._setup: Once[_Statements] = Once()
        self._closed = False

    async def _ready(self) -> _Statements:
        if self._closed:
            raise PluginClosedError("the cassandra snapshot store is closed")
        statements = self._statements
        if statements is None:
            statements = self._statements = await self._setup.get(self._prepare)
        return statements

    async def _prepare(self) -> _Statements:
        """Create the tables if configured and prepare the statements, once."""
        settings = self.settings

        def setup(session: Any) -> _Statements:
            if settings.tables_autocreate:
                session.execute(_table(settings.keyspace))
            return _Statements(session, settings)

        return await self._session.run_blocking(setup)

    async def save(self, snapshot: SnapshotRecord) -> None:
        check_persistence_id(snapshot.metadata.persistence_id)
        m = snapshot.metadata
        try:
            st = await self._ready()
            await self._session.execute(
                st.insert,
                (
                    m.persistence_id,
                    m.sequence_nr,
                    m.timestamp,
                    snapshot.serializer_id,
                    snapshot.manifest,
                    snapshot.payload,
                ),
            )
        except PluginClosedError:
            raise
        except Exception as exc:
            raise SnapshotStoreError(
                f"cassandra: saving the snapshot of {m.persistence_id!r} at {m.sequence_nr} "
                f"failed: {exc}"
            ) from exc

    async def _matching(
        self, st: _Statements, pid: str, criteria: SnapshotSelectionCriteria, first_only: bool
    ) -> list[SnapshotRecord]:
        """Matching snapshots, newest first (only the newest if ``first_only``)."""
        found: list[SnapshotRecord] = []
        upper = criteria.max_sequence_nr
        while upper >= criteria.min_sequence_nr:
            rows = await self._session.execute(
                st.select, (pid, criteria.min_sequence_nr, upper, _LOAD_PAGE)
            )
            for seq, ts, ser, manifest, payload in rows:
                record = SnapshotRecord(SnapshotMetadata(pid, seq, ts), ser, manifest, payload)
                if criteria.matches(record.metadata):
                    found.append(record)
                    if first_only:
                        return found
            if len(rows) < _LOAD_PAGE:
                break
            upper = rows[-1][0] - 1
        return found

    async def load(
        self,
        persistence_id: str,
        criteria: SnapshotSelectionCriteria = LATEST,
    ) -> SnapshotRecord | None:
        check_persistence_id(persistence_id)
        if criteria.is_empty():
            return None
        try:
            st = await self._ready()
            found = await self._matching(st, persistence_id, criteria, first_only=True)
        except PluginClosedError:
            raise
        except Exception as exc:
            raise SnapshotStoreError(
                f"cassandra: loading a snapshot of {persistence_id!r} failed: {exc}"
            ) from exc
        return found[0] if found else None

    async def delete(self, persistence_id: str, criteria: SnapshotSelectionCriteria) -> None:
        check_persistence_id(persistence_id)
        if criteria.is_empty():
            return
        pid = persistence_id
        try:
            st = await self._ready()
            if not _has_time_bounds(criteria):
                await self._session.execute(
                    st.delete_range, (pid, criteria.min_sequence_nr, criteria.max_sequence_nr)
                )
                return
            for record in await self._matching(st, pid, criteria, first_only=False):
                await self._session.execute(st.delete_one, (pid, record.metadata.sequence_nr))
        except PluginClosedError:
            raise
        except Exception as exc:
            raise SnapshotStoreError(
                f"cassandra: deleting snapshots of {pid!r} failed: {exc}"
            ) from exc

    async def close(self) -> None:
        self._closed = True
        if self._owns_session:
            await self._session.close()
