"""Event-sourced persistence: ``PersistentActor``, the journal and snapshot-store API, plugins.

Plugins: memory (tests), SQLite (the embedded default) and Cassandra. Events
and snapshots are stored as the runtime serialization registry's
``(serializer_id, manifest, payload)``; nothing is ever pickled.

The Cassandra plugins (``CassandraJournal``, ``CassandraSession``,
``CassandraSnapshotStore``) are loaded on first use, so importing this
package does not import the Cassandra driver; ``CassandraSettings`` never
needs it. The package's logger is ``shoal.persistence``.
:mod:`shoal.persistence.testing` holds a journal and a snapshot store whose
faults (fail, reject, hold, delay) tests inject.
"""

import importlib
from typing import TYPE_CHECKING

from ._actor import PersistentActor as PersistentActor
from ._cassandra_settings import CassandraSettings as CassandraSettings
from ._codec import decode_event as decode_event
from ._codec import decode_snapshot as decode_snapshot
from ._errors import EventDecodeError as EventDecodeError
from ._errors import EventRejectedError as EventRejectedError
from ._errors import JournalCorruptionError as JournalCorruptionError
from ._errors import JournalError as JournalError
from ._errors import JournalReadError as JournalReadError
from ._errors import JournalWriteError as JournalWriteError
from ._errors import OwnershipLostError as OwnershipLostError
from ._errors import PersistenceError as PersistenceError
from ._errors import PluginClosedError as PluginClosedError
from ._errors import RecoveryError as RecoveryError
from ._errors import SequenceConflictError as SequenceConflictError
from ._errors import SnapshotDecodeError as SnapshotDecodeError
from ._errors import SnapshotStoreError as SnapshotStoreError
from ._extension import Persistence as Persistence
from ._extension import PersistenceSettings as PersistenceSettings
from ._journal import MAX_SEQUENCE_NR as MAX_SEQUENCE_NR
from ._journal import Journal as Journal
from ._journal import PersistentRepr as PersistentRepr
from ._memory import MemoryJournal as MemoryJournal
from ._memory import MemorySnapshotStore as MemorySnapshotStore
from ._projection import Projection as Projection
from ._query import DEFAULT_POLL_INTERVAL as DEFAULT_POLL_INTERVAL
from ._query import EventEnvelope as EventEnvelope
from ._query import JournalQueries as JournalQueries
from ._query import Offset as Offset
from ._replay_filter import Repair as Repair
from ._snapshot import SnapshotMetadata as SnapshotMetadata
from ._snapshot import SnapshotRecord as SnapshotRecord
from ._snapshot import SnapshotSelectionCriteria as SnapshotSelectionCriteria
from ._snapshot import SnapshotStore as SnapshotStore
from ._sqlite import SqliteJournal as SqliteJournal
from ._sqlite import SqliteSnapshotStore as SqliteSnapshotStore
from ._sqlite_db import SqliteSettings as SqliteSettings

if TYPE_CHECKING:
    from ._cassandra import CassandraJournal as CassandraJournal
    from ._cassandra_session import CassandraSession as CassandraSession
    from ._cassandra_snapshots import CassandraSnapshotStore as CassandraSnapshotStore

__all__ = [
    # persistent actors
    "PersistentActor",
    "Persistence",
    "PersistenceSettings",
    # plugin API
    "MAX_SEQUENCE_NR",
    "Journal",
    "PersistentRepr",
    "SnapshotMetadata",
    "SnapshotRecord",
    "SnapshotSelectionCriteria",
    "SnapshotStore",
    "decode_event",
    "decode_snapshot",
    # queries
    "DEFAULT_POLL_INTERVAL",
    "JournalQueries",
    "EventEnvelope",
    "Offset",
    "Projection",
    # plugins
    "MemoryJournal",
    "MemorySnapshotStore",
    "SqliteJournal",
    "SqliteSettings",
    "SqliteSnapshotStore",
    "CassandraJournal",
    "CassandraSession",
    "CassandraSettings",
    "CassandraSnapshotStore",
    "Repair",
    # errors
    "PersistenceError",
    "PluginClosedError",
    "EventRejectedError",
    "RecoveryError",
    "JournalError",
    "JournalWriteError",
    "SequenceConflictError",
    "OwnershipLostError",
    "JournalReadError",
    "JournalCorruptionError",
    "EventDecodeError",
    "SnapshotStoreError",
    "SnapshotDecodeError",
]

# The Cassandra plugins import the driver (slow to import, optional to install):
# they are imported when first named, e.g. ``from shoal.persistence import CassandraJournal``.
_LAZY = {
    "CassandraJournal": "._cassandra",
    "CassandraSession": "._cassandra_session",
    "CassandraSnapshotStore": "._cassandra_snapshots",
}


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
