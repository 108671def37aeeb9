"""Interchangeable with django-redis: same keys, same encoding, same extras.

The data tests put a real ``django_redis.cache.RedisCache`` (alias ``"dr"``)
beside the resilient ``default`` cache, on the same LOCATION with the same
KEY_PREFIX, and check that each reads what the other wrote. The extras tests
run django-redis's extra methods on the resilient cache on every topology.
"""

from __future__ import annotations

import json
import uuid
import zlib
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import django_redis
import pytest
import redis.lock
from django.core.cache import caches
from django.core.cache.backends.base import BaseCache
from django.test import override_settings

from django_redis_resilience.cache import ResilientRedisCache
from django_redis_resilience.testing import RedisServer, SentinelGroup

from .conftest import BACKEND, resilient_caches

DJANGO_REDIS = "django_redis.cache.RedisCache"
JSON_ZLIB = {
    "SERIALIZER": "django_redis.serializers.json.JSONSerializer",
    "COMPRESSOR": "django_redis.compressors.zlib.ZlibCompressor",
}
Pair = tuple[ResilientRedisCache, BaseCache]


def _in(seconds: float) -> datetime:
    """An aware datetime ``seconds`` from now (in the past when negative)."""
    return datetime.now(tz=timezone.utc) + timedelta(seconds=seconds)


def _pair_settings(location: Any, prefix: str, options: dict[str, Any]) -> dict[str, Any]:
    common = {"LOCATION": location, "KEY_PREFIX": prefix, "OPTIONS": dict(options)}
    return {
        "default": {"BACKEND": BACKEND, **common},
        "dr": {"BACKEND": DJANGO_REDIS, **common, "OPTIONS": dict(options)},
    }


@pytest.fixture
def make_pair(drr_redis_server: RedisServer) -> Iterator[Callable[..., Pair]]:
    """``make_pair(**OPTIONS)``: (resilient ``default``, django-redis ``dr``) on the
    standalone server, same LOCATION, same KEY_PREFIX, same OPTIONS."""
    overrides: list[Any] = []

    def make(**options: Any) -> Pair:
        prefix = f"c{uuid.uuid4().hex[:8]}"
        override = override_settings(CACHES=_pair_settings(drr_redis_server.url, prefix, options))
        override.enable()
        overrides.append(override)
        ours, theirs = caches["default"], caches["dr"]
        assert isinstance(ours, ResilientRedisCache)
        assert type(theirs).__module__ == "django_redis.cache"
        return ours, theirs

    yield make
    for override in reversed(overrides):
        override.disable()


PICKLED = [
    pytest.param(None, id="none"),
    pytest.param("text ✓", id="str"),
    pytest.param(b"\x00\xff", id="bytes"),
    pytest.param(True, id="bool"),
    pytest.param(1.5, id="float"),
    pytest.param(-3, id="int"),
    pytest.param(2**70, id="bigint"),
    pytest.param({"a": [1, (2, 3)], "s": {4}}, id="structure"),
    pytest.param("x" * 100_000, id="large"),
]
JSONABLE = [
    pytest.param(None, id="none"),
    pytest.param("short", id="short-str"),
    pytest.param("long " * 200, id="long-str"),
    pytest.param(True, id="bool"),
    pytest.param(2.25, id="float"),
    pytest.param(7, id="int"),
    pytest.param({"list": list(range(100)), "name": "n" * 50}, id="long-dict"),
    pytest.param([1, "two", None], id="short-list"),
]


# --- data written by one, read by the other ---------------------------------------------


@pytest.mark.parametrize("value", PICKLED)
def test_default_pickle_data_reads_back_both_ways(
    make_pair: Callable[..., Pair], value: Any
) -> None:
    ours, theirs = make_pair()
    theirs.set("from-dr", value)
    ours.set("from-us", value)
    assert ours.get("from-dr", "missing") == value
    assert theirs.get("from-us", "missing") == value
    assert ours.get_many(["from-dr", "from-us"]) == {"from-dr": value, "from-us": value}
    assert theirs.get_many(["from-dr", "from-us"]) == {"from-dr": value, "from-us": value}
    raw = ours.get_client()
    assert raw.get(ours.make_key("from-us")) == raw.get(theirs.make_key("from-dr"))


