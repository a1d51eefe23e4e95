"""Envelopes waiting for one stream, in batches: the part shared by every writer.

Two kinds of writer use it: an :class:`~._association.Association` (everything
this node sends to a peer, on the stream it opened to that peer) and a
:class:`~._inbound.ReplyLane` (answers to the asks that arrived on a peer's
stream, written back on that same stream).

Envelopes go into the open :class:`OutBatch`; it is sealed when full
(``batch_max_envelopes``/``batch_max_bytes``) and written when the writer next
runs, which is the loop iteration after the first envelope woke it: all that
is queued in one loop turn shares one batch and one write. At most
``outbox_capacity`` envelopes wait.

Every method runs on the event loop; none blocks.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import TYPE_CHECKING, Final

from shoal.runtime import SerializationError

from ._wire import K_FAILURE, K_REPLY, OutBatch, encode_failure

if TYPE_CHECKING:
    from collections.abc import Callable

    from shoal.runtime import Serialized

    from ._settings import RemoteSettings

# Headroom for the string and route tables around a single large payload.
_FRAME_OVERHEAD: Final = 64 * 1024


class Outbox:
    """The queue of one writer (see the module docstring); subclasses write it."""

    def __init__(
        self,
        settings: RemoteSettings,
        loop: asyncio.AbstractEventLoop,
        serialize: Callable[[object], Serialized],
    ) -> None:
        self._loop = loop
        self._serialize = serialize
        self._max_envelopes = settings.batch_max_envelopes
        self._max_bytes = settings.batch_max_bytes
        self._max_payload = settings.max_frame_bytes - _FRAME_OVERHEAD
        self._capacity = settings.outbox_capacity
        self._batch = OutBatch()
        # The next open batch, made while a write is in flight rather than on
        # the path from a send to its write.
        self._spare: OutBatch | None = OutBatch()
        self._sealed: deque[OutBatch] = deque()
        self._queued = 0
        self._wakeup: asyncio.Future[None] | None = None

    @property
    def queued(self) -> int:
        """Envelopes queued and not yet written."""
        return self._queued

    # -- answers to asks ----------------------------------------------------------------

    def send_reply(self, correlation: int, value: object) -> None:
        """Answer the peer's ask ``correlation`` with ``value`` (a failure if it cannot be sent)."""
        try:
            serializer_id, manifest, payload = self._serialize(value)
        except SerializationError as exc:
            self.send_failure(correlation, type(exc).__name__, str(exc))
            return
        if len(payload) > self._max_bytes and not self._make_room(len(payload)):
            self.send_failure(
                correlation, "SerializationError", f"reply of {len(payload)} bytes is too large"
            )
            return
        self._control(K_REPLY, "", "", serializer_id, manifest, payload, correlation)

    def send_failure(self, correlation: int, error_type: str, message: str) -> None:
        """Fail the peer's ask ``correlation``."""
        payload = encode_failure(error_type, message[:4096])
        self._control(K_FAILURE, "", "", 0, "", payload, correlation)

    def _control(
        self,
        kind: int,
        target: str,
        sender: str,
        serializer_id: int,
        manifest: str,
        payload: bytes,
        correlation: int,
    ) -> None:
        """Queue a runtime envelope (a reply, a failure, a watch...), or hand it on."""
        raise NotImplementedError

    # -- the queue ----------------------------------------------------------------------

    def _make_room(self, size: int) -> bool:
        """Before a payload larger than a batch: seal the open batch so the payload
        travels in a frame of its own. ``False`` if it cannot fit in any frame."""
        if size > self._max_payload:
            return False
        if self._batch.routes:
            self._sealed.append(self._batch)
            self._batch = OutBatch()
        return True

    def _append(
        self,
        kind: int,
        target: str,
        sender: str,
        serializer_id: int,
        manifest: str,
        payload: bytes,
        correlation: int,
        original: object,
    ) -> None:
        """Queue one envelope (the caller checked the capacity) and wake the writer."""
        batch = self._batch
        batch.add(kind, target, sender, serializer_id, manifest, payload, correlation, original)
        self._queued += 1
        if len(batch.routes) >= self._max_envelopes or batch.nbytes >= self._max_bytes:
            self._sealed.append(batch)
            self._batch = OutBatch()
        wakeup = self._wakeup
        if wakeup is not None:
            # The writer resumes on the next loop iteration: everything queued
            # during this one goes out in the same batch.
            self._wakeup = None
            wakeup.set_result(None)
        else:
            self._no_writer_waiting()

    def _no_writer_waiting(self) -> None:
        """Called after an envelope was queued while no writer waited for one."""

    def _next_batch(self) -> OutBatch | None:
        """The next batch to write, taken off the queue; ``None`` if nothing waits."""
        if self._sealed:
            return self._sealed.popleft()
        if self._batch.routes:
            batch = self._batch
            self._batch = self._spare or OutBatch()
            self._spare = None
            return batch
        return None

    def _written(self, count: int) -> None:
        """A batch of ``count`` envelopes is written (or given up)."""
        self._queued -= count
        if self._spare is None:
            self._spare = OutBatch()

    def _wait_for_work(self) -> asyncio.Future[None]:
        """A future completed when the next envelope is queued."""
        wakeup = self._wakeup = self._loop.create_future()
        return wakeup

    def _take_all(self) -> list[OutBatch]:
        """Empty the queue; returns the batches that were waiting (not in flight)."""
        batches = [*self._sealed, self._batch]
        self._sealed.clear()
        self._batch = OutBatch()
        for batch in batches:
            self._queued -= len(batch)
        return batches
