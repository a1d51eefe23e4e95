"""Fixtures of the chat example's tests.

The browser, nginx and Compose fixtures live in ``tests/browser_support.py``
(re-exported here); fixtures for the chat server's own tests belong in a
module of their own, re-exported the same way.
"""

from __future__ import annotations

from tests.browser_support import browser, docker_compose, nginx_runner

__all__ = ["browser", "docker_compose", "nginx_runner"]