@pytest.mark.parametrize("value", JSONABLE)
def test_json_serializer_with_zlib_compressor_reads_back_both_ways(
    make_pair: Callable[..., Pair], value: Any
) -> None:
    ours, theirs = make_pair(**JSON_ZLIB)
    theirs.set("from-dr", value)
    ours.set("from-us", value)
    assert ours.get("from-dr", "missing") == value
    assert theirs.get("from-us", "missing") == value
    raw = ours.get_client()
    ours_raw = raw.get(ours.make_key("from-us"))
    assert ours_raw == raw.get(theirs.make_key("from-dr"))
    if isinstance(value, int) and not isinstance(value, bool):
        assert ours_raw == str(value).encode()
        return
    text = json.dumps(value).encode()
    if len(text) > 15:  # django-redis's ZlibCompressor.min_length
        assert zlib.decompress(ours_raw) == text
    else:
        assert ours_raw == text


@pytest.mark.parametrize("options", [{}, JSON_ZLIB], ids=["pickle", "json-zlib"])
def test_ints_are_stored_as_raw_redis_integers(
    make_pair: Callable[..., Pair], options: dict[str, Any]
) -> None:
    ours, theirs = make_pair(**options)
    ours.set("ours", 42)
    theirs.set("theirs", 42)
    raw = ours.get_client()
    assert raw.get(ours.make_key("ours")) == b"42"
    assert raw.get(theirs.make_key("theirs")) == b"42"
    assert ours.get("theirs") == 42
    assert theirs.get("ours") == 42


@pytest.mark.parametrize("options", [{}, JSON_ZLIB], ids=["pickle", "json-zlib"])
@pytest.mark.parametrize(
    "text", [b"12", b"-7", b"+3", b" 5", b"\t-4\n", b"\x0b8\x0c", b"1_000", b"007"]
)
def test_integer_text_written_by_another_tool_reads_as_django_redis_reads_it(
    make_pair: Callable[..., Pair], options: dict[str, Any], text: bytes
) -> None:
    ours, theirs = make_pair(**options)
    raw = ours.get_client()
    raw.set(ours.make_key("n"), text)
    assert ours.get("n") == theirs.get("n") == int(text)
    assert ours.get_many(["n"]) == theirs.get_many(["n"]) == {"n": int(text)}


def test_incr_by_one_is_read_by_the_other(make_pair: Callable[..., Pair]) -> None:
    ours, theirs = make_pair()
    theirs.set("n", 10)
    assert ours.incr("n", 5) == 15
    assert theirs.get("n") == 15
    assert theirs.incr("n") == 16
    assert ours.get("n") == 16
    assert ours.decr("n", 6) == 10
    assert theirs.decr("n") == 9
    assert ours.get("n") == 9
    theirs.set("f", 1.5)  # both take the read-add-write path on a serialized number
    assert theirs.incr("f") == 2.5
    assert ours.get("f") == 2.5


def test_expiry_written_by_one_is_seen_by_the_other(make_pair: Callable[..., Pair]) -> None:
    ours, theirs = make_pair()
    theirs.set("dr", "v", timeout=60)
    ours.set("us", "v", timeout=60)
    theirs.set("forever", "v", timeout=None)
    for key in ("dr", "us"):
        ttl_ours, ttl_theirs = ours.ttl(key), theirs.ttl(key)  # type: ignore[attr-defined]
        assert ttl_ours is not None
        assert ttl_theirs is not None
        assert 55 <= ttl_ours <= 60
        assert 55 <= ttl_theirs <= 60
    assert ours.ttl("forever") is None
    assert ours.ttl("missing") == theirs.ttl("missing") == 0  # type: ignore[attr-defined]


