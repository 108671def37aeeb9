"""Django's cache API on every topology, with the semantics of Django's own backends.

Each test runs on standalone, primary+replica, Sentinel and Cluster servers
shared by the session (``cache`` fixture, one ``KEY_PREFIX`` per test). What a
key looks like in Redis is checked with the raw client from ``get_client()``.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis.exceptions as rex
from django.core.cache import caches
from django.core.cache.backends.base import CacheKeyWarning
from django.test import override_settings

from django_redis_resilience.cache import ResilientRedisCache

from .conftest import resilient_caches

MB = 1 << 20


def custom_key(key: str, key_prefix: str, version: int | str) -> str:
    """A ``KEY_FUNCTION`` unlike Django's ``prefix:version:key`` (test_key_function)."""
    return f"kf|{key_prefix}|{version}|{key}"


def _raw(cache: ResilientRedisCache, key: str, version: int | None = None) -> Any:
    """What Redis holds at exactly ``make_key(key, version)``, read on the primary."""
    return cache.get_client().get(cache.make_key(key, version=version))


@pytest.fixture
def configured(location: Any) -> Iterator[Any]:
    """``configured(**top_level)``: a ``default`` cache on ``location`` with extra
    top-level ``CACHES`` entries (``TIMEOUT``, ``KEY_FUNCTION``, ...)."""
    overrides: list[Any] = []

    def make(**top_level: Any) -> ResilientRedisCache:
        setting = resilient_caches(location)
        setting["default"].update(top_level)
        override = override_settings(CACHES=setting)
        override.enable()
        overrides.append(override)
        backend = caches["default"]
        assert isinstance(backend, ResilientRedisCache)
        return backend

    yield make
    for override in reversed(overrides):
        override.disable()


# --- get / set and timeouts -------------------------------------------------------------


def test_get_returns_default_when_missing_and_the_value_once_set(
    cache: ResilientRedisCache,
) -> None:
    assert cache.get("k") is None
    assert cache.get("k", "dflt") == "dflt"
    assert cache.get("k", default=0) == 0
    cache.set("k", "value")
    assert cache.get("k") == "value"
    assert cache.get("k", "dflt") == "value"
    cache.set("k", "other")  # set overwrites
    assert cache.get("k") == "other"


def test_timeout_none_keeps_the_key_forever(cache: ResilientRedisCache) -> None:
    cache.set("forever", "v", timeout=None)
    assert cache.get("forever") == "v"
    assert cache.ttl("forever") is None
    assert cache.get_client().pttl(cache.make_key("forever")) == -1


def test_explicit_timeout_sets_the_expiry(cache: ResilientRedisCache) -> None:
    cache.set("k", "v", timeout=60)
    ttl = cache.ttl("k")
    assert ttl is not None
    assert 55 <= ttl <= 60


@pytest.mark.parametrize("timeout", [0, -1, -100])
def test_zero_or_negative_timeout_expires_at_once(cache: ResilientRedisCache, timeout: int) -> None:
    cache.set("new", "v", timeout=timeout)
    assert cache.get("new", "dflt") == "dflt"
    cache.set("old", "v")
    cache.set("old", "v2", timeout=timeout)  # overwriting with an expired value removes it
    assert cache.get("old", "dflt") == "dflt"
    assert not cache.has_key("old")
    assert _raw(cache, "old") is None
    assert cache.set_many({"a": 1, "b": 2}, timeout=timeout) == []
    assert cache.get_many(["a", "b"]) == {}


@pytest.mark.parametrize("timeout", [7, None])
def test_default_timeout_comes_from_the_TIMEOUT_setting(
    configured: Any, timeout: int | None
) -> None:
    cache = configured(TIMEOUT=timeout)
    cache.set("k", "v")
    cache.add("added", "v")
    cache.set_many({"many": "v"})
    for key in ("k", "added", "many"):
        ttl = cache.ttl(key)
        if timeout is None:
            assert ttl is None
        else:
            assert ttl is not None
            assert 1 <= ttl <= timeout


