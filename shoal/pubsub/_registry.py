"""The topic registry's pure core: versioned per-node buckets, deltas and their merge.

Each node owns one :class:`Bucket` of its own registrations: a key (a topic,
or an actor path registered for ``send``) maps to an :class:`Entry`, the
number of local subscribers per group (``""`` for subscribers outside any
group). Every change gives the changed key the bucket's next version, so
"what a peer has not seen" is simply "the entries above the version it
holds" (:meth:`Bucket.delta_since`). A removed key stays as a tombstone (an
entry without groups) until :meth:`Bucket.prune_tombstones`; a peer whose
version is older than the newest pruned tombstone gets the whole live
bucket instead (``Delta.full``).

Peers' buckets are copies (:class:`Registry`), replaced, never merged, when
their owner's incarnation changes, and dropped when the owner leaves the
cluster. Unlike Akka, a node sends its own bucket only (a delta is refused
unless its sender owns the bucket), so no peer can speak for another; the
price is that a lost delta is repaired by a direct exchange with the owner
(the periodic status round) rather than through any peer.

No event loop, no clock, no I/O: the mediator (:mod:`._mediator`) wraps it.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Final

from shoal.runtime import Address, UniqueAddress

Groups = tuple[tuple[str, int], ...]
"""Subscribers per group, sorted by group; ``""`` is the group of ungrouped subscribers."""

NO_GROUPS: Final[Groups] = ()


class KeyKind(enum.Enum):
    """What a registry key names."""

    TOPIC = 1
    """A topic of ``publish``."""
    PATH = 2
    """An actor path registered for ``send`` and ``send_to_all``."""


Key = tuple[KeyKind, str]


@dataclass(frozen=True, slots=True)
class Entry:
    """One key of a bucket: the version of its last change, and its subscribers per group."""

    version: int
    groups: Groups = NO_GROUPS

    @property
    def removed(self) -> bool:
        """Whether the key was removed at :attr:`version` (a tombstone)."""
        return not self.groups

    def count(self) -> int:
        """Subscribers of every group."""
        return sum(n for _, n in self.groups)


@dataclass(frozen=True, slots=True)
class Delta:
    """The entries of ``owner``'s bucket changed after ``from_version``, oldest first.

    They reach ``to_version``; ``bucket_version`` is the bucket's version when
    the delta was made (more follows when it is larger than ``to_version``).
    A ``full`` delta carries the whole live bucket up to ``to_version``.
    """

    owner: UniqueAddress
    from_version: int
    to_version: int
    bucket_version: int
    full: bool
    entries: tuple[tuple[Key, Entry], ...]


class Merge(enum.Enum):
    """What :meth:`Registry.merge` did with a delta."""

    APPLIED = "applied"
    """The copy now holds the delta's entries."""
    STALE = "stale"
    """The copy already held everything in it."""
    GAP = "gap"
    """The copy is older than the delta's start: the owner must send from the copy's version."""
    NEW_INCARNATION = "new-incarnation"
    """Applied to a fresh copy: the owner's address runs a new incarnation, whose
    bucket never mixes with the old one (dropped)."""


class Bucket:
    """The registrations of one node: this node's own, or a copy of a peer's.

    Entries are kept in version order (a changed key moves to the end), so a
    delta walks only the entries it sends. Not thread-safe; plain data.
    """

    __slots__ = ("entries", "owner", "pruned_through", "version")

    def __init__(self, owner: UniqueAddress) -> None:
        self.owner = owner
        self.version = 0
        self.entries: dict[Key, Entry] = {}
        self.pruned_through = 0
        """The version of the newest tombstone pruned (own bucket only)."""

    def put(self, key: Key, groups: Mapping[str, int]) -> Entry:
        """Record ``key``'s subscribers per group (none: removed) at the next version."""
        self.version += 1
        entry = Entry(self.version, tuple(sorted((g, n) for g, n in groups.items() if n > 0)))
        self.entries.pop(key, None)
        self.entries[key] = entry
        return entry

    def live(self) -> Iterator[tuple[Key, Entry]]:
        """The keys that have subscribers, in version order."""
        return ((k, e) for k, e in self.entries.items() if not e.removed)

    def delta_since(self, since: int, max_entries: int) -> Delta | None:
        """What a peer holding version ``since`` of this bucket lacks; ``None`` if nothing.

        At most ``max_entries`` entries, oldest first, unless the peer is older
        than the newest pruned tombstone: then the whole live bucket, ``full``.
        A ``since`` above this bucket's version (a peer that saw a previous
        life of this counter) is answered with the full bucket too.
        """
        if since == self.version:
            return None
        if since < self.pruned_through or since > self.version:
            entries = tuple(self.live())
            return Delta(self.owner, 0, self.version, self.version, True, entries)
        newer: list[tuple[Key, Entry]] = []
        for key in reversed(self.entries):
            entry = self.entries[key]
            if entry.version <= since:
                break
            newer.append((key, entry))
        newer.reverse()
        chunk = tuple(newer[:max_entries])
        return Delta(self.owner, since, chunk[-1][1].version, self.version, False, chunk)

    def prune_tombstones(self, through: int) -> int:
        """Forget tombstones of version ``through`` or older; returns how many."""
        gone = [k for k, e in self.entries.items() if e.removed and e.version <= through]
        for key in gone:
            del self.entries[key]
        if gone:
            self.pruned_through = max(self.pruned_through, through)
        return len(gone)


