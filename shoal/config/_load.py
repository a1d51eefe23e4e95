"""``load_config``: a preset, then a TOML file, then ``SHOAL_*`` variables, then flags."""

from __future__ import annotations

import difflib
import os
import re
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import MISSING, dataclass, fields, replace
from pathlib import Path
from typing import Any, cast

from ._errors import ConfigError
from ._schema import ENV_PREFIX, FOREIGN_ENV_PREFIXES, SECRET_FILES, Leaf, schema
from ._sections import NodeConfig
from ._values import BadValue

_PRESETS = {"production": NodeConfig, "testing": NodeConfig.testing}
_HIDDEN = "invalid value (not shown: it is a secret)"


@dataclass(frozen=True, slots=True)
class _Given:
    value: object
    key: str
    source: str


def load_config(
    file: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] = os.environ,
    flags: Mapping[str, object] | None = None,
    preset: str = "production",
) -> NodeConfig:
    """Read a node's configuration: ``preset``, then ``file``, then ``env``, then ``flags``.

    Each source overrides the ones before it, setting by setting:

    * ``preset``: ``"production"`` (``NodeConfig()``) or ``"testing"``
      (``NodeConfig.testing()``);
    * ``file``: a TOML file with one table per section (``[cluster]``,
      ``[persistence.sqlite]``);
    * ``env``: ``SHOAL_<SECTION>_<KEY>`` variables (``SHOAL_CLUSTER_GOSSIP_INTERVAL``,
      ``SHOAL_PERSISTENCE_SQLITE_PATH``); every other ``SHOAL_`` variable is an
      error, except the test tools' ``SHOAL_CASSANDRA_*``;
    * ``flags``: ``{"section.key": value}`` (``-`` may stand for ``_``); a
      string value is parsed like an environment variable, ``None`` means
      "not given" (an option left out), any other value is checked like a
      TOML value.

    Text is parsed by the setting's type: ``true``/``false`` (also
    ``yes``/``no``, ``on``/``off``, ``1``/``0``), numbers, comma-separated
    lists (``a,b``), ``key=value`` pairs (``a=1,b=2``), and an empty string
    for "none". Secrets (``node.secret``, ``management.token``) come from
    the environment or from the file named by ``node.secret_file`` /
    ``management.token_file`` only. The reference of every setting is
    ``docs/configuration.md``.

    Raises :class:`ConfigError` naming the setting and its source for an
    unknown section or setting, a value of the wrong type, a value the
    layer's own settings refuse, an unreadable or malformed file (with the
    line), or an unknown preset.
    """
    make = _PRESETS.get(preset)
    if make is None:
        raise ConfigError(
            f"unknown preset {preset!r}; use production or testing", [("preset", "argument")]
        )
    given: dict[tuple[str, ...], _Given] = {}
    if file is not None:
        source = f"file {os.fspath(file)}"
        for key, value in _flatten(_read_toml(Path(file)), ""):
            _put(given, _leaf(key, source), value, source, text=False)
    for name in sorted(env):
        if name.startswith(ENV_PREFIX) and not name.startswith(FOREIGN_ENV_PREFIXES):
            source = f"environment variable {name}"
            _put(given, _env_leaf(name), env[name], source, text=True)
    for name, value in (flags or {}).items():
        if value is None:  # an option left out on the command line
            continue
        key = name.replace("-", "_")
        source = f"flag {name}"
        _put(given, _leaf(key, source), value, source, text=isinstance(value, str))
    _read_secret_files(given)
    return cast(NodeConfig, _build(NodeConfig, make(), (), given))


