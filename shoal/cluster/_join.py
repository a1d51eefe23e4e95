"""Joining through seed nodes: who to ask, how often, and when the first seed forms alone."""

from __future__ import annotations

from collections.abc import Callable
from random import Random

from shoal.runtime import Address, Backoff, Cancellable, Clock

from ._settings import ClusterSettings


class SeedJoin:
    """Drives one node's join through ``settings.seed_nodes`` until it is welcomed.

    - The first seed (``seed_nodes[0]``) asks the other seeds; if none has
      answered after ``seed_node_timeout`` it forms the cluster by joining
      itself (at once when it is the only seed).
    - Every other node sends a join to every seed, again and again, attempt
      ``n`` waiting ``Backoff(join_retry_min, join_retry_max).delay(n)``.

    An answer that does not admit the node yet (its old incarnation is
    still being removed) counts as an answer: the first seed then never
    forms a second cluster. ``send_join(seed)`` and ``join_self()`` are
    called from clock callbacks, on the event loop; they must not block.
    """

    __slots__ = (
        "_attempt",
        "_backoff",
        "_clock",
        "_done",
        "_join_self",
        "_retry",
        "_rng",
        "_seeds",
        "_self",
        "_send_join",
        "_settings",
        "_timeout_timer",
        "answered",
    )

    def __init__(
        self,
        self_address: Address,
        settings: ClusterSettings,
        clock: Clock,
        rng: Random,
        send_join: Callable[[Address], None],
        join_self: Callable[[], None],
    ) -> None:
        self._self = self_address
        self._settings = settings
        self._seeds = settings.seed_addresses
        self._clock = clock
        self._rng = rng
        self._send_join = send_join
        self._join_self = join_self
        self._backoff = Backoff(settings.join_retry_min, settings.join_retry_max)
        self._attempt = 0
        self._retry: Cancellable | None = None
        self._timeout_timer: Cancellable | None = None
        self._done = False
        self.answered = False
        """Whether some seed answered (the first seed will then not form alone)."""

    @property
    def is_first_seed(self) -> bool:
        """Whether this node is ``seed_nodes[0]``."""
        return bool(self._seeds) and self._seeds[0] == self._self

    def start(self) -> None:
        """Begin (call once)."""
        others = [s for s in self._seeds if s != self._self]
        if self.is_first_seed:
            if not others:
                self._finish_alone()
                return
            self._timeout_timer = self._clock.call_later(
                self._settings.seed_node_timeout, self._timeout
            )
        self._try()

    def _try(self) -> None:
        if self._done:
            return
        for seed in self._seeds:
            if seed != self._self:
                self._send_join(seed)
        delay = self._backoff.delay(self._attempt, self._rng.random())
        self._attempt += 1
        self._retry = self._clock.call_later(delay, self._try)

    def _timeout(self) -> None:
        if not self._done and not self.answered:
            self._finish_alone()

    def _finish_alone(self) -> None:
        self.stop()
        self._join_self()

    def stop(self) -> None:
        """The node is in (or shutting down): no more attempts."""
        self._done = True
        for timer in (self._retry, self._timeout_timer):
            if timer is not None:
                timer.cancel()
        self._retry = self._timeout_timer = None
