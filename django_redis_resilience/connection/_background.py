"""One lazily started daemon thread per process for work off the request path.

Recovery probes, and later topology refreshes and lock renewals, run here so
that no user request ever pays a probe's timeout. The thread starts on the
first scheduled job; a process that never degrades never starts it.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import os
import threading
import time
from collections.abc import Callable

logger = logging.getLogger("django_redis_resilience")


#: Cancelled jobs the queue may keep before it is compacted, however few live ones it holds.
_COMPACT_AFTER = 64


class Job:
    """A scheduled call; ``cancel()`` keeps it from running."""

    __slots__ = ("_scheduler", "cancelled", "fn", "name", "when")

    def __init__(self, when: float, fn: Callable[[], object], name: str) -> None:
        self.when = when
        self.fn = fn
        self.name = name
        self.cancelled = False
        #: The scheduler whose queue holds this job, ``None`` once it left the queue.
        self._scheduler: Scheduler | None = None

    def cancel(self) -> None:
        scheduler = self._scheduler
        if scheduler is None:
            self.cancelled = True
        else:
            scheduler._cancel(self)


class Scheduler:
    """A tiny timer queue served by a single daemon thread."""

    def __init__(self, *, name: str = "drr-background") -> None:
        self._name = name
        self._cond = threading.Condition(threading.Lock())
        self._queue: list[tuple[float, int, Job]] = []
        #: Cancelled jobs still in ``_queue``.
        self._dead = 0
        self._seq = itertools.count()
        self._thread: threading.Thread | None = None
        self._stopped = False
        self._pid = os.getpid()

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
            job._scheduler = self
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
        """Jobs queued and not cancelled."""
        with self._cond:
            return len(self._queue) - self._dead

    def _cancel(self, job: Job) -> None:
        """Cancel a queued job; compact the queue once cancelled jobs fill half of it.

        A lock renewal is scheduled and cancelled per acquisition, due a third of
        the lease later: with long leases the thread sleeps past all of them, and
        only the head is pruned when it wakes, so without compaction they would
        pile up by one per acquisition. Compacting when half the queue is dead
        costs O(1) per cancellation on average, keeps at most about as many dead
        entries as live ones, and wakes nobody: the thread, if the head went, wakes
        at the old head's time once and sleeps again.
        """
        if os.getpid() != self._pid:
            # Inherited through fork: this scheduler's thread is not here, and its
            # lock may have been held by it at the fork. The flag is all it needs.
            job.cancelled = True
            return
        with self._cond:
            if job.cancelled:
                return
            job.cancelled = True
            if job._scheduler is not self:  # left the queue meanwhile: it runs or ran
                return
            self._dead += 1
            if self._dead > _COMPACT_AFTER and 2 * self._dead > len(self._queue):
                self._compact()

    def _compact(self) -> None:
        """Drop every cancelled job from the queue (the caller holds the lock)."""
        live = []
        for entry in self._queue:
            if entry[2].cancelled:
                entry[2]._scheduler = None
            else:
                live.append(entry)
        heapq.heapify(live)
        self._queue = live
        self._dead = 0

    def _pop(self) -> Job:
        """Take the head off the queue (the caller holds the lock)."""
        job = heapq.heappop(self._queue)[2]
        job._scheduler = None
        if job.cancelled:
            self._dead -= 1
        return job

    def stop(self, timeout: float = 2.0) -> None:
        """Stop the thread; jobs still queued are dropped."""
        with self._cond:
            self._stopped = True
            for _, _, job in self._queue:
                job._scheduler = None
            self._queue.clear()
            self._dead = 0
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
                    self._pop()
                if not self._queue:
                    self._cond.wait()
                    continue
                when = self._queue[0][0]
                now = time.monotonic()
                if when > now:
                    self._cond.wait(when - now)
                    continue
                return self._pop()
            return None

    def _run(self) -> None:
        while (job := self._next_job()) is not None:
            try:
                job.fn()
            except Exception:
                # A failing job must not kill the thread that every other job needs.
                logger.exception("Background job %s failed", job.name)