def test_keys_and_locks_are_shared(make_pair: Callable[..., Pair]) -> None:
    ours, theirs = make_pair()
    theirs.set_many({"pat:1": 1, "pat:2": 2, "other": 3})
    ours.set("pat:3", 3)
    assert sorted(ours.keys("pat*")) == sorted(theirs.keys("pat*"))  # type: ignore[attr-defined]
    assert sorted(ours.keys("pat*")) == ["pat:1", "pat:2", "pat:3"]
    with ours.lock("resource", timeout=5):
        assert theirs.lock("resource", timeout=5).acquire(blocking=False) is False  # type: ignore[attr-defined]
    with theirs.lock("resource", timeout=5):  # type: ignore[attr-defined]
        assert ours.lock("resource", timeout=5).acquire(blocking=False) is False
    assert ours.delete_pattern("pat*") == 3
    assert theirs.get_many(["pat:1", "pat:2", "pat:3", "other"]) == {"other": 3}


def test_the_resilient_alias_is_found_when_a_django_redis_alias_has_the_same_settings(
    drr_redis_server: RedisServer,
) -> None:
    # Migrating from django-redis: the old alias listed first, with the same settings.
    setting = _pair_settings(drr_redis_server.url, f"c{uuid.uuid4().hex[:8]}", {})
    with override_settings(CACHES={"dr": setting["dr"], "default": setting["default"]}):
        ours = caches["default"]
        assert isinstance(ours, ResilientRedisCache)
        assert repr(ours) == "<ResilientRedisCache default>"
        assert ours.manager.alias == "default"


def test_sentinel_data_is_shared_with_django_redis(drr_sentinel_group: SentinelGroup) -> None:
    prefix = f"c{uuid.uuid4().hex[:8]}"
    setting = resilient_caches(drr_sentinel_group.location, KEY_PREFIX=prefix)
    setting["dr"] = {
        "BACKEND": DJANGO_REDIS,
        "LOCATION": f"redis://{drr_sentinel_group.service_name}/0",
        "KEY_PREFIX": prefix,
        "OPTIONS": {
            "CLIENT_CLASS": "django_redis.client.SentinelClient",
            "CONNECTION_FACTORY": "django_redis.pool.SentinelConnectionFactory",
            "SENTINELS": drr_sentinel_group.sentinel_addresses,
        },
    }
    with override_settings(CACHES=setting):
        ours, theirs = caches["default"], caches["dr"]
        theirs.set("from-dr", {"v": 1})
        ours.set("from-us", [1, 2])
        ours.set("n", 1)
        assert ours.get("from-dr") == {"v": 1}
        assert theirs.get("from-us") == [1, 2]
        assert theirs.incr("n") == 2
        assert ours.incr("n") == 3
        assert theirs.get("n") == 3


# --- django-redis's extras on the resilient cache, every topology -----------------------


def test_ttl_and_pttl(cache: ResilientRedisCache) -> None:
    cache.set("forever", "v", timeout=None)
    cache.set("timed", "v", timeout=30)
    assert cache.ttl("forever") is None
    assert cache.pttl("forever") is None
    assert cache.ttl("missing") == 0
    assert cache.pttl("missing") == 0
    ttl, pttl = cache.ttl("timed"), cache.pttl("timed")
    assert ttl is not None
    assert pttl is not None
    assert 25 <= ttl <= 30
    assert 25_000 <= pttl <= 30_000
    cache.set("v2", "v", timeout=10, version=2)
    ttl = cache.ttl("v2", version=2)
    assert ttl is not None
    assert 5 <= ttl <= 10
    assert cache.ttl("v2") == 0


