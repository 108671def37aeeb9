"""No warning on any path, so a project whose own suite runs with ``-W error`` loses nothing.

redis-py 8.2 warns whenever an asyncio client is given redis-py's sync ``Retry``; it did
so on every asyncio pool this app built. Here the cache's sync and async calls, a lock
whose waiter blocks on the lock's dedicated connections, and a rate limit run on every
topology with every warning recorded, not filtered.
"""

from __future__ import annotations

import asyncio
import uuid
import warnings
from typing import Any

import pytest

from django_redis_resilience import lock
from django_redis_resilience.cache import ResilientRedisCache
from django_redis_resilience.ratelimiting import ahit, hit


async def _async_paths(cache: ResilientRedisCache, name: str) -> None:
    assert await cache.aset(name, 1) is True
    assert await cache.aget(name) in (1, None)  # a replica may not have it yet
    assert await cache.aset_many({f"{name}:a": 1, f"{name}:b": 2}) == []
    await cache.aget_many([f"{name}:a", f"{name}:b"])
    assert await cache.aincr(name) == 2
    assert await cache.adelete(name) is True
    releasing = asyncio.Event()

    async def holder() -> None:
        async with lock(f"warn:{name}", timeout=5, wait=0):
            await asyncio.sleep(0.1)
            releasing.set()

    async def waiter() -> None:
        async with lock(f"warn:{name}", timeout=5, wait=3) as held:
            assert releasing.is_set()  # it waited for the holder
            assert held.token > 0

    task = asyncio.create_task(holder())
    await asyncio.sleep(0.02)
    await waiter()
    await task
    assert (await ahit(f"warn:{name}", "5/m")).allowed


def test_no_path_warns_with_this_redis_py(cache: ResilientRedisCache, topology: str) -> None:
    name = uuid.uuid4().hex
    caught: list[Any]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert cache.set(name, 0) is True
        cache.get(name)
        with lock(f"warn-sync:{name}", timeout=5, wait=0):
            pass
        assert hit(f"warn-sync:{name}", "5/m").allowed
        asyncio.run(_async_paths(cache, name))
    assert [f"{w.category.__name__}: {w.message}" for w in caught] == [], topology


@pytest.mark.parametrize("topology", ["sentinel"])
def test_no_warning_when_the_sentinel_manager_is_built_in_a_new_loop(
    cache: ResilientRedisCache, topology: str
) -> None:
    """Each event loop gets its own asyncio Sentinel manager: a second loop builds another."""
    name = uuid.uuid4().hex
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(2):
            assert asyncio.run(cache.aset(name, "v")) is True
    assert [str(w.message) for w in caught] == []
