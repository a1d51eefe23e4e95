"""Setting values by kind: parsed from TOML values and from text, rendered for the docs.

A setting's kind follows from its annotation (:func:`kind_of`). TOML values
(and typed flags) are checked as they are; text (environment variables and
string flags) is parsed. A kind raises :class:`BadValue` with the reason.
"""

from __future__ import annotations

import enum
import math
import os
import types
from collections.abc import Mapping
from pathlib import PurePath
from typing import Literal, Union, get_args, get_origin

_TRUE = frozenset({"true", "yes", "on", "1"})
_FALSE = frozenset({"false", "no", "off", "0"})
_NONE = frozenset({"", "none"})


class BadValue(Exception):
    """A value that does not fit its setting's kind; the message is the reason."""


def _got(value: object) -> str:
    return f"{type(value).__name__} {value!r}"


class Kind:
    """How one type of setting is parsed, checked and written."""

    name = ""
    """The type as the reference doc names it."""

    def from_toml(self, value: object) -> object:
        """Check a value of a TOML document (or a typed flag) and convert it."""
        raise NotImplementedError

    def from_text(self, text: str) -> object:
        """Parse an environment variable or a string flag."""
        return self.from_toml(text)

    def render(self, value: object) -> str:
        """``value`` as it would be written in a TOML file."""
        return _toml(value)


def _toml(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, enum.Enum):
        return _toml(value.value)
    if isinstance(value, str | PurePath):
        return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, tuple | list):
        return "[" + ", ".join(_toml(item) for item in value) + "]"
    if isinstance(value, frozenset | set):
        return _toml(sorted(value))
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{key} = {_toml(item)}" for key, item in value.items()) + "}"
    return repr(value)


class BoolKind(Kind):
    name = "bool"

    def from_toml(self, value: object) -> object:
        if isinstance(value, bool):
            return value
        raise BadValue(f"expected true or false, got {_got(value)}")

    def from_text(self, text: str) -> object:
        word = text.strip().lower()
        if word in _TRUE:
            return True
        if word in _FALSE:
            return False
        raise BadValue(f"expected true or false (or yes/no, on/off, 1/0), got {text!r}")


class IntKind(Kind):
    name = "int"

    def from_toml(self, value: object) -> object:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise BadValue(f"expected an integer, got {_got(value)}")

    def from_text(self, text: str) -> object:
        try:
            return int(text.strip())
        except ValueError:
            raise BadValue(f"expected an integer, got {text!r}") from None


class FloatKind(Kind):
    name = "float"

    def from_toml(self, value: object) -> object:
        if isinstance(value, int | float) and not isinstance(value, bool):
            if not math.isfinite(value):
                raise BadValue(f"expected a finite number, got {value!r}")
            return float(value)
        raise BadValue(f"expected a number, got {_got(value)}")

    def from_text(self, text: str) -> object:
        try:
            number = float(text.strip())
        except ValueError:
            raise BadValue(f"expected a number, got {text!r}") from None
        return self.from_toml(number)


class StrKind(Kind):
    name = "str"

    def from_toml(self, value: object) -> object:
        if isinstance(value, str):
            return value
        raise BadValue(f"expected a string, got {_got(value)}")


class PathKind(StrKind):
    name = "path"

    def from_toml(self, value: object) -> object:
        if isinstance(value, os.PathLike):
            return os.fspath(value)
        return super().from_toml(value)


class BytesKind(Kind):
    """A secret given as text (UTF-8); values are never quoted in reasons."""

    name = "str (secret)"

    def from_toml(self, value: object) -> object:
        if isinstance(value, str):
            return value.encode()
        raise BadValue(f"expected a string, got a {type(value).__name__}")

    def render(self, value: object) -> str:
        return "(hidden)"


class ScalarKind(Kind):
    """A string or an integer (replication maps): text of digits is an integer."""

    name = "str or int"

    def from_toml(self, value: object) -> object:
        if isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool)):
            return value
        raise BadValue(f"expected a string or an integer, got {_got(value)}")

    def from_text(self, text: str) -> object:
        text = text.strip()
        return int(text) if text.isdigit() else text


class ChoiceKind(Kind):
    """One of fixed words (a ``Literal`` or an ``Enum`` by value), matched ignoring case."""

    def __init__(self, words: tuple[str, ...], enum_type: type[enum.Enum] | None = None) -> None:
        self.words = words
        self.enum_type = enum_type
        self.name = "one of " + ", ".join(words)

    def from_toml(self, value: object) -> object:
        if isinstance(value, enum.Enum) and self.enum_type is not None:
            value = value.value
        if isinstance(value, str):
            for word in self.words:
                if word.lower() == value.strip().lower():
                    return word if self.enum_type is None else self.enum_type(word)
        raise BadValue(f"expected one of {', '.join(self.words)}, got {value!r}")


