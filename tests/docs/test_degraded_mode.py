"""docs/degraded-mode.md's cache table against a real outage: what raises and what does not.

Each operation the table names is called while the server is down (its
breaker open). A row whose "during the outage" cell starts with "raise" must
raise ``RedisUnavailable``; every other row must answer without raising. The
column for ``FALLBACK=None`` is checked the same way.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from django.core.cache import caches
from django.test import override_settings

from django_redis_resilience.cache import ResilientRedisCache
from django_redis_resilience.conf import BACKEND
from django_redis_resilience.exceptions import RedisUnavailable
from django_redis_resilience.testing import RedisServer
from tests._polling import wait_for
from tests.docs._markdown import doc, spans

FAST_BREAKER = {"FAILURE_THRESHOLD": 2, "RECOVERY_TIMEOUT": 0.05, "MAX_RECOVERY_TIMEOUT": 0.2}
SECTION = doc("degraded-mode.md").split("### Cache", 1)[1].split("### Locks", 1)[0]

#: How to call each operation the table names (arguments are test input, not expectations).
CALLS: dict[str, Callable[[ResilientRedisCache], Any]] = {
    "get": lambda c: c.get("k"),
    "get_many": lambda c: c.get_many(["k", "j"]),
    "has_key": lambda c: c.has_key("k"),
    "set": lambda c: c.set("k", "v"),
    "set_many": lambda c: c.set_many({"k": "v", "j": "w"}),
    "add": lambda c: c.add("a", "v"),
    "touch": lambda c: c.touch("k", 30),
    "expire": lambda c: c.expire("k", 30),
    "pexpire": lambda c: c.pexpire("k", 30_000),
    "expire_at": lambda c: c.expire_at("k", datetime.now(timezone.utc) + timedelta(minutes=1)),
    "persist": lambda c: c.persist("k"),
    "delete": lambda c: c.delete("k"),
    "delete_many": lambda c: c.delete_many(["k", "j"]),
    "incr": lambda c: c.incr("n"),
    "decr": lambda c: c.decr("n"),
    "get_or_set": lambda c: c.get_or_set("g", lambda: 1),
    "aget_or_set": lambda c: _sync(c.aget_or_set("g", 1)),
    "clear": lambda c: c.clear(),
    "ttl": lambda c: c.ttl("k"),
    "pttl": lambda c: c.pttl("k"),
    "keys": lambda c: c.keys("*"),
    "iter_keys": lambda c: list(c.iter_keys("*")),
    "delete_pattern": lambda c: c.delete_pattern("*"),
    "lock()": lambda c: c.lock("l", timeout=1, blocking=False).acquire(),
    "get_client()": lambda c: c.get_client(),
    "stats()": lambda c: c.stats(),
}


def _sync(awaitable: Any) -> Any:
    import asyncio

    async def run() -> Any:
        return await awaitable

    return asyncio.run(run())


def _rows() -> list[tuple[list[str], str, str]]:
    """(operations, during the outage, with FALLBACK=None) for each row of the table."""
    rows = []
    for line in SECTION.splitlines():
        if not line.startswith("| `"):
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        named = spans(re.sub(r"\s\(.*?\)", "", cells[0]))  # not the asides in parentheses
        operations = [s for s in named if s in CALLS]
        assert operations == named, f"no call recipe for {cells[0]}"
        rows.append((operations, cells[1], cells[2]))
    return rows


ROWS = _rows()


@contextmanager
def _outage(factory: Callable[..., RedisServer], **options: Any) -> Iterator[ResilientRedisCache]:
    server = factory()
    settings = {
        "default": {
            "BACKEND": BACKEND,
            "LOCATION": server.url,
            "KEY_PREFIX": f"docs-{uuid.uuid4().hex[:8]}",
            "OPTIONS": {"BREAKER": FAST_BREAKER, **options},
        },
        "shared": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "s"},
    }
    with override_settings(CACHES=settings):
        cache = caches["default"]
        assert isinstance(cache, ResilientRedisCache)
        cache.set("n", 1)
        server.kill()
        breaker = cache.manager.primary.breaker  # type: ignore[union-attr]
        assert wait_for(lambda: cache.get("probe") is None and not breaker.closed)
        yield cache


def _raises(cache: ResilientRedisCache, operation: str) -> bool:
    try:
        CALLS[operation](cache)
    except RedisUnavailable:
        return True
    return False


def test_the_table_names_every_cache_operation() -> None:
    named = {op for operations, _, _ in ROWS for op in operations}
    assert named == set(CALLS)


@pytest.mark.chaos
def test_what_raises_during_an_outage_is_what_the_table_says(drr_redis_factory: Any) -> None:
    with _outage(drr_redis_factory) as cache:
        for operations, during, _ in ROWS:
            for operation in operations:
                expected = during.startswith("raise")
                assert _raises(cache, operation) is expected, f"{operation}: {during}"


@pytest.mark.chaos
def test_what_raises_without_a_fallback_is_what_the_table_says(drr_redis_factory: Any) -> None:
    with _outage(drr_redis_factory, FALLBACK=None) as cache:
        for operations, during, without in ROWS:
            for operation in operations:
                cell = during if without == "same" else without
                expected = cell.startswith("raise")
                assert _raises(cache, operation) is expected, f"{operation}: {cell}"


@pytest.mark.chaos
def test_local_counters_start_from_zero_in_each_outage_with_a_shared_fallback(
    drr_redis_factory: Any,
) -> None:
    """``DEGRADED_COUNTERS="local"`` counts "starting from zero" and is "dropped when Redis
    returns" (README, docs): also when ``FALLBACK`` is a shared cache alias.

    Fails today: the local count is written to the shared fallback without being
    journaled, so recovery never removes it and the next outage goes on from it.
    """
    server = drr_redis_factory()
    settings = {
        "default": {
            "BACKEND": BACKEND,
            "LOCATION": server.url,
            "KEY_PREFIX": f"docs-{uuid.uuid4().hex[:8]}",
            "OPTIONS": {
                "BREAKER": FAST_BREAKER,
                "SOCKET_TIMEOUT": 0.1,
                "DEGRADED_COUNTERS": "local",
                "FALLBACK": "shared",
            },
        },
        "shared": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "c"},
    }
    with override_settings(CACHES=settings):
        cache = caches["default"]
        assert isinstance(cache, ResilientRedisCache)
        breaker = cache.manager.primary.breaker  # type: ignore[union-attr]
        cache.set("hits", 100)
        counts = []
        for _ in range(2):
            server.hang()  # Redis keeps its 100
            assert wait_for(lambda: cache.get("probe") is None and not breaker.closed)
            counts.append([cache.incr("hits"), cache.incr("hits")])
            server.resume()
            assert wait_for(lambda: breaker.closed, timeout=10)
        assert cache.incr("hits") == 101  # Redis's value was never overwritten
    assert counts == [[1, 2], [1, 2]]
