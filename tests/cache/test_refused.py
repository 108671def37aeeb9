"""Redis up but refusing writes (memory full under ``noeviction``): nothing pretends to succeed.

The server answers, so this is no outage: the breaker stays closed and the
fallback is not used. A refused write returns False (``set_many`` lists the
key), the key's older value is deleted so that it cannot be read back as if
the write had happened, and reads keep working.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from typing import Any

import pytest
import redis.exceptions as rex

from django_redis_resilience.cache import ResilientRedisCache
from django_redis_resilience.testing import RedisServer, RedisServerFactory
from tests._refusing import fill_memory
from tests.cache.conftest import resilient_cache


@pytest.fixture
def full(
    drr_redis_factory: RedisServerFactory,
) -> Iterator[tuple[RedisServer, ResilientRedisCache]]:
    server = drr_redis_factory()
    with resilient_cache(server.url, SOCKET_TIMEOUT=0.5) as cache:
        cache.set("before", "kept")
        cache.set("overwritten", "old")
        cache.set("counter", 1)
        fill_memory(server)
        yield server, cache


@pytest.mark.chaos
def test_refused_writes_return_false_and_drop_the_older_value(
    full: tuple[RedisServer, ResilientRedisCache], caplog: pytest.LogCaptureFixture
) -> None:
    server, cache = full
    with caplog.at_level(logging.WARNING, logger="django_redis_resilience"):
        assert cache.set("overwritten", "new" * 1000) is False
        assert cache.add("added", "v" * 1000) is False
        assert cache.set("fresh", "v" * 1000) is False
    # The failed overwrite did not leave "old" to be read as if it were current.
    assert cache.get("overwritten") is None
    assert server.client().exists(cache.make_key("overwritten")) == 0
    assert cache.get("before") == "kept"  # reads keep working, from Redis
    assert cache.get("fresh") is None
    counters = cache._state_of(cache.manager).counters
    assert counters.refused_writes == 3
    assert counters.fallback_writes == 0
    assert all(e.breaker.state.value == "closed" for e in cache.manager.endpoints)
    refusals = [r for r in caplog.records if "refuses writes" in r.getMessage()]
    assert len(refusals) == 1  # one line a minute, not one per call
    assert "OutOfMemoryError" in refusals[0].getMessage()


@pytest.mark.chaos
def test_set_many_lists_the_refused_keys_and_get_or_set_still_returns_the_value(
    full: tuple[RedisServer, ResilientRedisCache],
) -> None:
    _, cache = full
    data = {f"k{i}": "v" * 1000 for i in range(5)}
    assert sorted(cache.set_many(data)) == sorted(data)
    assert cache.get_many(list(data)) == {}
    calls = []

    def load() -> str:
        calls.append(1)
        return "computed"

    assert cache.get_or_set("lazy", load, 60) == "computed"
    assert cache.get("lazy") is None  # not stored, and not claimed to be
    assert calls == [1]


@pytest.mark.chaos
def test_async_writes_are_refused_alike(full: tuple[RedisServer, ResilientRedisCache]) -> None:
    _, cache = full

    async def scenario() -> tuple[Any, ...]:
        return (
            await cache.aset("overwritten", "new" * 1000),
            await cache.aset_many({"a": "v" * 1000, "b": "w" * 1000}),
            await cache.aget("overwritten"),
            await cache.aget("before"),
        )

    stored, failed, overwritten, before = asyncio.run(scenario())
    assert stored is False
    assert sorted(failed) == ["a", "b"]
    assert overwritten is None
    assert before == "kept"


@pytest.mark.chaos
def test_counters_raise_a_clear_error(full: tuple[RedisServer, ResilientRedisCache]) -> None:
    _, cache = full
    with pytest.raises(rex.OutOfMemoryError):
        cache.incr("counter")
    assert cache.get("counter") == 1


@pytest.mark.chaos
def test_with_errors_asked_for_the_refusal_is_raised(drr_redis_factory: RedisServerFactory) -> None:
    server = drr_redis_factory()
    with resilient_cache(server.url, FALLBACK=None, IGNORE_EXCEPTIONS=False) as cache:
        cache.set("overwritten", "old")
        fill_memory(server)
        with pytest.raises(rex.OutOfMemoryError):
            cache.set("overwritten", "new" * 1000)
        assert cache.get("overwritten") is None  # deleted all the same


@pytest.mark.chaos
def test_deletes_still_work_and_free_memory_lets_writes_in_again(
    full: tuple[RedisServer, ResilientRedisCache],
) -> None:
    server, cache = full
    assert cache.set("fresh", "v" * 1000) is False
    assert cache.delete("before") is True
    with server.client() as client:
        client.config_set("maxmemory", 0)
    assert cache.set("fresh", "v" * 1000) is True
    assert cache.get("fresh") == "v" * 1000
