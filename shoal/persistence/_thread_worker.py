"""A dedicated thread that owns one blocking resource (a database connection).

Blocking storage calls never run on the event loop: the loop hands the worker
jobs, the worker runs them one at a time in submission order on its thread,
and posts each outcome back with ``loop.call_soon_threadsafe``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

__all__ = ["ThreadWorker"]

_log = logging.getLogger("shoal.persistence")

_R = TypeVar("_R")
_T = TypeVar("_T")


def _settle(fut: asyncio.Future[_T], value: _T | None, exc: BaseException | None) -> None:
    """Resolve ``fut`` on its loop, unless the waiter cancelled it meanwhile."""
    if fut.done():
        return
    if exc is not None:
        fut.set_exception(exc)
    else:
        fut.set_result(value)  # type: ignore[arg-type]


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
        # (job, on_error): on_error gets the exception if the job raised or could not run.
        self._queue: queue.SimpleQueue[
            tuple[Callable[[_R], None], Callable[[Exception], None]] | None
        ] = queue.SimpleQueue()
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

        def job(resource: _R) -> None:
            self.post(_settle, fut, fn(resource), None)

        def on_error(exc: Exception) -> None:  # handed to the awaiting task, which decides
            self.post(_settle, fut, None, exc)

        self._queue.put((job, on_error))
        return fut

    def submit_nowait(
        self, fn: Callable[[_R], None], on_error: Callable[[Exception], None]
    ) -> None:
        """From the loop: run ``fn(resource)`` on the thread; ``fn`` reports its own outcome.

        ``on_error(exc)`` runs on the worker thread if ``fn`` raises or cannot
        run (the resource failed to open).
        """
        _ = self.loop
        self._queue.put((fn, on_error))

    async def stop(self) -> None:
        """Run the jobs already submitted, close the resource and end the thread."""
        if self._loop is None or self._stopped is None:
            return
        if not self._stopped.done():
            self._queue.put(None)
        await asyncio.shield(self._stopped)

    def _run(self) -> None:
        opened: _R | None = None
        while True:
            item = self._queue.get()
            if item is None:
                break
            job, on_error = item
            try:
                if opened is None:
                    try:
                        opened = self._open()
                    except Exception as exc:  # this job reports it; the next one retries
                        on_error(exc)
                        continue
                try:
                    job(opened)
                except Exception as exc:
                    on_error(exc)
            except Exception:
                _log.exception("error handler of %s failed", self._thread.name)
        if opened is not None:
            try:
                self._close(opened)
            except Exception:
                _log.exception("closing the resource of %s failed", self._thread.name)
        if self._stopped is not None:
            self.post(_settle, self._stopped, None, None)
