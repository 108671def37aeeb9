"""The background scheduler: jobs run in time order, cancelled ones cost nothing."""

from __future__ import annotations

import threading

from django_redis_resilience.connection import Scheduler
from tests._polling import wait_for


def test_jobs_run_in_time_order_and_cancelled_ones_never_run(scheduler: Scheduler) -> None:
    ran: list[str] = []
    done = threading.Event()
    scheduler.call_later(0.06, lambda: (ran.append("late"), done.set()), name="late")
    scheduler.call_later(0.02, lambda: ran.append("early"), name="early")
    scheduler.call_later(0.01, lambda: ran.append("cancelled"), name="cancelled").cancel()
    assert done.wait(5)
    assert ran == ["early", "late"]


def test_cancelled_jobs_are_dropped_without_waiting_for_their_time(scheduler: Scheduler) -> None:
    """A lock renewal is scheduled and cancelled per acquisition: the thread must not
    keep them, nor wake up for each of them when it comes due."""
    jobs = [scheduler.call_later(60, lambda: None, name=f"renew {i}") for i in range(100)]
    for job in jobs:
        job.cancel()
    ran = threading.Event()
    scheduler.call_later(0.01, ran.set, name="due now")  # wakes the thread
    assert ran.wait(5)
    assert wait_for(lambda: len(scheduler._queue) == 0, timeout=5)
    assert scheduler.pending() == 0
