"""Keys and values from anywhere, through a real Redis, as Django's cache API defines them.

Keys: any text (unicode, spaces, control characters, 250+ characters,
latin-1 "binary" strings), bytes and numbers are stored under exactly
``make_key(key)`` and read back; a key memcached could not store gets Django's
own ``CacheKeyWarning`` messages, the ones Django's backends give, and still
works. Values round-trip with their type. A value that cannot be pickled, or a
key that cannot be encoded, raises a clear error before anything is sent:
nothing is written, the breaker stays closed, and the next call works.
"""

from __future__ import annotations

import array
import asyncio
import json
import math
import os
import socket
import threading
import uuid
import warnings
from collections.abc import Callable, Iterator
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
import redis
from django.core.cache.backends.base import CacheKeyWarning, memcache_key_warnings
from hypothesis import example, given
from hypothesis import strategies as st

from django_redis_resilience.cache import ResilientRedisCache
from django_redis_resilience.connection import BreakerState
from django_redis_resilience.exceptions import InvalidValue
from django_redis_resilience.testing import RedisServer
from tests.cache.conftest import resilient_cache
from tests.hostile._support import ANY_TEXT, LATIN1, examples

MB = 1 << 20


def _fresh() -> str:
    return uuid.uuid4().hex


def _key_warnings(action: Callable[[], Any]) -> tuple[Any, list[str]]:
    """``action()``'s result and the ``CacheKeyWarning`` messages it gave."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = action()
    assert all(w.category is CacheKeyWarning for w in caught), [str(w.message) for w in caught]
    return result, [str(w.message) for w in caught]


def _all_closed(cache: ResilientRedisCache) -> bool:
    return all(e.breaker.state is BreakerState.CLOSED for e in cache.manager.endpoints)


@pytest.fixture
def cache(shared_cache: ResilientRedisCache) -> Iterator[ResilientRedisCache]:
    """The module's cache; each test checks that it stayed healthy (no outage, no fallback)."""
    before = shared_cache.stats()
    yield shared_cache
    after = shared_cache.stats()
    assert after["fallback_writes"] == before["fallback_writes"]
    assert after["fallback_reads"] == before["fallback_reads"]
    assert _all_closed(shared_cache)


# --- keys -----------------------------------------------------------------------------------

KEYS = st.one_of(
    ANY_TEXT,
    st.text(LATIN1, min_size=1),  # "binary" strings: every byte value as a character
    st.text(min_size=240, max_size=700),  # around and beyond memcached's 250
    st.text(st.characters(max_codepoint=0x20), min_size=1, max_size=20),  # control and spaces
    st.binary(max_size=40),
    st.integers(),
)


@examples(120)
@given(
    key=KEYS,
    value=st.one_of(ANY_TEXT, st.integers(), st.binary(max_size=50)),
    version=st.one_of(st.none(), st.integers(-3, 10**6)),
)
@example(key="a" * 251, value="just over memcached's limit", version=None)
@example(key="\U0001f600" * 200, value="800 bytes in 200 characters", version=None)
@example(key="tab\there new\nline \x00 nul \x7f del", value=1, version=None)
@example(key="\x00\xff\xfe\x80", value=b"\x00\xff", version=2)
@example(key="", value="the empty key", version=None)
def test_any_key_round_trips_under_its_django_key_with_djangos_warnings(
    shared_cache: ResilientRedisCache, raw: redis.Redis, key: Any, value: Any, version: Any
) -> None:
    cache = shared_cache
    made = cache.make_key(key, version=version)
    expected = list(memcache_key_warnings(made))  # what Django's own backends warn

    stored, said = _key_warnings(lambda: cache.set(key, value, 60, version=version))
    assert stored is True
    assert said == expected
    assert raw.exists(made.encode()), f"Redis has no key {made!r}"

    got, said = _key_warnings(lambda: cache.get(key, version=version))
    assert said == expected
    assert got == value
    assert type(got) is type(value)
    many, _ = _key_warnings(lambda: cache.get_many([key], version=version))
    assert many == {key: value}
    deleted, _ = _key_warnings(lambda: cache.delete(key, version=version))
    assert deleted is True
    assert not raw.exists(made.encode())


