"""A dedicated thread that owns one blocking resource (a database connection).

Blocking storage calls never run on the event loop: the loop hands the worker
jobs, the worker runs them one at a time in submission order on its thread,
and posts their outcomes back with ``loop.call_soon_threadsafe``.

Outcomes are posted in batches: the worker runs every job already queued
before it posts the outcomes of those jobs in one callback. Many small jobs
queued at once (thousands of actors recovering together) then cost the loop
one wake-up and the worker one GIL hand-off per batch instead of per job.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
import time
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


def _settle_all(outcomes: list[_Outcome]) -> None:
    """On the loop: resolve the futures of one batch of jobs, in submission order."""
    for fut, value, exc in outcomes:
        _settle(fut, value, exc)


# Outcomes wait for later jobs of their batch at most this many jobs or seconds: a
# waiter is not held up by a long batch of slow jobs queued after its own.
_MAX_BATCH = 256
_MAX_BATCH_S = 0.002


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
        self._outcomes: list[_Outcome] = []  # the worker thread's, not yet posted
        self._batch_started = 0.0  # when the job of the first of them started (monotonic)
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
        run (the resource failed to open). The outcomes of the jobs submitted
        before it are posted before ``fn`` runs, so callbacks ``fn`` posts
        follow them on the loop.
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

    def _flush_outcomes(self) -> None:
        """On the worker thread: post the outcomes collected so far, in one callback."""
        if self._outcomes:
            outcomes, self._outcomes = self._outcomes, []
            self.post(_settle_all, outcomes)

    def _run_one(self, item: _Job[_R], opened: _R | None) -> _R | None:
        """Run one job (opening the resource first if needed); return the resource."""
        fn, on_error, fut = item
        if fut is None:
            self._flush_outcomes()  # fn's own posts follow the outcomes of earlier jobs
        try:
            if opened is None:
                opened = self._open()
            value = fn(opened)
        except Exception as exc:  # a failed open: this job reports it; the next one retries
            if fut is not None:
                self._outcomes.append((fut, None, exc))  # the awaiting task decides
            else:
                try:
                    assert on_error is not None
                    on_error(exc)
                except Exception:
                    _log.exception("error handler of %s failed", self._thread.name)
        else:
            if fut is not None:
                self._outcomes.append((fut, value, None))
        return opened

    def _run(self) -> None:
        opened: _R | None = None
        get, get_nowait = self._queue.get, self._queue.get_nowait
        item = get()
        while item is not None:
            if not self._outcomes:
                self._batch_started = time.monotonic()
            opened = self._run_one(item, opened)
            outcomes = len(self._outcomes)
            if outcomes >= _MAX_BATCH or (
                outcomes and time.monotonic() - self._batch_started >= _MAX_BATCH_S
            ):
                self._flush_outcomes()
            try:
                item = get_nowait()
            except queue.Empty:
                self._flush_outcomes()  # the queue is empty: post before waiting
                item = get()
        self._flush_outcomes()
        if opened is not None:
            try:
                self._close(opened)
            except Exception:
                _log.exception("closing the resource of %s failed", self._thread.name)
        if self._stopped is not None:
            self.post(_settle, self._stopped, None, None)
