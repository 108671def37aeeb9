"""The counting plan: ``incr``/``decr`` (``decr`` is ``incr`` by ``-delta``).

Atomic in Redis (one Lua script). During an outage: ``RedisUnavailable``
(``DEGRADED_COUNTERS="raise"``, the default), or an approximate count in the
fallback (``"local"``) that is never written over the real value when Redis returns.
"""

from __future__ import annotations

from typing import Any

import redis.exceptions as rex
from django.core.cache.backends.base import BaseCache

from django_redis_resilience._lua import LuaScript
from django_redis_resilience._steps import Execute, Plan
from django_redis_resilience.cache._context import CacheContext
from django_redis_resilience.cache._near import writing
from django_redis_resilience.cache._steps import Fallback
from django_redis_resilience.connection import ConnectionManager
from django_redis_resilience.exceptions import RedisUnavailable

_INCR = LuaScript("django_redis_resilience.cache", "incr")


def incr(
    ctx: CacheContext, key: Any, delta: int, version: int | None, ignore_key_check: bool = False
) -> Plan[int]:
    """The new value; ``ValueError`` for a missing key, as Django's, unless
    ``ignore_key_check`` (django-redis's): then a missing key starts from zero."""
    k = ctx.key(key, version)
    manager, state = ctx.current()
    try:
        with writing(state.near, (k,)):
            value = yield from _incr_in_redis(ctx, manager, k, delta, ignore_key_check)
    except RedisUnavailable as exc:
        state = ctx.state_of(manager)
        state.note_unavailable(exc)
        endpoint = ctx.endpoint(k)
        store = state.fallback(endpoint)
        if ctx.degraded_counters != "local" or store is None:
            raise
        state.note_local_counter(endpoint, key, version)

        # Approximate by design: the real count is in Redis, out of reach;
        # the local one starts from zero and is dropped when Redis returns.
        def count(fb: BaseCache) -> int:
            fb.add(key, 0, version=version)
            return int(fb.incr(key, delta, version=version))

        return (yield Fallback(store, count))  # type: ignore[no-any-return]
    if value is None:
        raise ValueError(f"Key '{key}' not found.")
    return value  # type: ignore[no-any-return]


def _incr_in_redis(
    ctx: CacheContext, manager: ConnectionManager, k: str, delta: int, ignore_key_check: bool
) -> Plan[Any]:
    try:
        if ignore_key_check:  # INCRBY itself creates a missing key
            step = Execute(manager, lambda c: c.incrby(k, delta), key=k, idempotent=False)
        else:
            step = Execute(
                manager,
                lambda c: _INCR(c, [k], [delta]),
                afn=lambda c: _INCR.acall(c, [k], [delta]),
                key=k,
                idempotent=False,
            )
        result = yield step
    except rex.ResponseError as exc:
        if "not an integer" not in str(exc) and "overflow" not in str(exc):
            raise
        result = None
        # A serialized number (a float, a big int): as django-redis, read,
        # add and write back keeping the TTL; not atomic.
        raw = yield Execute(manager, lambda c: c.get(k), key=k)
        if raw is None:
            return None
        value = ctx.codec.decode(raw) + delta
        data = ctx.codec.encode(value)
        yield Execute(manager, lambda c: c.set(k, data, keepttl=True), key=k)
        return value
    return None if result is None else int(result)
