"""One lazily started daemon thread per process for work off the request path.

Recovery probes, and later topology refreshes and lock renewals, run here so
that no user request ever pays a probe's timeout. The thread starts on the
first scheduled job; a process that never degrades never starts it.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable

logger = logging.getLogger("django_redis_resilience")


class Job:
    """A scheduled call; ``cancel()`` keeps it from running."""

    __slots__ = ("cancelled", "fn", "name", "when")

    def __init__(self, when: float, fn: Callable[[], object], name: str) -> None:
        self.when = when
        self.fn = fn
        self.name = name
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class Scheduler:
    """A tiny timer queue served by a single daemon thread."""

    def __init__(self, *, name: str = "drr-background") -> None:
        self._name = name
        self._cond = threading.Condition(threading.Lock())
        self._queue: list[tuple[float, int, Job]] = []
        self._seq = itertools.count()
        self._thread: threading.Thread | None = None
        self._stopped = False

    @property
    def thread(self) -> threading.Thread | None:
        """The worker thread, or ``None`` while nothing was ever scheduled."""
        return self._thread

    def call_later(self, delay: float, fn: Callable[[], object], *, name: str) -> Job:
        """Run ``fn`` on the background thread after ``delay`` seconds."""
        job = Job(time.monotonic() + max(0.0, delay), fn, name)
        with self._cond:
            if self._stopped:
                job.cancel()
                return job
            heapq.heappush(self._queue, (job.when, next(self._seq), job))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
                self._thread.start()
            if self._queue[0][2] is job:
                # Wake the thread only when this job is due before the one it
                # sleeps for: a lock renewal per acquisition must not cost a
                # thread switch per acquisition.
                self._cond.notify()
        return job

    def pending(self) -> int:
        with self._cond:
            return sum(1 for _, _, job in self._queue if not job.cancelled)

    def stop(self, timeout: float = 2.0) -> None:
        """Stop the thread; jobs still queued are dropped."""
        with self._cond:
            self._stopped = True
            self._queue.clear()
            self._cond.notify()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def _next_job(self) -> Job | None:
        with self._cond:
            while not self._stopped:
                # Drop cancelled jobs before waiting: a lock renewal is scheduled and
                # cancelled on every acquisition, and waking up for each of them at
                # its due time would cost a thread switch per acquisition.
                while self._queue and self._queue[0][2].cancelled:
                    heapq.heappop(self._queue)
                if not self._queue:
                    self._cond.wait()
                    continue
                when, _, job = self._queue[0]
                now = time.monotonic()
                if when > now:
                    self._cond.wait(when - now)
                    continue
                heapq.heappop(self._queue)
                if not job.cancelled:
                    return job
            return None

    def _run(self) -> None:
        while (job := self._next_job()) is not None:
            try:
                job.fn()
            except Exception:
                # A failing job must not kill the thread that every other job needs.
                logger.exception("Background job %s failed", job.name)