def test_default_timeout_is_djangos_300_seconds(cache: ResilientRedisCache) -> None:
    cache.set("k", "v")
    ttl = cache.ttl("k")
    assert ttl is not None
    assert 290 <= ttl <= 300


# --- add / delete / has_key -------------------------------------------------------------


def test_add_stores_only_when_absent_and_never_overwrites(cache: ResilientRedisCache) -> None:
    assert cache.add("k", "first") is True
    assert cache.add("k", "second") is False
    assert cache.get("k") == "first"
    cache.set("stored-none", None)
    assert cache.add("stored-none", "x") is False  # a stored None is present
    assert cache.get("stored-none", "dflt") is None


def test_add_with_zero_timeout_reports_but_stores_nothing(cache: ResilientRedisCache) -> None:
    # As Django's RedisCache: True when the key was absent, then gone at once.
    assert cache.add("k", "v", timeout=0) is True
    assert cache.get("k", "dflt") == "dflt"
    cache.set("present", "keep")
    assert cache.add("present", "x", timeout=0) is False
    assert cache.get("present") == "keep"


def test_delete_reports_whether_the_key_existed(cache: ResilientRedisCache) -> None:
    cache.set("k", "v")
    assert cache.delete("k") is True
    assert cache.get("k") is None
    assert cache.delete("k") is False
    assert cache.delete("never-set") is False


def test_has_key(cache: ResilientRedisCache) -> None:
    assert cache.has_key("k") is False
    cache.set("k", "v")
    assert cache.has_key("k") is True
    assert cache.has_key("k", version=2) is False
    cache.set("none", None)
    assert cache.has_key("none") is True
    cache.delete("k")
    assert cache.has_key("k") is False


# --- many keys --------------------------------------------------------------------------


def test_get_many_set_many_delete_many_with_fifty_keys(
    cache: ResilientRedisCache, topology: str
) -> None:
    data: dict[str, Any] = {f"many:{i}": f"value-{i}" for i in range(50)}
    data["many:int"] = 7  # a raw integer among serialized values
    if topology == "cluster":  # the keys must really span every shard
        raw = cache.get_client()
        ports = {raw.get_node_from_key(cache.make_key(key)).port for key in data}
        assert len(ports) == 3
    assert cache.set_many(data) == []
    assert cache.get_many(list(data)) == data
    assert cache.get_many([*data, "missing:1", "missing:2"]) == data  # only keys found
    removed = [f"many:{i}" for i in range(0, 50, 2)]
    cache.delete_many(removed)
    expected = {k: v for k, v in data.items() if k not in removed}
    assert cache.get_many(list(data)) == expected
    assert all(_raw(cache, key) is None for key in removed)
    cache.delete_many(list(data))
    assert cache.get_many(list(data)) == {}


def test_many_operations_accept_empty_input(cache: ResilientRedisCache) -> None:
    assert cache.get_many([]) == {}
    assert cache.set_many({}) == []
    cache.delete_many([])


def test_set_many_honours_the_timeout(cache: ResilientRedisCache) -> None:
    assert cache.set_many({"a": 1, "b": "two"}, timeout=None) == []
    assert cache.ttl("a") is None
    assert cache.ttl("b") is None
    assert cache.set_many({"c": 3}, timeout=40) == []
    ttl = cache.ttl("c")
    assert ttl is not None
    assert 35 <= ttl <= 40


# --- counters ---------------------------------------------------------------------------


def test_incr_and_decr(cache: ResilientRedisCache) -> None:
    with pytest.raises(ValueError):
        cache.incr("missing")
    with pytest.raises(ValueError):
        cache.decr("missing")
    assert cache.get("missing") is None  # a failed incr creates nothing
    cache.set("n", 10)
    assert cache.incr("n") == 11
    assert cache.incr("n", 10) == 21
    assert cache.decr("n") == 20
    assert cache.decr("n", 5) == 15
    assert cache.incr("n", -20) == -5
    assert cache.decr("n", -7) == 2
    assert cache.get("n") == 2
    assert _raw(cache, "n") == b"2"