class SeqKind(Kind):
    """Strings: a TOML array, or comma-separated text (``a,b,c``)."""

    def __init__(self, container: type[tuple[str, ...]] | type[frozenset[str]]) -> None:
        self.container = container
        self.name = "list of str" if container is tuple else "set of str"

    def from_toml(self, value: object) -> object:
        if isinstance(value, list | tuple | frozenset | set) and all(
            isinstance(item, str) for item in value
        ):
            return self.container(value)
        raise BadValue(f"expected an array of strings, got {_got(value)}")

    def from_text(self, text: str) -> object:
        return self.container(item.strip() for item in text.split(",") if item.strip())


class MapKind(Kind):
    """A table of string keys: a TOML table, or ``key=value,key=value`` text."""

    def __init__(self, values: Kind) -> None:
        self.values = values
        self.name = f"table of {values.name}"

    def from_toml(self, value: object) -> object:
        if not isinstance(value, Mapping):
            raise BadValue(f"expected a table, got {_got(value)}")
        out: dict[str, object] = {}
        for key, item in value.items():
            try:
                out[str(key)] = self.values.from_toml(item)
            except BadValue as error:
                raise BadValue(f"{key}: {error}") from None
        return out

    def from_text(self, text: str) -> object:
        out: dict[str, object] = {}
        for pair in filter(None, (part.strip() for part in text.split(","))):
            key, eq, item = pair.partition("=")
            if not eq or not key.strip():
                raise BadValue(f"expected key=value pairs separated by commas, got {pair!r}")
            try:
                out[key.strip()] = self.values.from_text(item)
            except BadValue as error:
                raise BadValue(f"{key.strip()}: {error}") from None
        return out


class OptionalKind(Kind):
    """A kind or nothing: ``""`` (and ``"none"``, unless a string is expected) unsets it."""

    def __init__(self, inner: Kind) -> None:
        self.inner = inner
        self.name = f"{inner.name}, or empty for none"

    def _is_none(self, value: object) -> bool:
        if not isinstance(value, str):
            return False
        word = value.strip().lower()
        return word == "" or (word in _NONE and not isinstance(self.inner, StrKind | BytesKind))

    def from_toml(self, value: object) -> object:
        return None if self._is_none(value) else self.inner.from_toml(value)

    def from_text(self, text: str) -> object:
        return None if self._is_none(text) else self.inner.from_text(text)

    def render(self, value: object) -> str:
        return '""' if value is None else self.inner.render(value)


_PATHS = (str, PurePath, os.PathLike)


def _pathlike(tp: object) -> bool:
    return (
        tp in _PATHS
        or get_origin(tp) is os.PathLike
        or (isinstance(tp, type) and issubclass(tp, PurePath))
    )


def kind_of(tp: object) -> Kind:
    """The kind of a setting annotated ``tp``; ``TypeError`` if it has none."""
    simple: dict[object, Kind] = {
        bool: BoolKind(),
        int: IntKind(),
        float: FloatKind(),
        str: StrKind(),
        bytes: BytesKind(),
    }
    if tp in simple:
        return simple[tp]
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return ChoiceKind(tuple(str(member.value) for member in tp), tp)
    origin, args = get_origin(tp), get_args(tp)
    if origin is Literal and all(isinstance(arg, str) for arg in args):
        return ChoiceKind(tuple(args))
    if origin in (Union, types.UnionType):
        present = tuple(arg for arg in args if arg is not type(None))
        if len(present) < len(args):
            inner = present[0] if len(present) == 1 else Union[present]  # noqa: UP007
            return OptionalKind(kind_of(inner))
        if all(_pathlike(arg) for arg in present):
            return PathKind()
        if set(present) == {str, int}:
            return ScalarKind()
    if _pathlike(tp):
        return PathKind()
    if origin is tuple and args == (str, ...):
        return SeqKind(tuple)
    if origin is frozenset and args == (str,):
        return SeqKind(frozenset)
    if origin in (Mapping, dict) and args and args[0] is str:
        return MapKind(kind_of(args[1]))
    raise TypeError(f"no configuration kind for {tp!r}: exclude the field or teach kind_of")
