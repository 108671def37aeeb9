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


def test_cancelled_jobs_behind_a_live_one_do_not_pile_up(scheduler: Scheduler) -> None:
    """The thread sleeps until its first job is due; jobs due later are not looked at
    until then. Renewals of long leases, scheduled and cancelled once per acquisition,
    must still leave no more entries than about twice the live jobs."""
    scheduler.call_later(600, lambda: None, name="due first")
    kept = []
    for i in range(20_000):
        job = scheduler.call_later(1200, lambda: None, name=f"renew {i}")
        if i % 100 == 0:
            kept.append(job)
        else:
            job.cancel()
    live = scheduler.pending()
    assert live == 1 + len(kept)
    assert len(scheduler._queue) <= 2 * live + 64
    for job in kept:
        job.cancel()
    assert scheduler.pending() == 1
    assert len(scheduler._queue) <= 2 + 64


def test_a_job_cancelled_after_it_ran_or_twice_changes_nothing(scheduler: Scheduler) -> None:
    ran = threading.Event()
    job = scheduler.call_later(0, ran.set, name="now")
    assert ran.wait(5)
    later = scheduler.call_later(600, lambda: None, name="later")
    for _ in range(3):
        job.cancel()
        later.cancel()
    assert scheduler.pending() == 0
    kept = [scheduler.call_later(600, lambda: None, name=f"kept {i}") for i in range(200)]
    assert scheduler.pending() == len(kept)
    assert len(scheduler._queue) <= 2 * len(kept) + 64
