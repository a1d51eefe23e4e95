"""The reachability table: which member observes which other member as unreachable."""

from __future__ import annotations

import enum
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass, field

from shoal.runtime import UniqueAddress


class ReachabilityStatus(enum.Enum):
    """What one observer says about one subject."""

    REACHABLE = 0
    UNREACHABLE = 1
    TERMINATED = 2
    """The subject is known to be gone (e.g. replaced by a new incarnation); final."""


@dataclass(frozen=True, slots=True)
class Record:
    """``observer`` says ``subject`` is ``status``, as of the observer's ``version``."""

    observer: UniqueAddress
    subject: UniqueAddress
    status: ReachabilityStatus
    version: int


def _rows_key(rows: tuple[Record, ...]) -> tuple[tuple[UniqueAddress, int, int], ...]:
    return tuple((r.subject, r.status.value, r.version) for r in rows)


@dataclass(frozen=True, slots=True)
class Reachability:
    """Observations of unreachability, per observer, each observer's rows versioned. Frozen.

    Only an observer changes its own rows, and each change bumps its
    version, so merging takes, per observer, the rows of the higher
    version: a lattice. A subject is unreachable while *any* observer
    records it Unreachable (or Terminated), and reachable again when *all*
    do not. When an observer's rows would all say Reachable they are
    dropped, keeping only its version (Akka's ``Reachability``); the table
    stays as small as the set of current problems.

    ``records`` is sorted by (observer, subject); ``versions`` must not be
    mutated.
    """

    records: tuple[Record, ...] = ()
    versions: Mapping[UniqueAddress, int] = field(default_factory=dict)

    def _rows(self, observer: UniqueAddress) -> tuple[Record, ...]:
        return tuple(r for r in self.records if r.observer == observer)

    def _change(
        self, observer: UniqueAddress, subject: UniqueAddress, status: ReachabilityStatus
    ) -> Reachability:
        rows = self._rows(observer)
        old = next((r for r in rows if r.subject == subject), None)
        if old is None and status is ReachabilityStatus.REACHABLE:
            return self
        if old is not None and old.status in (status, ReachabilityStatus.TERMINATED):
            return self
        version = self.versions.get(observer, 0) + 1
        versions = {**self.versions, observer: version}
        others = [r for r in rows if r.subject != subject]
        if status is ReachabilityStatus.REACHABLE and all(
            r.status is ReachabilityStatus.REACHABLE for r in others
        ):
            new_rows: list[Record] = []
        else:
            new_rows = sorted(
                [*others, Record(observer, subject, status, version)], key=lambda r: r.subject
            )
        records = [r for r in self.records if r.observer != observer]
        records.extend(new_rows)
        records.sort(key=lambda r: (r.observer, r.subject))
        return Reachability(tuple(records), versions)

    def unreachable(self, observer: UniqueAddress, subject: UniqueAddress) -> Reachability:
        """``observer`` now finds ``subject`` unreachable."""
        return self._change(observer, subject, ReachabilityStatus.UNREACHABLE)

    def reachable(self, observer: UniqueAddress, subject: UniqueAddress) -> Reachability:
        """``observer`` now finds ``subject`` reachable again."""
        return self._change(observer, subject, ReachabilityStatus.REACHABLE)

    def terminated(self, observer: UniqueAddress, subject: UniqueAddress) -> Reachability:
        """``observer`` knows ``subject`` is gone for good."""
        return self._change(observer, subject, ReachabilityStatus.TERMINATED)

    def merge(self, other: Reachability, removed: Collection[UniqueAddress]) -> Reachability:
        """Per observer, the rows of the higher version; nothing of ``removed`` nodes.

        ``removed`` (the merged tombstones) filters observers and subjects
        alike. Equal versions carry equal rows when only observers write
        their rows; should they not, the larger rows win, so merging stays
        commutative even then.
        """
        if other is self or (not other.versions and not removed):
            return self
        versions: dict[UniqueAddress, int] = {}
        records: list[Record] = []
        for observer in self.versions.keys() | other.versions.keys():
            if observer in removed:
                continue
            mine, theirs = self.versions.get(observer, 0), other.versions.get(observer, 0)
            versions[observer] = max(mine, theirs)
            if mine != theirs:
                rows = self._rows(observer) if mine > theirs else other._rows(observer)
            else:
                rows = max(self._rows(observer), other._rows(observer), key=_rows_key)
            records.extend(r for r in rows if r.subject not in removed)
        records.sort(key=lambda r: (r.observer, r.subject))
        return Reachability(tuple(records), versions)

    def remove(self, nodes: Collection[UniqueAddress]) -> Reachability:
        """The table without any record or version of ``nodes`` (removed members)."""
        if not nodes:
            return self
        return Reachability(
            tuple(r for r in self.records if r.observer not in nodes and r.subject not in nodes),
            {o: v for o, v in self.versions.items() if o not in nodes},
        )

    def without_observers(self, observers: Collection[UniqueAddress]) -> Reachability:
        """The records of every observer but ``observers`` (e.g. members that are Down)."""
        if not observers:
            return self
        return Reachability(
            tuple(r for r in self.records if r.observer not in observers), self.versions
        )

    def status(self, subject: UniqueAddress) -> ReachabilityStatus:
        """Terminated if any observer says so, else Unreachable if any does, else Reachable."""
        result = ReachabilityStatus.REACHABLE
        for r in self.records:
            if r.subject == subject:
                if r.status is ReachabilityStatus.TERMINATED:
                    return r.status
                if r.status is ReachabilityStatus.UNREACHABLE:
                    result = r.status
        return result

    def is_reachable(self, subject: UniqueAddress) -> bool:
        """Whether no observer records ``subject`` as Unreachable or Terminated."""
        return self.status(subject) is ReachabilityStatus.REACHABLE

    @property
    def is_all_reachable(self) -> bool:
        """Whether nobody is unreachable to anybody."""
        return all(r.status is ReachabilityStatus.REACHABLE for r in self.records)

    def all_unreachable(self) -> frozenset[UniqueAddress]:
        """Every subject some observer records as Unreachable or Terminated."""
        return frozenset(
            r.subject for r in self.records if r.status is not ReachabilityStatus.REACHABLE
        )

    def observers_of(self, subject: UniqueAddress) -> frozenset[UniqueAddress]:
        """The observers that record ``subject`` as Unreachable or Terminated."""
        return frozenset(
            r.observer
            for r in self.records
            if r.subject == subject and r.status is not ReachabilityStatus.REACHABLE
        )

    def unreachable_records(self) -> Iterator[Record]:
        """The records saying Unreachable or Terminated."""
        return (r for r in self.records if r.status is not ReachabilityStatus.REACHABLE)
