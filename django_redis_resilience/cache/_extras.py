"""django-redis's extras: ``ttl``/``pttl``, ``expire_at``, ``keys``, ``delete_pattern``, ``lock``.

They speak to Redis itself and have no fallback: during an outage they raise
:class:`RedisUnavailable` (``expire``, ``persist`` and friends are ``touch``
and degrade as it does).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, TypeVar

import redis.exceptions as rex
import redis.lock

from django_redis_resilience._steps import Execute, Plan, Primaries
from django_redis_resilience.cache._context import CacheContext
from django_redis_resilience.cache._namespace import glob_escape
from django_redis_resilience.cache._near import writing
from django_redis_resilience.cache._state import aunlink_matching, unlink_matching
from django_redis_resilience.cache._writes import touch
from django_redis_resilience.connection import ErrorKind, classify, translate
from django_redis_resilience.exceptions import RedisUnavailable

T = TypeVar("T")


def pttl(ctx: CacheContext, key: Any, version: int | None) -> Plan[int | None]:
    k = ctx.key(key, version)
    # Asked of the primary: a replica that lags would call a fresh key missing.
    result = int((yield Execute(ctx.manager, lambda c: c.pttl(k), key=k)))
    if result == -1:
        return None
    return max(result, 0)


def seconds(ms: int | None) -> int | None:
    """``pttl`` as ``ttl`` gives it: whole seconds, rounded up."""
    return None if ms is None else (ms + 999) // 1000 if ms > 0 else 0


def expire_at(
    ctx: CacheContext, key: Any, when: datetime | float, version: int | None, per_second: int
) -> Plan[bool]:
    """Expire at ``when``: a datetime (naive ones in local time), or a Unix timestamp in
    units of which ``per_second`` make a second (1 for ``expire_at``, 1000 for ``pexpire_at``)."""
    if isinstance(when, datetime):
        left = (when - datetime.now(tz=when.tzinfo)) / timedelta(seconds=1)
    elif isinstance(when, int | float) and not isinstance(when, bool):
        left = when / per_second - time.time()
    else:
        raise TypeError(
            f"expire_at() takes a datetime or a Unix timestamp (a number), not {when!r}."
        )
    return (yield from touch(ctx, key, left, version))


def make_pattern(ctx: CacheContext, pattern: str, version: int | None) -> str:
    """A glob for ``pattern`` inside this cache's prefix and version, both escaped."""
    cache = ctx.cache
    version_text = glob_escape(str(cache.version if version is None else version))
    return str(cache.key_func(pattern, glob_escape(cache.key_prefix), version_text))


def keys(
    ctx: CacheContext, search: str, itersize: int | None, version: int | None
) -> Plan[list[str]]:
    pattern = make_pattern(ctx, search, version)
    count = itersize or 1000
    found: list[str] = []
    step = Primaries(
        ctx.manager,
        lambda c: [k.decode() for k in c.scan_iter(match=pattern, count=count)],
        lambda c: _ascan(c, pattern, count),
    )
    for _, result in (yield step):
        if isinstance(result, RedisUnavailable):
            raise result
        found += (_reverse_key(ctx, k) for k in result)
    return found


def delete_pattern(
    ctx: CacheContext, pattern: str, version: int | None, itersize: int | None
) -> Plan[int]:
    glob = make_pattern(ctx, pattern, version)
    with writing(ctx.state.near, None):
        return (yield from _delete_matching(ctx, glob))


def _delete_matching(ctx: CacheContext, glob: str) -> Plan[int]:
    total = 0
    errors: list[RedisUnavailable] = []
    step = Primaries(
        ctx.manager, lambda c: unlink_matching(c, glob), lambda c: aunlink_matching(c, glob)
    )
    for _endpoint, result in (yield step):
        if isinstance(result, RedisUnavailable):
            errors.append(result)
        else:
            total += result
    if errors:
        raise errors[0]
    return total


def lock(
    ctx: CacheContext,
    key: Any,
    version: int | None,
    timeout: float | None,
    sleep: float,
    blocking: bool,
    blocking_timeout: float | None,
    thread_local: bool,
) -> redis.lock.Lock:
    """redis-py's ``Lock`` on the key's master (the cluster client on a cluster)."""
    k = ctx.key(key, version)
    manager = ctx.manager
    client = manager.get_client() if manager.cluster else ctx.endpoint(k).client
    return _Lock(
        client,
        k,
        timeout=timeout,
        sleep=sleep,
        blocking=blocking,
        blocking_timeout=blocking_timeout,
        thread_local=thread_local,
    )


def _reverse_key(ctx: CacheContext, made: str) -> str:
    """The caller's key inside a Redis key made by Django's default key function."""
    head = f"{ctx.cache.key_prefix}:"
    if ctx.default_key_func and made.startswith(head):
        return made[len(head) :].split(":", 1)[-1]
    return made.split(":", 2)[2] if made.count(":") >= 2 else made


async def _ascan(client: Any, pattern: str, count: int) -> list[str]:
    return [k.decode() async for k in client.scan_iter(match=pattern, count=count)]


class _Lock(redis.lock.Lock):
    """redis-py's ``Lock`` whose connection failures are :class:`RedisUnavailable`."""

    def _translated(self, fn: Callable[[], T]) -> T:
        try:
            return fn()
        except (rex.ConnectionError, rex.TimeoutError) as exc:
            kind = classify(exc) or ErrorKind.UNREACHABLE
            raise translate(exc, kind, endpoint=str(self.name), alias="lock") from exc

    def do_acquire(self, token: Any) -> bool:
        return self._translated(lambda: super(_Lock, self).do_acquire(token))

    def do_release(self, expected_token: Any) -> None:
        self._translated(lambda: super(_Lock, self).do_release(expected_token))

    def do_extend(self, additional_time: Any, replace_ttl: bool) -> Any:
        return self._translated(lambda: super(_Lock, self).do_extend(additional_time, replace_ttl))

    def do_reacquire(self) -> Any:
        return self._translated(lambda: super(_Lock, self).do_reacquire())

    def locked(self) -> bool:
        return self._translated(lambda: super(_Lock, self).locked())

    def owned(self) -> bool:
        return self._translated(lambda: super(_Lock, self).owned())