@pytest.mark.parametrize(
    "key",
    ["\ud800", "half-\udfff-pair", "ok-then-\udc80"],
    ids=["lone-high-surrogate", "lone-low-surrogate", "surrogate-escape"],
)
def test_a_key_that_cannot_be_encoded_is_an_error_and_breaks_nothing(
    cache: ResilientRedisCache, raw: redis.Redis, key: str
) -> None:
    """No UTF-8 for it, so no Redis key: a clear error (as in Django's RedisCache), no write."""
    before = raw.dbsize()
    with pytest.raises(UnicodeEncodeError):
        cache.set(key, "v")
    with pytest.raises(UnicodeEncodeError):
        cache.get(key)
    assert raw.dbsize() == before
    ok = _fresh()
    assert cache.set(ok, "still works") is True
    assert cache.get(ok) == "still works"


# --- values -----------------------------------------------------------------------------------

SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(-(10**4000), 10**4000),  # big, but within what int() reads back
    st.floats(allow_nan=False),
    ANY_TEXT,
    st.binary(),
    st.decimals(allow_nan=False),
    st.datetimes(timezones=st.sampled_from([None, timezone.utc])),
    st.dates(),
    st.timedeltas(),
    st.complex_numbers(allow_nan=False),
)


def _containers(inner: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    # A function, not a multi-line lambda: Hypothesis reads a lambda's source to check
    # that it uses its argument, and misreads this one.
    return st.one_of(
        st.lists(inner, max_size=4),
        st.tuples(inner, inner),
        st.dictionaries(st.one_of(ANY_TEXT, st.integers()), inner, max_size=4),
        st.frozensets(st.one_of(st.integers(), ANY_TEXT), max_size=4),
    )


VALUES = st.recursive(SCALARS, _containers, max_leaves=12)


@examples(120)
@given(value=VALUES)
@example(value=0)
@example(value=-(2**63))
@example(value=2**64)
@example(value=True)
@example(value="")
@example(value=b"")
@example(value=" 12 ")  # a string that int() would read as a number
@example(value=b"12")  # bytes that int() would read as a number
@example(value=Decimal("1e-30"))
@example(value=datetime(2024, 2, 29, 23, 59, tzinfo=timezone.utc))
@example(value=[date(1, 1, 1), timedelta(days=-1)])
def test_any_value_round_trips_with_its_type(shared_cache: ResilientRedisCache, value: Any) -> None:
    key = _fresh()
    assert shared_cache.set(key, value, 60) is True
    got = shared_cache.get(key)
    assert got == value
    assert type(got) is type(value)


def test_nan_round_trips_as_nan(cache: ResilientRedisCache) -> None:
    key = _fresh()
    cache.set(key, [float("nan"), float("inf"), -0.0])
    nan, inf, zero = cache.get(key)
    assert math.isnan(nan)
    assert inf == math.inf
    assert math.copysign(1, zero) == -1


def _generator() -> Iterator[int]:
    yield 1


class _RefusesPickling:
    def __reduce__(self) -> Any:
        raise TypeError("this object refuses to be pickled")


def _local_object() -> Any:
    class Local:
        pass

    return Local()


UNPICKLABLE: list[tuple[str, Callable[[], Any]]] = [
    ("lambda", lambda: lambda: 1),
    ("thread-lock", threading.Lock),
    ("reentrant-lock", threading.RLock),
    ("generator", _generator),
    ("socket", lambda: socket.socket(socket.AF_INET, socket.SOCK_STREAM)),
    ("local-class-instance", _local_object),
    ("refuses-pickling", _RefusesPickling),
    ("inside-a-list", lambda: [1, 2, threading.Lock()]),
]


@pytest.fixture(params=UNPICKLABLE, ids=[name for name, _ in UNPICKLABLE])
def unpicklable(request: pytest.FixtureRequest) -> Iterator[Any]:
    value = request.param[1]()
    yield value
    if isinstance(value, socket.socket):
        value.close()


def _assert_pickling_error(exc: BaseException) -> None:
    # pickle says what it could not pickle; an object's own refusal is passed on as it is.
    message = str(exc).lower()
    assert "pickle" in message, message


def test_an_unpicklable_value_is_a_clear_error_and_writes_nothing(
    cache: ResilientRedisCache, raw: redis.Redis, unpicklable: Any
) -> None:
    key, other = _fresh(), _fresh()
    cache.set(key, "before")
    with pytest.raises((TypeError, AttributeError, ValueError)) as info:
        cache.set(key, unpicklable)
    _assert_pickling_error(info.value)
    assert cache.get(key) == "before"  # a failed set neither overwrote nor deleted it
    with pytest.raises((TypeError, AttributeError, ValueError)):
        cache.add(other, unpicklable)
    with pytest.raises((TypeError, AttributeError, ValueError)):
        cache.set_many({other: "fine", _fresh(): unpicklable})
    assert not raw.exists(cache.make_key(other)), "set_many wrote part of a failed batch"
    # The connection is fine: the next operations work.
    assert cache.set(other, "after") is True
    assert cache.get_many([key, other]) == {key: "before", other: "after"}


def test_an_unpicklable_get_or_set_result_is_an_error_and_the_next_call_computes(
    cache: ResilientRedisCache, unpicklable: Any
) -> None:
    """Like a loader that raises: nothing is stored, the key is not stuck in flight."""
    key = _fresh()
    with pytest.raises((TypeError, AttributeError, ValueError)):
        cache.get_or_set(key, lambda: unpicklable, 60)
    assert cache.get_or_set(key, lambda: "computed", 60) == "computed"


def test_an_unpicklable_value_in_async_code_is_the_same_clear_error(
    cache: ResilientRedisCache, unpicklable: Any
) -> None:
    key = _fresh()

    async def attempt() -> Any:
        with pytest.raises((TypeError, AttributeError, ValueError)) as info:
            await cache.aset(key, unpicklable)
        _assert_pickling_error(info.value)
        await cache.aset(key, "after")
        return await cache.aget(key)

    assert asyncio.run(attempt()) == "after"


def test_an_integer_too_long_to_write_is_a_clear_error(
    cache: ResilientRedisCache, raw: redis.Redis
) -> None:
    """Integers are stored as Redis integers (as django-redis does), written in decimal:
    one beyond Python's 4300-digit limit cannot be, and says so before sending anything."""
    key = _fresh()
    with pytest.raises(ValueError, match="digits"):
        cache.set(key, 10**5000)
    assert not raw.exists(cache.make_key(key))
    assert cache.set(key, 10**4000) is True
    assert cache.get(key) == 10**4000


def test_a_too_long_integer_anywhere_in_a_command_is_a_clear_error(
    cache: ResilientRedisCache, raw: redis.Redis
) -> None:
    """Not only values: a delta, a lifetime or a raw client's argument too long to write
    raises the same error (hiredis would crash the process on it), and nothing is sent."""
    key = _fresh()
    cache.set(key, 1)
    huge = -(10**5000)
    with pytest.raises(InvalidValue, match="digits"):
        cache.incr(key, huge)
    with pytest.raises(InvalidValue, match="digits"):
        asyncio.run(cache.aincr(key, huge))
    with pytest.raises(InvalidValue, match="longer than Redis can keep a key"):
        cache.set(_fresh(), "v", 10**5000)
    client = cache.get_client(write=True)
    with pytest.raises(InvalidValue, match="digits"):
        client.set(cache.make_key(key), huge)
    with pytest.raises(InvalidValue, match="digits"):
        client.pipeline().set(cache.make_key(key), 2).incrby(cache.make_key(key), huge).execute()
    assert raw.get(cache.make_key(key)) == b"1"
    assert cache.incr(key, 10**30) == 10**30 + 1  # big, but writable: as django-redis
    assert cache.get(key) == 10**30 + 1


class _JSONSerializer:
    """A serializer whose output is a bytes-like object other than ``bytes``, or not one."""

    wrap: Callable[[bytes], Any] = bytes

    def __init__(self, options: dict[str, Any]) -> None:
        pass

    def dumps(self, value: Any) -> Any:
        return type(self).wrap(json.dumps(value).encode())

    def loads(self, value: bytes) -> Any:
        return json.loads(value)


class BytearraySerializer(_JSONSerializer):
    wrap = bytearray


class MemoryviewSerializer(_JSONSerializer):
    wrap = memoryview


class StrSerializer(_JSONSerializer):
    wrap = staticmethod(lambda data: data.decode("latin-1"))


class ArraySerializer(_JSONSerializer):
    wrap = staticmethod(lambda data: array.array("B", data))


class ListSerializer(_JSONSerializer):
    wrap = list


@pytest.mark.parametrize("kind", ["Bytearray", "Memoryview", "Str", "Array"])
def test_a_serializer_may_return_any_bytes_like_object(
    drr_redis_server: RedisServer, raw: redis.Redis, kind: str
) -> None:
    serializer = f"{__name__}.{kind}Serializer"
    with resilient_cache(drr_redis_server.url, SERIALIZER=serializer) as cache:
        key = _fresh()
        assert cache.set(key, {"a": [1, "é"]}) is True
        assert raw.get(cache.make_key(key)) == json.dumps({"a": [1, "é"]}).encode()
        assert cache.get(key) == {"a": [1, "é"]}
        assert asyncio.run(cache.aset(key, ["x"])) is True
        assert asyncio.run(cache.aget(key)) == ["x"]


def test_a_serializer_returning_no_bytes_is_a_clear_error(
    drr_redis_server: RedisServer, raw: redis.Redis
) -> None:
    serializer = f"{__name__}.ListSerializer"
    with resilient_cache(drr_redis_server.url, SERIALIZER=serializer) as cache:
        key = _fresh()
        with pytest.raises(InvalidValue, match="made a list, not bytes or str"):
            cache.set(key, "v")
        with pytest.raises(InvalidValue, match="made a list, not bytes or str"):
            cache.set_many({key: "v"})
        assert not raw.exists(cache.make_key(key))
        assert _all_closed(cache)


def test_a_value_larger_than_redis_takes_is_refused_before_sending(
    cache: ResilientRedisCache, raw: redis.Redis
) -> None:
    """Redis would answer a protocol error and close the connection mid-write, which
    looks like an outage; the codec refuses the value instead."""
    key = _fresh()
    cache.set(key, "old")
    with pytest.raises(InvalidValue, match="512 MiB"):
        cache.set(key, bytes(512 * MB))
    assert cache.get(key) == "old"
    assert raw.get(cache.make_key(key)) is not None


@pytest.mark.parametrize("megabytes", [5, 20])
@pytest.mark.parametrize("kind", ["bytes", "str"])
def test_huge_values_are_stored_in_redis_and_read_back(
    cache: ResilientRedisCache, raw: redis.Redis, megabytes: int, kind: str
) -> None:
    """With the default timeouts: one socket read waits 0.25 s at most, not the transfer."""
    data = os.urandom(megabytes * MB)
    value: Any = data if kind == "bytes" else data.hex()[: megabytes * MB]
    key = _fresh()
    assert cache.set(key, value, 60) is True
    assert raw.strlen(cache.make_key(key)) >= megabytes * MB  # in Redis, not a fallback
    assert cache.get(key) == value
    assert cache.delete(key) is True