def test_incr_keeps_the_expiry(cache: ResilientRedisCache) -> None:
    cache.set("n", 1, timeout=60)
    assert cache.incr("n") == 2
    ttl = cache.ttl("n")
    assert ttl is not None
    assert 55 <= ttl <= 60
    cache.set("forever", 1, timeout=None)
    cache.incr("forever")
    assert cache.ttl("forever") is None


def test_incr_on_a_float_takes_the_non_atomic_path(cache: ResilientRedisCache) -> None:
    # Django's backends return ``value + delta``: here 2.5, the value then stored.
    cache.set("f", 1.5, timeout=60)
    assert cache.incr("f") == 2.5
    assert cache.get("f") == 2.5
    assert cache.decr("f", 2) == 0.5
    assert cache.get("f") == 0.5
    ttl = cache.ttl("f")  # the read-add-write keeps the expiry
    assert ttl is not None
    assert 55 <= ttl <= 60


def test_incr_beyond_64_bits(cache: ResilientRedisCache) -> None:
    cache.set("big", 2**63 - 1)
    assert cache.incr("big") == 2**63
    assert cache.get("big") == 2**63
    cache.set("huge", 2**70)
    assert cache.decr("huge") == 2**70 - 1
    assert cache.get("huge") == 2**70 - 1


# --- touch / get_or_set -----------------------------------------------------------------


def test_touch(cache: ResilientRedisCache) -> None:
    assert cache.touch("missing") is False
    assert cache.get("missing") is None
    cache.set("k", "v", timeout=None)
    assert cache.touch("k", 60) is True
    ttl = cache.ttl("k")
    assert ttl is not None
    assert 55 <= ttl <= 60
    assert cache.get("k") == "v"
    assert cache.touch("k") is True  # DEFAULT_TIMEOUT: the cache's 300 s
    ttl = cache.ttl("k")
    assert ttl is not None
    assert 290 <= ttl <= 300
    assert cache.touch("k", None) is True  # had an expiry: now kept forever
    assert cache.ttl("k") is None
    assert cache.get("k") == "v"
    assert cache.touch("k", 0) is True  # expires at once
    assert cache.get("k", "dflt") == "dflt"
    assert cache.touch("k", 0) is False


def test_get_or_set_with_a_value_and_with_a_callable(cache: ResilientRedisCache) -> None:
    assert cache.get_or_set("k", "first") == "first"
    assert cache.get_or_set("k", "second") == "first"
    calls: list[int] = []

    def compute() -> str:
        calls.append(1)
        return "computed"

    assert cache.get_or_set("c", compute) == "computed"
    assert cache.get_or_set("c", compute) == "computed"
    assert calls == [1]  # not called while the key is present
    assert cache.get("c") == "computed"
    assert cache.get_or_set("t", "v", timeout=30) == "v"
    ttl = cache.ttl("t")
    assert ttl is not None
    assert 25 <= ttl <= 30
    cache.set("none", None)
    assert cache.get_or_set("none", "x") is None  # a stored None is a hit


# --- versions and keys ------------------------------------------------------------------


def test_versions_are_separate_keys(cache: ResilientRedisCache) -> None:
    cache.set("k", "v1")
    cache.set("k", "v2", version=2)
    assert cache.get("k") == "v1"
    assert cache.get("k", version=1) == "v1"
    assert cache.get("k", version=2) == "v2"
    assert cache.get_many(["k"], version=2) == {"k": "v2"}
    assert cache.delete("k", version=2) is True
    assert cache.get("k", version=2) is None
    assert cache.get("k") == "v1"
    assert cache.add("k", "added", version=3) is True
    assert cache.get("k", version=3) == "added"


def test_incr_version_and_decr_version(cache: ResilientRedisCache) -> None:
    cache.set("k", "v")
    assert cache.incr_version("k") == 2
    assert cache.get("k", "gone") == "gone"
    assert cache.get("k", version=2) == "v"
    assert cache.incr_version("k", delta=3, version=2) == 5
    assert cache.get("k", version=5) == "v"
    assert cache.decr_version("k", version=5) == 4
    assert cache.get("k", version=4) == "v"
    assert cache.get("k", version=5) is None
    with pytest.raises(ValueError):
        cache.incr_version("missing")
    with pytest.raises(ValueError):
        cache.decr_version("missing")


