"""A Sentinel failover under traffic, replayed end to end through the example site.

The site runs on ``redis+sentinel://`` (a primary, a replica, three Sentinels)
while a user keeps browsing and another keeps running the locked job. Sentinel
promotes the replica, then turns the old primary into a replica of it; from
then on the old primary answers writes with ``READONLY``, which must never
reach a user.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest

from django_redis_resilience.testing import RedisServer, SentinelGroupFactory
from tests._polling import wait_for
from tests.example_project._site import Browser
from tests.incidents.conftest import (
    CACHE_PAGES,
    JOB_BUSY,
    JOB_RAN,
    JOB_UNAVAILABLE,
    Outcome,
    Traffic,
    example_site,
    get,
    post_job,
    redis_state,
    tail,
)

#: The bound on every request, far below a hang (see the standalone incidents).
ANSWER_BOUND = 3.0
_TOKEN = re.compile(r"fencing token (\d+)")
_STAMPEDE_KEYS = ":1:example:stampede:*"
#: The job's lock lease (``timeout=10`` in the example's view).
JOB_LEASE = 10.0


def _keys(server: RedisServer, pattern: str) -> set[bytes]:
    with server.client() as client:
        return set(client.scan_iter(match=pattern, count=1000))


def _role(server: RedisServer) -> str:
    with server.client() as client:
        return str(client.info("replication")["role"])


def _new_write_lands_on(primary: RedisServer, browser: Browser) -> bool:
    """One request that writes a new key (the stampede's): is it on ``primary``?"""
    before = _keys(primary, _STAMPEDE_KEYS)
    answer = browser.get("/expensive/?stampede=1")
    assert answer.status == 200, answer.body
    return len(_keys(primary, _STAMPEDE_KEYS) - before) == 1


def _ran_since(jobs: Traffic, started: float) -> bool:
    return any(JOB_RAN in o.body for o in jobs.outcomes if o.at >= started)


def _job_outcome(outcome: Outcome) -> str:
    """Which documented outcome the job page reported for one run."""
    reported = [text for text in (JOB_RAN, JOB_BUSY, JOB_UNAVAILABLE) if text in outcome.body]
    assert len(reported) == 1, (outcome.status, outcome.body[-2000:])
    return reported[0]


@pytest.mark.chaos
def test_sentinel_failover_under_traffic(
    tmp_path: Path, drr_sentinel_factory: SentinelGroupFactory
) -> None:
    group = drr_sentinel_factory()
    old = group.primary
    with example_site(tmp_path, group.location) as site:
        browser = Browser(site.base)
        for path in CACHE_PAGES:
            assert browser.get(path).status == 200, (path, tail(site))
        assert redis_state(browser) == "ok"

        pages = Traffic(site.base, [get(path) for path in (*CACHE_PAGES, "/api/")])
        jobs = Traffic(site.base, [post_job()], prepare="/job/", pause=0.1)
        with pages, jobs:
            pages.wait_for_more(2 * len(CACHE_PAGES))
            jobs.wait_for_more(1)
            failover_started = time.monotonic()
            new = group.failover()
            assert new is not old
            # Once the failover is complete, new writes go to the new primary.
            landed = wait_for(lambda: _new_write_lands_on(new, browser), timeout=5, step=0.2)
            assert landed, tail(site)
            # Sentinel demotes the old primary some seconds later (it waits on purpose);
            # from then on it answers writes with READONLY. Traffic runs through both.
            group.wait_until_replicating(timeout=30)
            assert _role(old) == "slave"
            pages.wait_for_more(2 * len(CACHE_PAGES))
            # The job runs under the lock again. A run whose release reached the old
            # primary after the promotion leaves its lock on the new one until its lease
            # ends: meanwhile the job is skipped as busy, as documented.
            assert wait_for(
                lambda: _ran_since(jobs, failover_started), timeout=JOB_LEASE + 5, step=0.2
            ), [_job_outcome(o) for o in jobs.outcomes[-5:]]

        assert _new_write_lands_on(new, browser)
        assert redis_state(browser) == "ok"

    failures = pages.failures() + jobs.failures()
    assert not failures, (failures[:3], tail(site))
    everything = pages.outcomes + jobs.outcomes
    assert not [o for o in everything if "READONLY" in o.body or "ReadOnly" in o.body]
    slow = [o for o in pages.outcomes if o.seconds >= ANSWER_BOUND]
    assert not slow, slow[:5]

    # The API keeps answering as documented: a decision, admitted or refused with 429.
    api = pages.of("/api/")
    assert api
    for outcome in api:
        assert outcome.status in (200, 429), outcome
        assert "degraded" in json.loads(outcome.body), outcome.body

    # The job ran under the lock, or was skipped and said why; never twice with one token,
    # and every token issued is larger than the last one, across the failover too.
    outcomes = [_job_outcome(outcome) for outcome in jobs.outcomes]
    assert outcomes.count(JOB_RAN) >= 2, outcomes
    tokens = [int(m.group(1)) for o in jobs.outcomes if (m := _TOKEN.search(o.body))]
    assert tokens == sorted(set(tokens)), tokens
