"""Fixtures shared by every test package."""

from __future__ import annotations

pytest_plugins = ["tests.cassandra_support"]
