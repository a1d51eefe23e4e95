"""The thread that runs a plugin's blocking jobs: order, outcomes, batching, failures."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

import pytest

from shoal.persistence._thread_worker import ThreadWorker


class _Counting(ThreadWorker[list[str]]):
    """Counts the callbacks the worker thread posts to the loop."""

    posts = 0

    def post(self, callback: Callable[..., object], *args: object) -> None:
        self.posts += 1
        super().post(callback, *args)


def _worker(opened: list[int] | None = None, fail_opens: int = 0) -> _Counting:
    attempts = [0]

    def open_resource() -> list[str]:
        attempts[0] += 1
        if attempts[0] <= fail_opens:
            raise OSError(f"cannot open (attempt {attempts[0]})")
        if opened is not None:
            opened.append(attempts[0])
        return []

    return _Counting("test-worker", open_resource, lambda resource: None)


async def test_outcomes_that_arrive_while_the_loop_is_busy_share_one_callback() -> None:
    worker = _worker()
    all_ran = threading.Event()
    futures = [worker.submit(lambda log, i=i: (log.append(str(i)), i)[1]) for i in range(100)]
    worker.submit_nowait(lambda log: all_ran.set(), lambda exc: None)
    assert all_ran.wait(10)  # the loop is busy (blocked here) while every job runs
    assert await asyncio.gather(*futures) == list(range(100))
    assert worker.posts == 1
    assert await worker.submit(list) == [str(i) for i in range(100)]  # run in order
    await worker.stop()


async def test_a_failing_job_fails_only_its_own_future() -> None:
    worker = _worker()

    def boom(log: list[str]) -> None:
        raise ValueError("bad job")

    futures = [worker.submit(lambda log: 1), worker.submit(boom), worker.submit(lambda log: 3)]
    results = await asyncio.gather(*futures, return_exceptions=True)
    assert results[0] == 1
    assert isinstance(results[1], ValueError)
    assert results[2] == 3
    await worker.stop()


async def test_a_nowait_job_posts_after_the_outcomes_of_earlier_jobs() -> None:
    worker = _worker()
    gate = threading.Event()
    earlier = worker.submit(lambda log: gate.wait(10))
    done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()

    def nowait(log: list[str]) -> None:
        worker.post(lambda: done.set_result(earlier.done()))

    worker.submit_nowait(nowait, lambda exc: None)
    gate.set()
    assert await done  # `earlier` was answered when the nowait job's callback ran
    await worker.stop()


async def test_a_failed_open_fails_its_job_and_the_next_job_opens_again() -> None:
    opened: list[int] = []
    worker = _worker(opened, fail_opens=1)
    with pytest.raises(OSError, match="attempt 1"):
        await worker.submit(lambda log: None)
    errors: list[Exception] = []
    assert await worker.submit(lambda log: "ok") == "ok"
    worker.submit_nowait(lambda log: None, errors.append)
    await worker.submit(lambda log: None)
    assert opened == [2]
    assert errors == []
    await worker.stop()


async def test_a_waiter_is_not_held_up_by_a_long_batch_queued_behind_it() -> None:
    worker = _worker()
    gate = threading.Event()
    blocker = worker.submit(lambda log: gate.wait(10))
    quick = worker.submit(lambda log: "quick")
    release = threading.Event()
    slow = worker.submit(lambda log: release.wait(10))  # queued after `quick`
    gate.set()
    assert await quick == "quick"  # answered while `slow` still runs
    assert not slow.done()
    release.set()
    await asyncio.gather(blocker, slow)
    await worker.stop()
