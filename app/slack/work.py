"""The threads Slack listeners use: one pool acknowledges, one checks what an ack must say, one works after.

Slack gives every request 3 s to be acknowledged. Bolt (``process_before_response=False``, as ``serve`` and
gunicorn run it) runs each listener on its ``listener_executor`` while the HTTP thread polls for ``ack()``:
if those threads are busy with slow work — a tailnet that answers in seconds, a rate-limited Slack
lookup, a whole EDR sync — every other click, shortcut and options load of the process waits past 3 s.
So listeners acknowledge first, on ``Pools.ack``, and hand anything that may wait to ``Pools.work``; a check
whose outcome must travel in the acknowledgement runs on ``Pools.answer`` with a budget (``Pools.within``).

Sized for what we ship, per process: ``accessbot serve`` (the Procfile's ``web``, waitress, ``HTTP_THREADS`` 8)
or gunicorn (``--workers 2 --threads 8``, each worker its own pools). Every HTTP thread waits in Bolt's ack poll
for its listener to reach ``ack()`` on ``Pools.ack``, so that pool needs one thread per HTTP thread, plus room for
listeners that keep theirs a moment after the ack (``views.open`` with the click's trigger): 16 = 2 x 8. At most
one budgeted check per request runs on ``Pools.answer``, and a check past its budget keeps its thread: 16 again.
``Pools.work`` delivers notifications (one submission to 10 approvers is 11 posts, plus a DM opened per person
new to the process, but only two write transactions: the claim, then the delivery's messages and completion
together, one outbox writer at a time per process) and writes grants: threads there mostly wait for Slack or the
tailnet, so 16 keeps deliveries of 16 requests under way, and their writes queue in the outbox rather than in
front of the acknowledgements' writes.
More HTTP threads need ``ACK_THREADS`` and ``ANSWER_THREADS`` raised with them; ``bench/load.py`` measures 200
concurrent flows against this sizing.

Written here rather than taken from a library because it is three ``ThreadPoolExecutor``\\ s plus a count of
tasks in flight (what graceful shutdown and the tests wait on); Bolt's lazy listeners would share Bolt's
one executor between acknowledgements and slow work, which is the starvation this avoids.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")

ACK_THREADS = 16
"""Threads that run listeners up to their ``ack()`` (each holds a thread for milliseconds)."""
WORK_THREADS = 16
"""Threads for work after the acknowledgement: tailnet writes, Slack lookups, syncs, notifications."""
ANSWER_THREADS = 16
"""Threads for checks whose outcome belongs in an acknowledgement (``Pools.within``): kept apart from the work
pool so a form's check never queues behind notifications."""
ACK_BUDGET = 2.0
"""Seconds a listener may wait for work whose answer belongs in the acknowledgement (a form's field errors),
before it acknowledges with a "working on it" answer instead; leaves 1 s of Slack's 3 s for the network."""


class TrackedExecutor(ThreadPoolExecutor):
    """A thread pool that knows how many tasks are queued or running, and logs what they raise."""

    def __init__(self, max_workers: int, thread_name_prefix: str) -> None:
        super().__init__(max_workers=max_workers, thread_name_prefix=thread_name_prefix)
        self._busy = threading.Condition()
        self._in_flight = 0

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:  # type: ignore[override]
        """Queue ``fn``; an exception it raises is logged (nobody may ever look at the future)."""
        return self.track(fn, *args, log_errors=True, **kwargs)

    def track(self, fn: Callable[..., T], /, *args: Any, log_errors: bool = False, **kwargs: Any) -> Future[T]:
        """Queue ``fn``, counted in flight; its exception stays in the future unless ``log_errors``."""

        def run() -> T:
            try:
                return fn(*args, **kwargs)
            except Exception:
                if log_errors:
                    log.exception("background task %s failed", getattr(fn, "__qualname__", fn))
                raise
            finally:
                with self._busy:
                    self._in_flight -= 1
                    self._busy.notify_all()

        with self._busy:
            self._in_flight += 1
        try:
            return super().submit(run)
        except RuntimeError:  # shut down: undo the count, then tell the caller
            with self._busy:
                self._in_flight -= 1
                self._busy.notify_all()
            raise

    @property
    def in_flight(self) -> int:
        """Tasks queued or running now."""
        with self._busy:
            return self._in_flight

    def wait_idle(self, timeout: float) -> bool:
        """Block until no task is queued or running (True), or ``timeout`` seconds pass (False)."""
        deadline = time.monotonic() + timeout
        with self._busy:
            while self._in_flight:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._busy.wait(remaining)
        return True


class Pools:
    """The three pools of one Slack app (see the module docstring)."""

    def __init__(
        self, *, ack_threads: int = ACK_THREADS, work_threads: int = WORK_THREADS, answer_threads: int = ANSWER_THREADS
    ) -> None:
        self.ack = TrackedExecutor(ack_threads, "accessbot-ack")
        self.work = TrackedExecutor(work_threads, "accessbot-work")
        self.answer = TrackedExecutor(answer_threads, "accessbot-answer")

    def later(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        """Run ``fn`` on the work pool, after the acknowledgement."""
        return self.work.submit(fn, *args, **kwargs)

    def within(self, budget: float, fn: Callable[[], T]) -> tuple[bool, Future[T]]:
        """Start ``fn`` on the answer pool and wait up to ``budget`` seconds: (finished in time, its future)."""
        future = self.answer.track(fn)
        try:
            future.exception(timeout=budget)
        except FutureTimeout:
            return False, future
        return True, future

    def settle(self, timeout: float = 30.0) -> bool:
        """Wait until every pool is idle (work may queue more work, so loop until all stay idle)."""
        deadline = time.monotonic() + timeout
        pools = (self.ack, self.answer, self.work)
        while True:
            for pool in pools:
                if not pool.wait_idle(max(deadline - time.monotonic(), 0)):
                    return False
            if all(pool.in_flight == 0 for pool in pools):
                return True

    def shutdown(self, wait: bool = True) -> None:
        """Stop taking work; with ``wait`` finish what is queued (SIGTERM drains, nothing half-done)."""
        for pool in (self.ack, self.answer, self.work):
            pool.shutdown(wait=wait)
