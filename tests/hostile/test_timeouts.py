"""Negative, zero, missing and absurd timeouts: Django's semantics, or a clear error.

Django's cache API: ``None`` keeps a key forever; ``0`` or a negative timeout
expires it at once (``set`` deletes the old value, ``add`` stores nothing,
``touch`` deletes the key); any other number is the lifetime in seconds. A
timeout that is no number of seconds (NaN, a string) or one Redis cannot hold
must fail before anything is written: the old value and its lifetime stay, and
the next call works.
"""

from __future__ import annotations

import asyncio
import math
import uuid
from typing import Any

import pytest
import redis
import redis.exceptions as rex
from hypothesis import example, given
from hypothesis import strategies as st

from django_redis_resilience.cache import ResilientRedisCache
from tests.hostile._support import examples

OLD_TTL_MS = 100_000
#: The longest lifetime Redis keeps (an absolute expiry in ms must fit in 64 bits).
REDIS_MAX_MS = 2**63 - 1
#: A lifetime this short may be over before it is read back.
SHORT_MS = 2_000
#: How much of a lifetime may pass between writing and reading it on a slow machine.
SLACK_MS = 60_000
#: What "a clear error" may be: Python's own argument errors, or Redis refusing the value.
ARGUMENT_ERRORS = (ValueError, TypeError, OverflowError, rex.ResponseError)


def _fresh() -> str:
    return uuid.uuid4().hex


def _pttl(raw: redis.Redis, cache: ResilientRedisCache, key: str) -> int:
    """Redis's answer: -2 no key, -1 no expiry, else the milliseconds left."""
    return int(raw.pttl(cache.make_key(key)))


def meaning(timeout: Any) -> str:
    """What Django's semantics make of ``timeout``: forever, gone, expires, or no meaning."""
    if timeout is None:
        return "forever"
    if isinstance(timeout, float) and math.isnan(timeout):
        return "meaningless"
    if timeout == math.inf:
        return "forever-or-error"  # as long as possible; refusing it is as clear
    if timeout == -math.inf:
        return "gone-or-error"
    ms = timeout * 1000  # a float may overflow to infinity here: then it is beyond Redis
    if ms < 1:
        return "gone"
    if ms > REDIS_MAX_MS // 2:
        return "beyond-redis"  # ~146 million years: Redis may refuse it
    return "expires"


def _check_lifetime(pttl: int, timeout: Any) -> None:
    ms = int(timeout * 1000)
    if ms < SHORT_MS and pttl in (-2, 0):
        return  # lived and (all but) ended before we looked
    assert 0 < pttl <= ms, (timeout, pttl)
    assert pttl > ms - SLACK_MS, (timeout, pttl)


def _outcome(action: Any) -> BaseException | None:
    try:
        action()
    except ARGUMENT_ERRORS as exc:
        return exc
    return None