def test_expire_pexpire_expire_at_persist(cache: ResilientRedisCache) -> None:
    cache.set("k", "v", timeout=None)
    assert cache.expire("k", 40) is True
    ttl = cache.ttl("k")
    assert ttl is not None
    assert 35 <= ttl <= 40
    assert cache.pexpire("k", 20_000) is True
    pttl = cache.pttl("k")
    assert pttl is not None
    assert 15_000 <= pttl <= 20_000
    assert cache.expire_at("k", _in(50)) is True
    ttl = cache.ttl("k")
    assert ttl is not None
    assert 45 <= ttl <= 50
    assert cache.pexpire_at("k", _in(25)) is True
    ttl = cache.ttl("k")
    assert ttl is not None
    assert 20 <= ttl <= 25
    assert cache.persist("k") is True
    assert cache.ttl("k") is None
    assert cache.get("k") == "v"
    for method in (cache.expire, cache.pexpire):
        assert method("missing", 10) is False
    assert cache.expire_at("missing", _in(10)) is False
    assert cache.persist("missing") is False
    assert cache.expire_at("k", _in(-1)) is True  # past
    assert cache.get("k") is None


def test_set_nx_and_xx(cache: ResilientRedisCache) -> None:
    assert cache.set("k", "xx", xx=True) is False
    assert cache.get("k") is None
    assert cache.set("k", "first", nx=True) is True
    assert cache.set("k", "second", nx=True) is False
    assert cache.get("k") == "first"
    assert cache.set("k", "third", xx=True) is True
    assert cache.get("k") == "third"
    assert cache.set("k", "plain") is True


def test_lock_is_a_redis_py_lock(cache: ResilientRedisCache) -> None:
    with cache.lock("resource", timeout=5) as lock:
        assert isinstance(lock, redis.lock.Lock)
        assert lock.owned()
        assert lock.locked()
        assert cache.get_client().get(cache.make_key("resource")) is not None
        other = cache.lock("resource", timeout=5)
        assert other.acquire(blocking=False) is False
        assert cache.lock("resource", blocking_timeout=0.05).acquire() is False
        assert cache.lock("resource", version=2).acquire(blocking=False) is True
    assert not lock.locked()
    assert other.acquire(blocking=False) is True
    other.release()
    assert cache.get_client().get(cache.make_key("resource")) is None
    cache.get_client().delete(cache.make_key("resource", version=2))


def test_keys_and_iter_keys_return_keys_without_prefix_and_version(
    cache: ResilientRedisCache,
) -> None:
    cache.set_many({"pat:1": 1, "pat:2": 2, "pattern": 3, "other": 4})
    cache.set("pat:v2", 5, version=2)
    assert sorted(cache.keys("pat*")) == ["pat:1", "pat:2", "pattern"]
    assert sorted(cache.keys("pat:*")) == ["pat:1", "pat:2"]
    assert cache.keys("pat*", version=2) == ["pat:v2"]
    assert cache.keys("nothing*") == []
    found = cache.iter_keys("pat*")
    assert isinstance(found, Iterator)
    assert sorted(found) == ["pat:1", "pat:2", "pattern"]
    assert sorted(cache.iter_keys("*", itersize=2)) == ["other", "pat:1", "pat:2", "pattern"]


def test_delete_pattern_deletes_only_matching_keys_of_this_cache(location: Any) -> None:
    setting = resilient_caches(location)
    setting["other"] = resilient_caches(location)["default"]
    with override_settings(CACHES=setting):
        cache, other = caches["default"], caches["other"]
        assert isinstance(cache, ResilientRedisCache)
        mine = {f"dp:{i}": i for i in range(20)}
        cache.set_many({**mine, "keep": "k"})
        cache.set("dp:0", "other version", version=2)
        other.set("dp:0", "other cache")
        try:
            assert cache.delete_pattern("dp:*") == 20
            assert cache.get_many([*mine, "keep"]) == {"keep": "k"}
            assert cache.get("dp:0", version=2) == "other version"
            assert other.get("dp:0") == "other cache"
            assert cache.delete_pattern("dp:*") == 0
            assert cache.delete_pattern("dp:*", version=2) == 1
        finally:
            cache.clear()
            other.clear()


def test_get_redis_connection_returns_a_working_client(cache: ResilientRedisCache) -> None:
    client = django_redis.get_redis_connection("default")
    assert client.ping()
    cache.set("k", 42)
    assert client.get(cache.make_key("k")) == b"42"
    assert django_redis.get_redis_connection("default", write=False).ping()
