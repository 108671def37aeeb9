"""No rate-limit path blocks the event loop: every Redis call of an async request is awaited.

A slow server shows a blocking call at once: the server sits behind a proxy
that delays every chunk (or is paused with ``CLIENT PAUSE``), so one
synchronous round trip made on the loop holds it for far longer than any
step of an async request takes, even on a loaded machine. asyncio's debug
mode names every callback that held the loop longer than ``STALL``; the
tests count those and time nothing themselves.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.test import AsyncClient, override_settings
from django.urls import path

from django_redis_resilience import ratelimit, signals
from django_redis_resilience.clients import key_prefix
from django_redis_resilience.ratelimiting import Limit, check_many
from django_redis_resilience.ratelimiting._core import policy_for, redis_key
from django_redis_resilience.testing import ClusterGroup, FaultProxy
from tests._polling import wait_for
from tests.cache.conftest import resilient_caches

#: Each chunk waits this long in each direction: a round trip takes twice as long.
LATENCY = 0.4
#: A callback that holds the loop this long is a stall: well under one round trip
#: (0.8 s), and a hundred times longer than a step of these requests takes.
STALL = 0.3
SLOTS = "1/30s"  # one in flight, a 30 s lease: within the test only a release frees it
CONDITIONAL = "django.middleware.http.ConditionalGetMiddleware"
LIMITS = "django_redis_resilience.ratelimiting.RateLimitMiddleware"


def _etag(response: HttpResponse) -> HttpResponse:
    response["ETag"] = '"v1"'
    return response


@ratelimit(key="ip", rate=SLOTS, algorithm="concurrency", group="loop-etag")
async def etag_view(request: HttpRequest) -> HttpResponse:
    return _etag(HttpResponse("same content"))


async def _parts() -> AsyncIterator[bytes]:
    yield b"part1"
    yield b"part2"


@ratelimit(key="ip", rate=SLOTS, algorithm="concurrency", group="loop-stream")
async def streaming_view(request: HttpRequest) -> StreamingHttpResponse:
    return StreamingHttpResponse(_parts())


@ratelimit(key="ip", rate=SLOTS, algorithm="concurrency", group="loop-plain")
async def plain_view(request: HttpRequest) -> HttpResponse:
    return HttpResponse("ok")


async def unlimited_view(request: HttpRequest) -> HttpResponse:
    """Limited by the middleware's rules only."""
    return _etag(HttpResponse("same content"))


urlpatterns = [
    path("etag/", etag_view),
    path("stream/", streaming_view),
    path("plain/", plain_view),
    path("rules/", unlimited_view),
]


class _Stalls(logging.Handler):
    """The callbacks asyncio's debug mode reports as slow."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.found: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage().startswith("Executing"):
            self.found.append(record.getMessage())


def stalls_while(scenario: Callable[[], Awaitable[None]]) -> list[str]:
    """Run ``scenario`` on a new loop in debug mode; the callbacks that held it past ``STALL``."""
    stalls = _Stalls()
    asyncio_logger = logging.getLogger("asyncio")
    asyncio_logger.addHandler(stalls)

    async def main() -> None:
        asyncio.get_running_loop().slow_callback_duration = STALL
        await scenario()

    gc.collect()
    gc.disable()  # a full collection of a big test process is no stall of this code's making
    try:
        asyncio.run(main(), debug=True)
    finally:
        gc.enable()
        asyncio_logger.removeHandler(stalls)
    return stalls.found


def _free(identity: str, group: str) -> bool:
    """Whether ``group``'s slot of ``identity`` is free again (consumes nothing)."""
    limit = Limit(identity, SLOTS, "concurrency", name=group, group=group)
    return check_many([limit], peek=True)[0].allowed


@pytest.fixture
def slow(drr_redis_server: Any, drr_proxy_factory: Any) -> Iterator[FaultProxy]:
    """The shared server behind a proxy; each test slows it once its client is connected."""
    proxy: FaultProxy = drr_proxy_factory(drr_redis_server)
    rules = [{"PATH": "^/rules/", "KEY": "ip", "RATE": SLOTS, "ALGORITHM": "concurrency",
              "NAME": "loop-rule"}]  # fmt: skip
    with override_settings(
        CACHES=resilient_caches(proxy.url(), SOCKET_TIMEOUT=5),
        ROOT_URLCONF=__name__,
        MIDDLEWARE=[CONDITIONAL, LIMITS],
        REDIS_RESILIENCE={"RATELIMIT": {"RULES": rules}},
    ):
        yield proxy
        proxy.heal()


async def _warm_up(client: AsyncClient, proxy: FaultProxy) -> None:
    """Connect and load the script at full speed, then slow the server down."""
    assert (await client.get("/plain/")).status_code == 200
    proxy.set_latency(LATENCY)


