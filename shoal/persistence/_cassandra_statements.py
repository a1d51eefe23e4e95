"""The Cassandra journal's schema and prepared statements (prepared once, on the executor)."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable
from typing import Any

from cassandra import InvalidRequest

from shoal.runtime import Clock

from ._cassandra_fencing import OwnershipFence
from ._cassandra_session import consistency_levels, prepare_at
from ._cassandra_settings import CassandraSettings
from ._cassandra_tags import TagStatements

__all__ = ["Statements", "tables"]

_log = logging.getLogger("shoal.persistence")


def tables(ks: str) -> tuple[str, ...]:
    return (
        f"""CREATE TABLE IF NOT EXISTS {ks}.messages (
            persistence_id text, partition_nr bigint, sequence_nr bigint, writer_uuid text,
            timestamp bigint, ser_id int, ser_manifest text, event blob,
            PRIMARY KEY ((persistence_id, partition_nr), sequence_nr, writer_uuid))
            WITH CLUSTERING ORDER BY (sequence_nr ASC, writer_uuid ASC)""",
        f"""CREATE TABLE IF NOT EXISTS {ks}.metadata (
            persistence_id text PRIMARY KEY, deleted_to bigint)""",
        f"""CREATE TABLE IF NOT EXISTS {ks}.repairs (
            persistence_id text, sequence_nr bigint, dropped_writer text, kept_writer text,
            detected_at bigint,
            PRIMARY KEY ((persistence_id), sequence_nr, dropped_writer))""",
    )


class Statements:
    """The journal's prepared statements (prepared once, on the executor)."""

    def __init__(
        self,
        session: Any,
        settings: CassandraSettings,
        send: Callable[..., asyncio.Future[list[Any]]],
        clock: Callable[[], Clock],
    ) -> None:
        ks = settings.keyspace
        write_cl, read_cl = consistency_levels(settings)
        cols = "sequence_nr, writer_uuid, timestamp, ser_id, ser_manifest, event"
        where = "persistence_id = ? AND partition_nr = ?"

        prepare = functools.partial(prepare_at, session)

        self.write_cl = write_cl
        self.insert = prepare(
            f"INSERT INTO {ks}.messages (persistence_id, partition_nr, {cols}) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            write_cl,
        )
        self.insert.is_idempotent = True  # same key, same values: safe to retry
        self.read_from = prepare(
            f"SELECT {cols} FROM {ks}.messages WHERE {where} "
            "AND (sequence_nr) >= (?) AND (sequence_nr) <= (?) LIMIT ?",
            read_cl,
        )
        self.read_after = prepare(
            f"SELECT {cols} FROM {ks}.messages WHERE {where} "
            "AND (sequence_nr, writer_uuid) > (?, ?) AND (sequence_nr) <= (?) LIMIT ?",
            read_cl,
        )
        self.largest = prepare(
            f"SELECT sequence_nr FROM {ks}.messages WHERE {where} "
            "ORDER BY sequence_nr DESC LIMIT 1",
            read_cl,
        )
        self.deleted_to = prepare(
            f"SELECT deleted_to FROM {ks}.metadata WHERE persistence_id = ?", read_cl
        )
        self.set_deleted_to = prepare(
            f"UPDATE {ks}.metadata SET deleted_to = ? WHERE persistence_id = ?", write_cl
        )
        self.delete_range = prepare(
            f"DELETE FROM {ks}.messages WHERE {where} AND sequence_nr <= ?", write_cl
        )
        # The repairs table is optional (a schema created by hand before it
        # existed): without it, repairs are only logged and counted.
        repair_cols = "persistence_id, sequence_nr, dropped_writer, kept_writer, detected_at"
        self.record_repair: Any = None
        self.all_repairs: Any = None
        self.repairs_of: Any = None
        try:
            self.record_repair = prepare(
                f"INSERT INTO {ks}.repairs ({repair_cols}) VALUES (?, ?, ?, ?, ?)", write_cl
            )
            self.all_repairs = prepare(f"SELECT {repair_cols} FROM {ks}.repairs", read_cl)
            self.repairs_of = prepare(
                f"SELECT {repair_cols} FROM {ks}.repairs WHERE persistence_id = ?", read_cl
            )
        except InvalidRequest:  # unconfigured table
            _log.warning("cassandra journal: no table %s.repairs; repairs are only logged", ks)
        self.tags: TagStatements | None = None
        try:
            self.tags = TagStatements(session, settings)
        except InvalidRequest:  # unconfigured tables: tagged writes and id listing refused
            _log.warning("cassandra journal: no tag tables in %s; tagged writes are refused", ks)
        self.fence: OwnershipFence | None = None
        if settings.fencing == "epoch":
            self.fence = OwnershipFence(session, settings, send, clock)
