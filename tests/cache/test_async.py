"""The async API: the same answers as the sync one, through outages, across event loops.

Every async method is the sync method's plan run on ``redis.asyncio``, so the
tests here check answers against the sync methods on the same data (written
by one, read by the other), on every topology. The outage tests mirror those
of ``test_degraded.py`` with the async calls: they never raise, the fallback
answers, and after recovery no value from before the outage comes back.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta, timezone
from typing import Any, ClassVar

import pytest
from asgiref.sync import async_to_sync
from django.test import Client, override_settings
from django_redis.serializers.pickle import PickleSerializer

from django_redis_resilience.cache import ResilientRedisCache
from django_redis_resilience.connection import BreakerState, CircuitBreaker
from django_redis_resilience.connection._endpoint import NodePools
from django_redis_resilience.testing import ClusterGroup, RedisServer

from .conftest import FAST_BREAKER, UNBROKEN, resilient_cache, settle, wait_for

#: Opens only after five failures: one timed-out call leaves it closed.
PATIENT_BREAKER = {**FAST_BREAKER, "FAILURE_THRESHOLD": 5}
#: Short enough that a hung server costs a tenth of a second per call.
QUICK_SOCKETS = {"SOCKET_TIMEOUT": 0.1, "SOCKET_CONNECT_TIMEOUT": 0.1}


# --- helpers ---------------------------------------------------------------------------------


def _breaker(cache: ResilientRedisCache, key: str | None = None) -> CircuitBreaker:
    """The breaker of the endpoint serving ``key`` (the primary's off-cluster)."""
    made = None if key is None else cache.make_key(key)
    return cache.manager.route(write=True, key=made)[0].breaker


async def _eventually(predicate: Callable[[], Awaitable[bool]], timeout: float = 10.0) -> bool:
    """``wait_for`` for async predicates, without blocking the loop."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        if await predicate():
            return True
        await asyncio.sleep(0.02)
    return await predicate()


async def _adegrade(cache: ResilientRedisCache, key: str = "probe:never-written") -> None:
    """Read ``key`` with ``aget`` until its endpoint's breaker opens (reads journal nothing)."""

    async def opened() -> bool:
        return await cache.aget(key) is None and not _breaker(cache, key).closed

    assert await _eventually(opened)


def _recovered(cache: ResilientRedisCache, key: str | None = None, timeout: float = 15) -> None:
    assert wait_for(lambda: _breaker(cache, key).closed, timeout=timeout)


def _crash_keeping_data(server: RedisServer) -> None:
    """Snapshot, then crash: ``restart(keep_data=True)`` brings back exactly this data."""
    with server.client() as client:
        client.save()
    server.kill()


def _calls(server: RedisServer, command: str) -> int:
    with server.client() as client:
        stats = client.info("commandstats").get(f"cmdstat_{command}", {})
    return int(stats.get("calls", 0)) if isinstance(stats, dict) else 0


def _node_pools(cache: ResilientRedisCache) -> list[NodePools]:
    """Every server's pools the cache has built (a cluster's nodes, or the endpoints)."""
    manager = cache.manager
    if manager.cluster is not None:
        return list(manager.cluster._nodes.values())
    return [endpoint for endpoint in manager.endpoints if isinstance(endpoint, NodePools)]


def _connections_named(server: RedisServer, name: str) -> int:
    with server.client() as client:
        return sum(1 for c in client.client_list() if c.get("name") == name)


def _served_by_redis(cache: ResilientRedisCache) -> None:
    """Nothing was answered by the fallback and no call failed."""
    stats = cache.stats()
    assert (stats["errors"], stats["short_circuited"]) == (0, 0), stats
    assert (stats["fallback_reads"], stats["fallback_writes"]) == (0, 0), stats


# --- every async method on every topology ----------------------------------------------------

VALUES: dict[str, Any] = {
    "str": "text",
    "int": 42,
    "negative": -7,
    "big": 2**70,
    "float": 1.5,
    "bool": True,
    "none-in-list": [1, "two", None],
    "dict": {"a": (1, 2)},
    "bytes": b"\x00\xff",
}


def test_aset_and_aget_agree_with_set_and_get(cache: ResilientRedisCache) -> None:
    async def body() -> None:
        assert await cache.aget("missing") is None
        assert await cache.aget("missing", "dflt") == "dflt"
        for name, value in VALUES.items():
            assert await cache.aset(f"a:{name}", value) is True
            assert cache.set(f"s:{name}", value) is True
        settle(cache)
        for name, value in VALUES.items():
            for writer in ("a", "s"):
                from_async = await cache.aget(f"{writer}:{name}")
                from_sync = cache.get(f"{writer}:{name}")
                assert from_async == from_sync == value
                assert type(from_async) is type(value)
        raw = cache.get_client()
        for name in VALUES:  # byte for byte what the sync method stores
            assert raw.get(cache.make_key(f"a:{name}")) == raw.get(cache.make_key(f"s:{name}"))
        assert await cache.aset("a:str", "overwritten") is True
        settle(cache)
        assert cache.get("a:str") == "overwritten"

    asyncio.run(body())
    _served_by_redis(cache)


def test_aset_nx_xx_and_aadd_agree_with_the_sync_methods(cache: ResilientRedisCache) -> None:
    async def body() -> None:
        assert await cache.aset("nx", 1, nx=True) is True
        assert await cache.aset("nx", 2, nx=True) is False
        assert cache.set("nx", 3, nx=True) is False
        settle(cache)
        assert await cache.aget("nx") == cache.get("nx") == 1

        assert await cache.aset("xx", 1, xx=True) is False
        assert cache.set("xx", 1, xx=True) is False
        settle(cache)
        assert await cache.ahas_key("xx") is cache.has_key("xx") is False
        assert await cache.aset("nx", 4, xx=True) is True
        settle(cache)
        assert cache.get("nx") == 4
        assert cache.set("nx", 5, xx=True) is True
        settle(cache)
        assert await cache.aget("nx") == 5

        assert await cache.aadd("add", "first") is True
        assert await cache.aadd("add", "second") is False
        assert cache.add("add", "third") is False
        settle(cache)
        assert await cache.aget("add") == cache.get("add") == "first"
        assert await cache.aadd("timed", "v", 30) is True
        settle(cache)
        assert 25 <= (await cache.attl("timed") or 0) <= 30

        # An expired timeout: reported as added, stored nowhere, as Django's backends do.
        assert await cache.aadd("gone", "v", 0) is True
        assert cache.add("gone-sync", "v", 0) is True
        assert await cache.aset("nx", "v", 0) is True  # overwriting with an expired value
        settle(cache)
        assert await cache.aget_many(["gone", "gone-sync", "nx"]) == {}
        assert cache.get_many(["gone", "gone-sync", "nx"]) == {}

    asyncio.run(body())
    _served_by_redis(cache)


def test_async_expiry_methods_agree_with_the_sync_ones(cache: ResilientRedisCache) -> None:
    async def body() -> None:
        await cache.aset("k", "v", timeout=None)
        settle(cache)
        assert await cache.attl("k") is None
        assert cache.ttl("k") is None
        assert await cache.apttl("k") is None

        assert await cache.atouch("k", 100) is True
        settle(cache)
        assert 95 <= (await cache.attl("k") or 0) <= 100
        assert 95 <= (cache.ttl("k") or 0) <= 100
        assert await cache.aexpire("k", 200) is True
        settle(cache)
        assert 195 <= (await cache.attl("k") or 0) <= 200
        assert await cache.apexpire("k", 300_000) is True
        settle(cache)
        assert 295_000 <= (await cache.apttl("k") or 0) <= 300_000
        assert 295_000 <= (cache.pttl("k") or 0) <= 300_000

        now = datetime.now(tz=timezone.utc)
        assert await cache.aexpire_at("k", now + timedelta(seconds=400)) is True
        settle(cache)
        assert 395 <= (cache.ttl("k") or 0) <= 400
        assert await cache.apexpire_at("k", now + timedelta(seconds=500)) is True
        settle(cache)
        assert 495 <= (await cache.attl("k") or 0) <= 500

        assert await cache.apersist("k") is True
        settle(cache)
        assert await cache.attl("k") is None
        assert cache.ttl("k") is None
        assert await cache.aget("k") == "v"

        for missing in (
            cache.atouch("missing", 10),
            cache.aexpire("missing", 10),
            cache.apexpire("missing", 10_000),
            cache.aexpire_at("missing", now + timedelta(seconds=10)),
            cache.apexpire_at("missing", now + timedelta(seconds=10)),
            cache.apersist("missing"),
        ):
            assert await missing is False
        assert cache.touch("missing", 10) is False
        assert await cache.attl("missing") == cache.ttl("missing") == 0
        assert await cache.apttl("missing") == cache.pttl("missing") == 0

        assert await cache.atouch("k", 0) is True  # an expiry in the past deletes
        settle(cache)
        assert cache.get("k") is None
        assert await cache.ahas_key("k") is False

    asyncio.run(body())
    _served_by_redis(cache)


def test_adelete_and_ahas_key_agree_with_the_sync_methods(cache: ResilientRedisCache) -> None:
    async def body() -> None:
        await cache.aset("a", 1)
        cache.set("b", 2)
        await cache.aset("none", None)
        settle(cache)
        assert [await cache.ahas_key(k) for k in ("a", "b", "none", "c")] == [
            True,
            True,
            True,
            False,
        ]
        assert [cache.has_key(k) for k in ("a", "b", "none", "c")] == [True, True, True, False]
        assert await cache.aget("none", "dflt") is None  # a stored None is a value
        assert await cache.adelete("b") is True
        assert cache.delete("a") is True
        assert await cache.adelete("a") is False
        assert cache.delete("b") is False
        assert await cache.adelete("never-set") is False
        settle(cache)
        assert await cache.ahas_key("a") is False
        assert cache.has_key("b") is False

    asyncio.run(body())
    _served_by_redis(cache)


def test_aincr_and_adecr_agree_with_incr_and_decr(cache: ResilientRedisCache) -> None:
    async def body() -> None:
        with pytest.raises(ValueError, match="not found"):
            await cache.aincr("missing")
        with pytest.raises(ValueError, match="not found"):
            await cache.adecr("missing", 3)
        with pytest.raises(ValueError, match="not found"):
            cache.incr("missing")
        settle(cache)
        assert await cache.ahas_key("missing") is False  # a failed incr creates nothing

        await cache.aset("n", 10, 60)
        assert await cache.aincr("n") == 11
        assert cache.incr("n") == 12
        assert await cache.aincr("n", 10) == 22
        assert await cache.adecr("n") == 21
        assert cache.decr("n", 30) == -9
        assert await cache.adecr("n", -9) == 0
        settle(cache)
        assert await cache.aget("n") == cache.get("n") == 0
        assert 55 <= (await cache.attl("n") or 0) <= 60  # incr keeps the expiry

        await cache.aset("f", 1.5)  # a serialized number: the non-atomic path
        assert await cache.aincr("f") == 2.5
        assert await cache.adecr("f", 2) == 0.5
        settle(cache)
        assert cache.get("f") == 0.5

    asyncio.run(body())
    _served_by_redis(cache)


def test_versions_and_aincr_version_agree_with_the_sync_methods(
    cache: ResilientRedisCache,
) -> None:
    async def body() -> None:
        await cache.aset("v", "one")
        await cache.aset("v", "two", version=2)
        cache.set("v", "three", version=3)
        settle(cache)
        assert [await cache.aget("v", version=n) for n in (1, 2, 3)] == ["one", "two", "three"]
        assert [cache.get("v", version=n) for n in (1, 2, 3)] == ["one", "two", "three"]
        assert await cache.adelete("v", version=2) is True
        assert await cache.adelete("v", version=3) is True
        settle(cache)
        assert cache.get("v", version=2) is None
        assert await cache.aget("v") == "one"

        assert await cache.aincr_version("v") == 2
        settle(cache)
        assert await cache.aget("v") is None
        assert await cache.aget("v", version=2) == cache.get("v", version=2) == "one"
        assert await cache.adecr_version("v", version=2) == 1
        settle(cache)
        assert cache.get("v") == "one"
        assert await cache.ahas_key("v", version=2) is False
        with pytest.raises(ValueError):
            await cache.aincr_version("missing")

        await cache.aset("n", 1, version=5)
        assert await cache.aincr("n", version=5) == 2
        assert cache.incr("n", version=5) == 3
        settle(cache)
        assert await cache.ahas_key("n") is False
        assert await cache.ahas_key("n", version=5) is True
        assert await cache.aset_many({"m": 1}, version=7) == []
        settle(cache)
        assert cache.get_many(["m"], version=7) == {"m": 1}
        assert await cache.aget_many(["m"]) == {}
        await cache.adelete_many(["m"], version=7)
        settle(cache)
        assert cache.get("m", version=7) is None
        assert cache.make_key("v", version=4) == f"{cache.key_prefix}:4:v"

    asyncio.run(body())
    _served_by_redis(cache)


def test_many_methods_agree_with_the_sync_ones(cache: ResilientRedisCache) -> None:
    keys = [f"k{i}" for i in range(50)]
    expected = {k: (f"a:{k}" if i < 25 else i) for i, k in enumerate(keys)}

    async def body() -> None:
        assert await cache.aset_many({k: expected[k] for k in keys[:25]}) == []
        assert cache.set_many({k: expected[k] for k in keys[25:]}) == []
        settle(cache)
        assert await cache.aget_many([*keys, "never-set"]) == expected
        assert cache.get_many([*keys, "never-set"]) == expected

        assert await cache.adelete_many(keys[:10]) == 10
        cache.delete_many(keys[40:])
        settle(cache)
        remaining = {k: expected[k] for k in keys[10:40]}
        assert await cache.aget_many(keys) == remaining
        assert cache.get_many(keys) == remaining

        assert await cache.aget_many([]) == {}
        assert await cache.aset_many({}) == []
        assert await cache.adelete_many([]) == 0

        assert await cache.aset_many({"t1": 1, "t2": "two"}, timeout=30) == []
        settle(cache)
        assert 25 <= (cache.ttl("t2") or 0) <= 30
        assert await cache.aset_many({"t1": 1, keys[10]: 2}, timeout=0) == []  # deletes
        settle(cache)
        assert await cache.aget_many(["t1", keys[10], "t2"]) == {"t2": "two"}

    asyncio.run(body())
    _served_by_redis(cache)


def test_akeys_and_adelete_pattern_agree_with_the_sync_methods(
    cache: ResilientRedisCache,
) -> None:
    async def body() -> None:
        await cache.aset_many({"user:1": 1, "user:2": 2, "item:1": 3})
        await cache.aset("user:3", 3, version=2)
        assert sorted(await cache.akeys("user:*")) == ["user:1", "user:2"]
        assert sorted(cache.keys("user:*")) == ["user:1", "user:2"]
        assert sorted(await cache.akeys("*")) == ["item:1", "user:1", "user:2"]
        assert await cache.akeys("user:*", version=2) == ["user:3"]
        assert await cache.akeys("nothing:*") == []

        assert await cache.adelete_pattern("user:*") == 2
        assert await cache.adelete_pattern("nothing:*") == 0
        settle(cache)
        assert await cache.aget_many(["user:1", "user:2", "item:1"]) == {"item:1": 3}
        assert await cache.aget("user:3", version=2) == 3
        assert cache.delete_pattern("*", version=2) == 1
        assert await cache.akeys("*", version=2) == []
        assert await cache.adelete_pattern("*") == 1
        assert cache.keys("*") == []

    asyncio.run(body())


def test_aclear_leaves_reserved_and_foreign_keys_alone(cache: ResilientRedisCache) -> None:
    raw = cache.get_client()
    prefix = cache.key_prefix
    reserved = [f"{prefix}:drr:lock:{{job}}", f"{prefix}:drr:rl:{{user-1}}"]
    lookalike = f"{prefix}x:1:a"  # another cache whose prefix starts with this one
    for key in [*reserved, lookalike]:
        raw.set(key, b"kept")

    async def body() -> None:
        await cache.aset_many({"a": 1, "b": "two", "c": [3]})
        await cache.aset("a", "other version", version=2)
        assert await cache.aclear() is None
        settle(cache)
        assert await cache.aget_many(["a", "b", "c"]) == {}
        assert cache.get_many(["a", "b", "c"]) == {}
        assert await cache.aget("a", version=2) is None
        assert await cache.akeys("*") == []
        assert await cache.aset("after", "v") is True
        settle(cache)
        assert cache.get("after") == "v"

    try:
        asyncio.run(body())
        assert [raw.get(key) for key in [*reserved, lookalike]] == [b"kept"] * 3
    finally:
        for key in [*reserved, lookalike]:
            raw.delete(key)
        cache.clear()


def test_aget_or_set_with_a_value_a_callable_and_an_async_callable(
    cache: ResilientRedisCache,
) -> None:
    async def computed() -> str:
        await asyncio.sleep(0)
        return "from a coroutine"

    async def body() -> None:
        assert await cache.aget_or_set("v", "plain") == "plain"
        settle(cache)
        assert await cache.aget_or_set("v", "other") == "plain"
        assert await cache.aget_or_set("c", lambda: "from a callable") == "from a callable"
        assert await cache.aget_or_set("a", computed, 60) == "from a coroutine"
        assert await cache.aget_or_set("a", computed, 60, version=2) == "from a coroutine"
        settle(cache)
        assert cache.get_many(["v", "c", "a"]) == {
            "v": "plain",
            "c": "from a callable",
            "a": "from a coroutine",
        }
        assert cache.get_or_set("a", "ignored") == "from a coroutine"
        assert await cache.aget_or_set("a", "ignored", version=2) == "from a coroutine"
        assert 55 <= (await cache.attl("a") or 0) <= 60

    asyncio.run(body())
    _served_by_redis(cache)


# --- outages ---------------------------------------------------------------------------------

_ASYNC_OUTAGE_WRITES: dict[str, Callable[[ResilientRedisCache], Awaitable[object]]] = {
    "aset": lambda c: c.aset("k", 2),
    "aset_many": lambda c: c.aset_many({"k": 2}),
    "adelete": lambda c: c.adelete("k"),
    "adelete_many": lambda c: c.adelete_many(["k"]),
}


@pytest.mark.chaos
@pytest.mark.parametrize("op", list(_ASYNC_OUTAGE_WRITES))
@pytest.mark.parametrize("breaker", ["open", "closed"])
def test_async_write_during_an_outage_is_never_undone_by_old_data(
    drr_redis_factory: Any, op: str, breaker: str
) -> None:
    """``breaker="closed"``: the async write is the call that fails, before the breaker opens."""
    server = drr_redis_factory()
    written = 2 if op.startswith("aset") else None
    with resilient_cache(server.url, BREAKER=FAST_BREAKER) as cache:

        async def before() -> None:
            await cache.aset("k", 1)
            await cache.aset("untouched", "u")
            assert await cache.aget("k") == 1

        async def during() -> None:
            if breaker == "open":
                await _adegrade(cache)
            await _ASYNC_OUTAGE_WRITES[op](cache)
            assert cache.stats()["journal_size"] == 1
            await _adegrade(cache)
            if breaker == "open":
                assert await cache.aget("k") == written
                assert (await cache.aget_many(["k"])).get("k") == written
            else:  # the fallback starts empty when the breaker opens
                assert await cache.aget("k") in (written, None)
            assert cache.stats()["journal_size"] == 1

        async def after() -> None:
            assert await cache.aget("untouched") == "u"  # the old data is back, from Redis
            assert await cache.aget("k") in (written, None)  # never 1
            assert (await cache.aget_many(["k", "untouched"])).get("k") in (written, None)

        asyncio.run(before())
        _crash_keeping_data(server)
        asyncio.run(during())
        server.restart(keep_data=True)  # Redis holds k=1 again
        _recovered(cache)
        assert cache.stats()["invalidated_keys"] == 1  # k=1 was there, and deleted
        asyncio.run(after())
        assert cache.stats()["journal_size"] == 0
        with server.client() as client:
            assert client.get(cache.make_key("k")) is None


@pytest.mark.chaos
@pytest.mark.parametrize("failure", ["killed", "hung"])
def test_async_calls_never_raise_while_redis_is_down_and_never_serve_stale_after(
    drr_redis_factory: Any, failure: str
) -> None:
    server = drr_redis_factory()
    with resilient_cache(server.url, BREAKER=FAST_BREAKER, **QUICK_SOCKETS) as cache:
        old = {"k": 1, "d": "deleted during the outage", "m": "in set_many", "u": "untouched"}

        async def before() -> None:
            assert await cache.aset_many(old) == []

        async def during() -> None:
            # While the breaker is still closed the calls fail on Redis; none may raise.
            assert await cache.aget("u") in ("untouched", None)
            assert await cache.aset("early", 0) is True
            assert await cache.aget_many(["u", "early"]) in ({}, {"early": 0})
            await _adegrade(cache)
            stats = cache.stats()
            assert await cache.aset("k", 2) is True
            assert await cache.adelete("d") in (True, False)
            assert await cache.aset_many({"m": "new", "n": "fresh"}) == []
            assert await cache.aadd("k", "not added") is False
            assert await cache.aget("k") == 2
            assert await cache.aget("d") is None
            assert await cache.ahas_key("n") is True
            assert await cache.aget_many(["k", "d", "m", "n"]) == {"k": 2, "m": "new", "n": "fresh"}
            assert await cache.aget("u") is None  # Redis is out of reach: a miss, no error
            after = cache.stats()
            assert after["fallback_writes"] >= stats["fallback_writes"] + 5
            assert after["fallback_reads"] >= stats["fallback_reads"] + 5
            assert after["short_circuited"] > stats["short_circuited"]

        async def recovered() -> None:
            assert await cache.aget("u") == "untouched"  # the old data is served again
            assert await cache.aget("k") in (2, None)  # never 1
            assert await cache.aget("d") is None  # its deletion is not undone
            assert (await cache.aget_many(["m", "n"])).get("m") in ("new", None)
            assert await cache.aset("after", "ok") is True
            assert await cache.aget("after") == "ok"

        asyncio.run(before())
        if failure == "killed":
            _crash_keeping_data(server)
        else:
            server.hang()
        try:
            asyncio.run(during())
        finally:
            if failure == "killed":
                server.restart(keep_data=True)
            else:
                server.resume()
        _recovered(cache)
        assert wait_for(lambda: cache.stats()["journal_size"] == 0)
        asyncio.run(recovered())
        assert cache.stats()["journal_size"] == 0
        with server.client() as client:
            assert client.get(cache.make_key("k")) in (b"2", None)
            assert client.get(cache.make_key("d")) is None


@pytest.mark.chaos
def test_async_timed_out_write_is_journaled_and_the_old_value_never_read(
    drr_redis_factory: Any,
) -> None:
    server = drr_redis_factory()
    with resilient_cache(server.url, BREAKER=PATIENT_BREAKER, SOCKET_TIMEOUT=0.2) as cache:
        asyncio.run(cache.aset("k", 1))
        breaker = _breaker(cache)
        server.hang()
        try:

            async def timed_out() -> None:
                assert await cache.aset("k", 2) is True  # timed out on Redis, in the fallback
                assert breaker.state is BreakerState.CLOSED  # one failure of five
                stats = cache.stats()
                assert (stats["journal_size"], stats["errors"], stats["fallback_writes"]) == (
                    1,
                    1,
                    1,
                )
                assert await cache.aget("k") == 2  # journaled: never asks the frozen Redis
                assert await cache.aget_many(["k"]) == {"k": 2}
                assert cache.stats()["fallback_reads"] == stats["fallback_reads"] + 2

            asyncio.run(timed_out())
        finally:
            server.resume()

        seen: list[Any] = []

        def drained() -> bool:
            seen.append(asyncio.run(cache.aget("k")))
            return cache.stats()["journal_size"] == 0

        assert wait_for(drained, timeout=10)
        assert breaker.state is BreakerState.CLOSED
        assert 1 not in seen
        assert set(seen) <= {2, None}
        assert asyncio.run(cache.aget("k")) in (2, None)
        with server.client() as client:
            assert client.get(cache.make_key("k")) in (b"2", None)


def _keys_by_master(
    cluster: ClusterGroup, cache: ResilientRedisCache, keys: list[str]
) -> dict[int, list[str]]:
    out: dict[int, list[str]] = {master.port: [] for master in cluster.masters}
    for key in keys:
        out[cluster.node_for_key(cache.make_key(key)).port].append(key)
    return out


@pytest.mark.chaos
def test_async_cluster_killed_master_degrades_only_its_keys(drr_cluster_factory: Any) -> None:
    cluster = drr_cluster_factory(masters=3, require_full_coverage=False)
    with resilient_cache(cluster.location, BREAKER=FAST_BREAKER, **QUICK_SOCKETS) as cache:
        by_port = _keys_by_master(cluster, cache, [f"k{i}" for i in range(60)])
        victim = cluster.masters[0]
        healthy = [m for m in cluster.masters if m is not victim]
        probe, target, deleted, untouched = by_port[victim.port][:4]
        everything = [k for keys in by_port.values() for k in keys]
        assert asyncio.run(cache.aset_many({k: f"v1:{k}" for k in everything})) == []
        _crash_keeping_data(victim)

        async def during() -> None:
            await _adegrade(cache, probe)
            assert all(_breaker(cache, by_port[m.port][0]).closed for m in healthy)
            before = {m.port: (_calls(m, "get"), _calls(m, "set")) for m in healthy}
            for master in healthy:
                for key in by_port[master.port]:
                    assert await cache.aset(key, f"v2:{key}") is True
                    assert await cache.aget(key) == f"v2:{key}"
            for master in healthy:  # every healthy-shard call reached Redis
                n = len(by_port[master.port])
                gets, sets = before[master.port]
                assert (_calls(master, "get") - gets, _calls(master, "set") - sets) == (n, n)
            assert all(_breaker(cache, by_port[m.port][0]).closed for m in healthy)

            stats = cache.stats()
            assert await cache.aset(target, "v2") is True
            assert await cache.aget(target) == "v2"
            assert await cache.adelete(deleted) in (True, False)
            assert await cache.aget(deleted) is None
            after = cache.stats()
            assert after["fallback_writes"] == stats["fallback_writes"] + 2
            assert after["fallback_reads"] == stats["fallback_reads"] + 2
            expected = {k: f"v2:{k}" for m in healthy for k in by_port[m.port]}
            assert await cache.aget_many(everything) == {**expected, target: "v2"}
            assert await cache.aset_many({target: "v3", **expected}) == []
            assert await cache.aget(target) == "v3"

        asyncio.run(during())
        victim.restart(keep_data=True)  # the shard returns with its v1 values
        cluster.wait_for_ok()
        _recovered(cache, target, timeout=20)

        async def after() -> None:
            assert await cache.aget(target) in ("v3", None)  # never v1
            assert await cache.aget(deleted) is None
            assert await cache.aget(untouched) == f"v1:{untouched}"  # Redis's, not rewritten
            found = await cache.aget_many([target, deleted, untouched])
            assert found.get(target) in ("v3", None)
            assert deleted not in found

        asyncio.run(after())
        assert all(_breaker(cache, by_port[m.port][0]).closed for m in healthy)


# --- event loops -----------------------------------------------------------------------------


async def _exercise(cache: ResilientRedisCache, tag: str) -> dict[str, Any]:
    """A bit of everything, some of it concurrent, on the running loop."""
    await asyncio.gather(*(cache.aset(f"{tag}:{i}", i) for i in range(10)))
    assert await cache.aset_many({f"{tag}:m1": "one", f"{tag}:m2": "two"}) == []
    await cache.aset(f"{tag}:n", 1)
    assert await cache.aincr(f"{tag}:n", 4) == 5
    assert await cache.adelete(f"{tag}:m2") is True
    settle(cache)
    values = await asyncio.gather(*(cache.aget(f"{tag}:{i}") for i in range(10)))
    many = await cache.aget_many([f"{tag}:m1", f"{tag}:m2", f"{tag}:n"])
    return {"values": values, "many": many, "keys": sorted(await cache.akeys(f"{tag}:m*"))}


def _exercised(tag: str) -> dict[str, Any]:
    return {
        "values": list(range(10)),
        "many": {f"{tag}:m1": "one", f"{tag}:n": 5},
        "keys": [f"{tag}:m1"],
    }


def test_asyncio_run_twice_in_a_row(cache: ResilientRedisCache) -> None:
    assert asyncio.run(_exercise(cache, "first")) == _exercised("first")
    assert asyncio.run(_exercise(cache, "second")) == _exercised("second")
    assert asyncio.run(cache.aget("first:m1")) == "one"
    _served_by_redis(cache)


def test_two_event_loops_in_two_threads_at_once(cache: ResilientRedisCache) -> None:
    barrier = threading.Barrier(2)
    results: dict[int, Any] = {}
    errors: list[str] = []

    async def work(n: int) -> list[dict[str, Any]]:
        barrier.wait(timeout=10)  # both loops are running from here on
        return [await _exercise(cache, f"t{n}:r{r}") for r in range(3)]

    def thread(n: int) -> None:
        try:
            results[n] = asyncio.run(work(n))
        except BaseException as exc:
            errors.append(f"loop {n}: {exc!r}")

    threads = [threading.Thread(target=thread, args=(n,)) for n in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert errors == []
    assert results == {n: [_exercised(f"t{n}:r{r}") for r in range(3)] for n in range(2)}
    _served_by_redis(cache)


def test_many_event_loops_do_not_pile_up_pools(cache: ResilientRedisCache) -> None:
    async def once(i: int) -> list[int]:
        await cache.aset(f"k{i % 5}", i)
        await cache.aget_many([f"k{j}" for j in range(5)])
        await cache.akeys("*")
        return [pools.loop_count() for pools in _node_pools(cache)]

    for i in range(40):
        live = asyncio.run(once(i))
        assert set(live) <= {0, 1}, live  # only the running loop holds a pool
        assert 1 in live  # and it does hold one
    pools = _node_pools(cache)
    assert pools
    assert [p.loop_count() for p in pools] == [0] * len(pools)
    # Closed loops are forgotten when the next one comes: at most the last one remains.
    assert max(len(p._loops) for p in pools) <= 1
    _served_by_redis(cache)


def test_pools_are_closed_with_their_event_loops(drr_redis_factory: Any) -> None:
    server = drr_redis_factory()
    name = f"drr-async-{uuid.uuid4().hex[:8]}"
    with resilient_cache(f"{server.url}?client_name={name}", **UNBROKEN) as cache:

        async def use(i: int) -> int:
            await asyncio.gather(*(cache.aset(f"k{j}", i) for j in range(5)))
            assert await cache.aget_many([f"k{j}" for j in range(5)]) == {
                f"k{j}": i for j in range(5)
            }
            return _connections_named(server, name)

        during = [asyncio.run(use(i)) for i in range(20)]
        during += [async_to_sync(use)(i) for i in range(20, 40)]  # asgiref's loop per call
        assert max(during) <= 5  # one pool at a time, never the earlier loops' sockets
        assert wait_for(lambda: _connections_named(server, name) == 0)
        assert cache.manager.primary is not None
        assert cache.manager.primary.loop_count() == 0
        _served_by_redis(cache)


# --- an async view under WSGI ----------------------------------------------------------------


@override_settings(ROOT_URLCONF="tests.cache._async_urls")
def test_async_view_under_wsgi_gets_a_loop_per_request(cache: ResilientRedisCache) -> None:
    client = Client()
    key = f"visits-{uuid.uuid4().hex[:6]}"
    threads = set()
    for n in range(8):
        response = client.get(f"/visit/{key}/")
        assert response.status_code == 200, response.content
        body = response.json()
        assert body["before"] == n, cache.stats()
        # A miss here with errors in the stats is a call that timed out and degraded.
        assert body["seen"] == ({f"{key}:last": n} if n else {}), cache.stats()
        assert body["has_key"] is (n > 0)
        assert (body["stored"], body["failed"]) == (True, [])
        threads.add(body["thread"])
        settle(cache)  # the next request may read from a replica
    assert threading.get_ident() not in threads  # each request ran in asgiref's loop thread
    assert cache.get(key) == 8
    assert cache.get(f"{key}:last") == 8
    _served_by_redis(cache)
    assert [p.loop_count() for p in _node_pools(cache)] == [0] * len(_node_pools(cache))


# --- no thread hop ---------------------------------------------------------------------------


class ThreadRecordingSerializer(PickleSerializer):
    """django-redis's pickle serializer, noting the thread of every call."""

    calls: ClassVar[list[tuple[str, int]]] = []

    def dumps(self, value: Any) -> bytes:
        self.calls.append(("dumps", threading.get_ident()))
        return super().dumps(value)

    def loads(self, value: bytes) -> Any:
        self.calls.append(("loads", threading.get_ident()))
        return super().loads(value)


def test_async_calls_run_in_the_event_loops_thread_on_the_asyncio_client(
    drr_redis_factory: Any,
) -> None:
    server = drr_redis_factory()
    serializer = f"{__name__}.ThreadRecordingSerializer"
    ThreadRecordingSerializer.calls.clear()
    with resilient_cache(server.url, SERIALIZER=serializer) as cache:
        primary = cache.manager.primary
        assert primary is not None

        async def body() -> int:
            await cache.aset("k", {"v": 1})
            assert await cache.aget("k") == {"v": 1}
            assert await cache.aset_many({"a": [1], "b": "two"}) == []
            assert await cache.aget_many(["a", "b", "k"]) == {"a": [1], "b": "two", "k": {"v": 1}}
            assert await cache.aget_or_set("c", lambda: ("computed",)) == ("computed",)
            return threading.get_ident()

        result: dict[str, int] = {}
        # The loop runs in a thread of its own, so "the loop's thread" is not just "the main one".
        loop_thread = threading.Thread(target=lambda: result.update(loop=asyncio.run(body())))
        loop_thread.start()
        loop_thread.join(timeout=30)
        assert "loop" in result
        calls = ThreadRecordingSerializer.calls
        assert {kind for kind, _ in calls} == {"dumps", "loads"}
        assert {thread for _, thread in calls} == {result["loop"]}
        assert primary.pool._created_connections == 0  # the sync client was never used
        _served_by_redis(cache)
