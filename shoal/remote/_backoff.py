"""Reconnect delays: the runtime's :class:`~shoal.runtime.Backoff` with remoting's settings."""

from __future__ import annotations

from typing import TYPE_CHECKING

from shoal.runtime import Backoff

if TYPE_CHECKING:
    from ._settings import RemoteSettings


def reconnect_backoff(settings: RemoteSettings) -> Backoff:
    """The backoff of reconnect attempts (``RemoteSettings.backoff_*``).

    Attempt ``n`` (0 = the first retry after a failure) waits
    ``min(backoff_max, backoff_min * backoff_multiplier**n)``, minus up to
    ``backoff_jitter`` of it, so nodes that lost a peer at the same moment
    spread their reconnects out; ``backoff_max`` is a hard bound.
    """
    return Backoff(
        min_delay=settings.backoff_min,
        max_delay=settings.backoff_max,
        factor=settings.backoff_multiplier,
        jitter=settings.backoff_jitter,
    )
