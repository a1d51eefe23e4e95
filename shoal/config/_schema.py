"""The settings a node can be configured with, derived from the settings dataclasses.

Every field of every section of :class:`NodeConfig` is a setting named
``section.field`` (``persistence.sqlite.path``, ``remote.tls.cert_file``),
with its kind taken from the field's annotation and its documentation from
its attribute docstring. Fields that cannot come from text (objects,
callables, clocks, random sources) are listed in ``_EXCLUDED`` with the
reason; a field whose annotation has no kind and is not listed fails the
schema (and the tests), so a new field is a deliberate choice. A few fields
are named under ``node`` (``_ALIASES``), where an operator looks for them.
A field declared with ``repr=False`` is a secret: read from the environment
(or a file, ``_SECRET_FILES``) only, never shown.
"""

from __future__ import annotations

import dataclasses
import functools
import sys
import types
from dataclasses import dataclass, fields, is_dataclass
from typing import Union, get_args, get_origin

from shoal.cluster import ClusterSettings
from shoal.management import ManagementSettings
from shoal.remote import RemoteSettings
from shoal.runtime import Settings

from ._sections import NodeConfig, NodeSettings
from ._values import Kind, kind_of

ENV_PREFIX = "SHOAL_"

FOREIGN_ENV_PREFIXES = ("SHOAL_CASSANDRA_",)
"""``SHOAL_`` variables that are not settings (the test and benchmark tools'
Cassandra launcher) and are ignored."""

_EXCLUDED: dict[tuple[type, str], str] = {
    (Settings, "guardian_strategy"): "a SupervisorStrategy object",
    (Settings, "clock"): "an injection point (tests pass a ManualClock)",
    (Settings, "rng"): "an injection point (tests fix a seed)",
    (Settings, "messages"): "classes, registered by the application's code",
    (RemoteSettings, "rng"): "an injection point (tests fix a seed)",
    (RemoteSettings, "uid"): "fixed by tests only",
    (RemoteSettings, "transport"): "an injection point (tests pass a MemoryNetwork)",
}

# (name under [node], the section the field lives in, its class, the field)
_ALIASES: tuple[tuple[str, str, type, str], ...] = (
    ("host", "remote", RemoteSettings, "host"),
    ("port", "remote", RemoteSettings, "port"),
    ("http_port", "management", ManagementSettings, "port"),
    ("seeds", "cluster", ClusterSettings, "seed_nodes"),
    ("roles", "cluster", ClusterSettings, "roles"),
    ("secret", "remote", RemoteSettings, "cluster_secret"),
)
_MOVED = frozenset((cls, name) for _, _, cls, name in _ALIASES)

SECRET_FILES = {"node.secret_file": "node.secret", "management.token_file": "management.token"}
"""A file setting and the secret it holds."""


@dataclass(frozen=True, slots=True)
class Leaf:
    """One setting: where it is read from and where its value goes."""

    key: str
    """``section.field``, as in a TOML file and a flag."""
    path: tuple[str, ...]
    """Attribute path of its value in a ``NodeConfig``."""
    kind: Kind
    owner: type
    """The dataclass that declares the field."""
    name: str
    """The field's name in ``owner``."""
    secret: bool

    @property
    def env(self) -> str:
        """Its environment variable."""
        return ENV_PREFIX + self.key.replace(".", "_").upper()


@dataclass(frozen=True, slots=True)
class Section:
    """A table of settings: a dataclass inside ``NodeConfig``."""

    key: str
    path: tuple[str, ...]
    cls: type
    optional: bool
    """``None`` unless one of its settings is given (``remote.tls``)."""


@dataclass(frozen=True, slots=True)
class Schema:
    leaves: dict[str, Leaf]
    sections: dict[str, Section]
    env: dict[str, Leaf]
    excluded: tuple[tuple[str, str], ...]
    """``(section.field, why)`` of every field that is set in code only."""


def _annotation(cls: type, field: dataclasses.Field[object]) -> object:
    if not isinstance(field.type, str):
        return field.type
    # The settings modules use postponed annotations; evaluate the ones of
    # configurable fields in their module (names imported for type checking
    # only belong to excluded fields, which are never evaluated).
    return eval(field.type, vars(sys.modules[cls.__module__]))


def _section_class(tp: object) -> tuple[type, bool] | None:
    if isinstance(tp, type) and is_dataclass(tp):
        return tp, False
    if get_origin(tp) in (Union, types.UnionType):
        args = get_args(tp)
        present = [arg for arg in args if arg is not type(None)]
        if len(present) == 1 < len(args) and isinstance(present[0], type):
            return (present[0], True) if is_dataclass(present[0]) else None
    return None


def _walk(schema: Schema, cls: type, key: str, path: tuple[str, ...]) -> None:
    """Add the settings of ``cls``, then its sections (so each section is one block)."""
    sections: list[Section] = []
    for field in fields(cls):
        name = f"{key}.{field.name}" if key else field.name
        if (cls, field.name) in _EXCLUDED or (cls, field.name) in _MOVED:
            continue
        tp = _annotation(cls, field)
        nested = _section_class(tp)
        if nested is not None:
            sections.append(Section(name, (*path, field.name), *nested))
        else:
            schema.leaves[name] = Leaf(
                name, (*path, field.name), kind_of(tp), cls, field.name, not field.repr
            )
        if cls is NodeSettings and field is fields(cls)[0]:
            _aliases(schema)
    for sub in sections:
        schema.sections[sub.key] = sub
        _walk(schema, sub.cls, sub.key, sub.path)


def _aliases(schema: Schema) -> None:
    for alias, section, cls, name in _ALIASES:
        field = next(f for f in fields(cls) if f.name == name)
        schema.leaves[f"node.{alias}"] = Leaf(
            f"node.{alias}",
            (section, name),
            kind_of(_annotation(cls, field)),
            cls,
            name,
            not field.repr,
        )


@functools.cache
def schema() -> Schema:
    """Every setting of a node, in the order of the reference."""
    result = Schema({}, {}, {}, ())
    _walk(result, NodeConfig, "", ())
    excluded = []
    for (cls, name), why in _EXCLUDED.items():
        section = next(s for s in result.sections.values() if s.cls is cls)
        excluded.append((f"{section.key}.{name}", why))
    envs = {leaf.env: leaf for leaf in result.leaves.values()}
    if len(envs) != len(result.leaves):  # pragma: no cover - a naming mistake in the schema
        raise RuntimeError("two settings share an environment variable")
    return Schema(result.leaves, result.sections, envs, tuple(excluded))