class Registry:
    """What one node knows: its own bucket, copies of its peers', and an index by key.

    ``nodes(key)`` answers "which nodes have subscribers of this key, in
    which groups" in one dict lookup, for every publish.
    """

    __slots__ = ("_index", "own", "peers")

    def __init__(self, self_node: UniqueAddress) -> None:
        self.own = Bucket(self_node)
        self.peers: dict[Address, Bucket] = {}
        self._index: dict[Key, dict[Address, Groups]] = {}

    @property
    def self_node(self) -> UniqueAddress:
        return self.own.owner

    # -- this node's registrations ------------------------------------------------------

    def put_local(self, key: Key, groups: Mapping[str, int]) -> Entry:
        """Change this node's entry for ``key`` (see :meth:`Bucket.put`)."""
        entry = self.own.put(key, groups)
        self._index_set(self.self_node.address, key, entry)
        return entry

    # -- peers' buckets -----------------------------------------------------------------

    def known_version(self, owner: UniqueAddress) -> int:
        """The version held of ``owner``'s bucket (0 for none, or another incarnation)."""
        bucket = self.peers.get(owner.address)
        return bucket.version if bucket is not None and bucket.owner == owner else 0

    def merge(self, delta: Delta) -> Merge:
        """Apply a delta of a peer's bucket (its sender was checked to be the owner)."""
        owner = delta.owner
        if owner.address == self.self_node.address:
            raise ValueError(f"a delta of this node's own bucket ({owner})")
        bucket = self.peers.get(owner.address)
        result = Merge.APPLIED
        if bucket is not None and bucket.owner.uid != owner.uid:
            # The caller checked the sender is a member: a new uid is a restart.
            self.drop(owner.address)
            bucket = None
            result = Merge.NEW_INCARNATION
        if bucket is None:
            bucket = self.peers[owner.address] = Bucket(owner)
        if delta.full:
            if delta.to_version <= bucket.version:
                return Merge.STALE
            for key in list(bucket.entries):
                self._index_remove(owner.address, key)
            bucket.entries.clear()
            for key, entry in delta.entries:
                self._apply(bucket, key, entry)
            bucket.version = delta.to_version
            return result
        if delta.from_version > bucket.version:
            return Merge.GAP
        if delta.to_version <= bucket.version:
            return Merge.STALE
        for key, entry in delta.entries:
            if entry.version > bucket.version:
                self._apply(bucket, key, entry)
        bucket.version = delta.to_version
        return result

    def _apply(self, bucket: Bucket, key: Key, entry: Entry) -> None:
        address = bucket.owner.address
        if entry.removed:
            bucket.entries.pop(key, None)
            self._index_remove(address, key)
        else:
            bucket.entries.pop(key, None)
            bucket.entries[key] = entry
            self._index_set(address, key, entry)

    def drop(self, address: Address) -> Bucket | None:
        """Forget the bucket of the node at ``address`` (it left, or restarted)."""
        bucket = self.peers.pop(address, None)
        if bucket is not None:
            for key in bucket.entries:
                self._index_remove(address, key)
        return bucket

    def prune(self, members: Iterable[UniqueAddress]) -> list[UniqueAddress]:
        """Drop the buckets of every incarnation not among ``members``; returns them."""
        keep = set(members)
        gone = [b.owner for b in self.peers.values() if b.owner not in keep]
        for owner in gone:
            self.drop(owner.address)
        return gone

    # -- reading ------------------------------------------------------------------------

    def nodes(self, key: Key) -> Mapping[Address, Groups]:
        """The nodes with subscribers of ``key`` (this one included), with their groups."""
        return self._index.get(key, _EMPTY)

    def keys(self, kind: KeyKind) -> Iterator[str]:
        """Every key of ``kind`` some node has subscribers of."""
        return (name for k, name in self._index if k is kind)

    def _index_set(self, address: Address, key: Key, entry: Entry) -> None:
        if entry.removed:
            self._index_remove(address, key)
            return
        nodes = self._index.get(key)
        if nodes is None:
            nodes = self._index[key] = {}
        nodes[address] = entry.groups

    def _index_remove(self, address: Address, key: Key) -> None:
        nodes = self._index.get(key)
        if nodes is not None and nodes.pop(address, None) is not None and not nodes:
            del self._index[key]


_EMPTY: Final[Mapping[Address, Groups]] = {}
