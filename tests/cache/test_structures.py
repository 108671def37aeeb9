"""django-redis 7's data-structure helpers (sets, hashes, sorted sets) on the resilient cache.

The semantics tests run on every topology (``cache`` fixture); keys of one
multi-key command share a hash tag, so they run on the cluster too. The
compatibility tests put a real ``django_redis.cache.RedisCache`` beside the
resilient cache (same LOCATION, KEY_PREFIX and OPTIONS): each reads what the
other wrote, byte for byte the same in Redis. The outage tests break servers
they started themselves: a helper never answers from the fallback, it raises
:class:`RedisUnavailable`, and a write whose fate is unknown is undone before
the key is read again.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from typing import Any

import django_redis.cache
import pytest
import redis.exceptions as rex
from django.core.cache import caches
from django.core.cache.backends.base import DEFAULT_TIMEOUT
from django.test import override_settings
from redis.crc import key_slot

from django_redis_resilience.cache import ResilientRedisCache
from django_redis_resilience.connection import CircuitBreaker
from django_redis_resilience.exceptions import (
    BreakerOpen,
    CrossSlotKeys,
    InvalidValue,
    RedisUnavailable,
)
from django_redis_resilience.testing import (
    RedisServer,
    RedisServerFactory,
    ReplicaGroup,
    ReplicaGroupFactory,
)

from .conftest import BACKEND, FAST_BREAKER, resilient_cache, resilient_caches, settle, wait_for

DJANGO_REDIS = "django_redis.cache.RedisCache"
JSON = {"SERIALIZER": "django_redis.serializers.json.JSONSerializer"}
JSON_ZLIB = {**JSON, "COMPRESSOR": "django_redis.compressors.zlib.ZlibCompressor"}
#: Opens only after five failures: one timed-out call leaves it closed.
PATIENT_BREAKER = {**FAST_BREAKER, "FAILURE_THRESHOLD": 5}
#: Opens after two failures and stays open until reset: every later call is refused.
SLEEPY_BREAKER = {"FAILURE_THRESHOLD": 2, "RECOVERY_TIMEOUT": 30, "MAX_RECOVERY_TIMEOUT": 30}
#: (resilient cache, django-redis cache) on one server, one prefix, one set of OPTIONS.
Pair = tuple[ResilientRedisCache, Any]
#: Members a JSON serializer round-trips and a set can hold (no ``1`` beside ``True``).
MEMBERS: list[Any] = ["text", 42, -3, 1.5, True, None, "long " * 20]


# --- helpers ---------------------------------------------------------------------------------


def _breaker(cache: ResilientRedisCache, key: str | None = None) -> CircuitBreaker:
    """The breaker of the endpoint serving ``key`` (the primary's off-cluster)."""
    made = None if key is None else cache.make_key(key)
    return cache.manager.route(write=True, key=made)[0].breaker


def _crash_keeping_data(server: RedisServer) -> None:
    """Snapshot, then crash: ``restart(keep_data=True)`` brings back exactly this data."""
    with server.client() as client:
        client.save()
    server.kill()


def _calls(server: RedisServer, command: str) -> int:
    with server.client() as client:
        stats = client.info("commandstats").get(f"cmdstat_{command}", {})
    return int(stats.get("calls", 0)) if isinstance(stats, dict) else 0


def _in_different_slots(cache: ResilientRedisCache, count: int, *avoid: str) -> list[str]:
    """``count`` key names whose Redis keys hash to ``count`` different cluster slots,
    none of them the slot of a key named in ``avoid``."""
    names: list[str] = []
    slots = {key_slot(cache.make_key(name).encode()) for name in avoid}
    for i in range(1000):
        slot = key_slot(cache.make_key(f"k{i}").encode())
        if slot not in slots:
            slots.add(slot)
            names.append(f"k{i}")
        if len(names) == count:
            break
    return names


def _no_outage(cache: ResilientRedisCache) -> None:
    """Every call reached Redis: nothing failed, was short-circuited or used the fallback."""
    stats = cache.stats()
    assert (stats["errors"], stats["short_circuited"]) == (0, 0), stats
    assert (stats["fallback_reads"], stats["fallback_writes"]) == (0, 0), stats


@contextmanager
def _pair_on(location: Any, **options: Any) -> Iterator[Pair]:
    prefix = f"c{uuid.uuid4().hex[:8]}"
    common = {"LOCATION": location, "KEY_PREFIX": prefix}
    setting = {
        "default": {"BACKEND": BACKEND, **common, "OPTIONS": dict(options)},
        "dr": {"BACKEND": DJANGO_REDIS, **common, "OPTIONS": dict(options)},
    }
    with override_settings(CACHES=setting):
        ours, theirs = caches["default"], caches["dr"]
        assert isinstance(ours, ResilientRedisCache)
        assert type(theirs).__module__ == "django_redis.cache"
        yield ours, theirs


#: The comparisons with django-redis need its helpers, which came with django-redis 6.
needs_django_redis_helpers = pytest.mark.skipif(
    not hasattr(django_redis.cache.RedisCache, "sadd"),
    reason="the installed django-redis has no data-structure helpers to compare with",
)


@pytest.fixture(params=[{}, JSON_ZLIB], ids=["pickle", "json-zlib"])
def pair(request: pytest.FixtureRequest, drr_redis_server: RedisServer) -> Iterator[Pair]:
    """(resilient ``default``, django-redis ``dr``) on the standalone server."""
    with _pair_on(drr_redis_server.url, **request.param) as both:
        yield both


# --- sets ------------------------------------------------------------------------------------


def test_sadd_counts_new_members_and_smembers_returns_them_with_their_type(
    cache: ResilientRedisCache,
) -> None:
    assert cache.smembers("s") == set()
    assert cache.scard("s") == 0
    assert cache.sadd("s", 1, "1", (1, 2), None, b"raw") == 5
    assert cache.sadd("s", 1, "new", "new") == 1  # only members not there yet count
    members = cache.smembers("s")
    assert members == {1, "1", (1, 2), None, b"raw", "new"}
    assert isinstance(members, set)
    assert {type(m) for m in members} == {int, str, tuple, type(None), bytes}
    assert cache.scard("s") == 6
    assert cache.sadd("s", "other version", version=2) == 1
    assert cache.smembers("s", version=2) == {"other version"}
    assert cache.scard("s") == 6


def test_sismember_and_smismember(cache: ResilientRedisCache) -> None:
    cache.sadd("s", 42, "text", (1, 2))
    assert cache.sismember("s", 42) is True
    assert cache.sismember("s", "42") is False  # a str is not the int
    assert cache.sismember("s", (1, 2)) is True
    assert cache.sismember("missing", 42) is False
    assert cache.smismember("s", 42, "absent", "text") == [True, False, True]
    assert cache.smismember("missing", 1, 2) == [False, False]
    assert cache.sismember("s", 42, version=2) is False


def test_srem_removes_and_counts_what_was_there(cache: ResilientRedisCache) -> None:
    cache.sadd("s", 1, 2, "three")
    assert cache.srem("s", 1, "three", "absent") == 2
    assert cache.smembers("s") == {2}
    assert cache.srem("s", 2) == 1
    assert cache.scard("s") == 0
    assert cache.srem("missing", 1) == 0


def test_spop_removes_and_returns_a_member_or_a_set(cache: ResilientRedisCache) -> None:
    members = {1, "two", (3,), 4.5}
    cache.sadd("s", *members)
    popped = cache.spop("s")
    assert popped in members
    assert cache.sismember("s", popped) is False
    several = cache.spop("s", count=2)
    assert isinstance(several, set)
    assert len(several) == 2
    assert several <= members - {popped}
    assert cache.smembers("s") == members - {popped} - several
    assert cache.spop("missing") is None
    assert cache.spop("missing", count=2) == set()


def test_srandmember_returns_members_and_leaves_the_set_alone(
    cache: ResilientRedisCache,
) -> None:
    members = {1, "two", (3,)}
    cache.sadd("s", *members)
    assert cache.srandmember("s") in members
    distinct = cache.srandmember("s", count=2)
    assert isinstance(distinct, list)
    assert len(distinct) == len(set(distinct)) == 2
    assert set(distinct) <= members
    repeated = cache.srandmember("s", count=-5)  # a negative count may repeat members
    assert len(repeated) == 5
    assert set(repeated) <= members
    assert cache.smembers("s") == members
    assert cache.srandmember("missing") is None
    assert cache.srandmember("missing", count=2) == []


def test_sdiff_sinter_sunion_on_keys_sharing_a_hash_tag(cache: ResilientRedisCache) -> None:
    cache.sadd("{u1}:a", 1, 2, 3, "x")
    cache.sadd("{u1}:b", 2, 3, 4)
    cache.sadd("{u1}:c", 3, "x")
    assert cache.sdiff("{u1}:a", "{u1}:b") == {1, "x"}
    assert cache.sdiff("{u1}:a", "{u1}:b", "{u1}:c") == {1}
    assert cache.sinter("{u1}:a", "{u1}:b") == {2, 3}
    assert cache.sinter("{u1}:a", "{u1}:b", "{u1}:c") == {3}
    assert cache.sunion("{u1}:b", "{u1}:c") == {2, 3, 4, "x"}
    assert cache.sunion("{u1}:a", "{u1}:missing") == {1, 2, 3, "x"}
    assert cache.sinter("{u1}:a", "{u1}:missing") == set()
    cache.sadd("{u1}:a", "v2", version=2)
    assert cache.sunion("{u1}:a", "{u1}:b", version=2) == {"v2"}


def test_store_variants_replace_the_destination_and_count_it(
    cache: ResilientRedisCache,
) -> None:
    cache.sadd("{u1}:a", 1, 2, 3)
    cache.sadd("{u1}:b", 3, 4)
    cache.sadd("{u1}:dest", "old")
    assert cache.sunionstore("{u1}:dest", "{u1}:a", "{u1}:b") == 4
    assert cache.smembers("{u1}:dest") == {1, 2, 3, 4}  # replaced, not added to
    assert cache.sdiffstore("{u1}:dest", "{u1}:a", "{u1}:b") == 2
    assert cache.smembers("{u1}:dest") == {1, 2}
    assert cache.sinterstore("{u1}:dest", "{u1}:a", "{u1}:b") == 1
    assert cache.smembers("{u1}:dest") == {3}
    assert cache.sinterstore("{u1}:dest", "{u1}:a", "{u1}:missing") == 0
    assert cache.scard("{u1}:dest") == 0  # an empty result deletes the destination
    assert not cache.get_client().exists(cache.make_key("{u1}:dest"))
    assert cache.smembers("{u1}:a") == {1, 2, 3}  # sources untouched


def test_store_variants_take_their_versions(cache: ResilientRedisCache) -> None:
    cache.sadd("{v}:a", 1, 2, 3, version=2)
    cache.sadd("{v}:b", 3, 4, version=2)
    assert cache.sdiffstore("{v}:d", "{v}:a", "{v}:b", version_dest=3, version_keys=2) == 2
    assert cache.smembers("{v}:d", version=3) == {1, 2}
    assert cache.scard("{v}:d") == 0
    assert cache.scard("{v}:d", version=2) == 0
    assert cache.sinterstore("{v}:i", "{v}:a", "{v}:b", version=2) == 1
    assert cache.smembers("{v}:i", version=2) == {3}
    assert cache.sunionstore("{v}:u", "{v}:a", "{v}:b", version=2) == 4
    assert cache.smembers("{v}:u", version=2) == {1, 2, 3, 4}
    assert cache.scard("{v}:i") == cache.scard("{v}:u") == 0


def test_smove_moves_a_member_between_sets(cache: ResilientRedisCache) -> None:
    cache.sadd("{u1}:from", 1, (2, 3))
    assert cache.smove("{u1}:from", "{u1}:to", (2, 3)) is True
    assert cache.smembers("{u1}:from") == {1}
    assert cache.smembers("{u1}:to") == {(2, 3)}
    assert cache.smove("{u1}:from", "{u1}:to", "absent") is False
    assert cache.smembers("{u1}:to") == {(2, 3)}


def test_sscan_and_sscan_iter_return_every_member(cache: ResilientRedisCache) -> None:
    cache.sadd("small", 1, "two", (3,))
    assert cache.sscan("small") == {1, "two", (3,)}
    assert cache.sscan("missing") == set()
    big = {f"member-{i}" for i in range(300)}  # a hash table: SSCAN pages through it
    cache.sadd("big", *big)
    found = cache.sscan_iter("big", count=10)
    assert isinstance(found, Iterator)
    members = list(found)
    assert len(members) >= len(big)  # SSCAN may return a member twice, never miss one
    assert set(members) == big
    assert list(cache.sscan_iter("missing")) == []


# --- hashes ----------------------------------------------------------------------------------


def test_hset_counts_the_fields_it_adds(cache: ResilientRedisCache) -> None:
    assert cache.hset("h", "a", 1) == 1
    assert cache.hset("h", "a", "overwritten") == 0
    assert cache.hset("h", mapping={"a": 2, "b": (1, 2), "c": "three"}) == 2
    assert cache.hset("h", "d", 4, mapping={"e": 5, "a": 6}) == 2
    assert cache.hlen("h") == 5
    assert cache.hset("h", "a", 1, version=2) == 1
    assert cache.hlen("h", version=2) == 1
    assert cache.hlen("h") == 5


def test_hkeys_hlen_hexists_and_hdel(cache: ResilientRedisCache) -> None:
    assert cache.hkeys("h") == []
    assert cache.hlen("h") == 0
    assert cache.hexists("h", "a") is False
    cache.hset("h", mapping={"a": 1, "b": None, "c": [3]})
    fields = cache.hkeys("h")
    assert sorted(fields) == ["a", "b", "c"]
    assert all(type(field) is str for field in fields)
    assert cache.hexists("h", "b") is True
    assert cache.hexists("h", "z") is False
    assert cache.hdel("h", "a") == 1
    assert cache.hdel("h", "a") == 0
    assert cache.hexists("h", "a") is False
    assert cache.hlen("h") == 2
    assert cache.hkeys("h", version=2) == []
    assert cache.hdel("missing", "a") == 0


# --- sorted sets -----------------------------------------------------------------------------


def test_zadd_counts_added_members_and_zrange_orders_them_by_score(
    cache: ResilientRedisCache,
) -> None:
    assert cache.zadd("z", {"c": 3, "a": 1, "b": 2}) == 3
    assert cache.zadd("z", {"a": 0.5, "d": 4}) == 1  # a's score updated, d added
    assert cache.zcard("z") == 4
    assert cache.zrange("z", 0, -1) == ["a", "b", "c", "d"]
    assert cache.zrange("z", 1, 2) == ["b", "c"]
    assert cache.zrange("z", 0, -1, desc=True) == ["d", "c", "b", "a"]
    assert cache.zrange("z", 0, 1, withscores=True) == [("a", 0.5), ("b", 2.0)]
    assert cache.zrange("z", -1, -1, withscores=True, score_cast_func=int) == [("d", 4)]
    assert cache.zrevrange("z", 0, 1) == ["d", "c"]
    assert cache.zrevrange("z", 0, 0, withscores=True) == [("d", 4.0)]
    assert cache.zrange("missing", 0, -1) == []
    assert cache.zcard("missing") == 0
    assert cache.zcard("z", version=2) == 0


def test_sorted_set_members_keep_their_type(cache: ResilientRedisCache) -> None:
    cache.zadd("z", {(1, 2): 1, 5: 2, "5": 3, None: 4})
    members = cache.zrange("z", 0, -1)
    assert members == [(1, 2), 5, "5", None]
    assert [type(m) for m in members] == [tuple, int, str, type(None)]
    assert cache.zscore("z", 5) == 2.0
    assert cache.zscore("z", "5") == 3.0
    assert cache.zrank("z", None) == 3


def test_zadd_nx_xx_ch_gt_lt(cache: ResilientRedisCache) -> None:
    cache.zadd("z", {"a": 5})
    assert cache.zadd("z", {"a": 1, "b": 1}, nx=True) == 1  # only b added
    assert cache.zscore("z", "a") == 5.0
    assert cache.zadd("z", {"a": 6, "c": 1}, xx=True) == 0  # a updated, c not added
    assert cache.zscore("z", "a") == 6.0
    assert cache.zscore("z", "c") is None
    assert cache.zadd("z", {"a": 7, "b": 1, "d": 1}, ch=True) == 2  # a changed, d added
    assert cache.zadd("z", {"a": 3}, gt=True, ch=True) == 0
    assert cache.zscore("z", "a") == 7.0
    assert cache.zadd("z", {"a": 9}, gt=True, ch=True) == 1
    assert cache.zadd("z", {"a": 10}, lt=True, ch=True) == 0
    assert cache.zadd("z", {"a": 2}, lt=True, ch=True) == 1
    assert cache.zscore("z", "a") == 2.0


def test_zadd_incr_and_zincrby_return_the_new_score(cache: ResilientRedisCache) -> None:
    assert cache.zadd("z", {"a": 1.5}, incr=True) == 1.5
    assert cache.zadd("z", {"a": 2}, incr=True) == 3.5
    assert cache.zadd("z", {"a": 2}, incr=True, nx=True) is None  # a exists: nothing done
    assert cache.zincrby("z", 2.5, "a") == 6.0
    assert cache.zincrby("z", -1, (1, 2)) == -1.0  # a new member starts from 0
    assert cache.zscore("z", "a") == 6.0
    assert cache.zscore("z", (1, 2)) == -1.0


def test_zcount_zscore_and_zrank(cache: ResilientRedisCache) -> None:
    cache.zadd("z", {"a": 1, "b": 2, "c": 3, "d": 4})
    assert cache.zcount("z", "-inf", "+inf") == 4
    assert cache.zcount("z", 2, 3) == 2
    assert cache.zcount("z", "(2", 3) == 1  # exclusive bound
    assert cache.zcount("missing", "-inf", "+inf") == 0
    assert cache.zscore("z", "c") == 3.0
    assert cache.zscore("z", "absent") is None
    assert cache.zscore("missing", "a") is None
    assert cache.zrank("z", "a") == 0
    assert cache.zrank("z", "d") == 3
    assert cache.zrank("z", "absent") is None


def test_zrangebyscore_and_zrevrangebyscore_with_limits(cache: ResilientRedisCache) -> None:
    cache.zadd("z", {"a": 1, "b": 2, "c": 3, "d": 4, "e": 5})
    assert cache.zrangebyscore("z", 2, 4) == ["b", "c", "d"]
    assert cache.zrangebyscore("z", "(1", "+inf", start=1, num=2) == ["c", "d"]
    assert cache.zrangebyscore("z", 4, 10, withscores=True) == [("d", 4.0), ("e", 5.0)]
    assert cache.zrangebyscore("z", 5, 5, withscores=True, score_cast_func=int) == [("e", 5)]
    assert cache.zrevrangebyscore("z", 4, 2) == ["d", "c", "b"]
    assert cache.zrevrangebyscore("z", "+inf", "-inf", start=0, num=2) == ["e", "d"]
    assert cache.zrevrangebyscore("z", 2, 1, withscores=True) == [("b", 2.0), ("a", 1.0)]
    assert cache.zrangebyscore("z", 10, 20) == []


def test_zrem_and_zremrangebyscore(cache: ResilientRedisCache) -> None:
    cache.zadd("z", {"a": 1, "b": 2, "c": 3, "d": 4, 5: 5})
    assert cache.zrem("z", "a", 5, "absent") == 2
    assert cache.zrange("z", 0, -1) == ["b", "c", "d"]
    assert cache.zremrangebyscore("z", 2, 3) == 2
    assert cache.zrange("z", 0, -1) == ["d"]
    assert cache.zremrangebyscore("z", 10, 20) == 0
    assert cache.zrem("missing", "a") == 0


def test_zpopmax_and_zpopmin(cache: ResilientRedisCache) -> None:
    cache.zadd("z", {"a": 1, "b": 2, "c": 3, "d": 4, (5,): 5})
    assert cache.zpopmax("z") == ((5,), 5.0)
    assert cache.zpopmin("z") == ("a", 1.0)
    assert cache.zpopmax("z", count=2) == [("d", 4.0), ("c", 3.0)]
    assert cache.zpopmin("z", count=5) == [("b", 2.0)]
    assert cache.zcard("z") == 0
    assert cache.zpopmax("z") is None
    assert cache.zpopmin("z") is None
    assert cache.zpopmax("z", count=2) == []
    assert cache.zpopmin("z", count=2) == []


# --- errors that are the caller's, not an outage ---------------------------------------------


def test_a_key_of_the_wrong_type_raises_the_redis_error_and_is_no_outage(
    cache: ResilientRedisCache,
) -> None:
    cache.sadd("s", 1, 2)
    for _ in range(5):  # repeated: a user error must not open the breaker
        with pytest.raises(rex.ResponseError, match="WRONGTYPE"):
            cache.hset("s", "f", 1)
        with pytest.raises(rex.ResponseError, match="WRONGTYPE"):
            cache.zadd("s", {"m": 1})
        with pytest.raises(rex.ResponseError, match="WRONGTYPE"):
            cache.hlen("s")
    cache.hset("h", "f", 1)
    with pytest.raises(rex.ResponseError, match="WRONGTYPE"):
        cache.sadd("h", 1)
    assert cache.smembers("s") == {1, 2}
    assert _breaker(cache, "s").closed
    _no_outage(cache)


def test_multi_key_commands_on_keys_in_different_slots(
    cache: ResilientRedisCache, topology: str
) -> None:
    """A cluster refuses them before sending anything, telling the caller about hash tags;
    elsewhere any keys may be combined."""
    a, b, dest = _in_different_slots(cache, 3, "{u1}:a")
    cache.sadd(a, 1, 2, 3)
    cache.sadd(b, 3, 4)
    calls: dict[str, Callable[[], object]] = {
        "sdiff": lambda: cache.sdiff(a, b),
        "sinter": lambda: cache.sinter(a, b),
        "sunion": lambda: cache.sunion(a, b),
        "sdiffstore": lambda: cache.sdiffstore(dest, a, b),
        "sinterstore": lambda: cache.sinterstore(dest, a, b),
        "sunionstore": lambda: cache.sunionstore(dest, a, b),
        "smove": lambda: cache.smove(a, b, 1),
        # Sources sharing a slot, the destination in another one.
        "store-elsewhere": lambda: cache.sunionstore(dest, "{u1}:a", "{u1}:b"),
        "asdiff": lambda: asyncio.run(cache.asdiff(a, b)),
        "asinterstore": lambda: asyncio.run(cache.asinterstore(dest, a, b)),
        "asmove": lambda: asyncio.run(cache.asmove(a, b, 1)),
    }
    if topology != "cluster":
        assert cache.sdiff(a, b) == {1, 2}
        assert cache.sinter(a, b) == {3}
        assert cache.sunionstore(dest, a, b) == 4
        assert cache.smove(a, b, 1) is True
        assert cache.smembers(b) == {1, 3, 4}
        return
    for name, call in calls.items():
        with pytest.raises(CrossSlotKeys) as refused:
            call()
        assert isinstance(refused.value, InvalidValue), name
        assert isinstance(refused.value, ValueError), name
        assert "{" in str(refused.value), (name, str(refused.value))
    assert cache.smembers(a) == {1, 2, 3}  # nothing moved
    assert cache.smembers(b) == {3, 4}
    assert cache.scard(dest) == 0  # nothing stored
    assert all(endpoint.breaker.closed for endpoint in cache.manager.endpoints)
    _no_outage(cache)


# --- reads on replicas -----------------------------------------------------------------------


def test_read_helpers_are_served_by_a_replica(drr_replica_group: ReplicaGroup) -> None:
    """As ``get``: with ``READ_FROM_REPLICAS`` a replica serves reads, the primary writes."""
    primary, replica = drr_replica_group.primary, drr_replica_group.replicas[0]
    with resilient_cache(drr_replica_group.location, READ_FROM_REPLICAS=True) as cache:
        cache.sadd("s", 1, 2)
        cache.hset("h", "f", 1)
        cache.zadd("z", {"m": 1})
        settle(cache)
        reads = {
            "smembers": lambda: cache.smembers("s") == {1, 2},
            "hlen": lambda: cache.hlen("h") == 1,
            "zrange": lambda: cache.zrange("z", 0, -1) == ["m"],
        }
        for command, read in reads.items():
            on_replica, on_primary = _calls(replica, command), _calls(primary, command)
            assert read(), command
            assert _calls(replica, command) == on_replica + 1, command
            assert _calls(primary, command) == on_primary, command


# --- async twins -----------------------------------------------------------------------------


def test_async_set_helpers_agree_with_the_sync_ones(cache: ResilientRedisCache) -> None:
    async def body() -> None:
        assert await cache.asadd("{s}:a", 1, 2, 3, "x") == 4
        assert cache.sadd("{s}:b", 2, 3, 4) == 3
        settle(cache)
        assert await cache.ascard("{s}:a") == 4
        assert await cache.asmembers("{s}:a") == cache.smembers("{s}:a") == {1, 2, 3, "x"}
        assert await cache.asismember("{s}:a", "x") is True
        assert await cache.asmismember("{s}:a", 1, 9) == [True, False]
        assert await cache.asdiff("{s}:a", "{s}:b") == {1, "x"}
        assert await cache.asinter("{s}:a", "{s}:b") == {2, 3}
        assert await cache.asunion("{s}:a", "{s}:b") == {1, 2, 3, 4, "x"}
        assert await cache.asdiffstore("{s}:d", "{s}:a", "{s}:b") == 2
        assert await cache.asinterstore("{s}:i", "{s}:a", "{s}:b") == 2
        assert await cache.asunionstore("{s}:u", "{s}:a", "{s}:b") == 5
        settle(cache)
        assert cache.smembers("{s}:d") == {1, "x"}
        assert cache.smembers("{s}:i") == {2, 3}
        assert cache.smembers("{s}:u") == {1, 2, 3, 4, "x"}
        assert await cache.asmove("{s}:a", "{s}:b", "x") is True
        assert await cache.asrem("{s}:a", 1, 99) == 1
        settle(cache)
        assert cache.smembers("{s}:a") == {2, 3}
        assert await cache.asscan("{s}:b") == {2, 3, 4, "x"}
        found = cache.asscan_iter("{s}:b", count=2)
        assert isinstance(found, AsyncIterator)
        assert {m async for m in found} == {2, 3, 4, "x"}
        assert await cache.asrandmember("{s}:i") in {2, 3}
        assert await cache.asrandmember("{s}:i", count=5) in ([2, 3], [3, 2])
        popped = await cache.aspop("{s}:u")
        assert popped in {1, 2, 3, 4, "x"}
        assert await cache.aspop("{s}:u", count=10) == {1, 2, 3, 4, "x"} - {popped}
        settle(cache)
        assert cache.scard("{s}:u") == 0

    asyncio.run(body())
    _no_outage(cache)


def test_async_hash_helpers_agree_with_the_sync_ones(cache: ResilientRedisCache) -> None:
    async def body() -> None:
        assert await cache.ahset("h", "a", 1) == 1
        assert await cache.ahset("h", mapping={"a": 2, "b": [2]}) == 1
        assert await cache.ahset("h", "c", "three", version=2) == 1
        settle(cache)
        assert cache.hlen("h") == await cache.ahlen("h") == 2
        assert sorted(await cache.ahkeys("h")) == sorted(cache.hkeys("h")) == ["a", "b"]
        assert await cache.ahkeys("h", version=2) == ["c"]
        assert await cache.ahexists("h", "b") is True
        assert await cache.ahexists("h", "c") is False
        assert await cache.ahdel("h", "a") == 1
        assert await cache.ahdel("h", "a") == 0
        settle(cache)
        assert cache.hkeys("h") == ["b"]
        raw = cache.get_client()
        assert raw.hget(cache.make_key("h", version=2), "c") is not None

    asyncio.run(body())
    _no_outage(cache)


def test_async_sorted_set_helpers_agree_with_the_sync_ones(cache: ResilientRedisCache) -> None:
    async def body() -> None:
        assert await cache.azadd("z", {"a": 1, "b": 2, "c": 3, 4: 4, (5,): 5}) == 5
        assert await cache.azadd("z", {"a": 0}, xx=True, ch=True) == 1
        assert await cache.azadd("z", {"b": 1}, incr=True) == 3.0
        settle(cache)
        assert await cache.azcard("z") == cache.zcard("z") == 5
        assert await cache.azcount("z", "(0", 3) == 2
        assert await cache.azincrby("z", 0.5, "c") == 3.5
        assert await cache.azscore("z", 4) == 4.0
        assert await cache.azrank("z", "c") == 2
        settle(cache)
        everything = [("a", 0.0), ("b", 3.0), ("c", 3.5), (4, 4.0), ((5,), 5.0)]
        assert await cache.azrange("z", 0, -1, withscores=True) == everything
        assert cache.zrange("z", 0, -1, withscores=True) == everything
        assert await cache.azrange("z", 0, 0, desc=True) == [(5,)]
        assert await cache.azrangebyscore("z", 3, 4, start=1, num=5) == ["c", 4]
        assert await cache.azrevrange("z", 0, 1, withscores=True, score_cast_func=int) == [
            ((5,), 5),
            (4, 4),
        ]
        assert await cache.azrevrangebyscore("z", 4, 3) == [4, "c", "b"]
        assert await cache.azrem("z", 4, "absent") == 1
        assert await cache.azremrangebyscore("z", 3, 3.5) == 2
        assert await cache.azpopmax("z") == ((5,), 5.0)
        assert await cache.azpopmin("z", count=3) == [("a", 0.0)]
        assert await cache.azpopmin("z") is None
        settle(cache)
        assert cache.zcard("z") == 0

    asyncio.run(body())
    _no_outage(cache)


# --- interchangeable with django-redis -------------------------------------------------------


@needs_django_redis_helpers
def test_sets_written_by_one_are_read_by_the_other(pair: Pair) -> None:
    ours, theirs = pair
    n = len(MEMBERS)
    assert ours.sadd("ours", *MEMBERS) == n
    assert theirs.sadd("theirs", *MEMBERS) == n
    raw = ours.get_client()
    mine = raw.smembers(ours.make_key("ours"))
    assert mine == raw.smembers(theirs.make_key("theirs"))  # byte for byte
    assert {b"42", b"-3"} <= mine  # integers are stored as plain integers
    assert theirs.smembers("ours") == set(MEMBERS)
    assert ours.smembers("theirs") == set(MEMBERS)
    assert theirs.smismember("ours", *MEMBERS) == [True] * n
    assert ours.smismember("theirs", *MEMBERS, "absent") == [*[True] * n, False]
    assert ours.sismember("theirs", 42) is theirs.sismember("ours", 42) is True
    assert ours.srem("theirs", 42, "text") == 2
    assert theirs.scard("theirs") == n - 2
    assert theirs.sinter("ours", "theirs") == set(MEMBERS) - {42, "text"}
    assert ours.sdiff("ours", "theirs") == theirs.sdiff("ours", "theirs") == {42, "text"}
    assert ours.sscan("ours") == theirs.sscan("ours") == set(MEMBERS)


@needs_django_redis_helpers
def test_hashes_written_by_one_are_read_by_the_other(pair: Pair) -> None:
    ours, theirs = pair
    mapping = {"int": 7, "text": "v", "float": 1.5, "list": [1, 2], "long": "long " * 20}
    assert ours.hset("ours", mapping=mapping) == 5
    assert theirs.hset("theirs", mapping=mapping) == 5
    raw = ours.get_client()
    ours_key, theirs_key = ours.make_key("ours"), theirs.make_key("theirs")
    assert raw.hgetall(ours_key) == raw.hgetall(theirs_key)  # byte for byte
    assert raw.hget(ours_key, "int") == b"7"
    assert sorted(theirs.hkeys("ours")) == sorted(ours.hkeys("theirs")) == sorted(mapping)
    assert theirs.hlen("ours") == ours.hlen("theirs") == 5
    assert ours.hset("theirs", "int", 8) == 0
    assert theirs.hset("ours", "int", 8) == 0
    assert raw.hget(ours_key, "int") == raw.hget(theirs_key, "int") == b"8"
    assert theirs.hdel("ours", "int") == 1
    assert ours.hexists("ours", "int") is False
    assert theirs.hexists("ours", "text") is True


@needs_django_redis_helpers
def test_sorted_sets_written_by_one_are_read_by_the_other(pair: Pair) -> None:
    ours, theirs = pair
    scored = {"a": 1.0, 5: 2.0, "long " * 20: 3.0}
    assert ours.zadd("ours", scored) == 3
    assert theirs.zadd("theirs", scored) == 3
    raw = ours.get_client()
    ours_key, theirs_key = ours.make_key("ours"), theirs.make_key("theirs")
    # Members, integers too, are serialized exactly as django-redis serializes them.
    assert raw.zrange(ours_key, 0, -1, withscores=True) == raw.zrange(
        theirs_key, 0, -1, withscores=True
    )
    expected = list(scored.items())
    assert theirs.zrange("ours", 0, -1, withscores=True) == expected
    assert ours.zrange("theirs", 0, -1, withscores=True) == expected
    assert ours.zscore("theirs", 5) == theirs.zscore("ours", 5) == 2.0
    assert theirs.zincrby("ours", 10, "a") == 11.0
    assert ours.zrank("ours", "a") == 2
    assert ours.zincrby("theirs", 10, 5) == 12.0
    assert theirs.zrevrange("theirs", 0, 0) == [5]
    assert theirs.zpopmin("ours") == (5, 2.0)
    assert ours.zcard("ours") == 2


def test_counters_and_deletes_agree_with_django_redis(pair: Pair) -> None:
    ours, theirs = pair
    assert ours.incr("n", 4, ignore_key_check=True) == 4
    assert theirs.get("n") == 4
    assert theirs.incr("m", 3, ignore_key_check=True) == 3
    assert ours.incr("m", 1, ignore_key_check=True) == 4
    ours.set_many({"a": 1, "b": 2})
    assert ours.delete_many(["a", "b", "missing"]) == 2
    assert theirs.get_many(["a", "b"]) == {}


@needs_django_redis_helpers
def test_sscan_match_finds_the_members_django_redis_finds(drr_redis_server: RedisServer) -> None:
    with _pair_on(drr_redis_server.url, **JSON) as (ours, theirs):
        ours.sadd("fruit", "apple", "avocado", "banana", 42)
        assert ours.sscan("fruit", match="a*") == {"apple", "avocado"}
        assert theirs.sscan("fruit", match="a*") == {"apple", "avocado"}
        assert set(ours.sscan_iter("fruit", match="a*")) == {"apple", "avocado"}
        assert ours.sscan("fruit", match="z*") == set()


@needs_django_redis_helpers
def test_sscan_match_with_compression_raises_value_error(drr_redis_server: RedisServer) -> None:
    """A pattern cannot match inside compressed members: refused, as django-redis does,
    instead of a silently empty answer."""
    with _pair_on(drr_redis_server.url, **JSON_ZLIB) as (ours, theirs):
        ours.sadd("fruit", "apple", "banana")
        with pytest.raises(ValueError):
            theirs.sscan("fruit", match="a*")
        with pytest.raises(ValueError):
            ours.sscan("fruit", match="a*")
        with pytest.raises(ValueError):
            list(ours.sscan_iter("fruit", match="a*"))
        assert ours.sscan("fruit") == {"apple", "banana"}


# --- django-redis's API: delete_many, incr, expiries -----------------------------------------


def test_delete_many_returns_how_many_keys_it_deleted(cache: ResilientRedisCache) -> None:
    keys = [f"dm:{i}" for i in range(30)]  # on a cluster, spread over every shard
    cache.set_many(dict.fromkeys(keys, "v"))
    cache.set("dm:0", "v", version=2)
    assert cache.delete_many([*keys[:20], "missing"]) == 20
    assert cache.delete_many(keys) == 10
    assert cache.delete_many(keys) == 0
    assert cache.delete_many([]) == 0
    assert cache.get_many(keys) == {}
    assert cache.delete_many(["dm:0"], version=2) == 1


def test_incr_with_ignore_key_check_creates_a_missing_key(cache: ResilientRedisCache) -> None:
    assert cache.incr("new", 5, ignore_key_check=True) == 5
    assert cache.get("new") == 5
    assert cache.get_client().get(cache.make_key("new")) == b"5"
    assert cache.incr("new", 2, ignore_key_check=True) == 7
    assert cache.incr("new") == 8
    assert cache.incr("v", 3, version=2, ignore_key_check=True) == 3
    assert cache.get("v", version=2) == 3
    assert cache.get("v") is None
    with pytest.raises(ValueError):
        cache.incr("other")  # without it a missing key is still an error
    assert cache.get("other") is None


def test_expire_at_and_pexpire_at_take_unix_timestamps(cache: ResilientRedisCache) -> None:
    cache.set("k", "v", timeout=None)
    assert cache.expire_at("k", int(time.time()) + 50) is True
    ttl = cache.ttl("k")
    assert ttl is not None
    assert 40 <= ttl <= 50
    assert cache.pexpire_at("k", int(time.time() * 1000) + 30_000) is True
    pttl = cache.pttl("k")
    assert pttl is not None
    assert 25_000 <= pttl <= 30_000
    assert cache.get("k") == "v"
    assert cache.expire_at("missing", int(time.time()) + 50) is False
    assert cache.pexpire_at("missing", int(time.time() * 1000) + 50_000) is False
    assert cache.expire_at("k", int(time.time()) - 10) is True  # in the past: gone
    assert cache.get("k") is None
    cache.set("p", "v", timeout=None)
    assert cache.pexpire_at("p", int(time.time() * 1000) - 10_000) is True
    assert cache.get("p") is None


def test_expire_and_pexpire_with_default_timeout_use_the_caches_timeout(location: Any) -> None:
    setting = resilient_caches(location)
    setting["default"]["TIMEOUT"] = 77
    with override_settings(CACHES=setting):
        cache = caches["default"]
        assert isinstance(cache, ResilientRedisCache)
        cache.set("k", "v", timeout=None)
        assert cache.expire("k", DEFAULT_TIMEOUT) is True
        ttl = cache.ttl("k")
        assert ttl is not None
        assert 70 <= ttl <= 77
        assert cache.persist("k") is True
        assert cache.pexpire("k", DEFAULT_TIMEOUT) is True
        ttl = cache.ttl("k")
        assert ttl is not None
        assert 70 <= ttl <= 77
        assert cache.expire("missing", DEFAULT_TIMEOUT) is False


def test_async_delete_many_incr_and_expiries(cache: ResilientRedisCache) -> None:
    async def body() -> None:
        keys = [f"dm:{i}" for i in range(30)]
        await cache.aset_many(dict.fromkeys(keys, "v"))
        assert await cache.adelete_many([*keys[:20], "missing"]) == 20
        assert await cache.adelete_many(keys) == 10
        assert await cache.adelete_many([]) == 0

        assert await cache.aincr("n", 5, ignore_key_check=True) == 5
        assert await cache.aincr("n", 1, ignore_key_check=True) == 6
        with pytest.raises(ValueError):
            await cache.aincr("missing")

        await cache.aset("k", "v", timeout=None)
        assert await cache.aexpire_at("k", int(time.time()) + 50) is True
        assert 40 <= (await cache.attl("k") or 0) <= 50
        assert await cache.apexpire_at("k", int(time.time() * 1000) + 30_000) is True
        assert 25_000 <= (await cache.apttl("k") or 0) <= 30_000
        assert await cache.apexpire("k", DEFAULT_TIMEOUT) is True  # the cache's 300 s
        assert 290 <= (await cache.attl("k") or 0) <= 300
        assert await cache.apersist("k") is True
        assert await cache.aexpire("k", DEFAULT_TIMEOUT) is True
        assert 290 <= (await cache.attl("k") or 0) <= 300
        assert await cache.aexpire_at("k", int(time.time()) - 10) is True
        assert await cache.apexpire_at("missing", int(time.time() * 1000) + 5_000) is False
        settle(cache)
        assert await cache.aget("k") is None
        assert await cache.aget("n") == 6

    asyncio.run(body())
    assert cache.get_many([f"dm:{i}" for i in range(30)]) == {}


# --- outages ---------------------------------------------------------------------------------

#: Every helper with arguments that work on the data of :func:`_fill` (one server).
HELPER_CALLS: dict[str, tuple[Any, ...]] = {
    "sadd": ("s", 3),
    "scard": ("s",),
    "sdiff": ("s", "t"),
    "sdiffstore": ("d", "s", "t"),
    "sinter": ("s", "t"),
    "sinterstore": ("d", "s", "t"),
    "sismember": ("s", 1),
    "smismember": ("s", 1, 2),
    "smembers": ("s",),
    "smove": ("s", "t", 1),
    "spop": ("s",),
    "srandmember": ("s",),
    "srem": ("s", 1),
    "sscan": ("s",),
    "sscan_iter": ("s",),
    "sunion": ("s", "t"),
    "sunionstore": ("d", "s", "t"),
    "hset": ("h", "f", 2),
    "hdel": ("h", "f"),
    "hlen": ("h",),
    "hkeys": ("h",),
    "hexists": ("h", "f"),
    "zadd": ("z", {"m": 2.0}),
    "zcard": ("z",),
    "zcount": ("z", "-inf", "+inf"),
    "zincrby": ("z", 1, "m"),
    "zpopmax": ("z",),
    "zpopmin": ("z",),
    "zrange": ("z", 0, -1),
    "zrangebyscore": ("z", 0, 10),
    "zrank": ("z", "m"),
    "zrem": ("z", "m"),
    "zremrangebyscore": ("z", 0, 10),
    "zrevrange": ("z", 0, -1),
    "zrevrangebyscore": ("z", 10, 0),
    "zscore": ("z", "m"),
}


def _fill(cache: ResilientRedisCache) -> None:
    cache.sadd("s", 1, 2)
    cache.sadd("t", 2)
    cache.hset("h", "f", 1)
    cache.zadd("z", {"m": 1.0})


def _filled(cache: ResilientRedisCache) -> None:
    """What :func:`_fill` wrote is read back from Redis."""
    assert cache.smembers("s") == {1, 2}
    assert cache.smembers("t") == {2}
    assert cache.hkeys("h") == ["f"]
    assert cache.zrange("z", 0, -1, withscores=True) == [("m", 1.0)]


def _call(cache: ResilientRedisCache, name: str) -> Any:
    result = getattr(cache, name)(*HELPER_CALLS[name])
    return list(result) if name == "sscan_iter" else result


async def _acall(cache: ResilientRedisCache, name: str) -> Any:
    result = getattr(cache, f"a{name}")(*HELPER_CALLS[name])
    if name == "sscan_iter":
        return [member async for member in result]
    return await result


def _outcome(call: Callable[[], Any]) -> str:
    """The name of the exception ``call`` raised, or what it returned."""
    try:
        result = call()
    except Exception as exc:
        return type(exc).__name__
    return f"returned {result!r}"


def _unavailable(call: Callable[[], Any]) -> Any:
    """``"unavailable"`` if ``call`` raised :class:`RedisUnavailable`, else its answer."""
    try:
        return call()
    except RedisUnavailable:
        return "unavailable"


async def _aoutcome(cache: ResilientRedisCache, name: str) -> str:
    try:
        result = await _acall(cache, name)
    except Exception as exc:
        return type(exc).__name__
    return f"returned {result!r}"


def _open_breaker(cache: ResilientRedisCache) -> None:
    """Read until the breaker opens; each read must raise (a helper never degrades)."""

    def opened() -> bool:
        with pytest.raises(RedisUnavailable):
            cache.scard("s")
        return not _breaker(cache).closed

    assert wait_for(opened, timeout=10)


@contextmanager
def _outage(server: RedisServer, failure: str) -> Iterator[None]:
    """The server killed (back with its data afterwards) or hung (resumed afterwards)."""
    if failure == "killed":
        _crash_keeping_data(server)
    else:
        server.hang()
    try:
        yield
    finally:
        if failure == "killed":
            server.restart(keep_data=True)
        else:
            server.resume()


@pytest.mark.chaos
@pytest.mark.parametrize("failure", ["killed", "hung"])
def test_every_helper_raises_redis_unavailable_then_is_short_circuited(
    drr_redis_factory: RedisServerFactory, failure: str
) -> None:
    server = drr_redis_factory()
    options = {"BREAKER": SLEEPY_BREAKER, "SOCKET_TIMEOUT": 0.1, "SOCKET_CONNECT_TIMEOUT": 0.1}
    with resilient_cache(server.url, **options) as cache:
        _fill(cache)
        with _outage(server, failure):
            with pytest.raises(RedisUnavailable) as first:
                cache.smembers("s")
            assert not isinstance(first.value, BreakerOpen)  # this call itself failed
            _open_breaker(cache)
            before = cache.stats()
            outcomes = {name: _outcome(lambda n=name: _call(cache, n)) for name in HELPER_CALLS}
            assert outcomes == dict.fromkeys(HELPER_CALLS, "BreakerOpen")
            after = cache.stats()
            # Refused by the open breaker: nothing sent, no timeout waited for.
            assert after["short_circuited"] - before["short_circuited"] == len(HELPER_CALLS)
            assert after["errors"] == before["errors"]
            assert (after["fallback_reads"], after["fallback_writes"]) == (0, 0)
            assert after["journal_size"] == 0  # refused writes were never sent
        _breaker(cache).reset()
        _filled(cache)  # nothing refused reached Redis, nothing of it was deleted


@pytest.mark.chaos
@pytest.mark.parametrize("failure", ["killed", "hung"])
def test_every_async_helper_raises_redis_unavailable_then_is_short_circuited(
    drr_redis_factory: RedisServerFactory, failure: str
) -> None:
    server = drr_redis_factory()
    options = {"BREAKER": SLEEPY_BREAKER, "SOCKET_TIMEOUT": 0.1, "SOCKET_CONNECT_TIMEOUT": 0.1}
    with resilient_cache(server.url, **options) as cache:
        _fill(cache)

        async def during() -> tuple[dict[str, Any], dict[str, str], dict[str, Any]]:
            with pytest.raises(RedisUnavailable) as first:
                await cache.asmembers("s")
            assert not isinstance(first.value, BreakerOpen)  # this call itself failed
            for _ in range(10):
                if not _breaker(cache).closed:
                    break
                with pytest.raises(RedisUnavailable):
                    await cache.ahlen("h")
            assert not _breaker(cache).closed
            before = cache.stats()
            outcomes = {name: await _aoutcome(cache, name) for name in HELPER_CALLS}
            return before, outcomes, cache.stats()

        with _outage(server, failure):
            before, outcomes, after = asyncio.run(during())
        assert outcomes == dict.fromkeys(HELPER_CALLS, "BreakerOpen")
        assert after["short_circuited"] - before["short_circuited"] == len(HELPER_CALLS)
        assert (after["fallback_reads"], after["fallback_writes"]) == (0, 0)
        assert after["journal_size"] == 0
        _breaker(cache).reset()
        _filled(cache)


@pytest.mark.chaos
def test_a_helper_write_that_timed_out_is_undone_before_the_key_is_read_again(
    drr_redis_factory: RedisServerFactory,
) -> None:
    """The write may have reached Redis or not: the key is deleted before it is trusted
    again, so the hash is never seen half-known (with or without the field)."""
    server = drr_redis_factory()
    with resilient_cache(server.url, BREAKER=PATIENT_BREAKER, SOCKET_TIMEOUT=0.2) as cache:
        assert cache.hset("h", mapping={"a": 1, "b": 2}) == 2
        cache.hset("other", "f", 1)
        server.hang()
        try:
            with pytest.raises(RedisUnavailable) as failed:
                cache.hset("h", "c", 3)
            assert not isinstance(failed.value, BreakerOpen)
            assert _breaker(cache).closed  # one failure of five: no outage
            assert cache.stats()["journal_size"] == 1
        finally:
            server.resume()  # the HSET queued in the frozen server runs now

        seen: list[Any] = []

        def drained() -> bool:
            # Refused while journaled: Redis may hold the hash with or without the field.
            seen.append(_unavailable(lambda: cache.hlen("h")))
            return cache.stats()["journal_size"] == 0

        assert wait_for(drained, timeout=10)
        assert set(seen) <= {"unavailable", 0}, seen
        assert cache.hlen("h") == 0
        assert cache.hexists("h", "a") is False
        with server.client() as client:
            assert client.exists(cache.make_key("h")) == 0
        assert cache.hkeys("other") == ["f"]  # not written during the hang: kept
        assert cache.stats()["fallback_writes"] == 0


@pytest.mark.chaos
def test_a_journaled_key_is_not_read_from_a_replica(
    drr_replica_group_factory: ReplicaGroupFactory,
) -> None:
    """The primary hangs after a write that may or may not have reached it; a replica
    still answers, but for that key it may answer with the value from before."""
    group = drr_replica_group_factory()
    options = {"BREAKER": PATIENT_BREAKER, "SOCKET_TIMEOUT": 0.2, "READ_FROM_REPLICAS": True}
    with resilient_cache(group.location, **options) as cache:
        cache.sadd("written", "old")
        cache.sadd("other", "kept")
        settle(cache)
        group.primary.hang()
        try:
            with pytest.raises(RedisUnavailable):
                cache.sadd("written", "new")
            assert cache.stats()["journal_size"] == 1
            assert cache.smembers("other") == {"kept"}  # a replica answers other keys
            assert cache.sismember("other", "kept") is True
            reads: dict[str, Callable[[], object]] = {
                "smembers": lambda: cache.smembers("written"),
                "scard": lambda: cache.scard("written"),
                "sismember": lambda: cache.sismember("written", "old"),
                "srandmember": lambda: cache.srandmember("written"),
                "sscan": lambda: cache.sscan("written"),
            }
            outcomes = {name: _unavailable(read) for name, read in reads.items()}
        finally:
            group.primary.resume()
        assert outcomes == dict.fromkeys(reads, "unavailable")
        assert wait_for(lambda: cache.stats()["journal_size"] == 0, timeout=10)
        settle(cache)
        assert cache.smembers("written") == set()
        assert cache.smembers("other") == {"kept"}