TIMEOUTS = st.one_of(
    st.none(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(-(10**20), 10**20),
    st.sampled_from([-1, 0, -0.0, 0.0001, 0.001, 1, 1e12, 1e15, 1e16, 2**63, 10**25]),
)


@examples(150)
@given(timeout=TIMEOUTS)
@example(timeout=-1)
@example(timeout=0)
@example(timeout=None)
@example(timeout=1e12)
@example(timeout=float("nan"))
@example(timeout=float("inf"))
@example(timeout=float("-inf"))
@example(timeout=-1e306)  # negative, so "at once", although x1000 overflows a float
def test_set_follows_djangos_timeout_semantics_or_fails_before_writing(
    shared_cache: ResilientRedisCache, raw: redis.Redis, timeout: Any
) -> None:
    cache = shared_cache
    key = _fresh()
    cache.set(key, "old", OLD_TTL_MS / 1000)
    kind = meaning(timeout)
    error = _outcome(lambda: cache.set(key, "new", timeout))
    pttl = _pttl(raw, cache, key)
    if error is not None:
        assert kind in ("meaningless", "forever-or-error", "gone-or-error", "beyond-redis"), (
            f"timeout={timeout!r} ({kind}) raised {error!r}"
        )
        assert cache.get(key) == "old", "a refused set changed the old value"
        assert 0 < pttl <= OLD_TTL_MS, "a refused set changed the old lifetime"
    elif kind in ("gone", "gone-or-error"):
        assert cache.get(key) is None
        assert pttl == -2
    elif kind in ("forever", "forever-or-error", "beyond-redis"):
        assert cache.get(key) == "new"
        assert pttl == -1 or pttl > OLD_TTL_MS * 1000, (timeout, pttl)
    else:
        assert kind == "expires", f"timeout={timeout!r} ({kind}) was accepted"
        _check_lifetime(pttl, timeout)
        if timeout * 1000 >= SHORT_MS:  # a shorter one may end between the two calls
            assert cache.get(key) == "new"
    assert cache.set(key, "next", 60) is True  # the connection is fine
    assert cache.get(key) == "next"


@examples(100)
@given(timeout=TIMEOUTS)
@example(timeout=-1)
@example(timeout=0)
@example(timeout=None)
@example(timeout=float("nan"))
@example(timeout=-1e306)
def test_add_and_touch_follow_the_same_semantics(
    shared_cache: ResilientRedisCache, raw: redis.Redis, timeout: Any
) -> None:
    cache = shared_cache
    absent, present = _fresh(), _fresh()
    cache.set(present, "old", OLD_TTL_MS / 1000)
    kind = meaning(timeout)

    added: list[bool] = []
    error = _outcome(lambda: added.append(cache.add(absent, "new", timeout)))
    if error is not None:
        assert kind not in ("forever", "gone", "expires"), (timeout, error)
        assert _pttl(raw, cache, absent) == -2
    else:
        assert added == [True]  # it was absent: added, even when it ends at once
        if kind in ("gone", "gone-or-error"):
            assert _pttl(raw, cache, absent) == -2
        elif kind == "expires":
            _check_lifetime(_pttl(raw, cache, absent), timeout)
        else:
            assert _pttl(raw, cache, absent) in (-1,) or _pttl(raw, cache, absent) > OLD_TTL_MS

    touched: list[bool] = []
    error = _outcome(lambda: touched.append(cache.touch(present, timeout)))
    pttl = _pttl(raw, cache, present)
    if error is not None:
        assert kind not in ("forever", "gone", "expires"), (timeout, error)
        assert 0 < pttl <= OLD_TTL_MS
        assert cache.get(present) == "old"
    else:
        assert touched == [True]
        if kind in ("gone", "gone-or-error"):
            assert pttl == -2
        elif kind == "expires":
            _check_lifetime(pttl, timeout)
        else:
            assert pttl == -1 or pttl > OLD_TTL_MS


@pytest.mark.parametrize("timeout", [-1, 0, -0.5])
def test_zero_or_negative_timeouts_expire_at_once_everywhere(
    shared_cache: ResilientRedisCache, raw: redis.Redis, timeout: float
) -> None:
    cache = shared_cache
    keys = [_fresh() for _ in range(3)]
    cache.set_many(dict.fromkeys(keys, "old"), 60)
    cache.set_many(dict.fromkeys(keys, "new"), timeout)
    assert cache.get_many(keys) == {}
    assert cache.get_or_set(keys[0], lambda: "computed", timeout) == "computed"
    assert _pttl(raw, cache, keys[0]) == -2  # returned, never kept

    async def aset() -> Any:
        await cache.aset(keys[1], "async", timeout)
        return await cache.aget(keys[1])

    assert asyncio.run(aset()) is None


def test_none_keeps_forever_everywhere(shared_cache: ResilientRedisCache, raw: redis.Redis) -> None:
    cache = shared_cache
    keys = [_fresh() for _ in range(3)]
    cache.set_many(dict.fromkeys(keys, "v"), None)
    assert {_pttl(raw, cache, k) for k in keys} == {-1}
    other = _fresh()
    assert cache.get_or_set(other, lambda: "computed", None) == "computed"
    assert _pttl(raw, cache, other) == -1


def _accepted_as(timeout: float, pttl: int) -> bool:
    """An infinity taken as "for ever" (+inf) or "at once" (-inf): no other lifetime."""
    return pttl == (-1 if timeout > 0 else -2)


@pytest.mark.parametrize("timeout", [float("nan"), float("inf"), float("-inf")])
def test_nan_and_infinities_in_set_many_and_get_or_set(
    shared_cache: ResilientRedisCache, raw: redis.Redis, timeout: float
) -> None:
    """NaN has no meaning: refused, nothing written. An infinity may be refused, or taken as
    "for ever" (+inf) or "at once" (-inf), never as some other lifetime."""
    cache = shared_cache
    present = _fresh()
    cache.set(present, "old", OLD_TTL_MS / 1000)
    error = _outcome(lambda: cache.set_many({present: "new", _fresh(): "new"}, timeout))
    pttl = _pttl(raw, cache, present)
    if error is None:
        assert not math.isnan(timeout), "set_many accepted a NaN timeout"
        assert _accepted_as(timeout, pttl), (timeout, pttl)
    else:
        assert 0 < pttl <= OLD_TTL_MS
        assert cache.get(present) == "old"

    absent = _fresh()
    error = _outcome(lambda: cache.get_or_set(absent, lambda: "computed", timeout))
    pttl = _pttl(raw, cache, absent)
    if error is None:
        assert not math.isnan(timeout), "get_or_set accepted a NaN timeout"
        assert _accepted_as(timeout, pttl), (timeout, pttl)
    else:
        assert pttl == -2
    assert cache.get_or_set(absent, lambda: "computed", 60) == "computed"  # not stuck


@pytest.mark.parametrize("timeout", ["10", "2.5", "abc", ""])
def test_a_string_timeout_is_read_as_its_number_or_refused_by_name(
    shared_cache: ResilientRedisCache, raw: redis.Redis, timeout: str
) -> None:
    """A timeout read from an environment variable and never converted: Django's RedisCache
    reads ``"10"`` as 10 s; refusing it with a message that names it is as clear."""
    cache = shared_cache
    key = _fresh()
    cache.set(key, "old", OLD_TTL_MS / 1000)
    refused: Exception | None = None
    try:
        cache.set(key, "new", timeout)
    except (TypeError, ValueError) as exc:
        refused = exc
    if refused is not None:
        assert repr(timeout) in str(refused), str(refused)
        assert cache.get(key) == "old"
        return
    seconds = float(timeout)
    assert cache.get(key) == "new"
    _check_lifetime(_pttl(raw, cache, key), seconds)