def test_key_in_redis_is_exactly_make_key(cache: ResilientRedisCache) -> None:
    cache.set("k", 42)
    cache.set("k", 43, version=2)
    cache.set("s", "text")
    assert cache.make_key("k") == f"{cache.key_prefix}:1:k"
    assert _raw(cache, "k") == b"42"
    assert _raw(cache, "k", version=2) == b"43"
    assert _raw(cache, "s") is not None
    assert cache.get_client().get(f"{cache.key_prefix}:1:s") == _raw(cache, "s")
    cache.get_client().set(cache.make_key("written-raw"), 5)  # and read back from Redis
    assert cache.get("written-raw") == 5


def test_key_function(configured: Any) -> None:
    cache = configured(KEY_FUNCTION="tests.cache.test_api.custom_key")
    prefix = cache.key_prefix
    cache.set("k", 1)
    cache.set("k", 2, version=2)
    assert cache.make_key("k") == f"kf|{prefix}|1|k"
    assert cache.get_client().get(f"kf|{prefix}|1|k") == b"1"
    assert cache.get_client().get(f"kf|{prefix}|2|k") == b"2"
    assert cache.get("k") == 1
    assert cache.get_many(["k"], version=2) == {"k": 2}
    cache.clear()
    assert cache.get("k") is None
    assert cache.get("k", version=2) is None


# --- clear ------------------------------------------------------------------------------


def test_clear_removes_only_this_caches_keys(location: Any) -> None:
    setting = resilient_caches(location)
    prefix = setting["default"]["KEY_PREFIX"]
    setting["other"] = {**resilient_caches(location)["default"]}  # another KEY_PREFIX
    setting["longer"] = {**resilient_caches(location, KEY_PREFIX=f"{prefix}x")["default"]}
    with override_settings(CACHES=setting):
        cache, other, longer = caches["default"], caches["other"], caches["longer"]
        assert isinstance(cache, ResilientRedisCache)
        raw = cache.get_client()
        reserved = f"{prefix}:drr:lock:x"
        keys = [f"k{i}" for i in range(30)]
        for version in (1, 2, 10):
            cache.set_many(dict.fromkeys(keys, "mine"), version=version)
        other.set_many(dict.fromkeys(keys, "other"))
        longer.set("k0", "longer")
        raw.set(reserved, "held")
        try:
            cache.clear()
            for version in (1, 2, 10):
                assert cache.get_many(keys, version=version) == {}
                assert all(raw.get(cache.make_key(k, version=version)) is None for k in keys)
            assert other.get_many(keys) == dict.fromkeys(keys, "other")
            assert longer.get("k0") == "longer"
            assert raw.get(reserved) == b"held"
            cache.set("after", "v")  # still usable after a clear
            assert cache.get("after") == "v"
        finally:
            raw.delete(reserved)
            other.clear()
            longer.clear()
            cache.clear()


@pytest.mark.parametrize("topology", ["standalone", "cluster"])  # one server, per-master SCAN
@pytest.mark.parametrize(
    ("prefix", "lookalike"),
    [
        pytest.param("g[x]*?", "gx", id="brackets-star-question"),
        pytest.param("g]", "g", id="closing-bracket"),
        pytest.param("g\\x", "gx", id="backslash"),
    ],
)
def test_clear_with_glob_characters_in_the_prefix(
    location: Any, prefix: str, lookalike: str
) -> None:
    """The prefix is matched literally: its own keys go, a look-alike cache's stay."""
    unique = uuid.uuid4().hex[:8]
    setting = resilient_caches(location, KEY_PREFIX=unique + prefix)
    setting["lookalike"] = resilient_caches(location, KEY_PREFIX=unique + lookalike)["default"]
    with override_settings(CACHES=setting):
        cache, other = caches["default"], caches["lookalike"]
        cache.set("k", "mine")
        other.set("k", "lookalike")
        try:
            cache.clear()
            assert (cache.get("k"), other.get("k")) == (None, "lookalike")
        finally:
            cache.delete("k")
            other.delete("k")