@pytest.mark.parametrize(("url", "group"), [("/etag/", "loop-etag"), ("/rules/", "loop-rule")])
def test_a_response_replaced_by_a_middleware_is_released_off_the_loop(
    slow: FaultProxy, url: str, group: str
) -> None:
    client = AsyncClient(REMOTE_ADDR="10.7.0.1")

    async def scenario() -> None:
        await _warm_up(client, slow)
        # The 304 replaces the limited response unclosed: its slot ends when it is freed.
        response = await client.get(url, headers={"if-none-match": '"v1"'})
        assert response.status_code == 304

    assert stalls_while(scenario) == []
    assert wait_for(lambda: _free("ip:10.7.0.1/32", group))


def test_a_streaming_response_closed_on_the_loop_is_released_off_it(slow: FaultProxy) -> None:
    client = AsyncClient(REMOTE_ADDR="10.7.0.2")

    async def scenario() -> None:
        await _warm_up(client, slow)
        response = await client.get("/stream/")
        # The test client closes an async stream on the loop once its last part is read.
        assert b"".join([part async for part in response.streaming_content]) == b"part1part2"

    assert stalls_while(scenario) == []
    assert wait_for(lambda: _free("ip:10.7.0.2/32", "loop-stream"))


def test_a_plain_async_response_never_blocks_the_loop(slow: FaultProxy) -> None:
    client = AsyncClient(REMOTE_ADDR="10.7.0.3")

    async def scenario() -> None:
        await _warm_up(client, slow)
        assert [(await client.get("/plain/")).status_code for _ in range(2)] == [200, 200]

    assert stalls_while(scenario) == []


@pytest.mark.chaos
def test_slots_given_back_by_a_refused_request_are_released_off_the_loop(
    drr_cluster: ClusterGroup,
) -> None:
    """On a cluster the rules of one request live in several slots: when one refuses,
    the slots the others took are given back, while the server that holds them is paused."""
    rules = [
        {"PATH": "^/rules/", "KEY": "ip", "RATE": SLOTS, "ALGORITHM": "concurrency",
         "NAME": "slots"},
        {"PATH": "^/rules/", "KEY": "header:x-client", "RATE": "1/m", "NAME": "quota",
         "ALGORITHM": "fixed_window"},
    ]  # fmt: skip
    client = AsyncClient(REMOTE_ADDR="10.7.0.4", headers={"x-client": "c1"})
    pause_ms = round(LATENCY * 2000)

    def pause(**kwargs: Any) -> None:
        # The refused rule is reported before the other slots are given back.
        node = drr_cluster.node_for_key(slot_key)
        with node.client() as admin:
            admin.execute_command("CLIENT", "PAUSE", pause_ms, "WRITE")

    async def scenario() -> None:
        assert (await client.get("/rules/")).status_code == 200  # quota used, slot released
        signals.ratelimit_exceeded.connect(pause)
        try:
            assert (await client.get("/rules/")).status_code == 429
        finally:
            signals.ratelimit_exceeded.disconnect(pause)

    with override_settings(
        CACHES=resilient_caches(drr_cluster.location, SOCKET_TIMEOUT=5),
        ROOT_URLCONF=__name__,
        MIDDLEWARE=[LIMITS],
        REDIS_RESILIENCE={"RATELIMIT": {"RULES": rules}},
    ):
        prefix = key_prefix("default")
        assert prefix is not None
        slot_key = redis_key(prefix, Limit("ip:10.7.0.4/32", SLOTS, "concurrency",
                                           name="slots", group="slots"),
                             policy_for(SLOTS, "concurrency"))  # fmt: skip
        quota_key = redis_key(prefix, Limit("header:x-client:c1", "1/m", "fixed_window",
                                            name="quota", group="quota"),
                              policy_for("1/m", "fixed_window"))  # fmt: skip
        assert slot_key.split("}")[0] != quota_key.split("}")[0]  # two hash tags
        assert stalls_while(scenario) == []
        assert wait_for(lambda: _free("ip:10.7.0.4/32", "slots"))


@ratelimit(key="ip", rate=SLOTS, algorithm="concurrency", group="sync-etag")
def sync_etag_view(request: HttpRequest) -> HttpResponse:
    return _etag(HttpResponse("same content"))


urlpatterns.append(path("sync-etag/", sync_etag_view))


def test_a_freed_response_is_released_by_the_worker_never_inside_the_code_that_freed_it(
    drr_redis_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A finalizer runs wherever the last reference goes, maybe inside code holding a lock
    the release needs (a thread pool's, a connection pool's): it only queues the release."""
    from django.test import Client

    from django_redis_resilience.ratelimiting import _decorator

    threads: list[str] = []
    real_release = _decorator.release

    def observed(decision: Any) -> Any:
        threads.append(threading.current_thread().name)
        return real_release(decision)

    monkeypatch.setattr(_decorator, "release", observed)
    with override_settings(
        CACHES=resilient_caches(drr_redis_server.url),
        ROOT_URLCONF=__name__,
        MIDDLEWARE=[CONDITIONAL],
    ):
        response = Client(REMOTE_ADDR="10.7.0.5").get(
            "/sync-etag/", headers={"if-none-match": '"v1"'}
        )
        assert response.status_code == 304
        assert wait_for(lambda: _free("ip:10.7.0.5/32", "sync-etag"))
    assert threads == ["drr-ratelimit-release"]
