"""The one error of ``shoal.config``."""

from __future__ import annotations

from collections.abc import Sequence

from shoal.runtime import ShoalError


class ConfigError(ShoalError, ValueError):
    """A setting is unknown, malformed or invalid, or a config file cannot be read.

    Raised by :func:`shoal.config.load_config`. The message names every
    setting at fault and the source it came from (``file shoal.toml``,
    ``environment variable SHOAL_NODE_PORT``, ``flag node.port``), then the
    reason; a secret's value is never part of it. ``origins`` holds the same
    ``(key, source)`` pairs for programs.
    """

    def __init__(self, reason: str, origins: Sequence[tuple[str, str]] = ()) -> None:
        self.reason = reason
        """What is wrong, without the key and the source."""
        self.origins = tuple(origins)
        """``(key, source)`` of every setting at fault; empty for a file-level error."""
        where = ", ".join(f"{key} ({source})" for key, source in self.origins)
        super().__init__(f"{where}: {reason}" if where else reason)

    @property
    def key(self) -> str | None:
        """The (first) setting at fault, e.g. ``"cluster.gossip_interval"``."""
        return self.origins[0][0] if self.origins else None

    @property
    def source(self) -> str | None:
        """Where the (first) setting at fault came from."""
        return self.origins[0][1] if self.origins else None