# --- keys memcached would refuse --------------------------------------------------------


@pytest.mark.parametrize(
    "key",
    [pytest.param("with space", id="space"), pytest.param("x" * 300, id="long")],
)
def test_memcached_unsafe_keys_warn_and_still_work(cache: ResilientRedisCache, key: str) -> None:
    with pytest.warns(CacheKeyWarning, match="Cache key"):
        cache.set(key, "v")
    with pytest.warns(CacheKeyWarning):
        assert cache.get(key) == "v"
    with pytest.warns(CacheKeyWarning):
        assert cache.get_many([key]) == {key: "v"}
    with pytest.warns(CacheKeyWarning):
        assert cache.delete(key) is True


def test_a_key_at_the_memcached_limit_does_not_warn(cache: ResilientRedisCache) -> None:
    key = "x" * (250 - len(cache.make_key("")))
    assert len(cache.make_key(key)) == 250
    cache.set(key, "v")  # warnings are errors in this suite
    assert cache.get(key) == "v"


# --- values -----------------------------------------------------------------------------


VALUES = [
    pytest.param(None, id="none"),
    pytest.param(b"\x00\xffbytes", id="bytes"),
    pytest.param(True, id="true"),
    pytest.param(False, id="false"),
    pytest.param(0, id="zero"),
    pytest.param(42, id="int"),
    pytest.param(-7, id="negative"),
    pytest.param(2**70, id="bigint"),
    pytest.param(1.5, id="float"),
    pytest.param("", id="empty-str"),
    pytest.param("42", id="digit-str"),
    pytest.param("héllo ✓", id="unicode"),
    pytest.param({"a": [1, (2, 3)], "b": {4}}, id="structure"),
    pytest.param(os.urandom(MB), id="1MB-bytes"),
    pytest.param("v" * MB, id="1MB-str"),
]


@pytest.mark.parametrize("value", VALUES)
def test_values_round_trip_with_their_type(cache: ResilientRedisCache, value: Any) -> None:
    cache.set("k", value)
    got = cache.get("k", "dflt")
    assert got == value
    assert type(got) is type(value)
    assert cache.get_many(["k"]) == {"k": value}


def test_bools_are_serialized_not_stored_as_integers(cache: ResilientRedisCache) -> None:
    cache.set("t", True)
    assert _raw(cache, "t") != b"1"
    assert cache.get("t") is True


# --- user errors ------------------------------------------------------------------------


def test_commands_on_a_key_of_the_wrong_type_raise_the_redis_error(
    cache: ResilientRedisCache,
) -> None:
    raw = cache.get_client()
    list_key = cache.make_key("a-list")
    raw.rpush(list_key, "x")
    try:
        for _ in range(5):  # repeated: a user error must not open the breaker
            with pytest.raises(rex.ResponseError, match="WRONGTYPE"):
                cache.incr("a-list")
        with pytest.raises(rex.ResponseError, match="WRONGTYPE"):
            cache.decr("a-list")
        with pytest.raises(rex.ResponseError, match="WRONGTYPE"):
            cache.get("a-list")
        assert raw.lrange(list_key, 0, -1) == [b"x"]  # untouched
        # Redis is still used, not the fallback.
        cache.set("after", 5)
        assert _raw(cache, "after") == b"5"
        assert cache.stats()["fallback_writes"] == 0
    finally:
        raw.delete(list_key)


# --- close ------------------------------------------------------------------------------


def test_close_keeps_the_cache_working(cache: ResilientRedisCache) -> None:
    cache.set("k", "v")
    cache.close()
    assert cache.get("k") == "v"
    cache.set("k2", "v2")
    cache.close()
    cache.close()
    assert cache.get_many(["k", "k2"]) == {"k": "v", "k2": "v2"}
    assert caches["default"].get("k") == "v"
