"""Running a program on the fastest available event loop."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def run(main: Coroutine[Any, Any, T], *, debug: bool = False) -> T:
    """Run ``main`` to completion on uvloop when it is installed, else asyncio.

    The same as ``asyncio.run`` otherwise: a fresh loop, closed at the end.
    """
    try:
        import uvloop  # noqa: PLC0415 - optional at run time
    except ImportError:
        return asyncio.run(main, debug=debug)
    return uvloop.run(main, debug=debug)


def loop_name() -> str:
    """``"uvloop"`` or ``"asyncio"``: which loop :func:`run` uses."""
    try:
        import uvloop  # noqa: PLC0415, F401 - optional at run time
    except ImportError:
        return "asyncio"
    return "uvloop"
