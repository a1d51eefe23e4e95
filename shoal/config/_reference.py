"""The reference of every setting, from the schema and the dataclasses' docstrings."""

from __future__ import annotations

from dataclasses import MISSING, dataclass, fields
from typing import NamedTuple

from ._docstrings import attribute_docs
from ._schema import Leaf, schema
from ._sections import NodeConfig


@dataclass(frozen=True, slots=True)
class Setting:
    """One setting as ``docs/configuration.md`` shows it."""

    key: str
    """``section.key``: the TOML table and key, and the flag's name."""
    type: str
    """Its type, as written in a file (``int``, ``list of str``, ``one of text, json``)."""
    default: str
    """The production default, written as in a TOML file."""
    testing: str
    """The value of the ``testing`` preset."""
    env: str
    """Its environment variable."""
    field: str
    """Where the value lands: ``Class.field`` of a settings object."""
    doc: str
    """Its docstring (reStructuredText, as in the source)."""
    secret: bool
    """Only from the environment or a secret file; never shown."""


class Reference(NamedTuple):
    """Every setting, and the fields that are set in code only."""

    settings: tuple[Setting, ...]
    excluded: tuple[tuple[str, str], ...]
    """``(section.field, why)`` of the fields that cannot be configured from text."""


_UNSET = object()


def _value(config: NodeConfig, leaf: Leaf) -> object:
    value: object = config
    for name in leaf.path:
        if value is None:  # an optional section that is not set
            field = next(f for f in fields(leaf.owner) if f.name == leaf.name)
            if field.default is not MISSING:
                return field.default
            if field.default_factory is not MISSING:
                return field.default_factory()
            return _UNSET
        value = getattr(value, name)
    return value


def _render(leaf: Leaf, value: object) -> str:
    if value is _UNSET:  # a field without a default, in a section that is off by default
        return f"none; required in [{leaf.key.rpartition('.')[0]}]"
    return leaf.kind.render(value)


def reference() -> Reference:
    """Every setting of a node, section by section, with its defaults and documentation."""
    production, testing = NodeConfig(), NodeConfig.testing()
    rows = tuple(
        Setting(
            key=leaf.key,
            type=leaf.kind.name,
            default=_render(leaf, _value(production, leaf)),
            testing=_render(leaf, _value(testing, leaf)),
            env=leaf.env,
            field=f"{leaf.owner.__name__}.{leaf.name}",
            doc=attribute_docs(leaf.owner).get(leaf.name, ""),
            secret=leaf.secret,
        )
        for leaf in schema().leaves.values()
    )
    return Reference(rows, schema().excluded)
