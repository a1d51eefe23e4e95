"""What importing ``shoal.persistence`` costs, and how its logger is named."""

from __future__ import annotations

import subprocess
import sys

import pytest

import shoal.persistence


def _run(code: str) -> None:
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr


def test_importing_the_package_does_not_import_the_cassandra_driver() -> None:
    _run(
        "import sys, shoal.persistence\n"
        "from shoal.persistence import CassandraSettings, PersistentActor, SqliteJournal\n"
        "CassandraSettings(keyspace='ks')\n"
        "assert 'cassandra' not in sys.modules, sorted(m for m in sys.modules if 'cassandra' in m)"
    )


def test_the_cassandra_plugins_load_when_named() -> None:
    _run(
        "import sys\n"
        "from shoal.persistence import CassandraJournal, CassandraSession, CassandraSnapshotStore\n"
        "assert 'cassandra' in sys.modules\n"
        "import shoal.persistence as p\n"
        "assert p.CassandraJournal is CassandraJournal\n"
        "assert 'CassandraSnapshotStore' in dir(p)"
    )


def test_an_unknown_attribute_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="NoSuchThing"):
        _ = shoal.persistence.NoSuchThing  # type: ignore[attr-defined]


def test_every_module_logs_as_the_package() -> None:
    # Loggers named after private modules (shoal.persistence._sqlite) would make
    # users configure logging by implementation detail.
    _run(
        "import logging, pkgutil, importlib, shoal.persistence as p\n"
        "for m in pkgutil.iter_modules(p.__path__):\n"
        "    importlib.import_module('shoal.persistence.' + m.name)\n"
        "names = [n for n in logging.Logger.manager.loggerDict if n.startswith('shoal.')]\n"
        "assert all(n.count('.') == 1 for n in names), names\n"
        "assert 'shoal.persistence' in names, names"
    )