def _put(
    given: dict[tuple[str, ...], _Given], leaf: Leaf, raw: object, source: str, *, text: bool
) -> None:
    if leaf.secret and not source.startswith("environment"):
        files = [file for file, secret in SECRET_FILES.items() if secret == leaf.key]
        raise ConfigError(
            f"a secret is never read from a file or a flag: set {leaf.env}"
            + (f" or {files[0]}" if files else ""),
            [(leaf.key, source)],
        )
    try:
        value = leaf.kind.from_text(raw) if text else leaf.kind.from_toml(raw)  # type: ignore[arg-type]
    except BadValue as error:
        raise ConfigError(_HIDDEN if leaf.secret else str(error), [(leaf.key, source)]) from None
    given[leaf.path] = _Given(value, leaf.key, source)


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_bytes().decode())
    except OSError as error:
        raise ConfigError(f"cannot read config file {path}: {error.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"config file {path} is not UTF-8 text") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"malformed TOML in config file {path}: {error}") from None


def _flatten(table: Mapping[str, Any], prefix: str) -> Iterator[tuple[str, object]]:
    known = schema()
    for name, value in table.items():
        key = f"{prefix}.{name}" if prefix else name
        if key in known.sections and isinstance(value, Mapping):
            yield from _flatten(value, key)
        else:
            yield key, value


def _leaf(key: str, source: str) -> Leaf:
    known = schema()
    leaf = known.leaves.get(key)
    if leaf is not None:
        return leaf
    if key in known.sections:
        reason = "is a section, not a setting: give it a table of settings"
    elif key.partition(".")[0] not in known.sections:
        top = [k for k in known.sections if "." not in k]
        reason = f"unknown section {key.partition('.')[0]!r}; the sections are {', '.join(top)}"
    else:
        reason = "unknown setting" + _suggest(key, list(known.leaves))
    raise ConfigError(reason, [(key, source)])


def _env_leaf(name: str) -> Leaf:
    known = schema()
    leaf = known.env.get(name)
    if leaf is not None:
        return leaf
    prefixes = [ENV_PREFIX + key.replace(".", "_").upper() + "_" for key in known.sections]
    if any(name.startswith(prefix) for prefix in prefixes):
        reason = "unknown setting" + _suggest(name, list(known.env))
    else:
        names = ", ".join(prefix for prefix in prefixes if prefix.count("_") == 2)
        reason = f"unknown section; settings are named {names}..."
    raise ConfigError(reason, [(name, "environment variable")])


def _suggest(word: str, candidates: list[str]) -> str:
    close = difflib.get_close_matches(word, candidates, n=1, cutoff=0.75)
    return f"; did you mean {close[0]}?" if close else ""


def _read_secret_files(given: dict[tuple[str, ...], _Given]) -> None:
    known = schema()
    for file_key, secret_key in SECRET_FILES.items():
        file = given.get(known.leaves[file_key].path)
        if file is None or file.value is None:
            continue
        secret = known.leaves[secret_key]
        if secret.path in given:
            other = given[secret.path]
            raise ConfigError(
                "the secret is given twice; give the file or the variable",
                [(file.key, file.source), (other.key, other.source)],
            )
        try:
            text = Path(cast(str, file.value)).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            reason = getattr(error, "strerror", None) or "not UTF-8 text"
            raise ConfigError(
                f"cannot read {file.value}: {reason}", [(file.key, file.source)]
            ) from None
        text = text.removesuffix("\n").removesuffix("\r")
        if not text.strip():
            raise ConfigError(f"{file.value} is empty", [(file.key, file.source)])
        given[secret.path] = _Given(secret.kind.from_text(text), file.key, file.source)


def _build(
    cls: type, base: object, path: tuple[str, ...], given: Mapping[tuple[str, ...], _Given]
) -> object:
    """``base`` with the settings given under ``path``; ``cls(...)`` if ``base`` is None."""
    changes: dict[str, object] = {}
    origins: dict[str, _Given] = {}
    for field in fields(cls):
        here = (*path, field.name)
        if here in given:
            changes[field.name] = given[here].value
            origins[field.name] = given[here]
        elif any(p[: len(here)] == here for p in given):
            section = schema().sections[".".join(here)]
            inner = getattr(base, field.name) if base is not None else None
            changes[field.name] = _build(section.cls, inner, here, given)
    if not changes:
        return base
    try:
        return cls(**changes) if base is None else replace(base, **changes)  # type: ignore[type-var]
    except (ValueError, TypeError) as error:
        under = [g for p, g in given.items() if p[: len(path)] == path]
        if base is None:
            missing = [
                f.name
                for f in fields(cls)
                if f.name not in changes and f.default is MISSING and f.default_factory is MISSING
            ]
            key = ".".join(path)
            raise ConfigError(
                f"[{key}] also needs {', '.join(f'{key}.{name}' for name in missing)}",
                [(g.key, g.source) for g in under],
            ) from None
        raise _blame(base, changes, origins, error, under) from None


def _blame(
    base: object,
    changes: Mapping[str, object],
    origins: Mapping[str, _Given],
    error: Exception,
    under: list[_Given],
) -> ConfigError:
    """The layer refused the values: find the settings at fault.

    Those it refuses alone (and, among them, those its message names); else,
    for a rule between settings, those its message names; else every setting
    given for it.
    """
    text = str(error)
    named = [name for name in origins if re.search(rf"\b{re.escape(name)}\b", text)]
    alone = []
    for name in origins:
        try:
            replace(base, **{name: changes[name]})  # type: ignore[type-var]
        except (ValueError, TypeError):
            alone.append(name)
    culprits = [name for name in alone if name in named] or alone or named
    blamed = [origins[name] for name in culprits] or list(origins.values()) or under
    return ConfigError(text, [(g.key, g.source) for g in blamed])
