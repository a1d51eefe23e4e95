"""A dedicated thread that owns one blocking resource (a database connection).

Blocking storage calls never run on the event loop: the loop hands the worker
jobs, the worker runs them one at a time in submission order on its thread,
and posts their outcomes back with ``loop.call_soon_threadsafe``.

Outcomes share callbacks: the worker appends each outcome to a deque and
posts a callback that settles every outcome queued by the time it runs,
unless one is already on its way. So an outcome is never held back, and
while the loop is busy, many small jobs (thousands of actors recovering
together) cost it one wake-up per loop turn instead of one per job. No lock:
the flag "a callback is on its way" is set only by the worker and cleared
only by the loop, *before* the callback counts what to settle; an outcome
appended after the count finds the flag cleared and posts the next callback.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import queue
import threading
from collections.abc import Callable
from typing import Any, Generic, TypeVar

__all__ = ["ThreadWorker"]

_log = logging.getLogger("shoal.persistence")

_R = TypeVar("_R")
_T = TypeVar("_T")

# (fn, on_error, None) for submit_nowait, (fn, None, future) for submit.
_Job = tuple[
    Callable[[_R], Any], "Callable[[Exception], None] | None", "asyncio.Future[Any] | None"
]


def _settle(fut: asyncio.Future[_T], value: _T | None, exc: BaseException | None) -> None:
    """Resolve ``fut`` on its loop, unless the waiter cancelled it meanwhile."""
    if fut.done():
        return
    if exc is not None:
        fut.set_exception(exc)
    else:
        fut.set_result(value)  # type: ignore[arg-type]


_Outcome = tuple["asyncio.Future[Any]", Any, "BaseException | None"]


class ThreadWorker(Generic[_R]):
    """Runs jobs against a resource on one thread, in FIFO order.

    ``open_resource`` runs on the worker thread before the first job (so a
    thread-affine resource like a sqlite connection is created there);
    ``close_resource`` runs there after the last. If opening fails, the job
    fails with that error and the next job tries to open it again, so a
    transient failure (a locked or missing file) does not outlive itself.

    Jobs must not block forever and must not touch the event loop except
    through :meth:`post`. Not re-entrant: a job must not wait for another
    job of the same worker.
    """

    def __init__(
        self,
        name: str,
        open_resource: Callable[[], _R],
        close_resource: Callable[[_R], None],
    ) -> None:
        self._open = open_resource
        self._close = close_resource
        # (fn, on_error, None): fn reports its own outcome; on_error gets the exception
        # if it raised or could not run. (fn, None, future): the future gets fn's outcome.
        self._queue: queue.SimpleQueue[_Job[_R] | None] = queue.SimpleQueue()
        # Appended by the worker thread, settled by the loop (see the module docstring).
        self._outcomes: collections.deque[_Outcome] = collections.deque()
        self._settle_posted = False  # set by the worker thread, cleared by the loop
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopped: asyncio.Future[None] | None = None

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The event loop outcomes are posted to (the one running at the first submit)."""
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
            self._stopped = self._loop.create_future()
            self._thread.start()
        return self._loop

    def post(self, callback: Callable[..., object], *args: object) -> None:
        """From the worker thread: run ``callback(*args)`` on the event loop."""
        assert self._loop is not None, "post() before the first submit()"
        with contextlib.suppress(RuntimeError):  # the loop closed: nobody is waiting any more
            self._loop.call_soon_threadsafe(callback, *args)

    def submit(self, fn: Callable[[_R], _T]) -> asyncio.Future[_T]:
        """From the loop: run ``fn(resource)`` on the thread; the future gets its outcome."""
        fut: asyncio.Future[_T] = self.loop.create_future()
        self._queue.put((fn, None, fut))
        return fut

    def submit_nowait(
        self, fn: Callable[[_R], None], on_error: Callable[[Exception], None]
    ) -> None:
        """From the loop: run ``fn(resource)`` on the thread; ``fn`` reports its own outcome.

        ``on_error(exc)`` runs on the worker thread if ``fn`` raises or cannot
        run (the resource failed to open). Callbacks ``fn`` posts run after
        the outcomes of the jobs submitted before it are settled.
        """
        _ = self.loop
        self._queue.put((fn, on_error, None))

    async def stop(self) -> None:
        """Run the jobs already submitted, close the resource and end the thread."""
        if self._loop is None or self._stopped is None:
            return
        if not self._stopped.done():
            self._queue.put(None)
        await asyncio.shield(self._stopped)

    def _answer(self, fut: asyncio.Future[Any], value: object, exc: Exception | None) -> None:
        """On the worker thread: hand a job's outcome to the loop (see the module docstring)."""
        self._outcomes.append((fut, value, exc))
        if not self._settle_posted:
            self._settle_posted = True
            self.post(self._settle_outcomes)

    def _settle_outcomes(self) -> None:
        """On the loop: settle every outcome queued so far, in submission order."""
        self._settle_posted = False  # first: an outcome appended after the count posts again
        outcomes = self._outcomes
        for _ in range(len(outcomes)):
            fut, value, exc = outcomes.popleft()
            _settle(fut, value, exc)

    def _run(self) -> None:
        opened: _R | None = None
        while True:
            item = self._queue.get()
            if item is None:
                break
            fn, on_error, fut = item
            try:
                if opened is None:
                    opened = self._open()
                value = fn(opened)
            except Exception as exc:  # a failed open: this job reports it; the next one retries
                if fut is not None:
                    self._answer(fut, None, exc)  # the awaiting task decides
                    continue
                try:
                    assert on_error is not None
                    on_error(exc)
                except Exception:
                    _log.exception("error handler of %s failed", self._thread.name)
            else:
                if fut is not None:
                    self._answer(fut, value, None)
        if opened is not None:
            try:
                self._close(opened)
            except Exception:
                _log.exception("closing the resource of %s failed", self._thread.name)
        if self._stopped is not None:
            self.post(_settle, self._stopped, None, None)
