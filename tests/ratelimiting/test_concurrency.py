"""The ``concurrency`` algorithm: slots in flight, leases, release when the response ends."""

from __future__ import annotations

import multiprocessing
import os
import time
from typing import Any

import pytest
from django.test import Client, override_settings

from django_redis_resilience.ratelimiting import hit, release
from tests._polling import wait_for
from tests._refusing import fill_memory
from tests.cache.conftest import FAST_BREAKER, resilient_caches

SLOTS = "2/30s"  # two in flight, each slot a 30 s lease


def test_slots_are_taken_released_and_refused_in_between(drr_redis_server: Any) -> None:
    with override_settings(CACHES=resilient_caches(drr_redis_server.url)):
        first = hit("job", SLOTS, algorithm="concurrency")
        second = hit("job", SLOTS, algorithm="concurrency")
        third = hit("job", SLOTS, algorithm="concurrency")
        assert (first.allowed, second.allowed, third.allowed) == (True, True, False)
        assert first.lease is not None
        assert third.lease is None  # nothing taken, nothing to release
        assert 29 < third.retry_after <= 30  # when the oldest lease ends
        release(first)
        release(first)  # idempotent: the second call frees nothing more
        assert hit("job", SLOTS, algorithm="concurrency").allowed
        assert not hit("job", SLOTS, algorithm="concurrency").allowed


def test_a_holder_that_never_releases_frees_its_slot_when_the_lease_ends(
    drr_redis_server: Any,
) -> None:
    with override_settings(CACHES=resilient_caches(drr_redis_server.url)):
        assert hit("crashed", "1/0.3s", algorithm="concurrency").allowed
        assert not hit("crashed", "1/0.3s", algorithm="concurrency").allowed
        assert wait_for(lambda: hit("crashed", "1/0.3s", algorithm="concurrency").allowed)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # fork() with threads, 3.12+
def test_eight_processes_never_exceed_the_count(drr_redis_server: Any) -> None:
    context = multiprocessing.get_context("fork")
    inflight: Any = context.Value("i", 0)
    peak: Any = context.Value("i", 0)
    admitted: Any = context.Value("i", 0)
    with override_settings(CACHES=resilient_caches(drr_redis_server.url)):

        def worker() -> None:
            try:
                deadline = time.monotonic() + 0.6
                while time.monotonic() < deadline:
                    decision = hit("busy", "3/30s", algorithm="concurrency")
                    if not decision.allowed:
                        continue
                    with inflight.get_lock():
                        inflight.value += 1
                        peak.value = max(peak.value, inflight.value)
                    with admitted.get_lock():
                        admitted.value += 1
                    time.sleep(0.003)
                    with inflight.get_lock():
                        inflight.value -= 1
                    release(decision)
            finally:
                os._exit(0)

        processes = [context.Process(target=worker) for _ in range(8)]
        for process in processes:
            process.start()
        for process in processes:
            process.join(timeout=30)
    assert admitted.value > 8
    assert 1 <= peak.value <= 3


def test_a_streaming_response_holds_its_slot_until_its_last_byte(drr_redis_server: Any) -> None:
    with override_settings(
        CACHES=resilient_caches(drr_redis_server.url), ROOT_URLCONF="tests.ratelimiting.urls"
    ):
        client = Client(REMOTE_ADDR="10.3.0.1")
        streaming = client.get("/stream/")
        assert streaming.status_code == 200
        assert client.get("/stream/").status_code == 429  # still streaming
        assert b"".join(streaming.streaming_content) == b"part1part2"  # closes it
        again = client.get("/stream/")
        assert again.status_code == 200
        b"".join(again.streaming_content)


def test_a_failing_view_releases_its_slot(drr_redis_server: Any) -> None:
    with override_settings(
        CACHES=resilient_caches(drr_redis_server.url), ROOT_URLCONF="tests.ratelimiting.urls"
    ):
        client = Client(REMOTE_ADDR="10.3.0.2", raise_request_exception=True)
        for _ in range(3):  # never 429: each failure gave its slot back
            with pytest.raises(ValueError, match="the view failed"):
                client.get("/failing/")


@pytest.mark.chaos
def test_local_slots_during_an_outage(drr_redis_factory: Any) -> None:
    server = drr_redis_factory()
    with override_settings(CACHES=resilient_caches(server.url, BREAKER=FAST_BREAKER)):
        server.kill()
        first = hit("outage-job", "1/30s", algorithm="concurrency")
        assert first.allowed
        assert first.degraded
        assert not hit("outage-job", "1/30s", algorithm="concurrency").allowed
        release(first)
        assert hit("outage-job", "1/30s", algorithm="concurrency").allowed


@pytest.mark.chaos
def test_a_server_out_of_memory_degrades_instead_of_failing(drr_redis_factory: Any) -> None:
    server = drr_redis_factory()
    with override_settings(CACHES=resilient_caches(server.url)):
        assert not hit("oom", "2/m").degraded
        fill_memory(server)  # every write is refused with OOM from now on
        decision = hit("oom-2", "2/m")
        assert decision.degraded
        assert decision.allowed  # "local" by default: this process limits alone


def test_a_response_replaced_by_a_middleware_still_gives_its_slot_back(
    drr_redis_server: Any,
) -> None:
    with override_settings(
        CACHES=resilient_caches(drr_redis_server.url),
        ROOT_URLCONF="tests.ratelimiting.urls",
        MIDDLEWARE=["django.middleware.http.ConditionalGetMiddleware"],
    ):
        client = Client(REMOTE_ADDR="10.3.0.3")
        # Each 304 replaces the view's response without closing it.
        statuses = [client.get("/etag/", HTTP_IF_NONE_MATCH='"v1"').status_code for _ in range(3)]
        assert statuses == [304, 304, 304]
        assert client.get("/etag/").status_code == 200
