"""The writing plans: ``set``, ``add``, ``touch``, ``delete``, their grouped forms, ``clear``.

Each writes Redis through :func:`~django_redis_resilience.cache._degraded.write`,
which journals the key and writes the fallback during an outage. The grouped
forms send one pipeline a shard and fall back key by key for a shard that is down.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Mapping
from functools import partial
from typing import Any

import redis
from django.core.cache.backends.base import BaseCache

from django_redis_resilience._steps import Call, Grouped, Plan, Primaries
from django_redis_resilience.cache._context import CacheContext, expired, seconds_of
from django_redis_resilience.cache._degraded import mirror, rejected_write, write
from django_redis_resilience.cache._near import writing
from django_redis_resilience.cache._reads import has_key
from django_redis_resilience.cache._state import CacheState, aunlink_matching, unlink_matching
from django_redis_resilience.cache._steps import Fallback
from django_redis_resilience.connection import ConnectionManager, rejected
from django_redis_resilience.exceptions import RedisUnavailable


def set_value(
    ctx: CacheContext, key: Any, value: Any, timeout: Any, version: int | None, nx: bool, xx: bool
) -> Plan[bool]:
    """Django's ``set`` with django-redis's ``nx``/``xx``: whether it was stored."""
    k = ctx.key(key, version)
    ms = ctx.ms(timeout)
    if expired(ms):
        if nx:
            return not (yield from has_key(ctx, key, version))
        yield from delete(ctx, key, version)
        return True
    data = ctx.codec.encode(value)
    seconds = seconds_of(ms)

    def fallback(fb: BaseCache) -> bool:
        if nx:
            return bool(fb.add(key, value, seconds, version=version))
        if xx and not fb.has_key(key, version=version):
            return False
        fb.set(key, value, seconds, version=version)
        return True

    return (
        yield from write(
            ctx,
            k,
            (key, version),
            lambda c: c.set(k, data, px=ms, nx=nx, xx=xx),
            bool,
            fallback,
            False,
            idempotent=not nx,
        )
    )


def add(ctx: CacheContext, key: Any, value: Any, timeout: Any, version: int | None) -> Plan[bool]:
    if expired(ctx.ms(timeout)):
        # Added and gone at once, as Django's backends do with a timeout <= 0.
        k = ctx.key(key, version)
        data = ctx.codec.encode(value)
        return (
            yield from write(
                ctx,
                k,
                (key, version),
                partial(_add_and_drop, key=k, data=data),
                bool,
                lambda fb: bool(fb.add(key, value, 0, version=version)),
                False,
                idempotent=False,
                afn=partial(_aadd_and_drop, key=k, data=data),
            )
        )
    return (yield from set_value(ctx, key, value, timeout, version, True, False))


def set_on(
    ctx: CacheContext,
    client: Any,
    key: Any,
    value: Any,
    timeout: Any,
    version: int | None,
    nx: bool,
    xx: bool,
) -> Plan[bool]:
    """django-redis's ``set(..., client=...)``: written with the caller's client or
    pipeline as given, outside the breaker and without fallback."""
    k = ctx.key(key, version)
    ms = ctx.ms(timeout)
    if expired(ms):
        return bool((yield Call(partial(client.delete, k))))
    data = ctx.codec.encode(value)
    return bool((yield Call(partial(client.set, k, data, px=ms, nx=nx, xx=xx))))


def touch(ctx: CacheContext, key: Any, timeout: Any, version: int | None) -> Plan[bool]:
    k = ctx.key(key, version)
    ms = ctx.ms(timeout)
    if expired(ms):
        return (yield from delete(ctx, key, version))
    seconds = seconds_of(ms)
    return (
        yield from write(
            ctx,
            k,
            (key, version),
            lambda c: c.persist(k) if ms is None else c.pexpire(k, ms),
            bool,
            lambda fb: bool(fb.touch(key, seconds, version=version)),
            False,
        )
    )


def delete(ctx: CacheContext, key: Any, version: int | None) -> Plan[bool]:
    k = ctx.key(key, version)
    return (
        yield from write(
            ctx,
            k,
            (key, version),
            lambda c: c.delete(k),
            bool,
            lambda fb: bool(fb.delete(key, version=version)),
            False,
        )
    )


def set_many(
    ctx: CacheContext, data: Mapping[Any, Any], timeout: Any, version: int | None
) -> Plan[list[Any]]:
    """The keys that could not be stored (none while a fallback takes them)."""
    ms = ctx.ms(timeout)
    if expired(ms):
        yield from delete_many(ctx, list(data), version)
        return []
    made = {ctx.key(key, version): key for key in data}
    encoded = {k: ctx.codec.encode(data[key]) for k, key in made.items()}

    with writing(ctx.state.near, made):
        return (yield from _set_many(ctx, data, made, encoded, ms, version))


def _set_many(
    ctx: CacheContext,
    data: Mapping[Any, Any],
    made: Mapping[str, Any],
    encoded: Mapping[str, bytes],
    ms: int | None,
    version: int | None,
) -> Plan[list[Any]]:
    failed: list[Any] = []
    seconds = seconds_of(ms)
    state = ctx.state
    store = partial(_set_pipelined, encoded, ms)
    for group, result in (yield Grouped(ctx.manager, list(made), store)):
        if isinstance(result, RedisUnavailable):
            for k in group:
                key = made[k]
                stored = yield from write(
                    ctx,
                    k,
                    (key, version),
                    partial(_redis_set, key=k, data=encoded[k], ms=ms),
                    bool,
                    partial(_fallback_set, key, data[key], seconds, version),
                    False,
                )
                if not stored:
                    failed.append(key)
            continue
        journaling = state.journaling  # once per shard, not per key: usually nothing is
        for k, reply in zip(group, result, strict=True):
            if journaling or isinstance(reply, Exception):  # else stored: nothing to do
                key = made[k]
                setter = partial(_fallback_set, key, data[key], seconds, version)
                if not (yield from _stored(ctx, state, k, (key, version), reply, setter)):
                    failed.append(key)
    return failed


def _set_pipelined(
    encoded: Mapping[str, bytes], ms: int | None, client: Any, group: list[str]
) -> Any:
    pipe = client.pipeline(transaction=False)
    for k in group:
        pipe.set(k, encoded[k], px=ms)
    return _refusals_only(pipe.execute(raise_on_error=False))


def _stored(
    ctx: CacheContext,
    state: CacheState,
    k: str,
    original: tuple[Any, int | None],
    reply: Any,
    setter: Callable[[BaseCache], Any],
) -> Plan[bool]:
    """One key's reply in a pipelined ``set_many`` while some journal holds keys, or
    that Redis rejected (the other errors raised in the pipeline): whether it is stored.
    A stored key is mirrored to the fallback (see :func:`mirror`)."""
    if isinstance(reply, Exception):
        yield from rejected_write(ctx, k, original, reply)
        return False
    yield from mirror(ctx, state, k, setter)
    return True


def delete_many(ctx: CacheContext, keys: Iterable[Any], version: int | None) -> Plan[int]:
    """How many of ``keys`` were deleted (as django-redis counts; Django returns nothing)."""
    made = {ctx.key(key, version): key for key in keys}
    if not made:
        return 0
    with writing(ctx.state.near, made):
        return (yield from _delete_many(ctx, made, version))


def _delete_many(ctx: CacheContext, made: Mapping[str, Any], version: int | None) -> Plan[int]:
    cluster = ctx.manager.cluster is not None

    def remove(client: Any, group: list[str]) -> Any:
        if not cluster:
            return client.delete(*group)
        pipe = client.pipeline(transaction=False)
        for k in group:
            pipe.delete(k)
        return pipe.execute()

    state = ctx.state
    deleted = 0
    for group, result in (yield Grouped(ctx.manager, list(made), remove)):
        if isinstance(result, RedisUnavailable):
            for k in group:
                deleted += yield from delete(ctx, made[k], version)
            continue
        deleted += sum(result) if isinstance(result, list) else int(result)
        if state.journaling:
            for k in group:
                yield from mirror(ctx, state, k, partial(_fallback_delete, made[k], version))
    return deleted


def clear(ctx: CacheContext) -> Plan[None]:
    """This cache's namespace on every master (or FLUSHDB), and every fallback store;
    a master that is down is cleared when it returns."""
    manager, state = ctx.current()
    with writing(state.near, None):
        yield from _clear(ctx, manager, state)


def _clear(ctx: CacheContext, manager: ConnectionManager, state: CacheState) -> Plan[None]:
    pattern = state.settings.namespace
    assert pattern is not None  # built by the cache's settings, which raise without one
    if ctx.clear_flushes_db:
        step = Primaries(manager, lambda c: c.flushdb(), lambda c: c.flushdb())
    else:
        step = Primaries(
            manager,
            lambda c: unlink_matching(c, pattern),
            lambda c: aunlink_matching(c, pattern),
        )
    for endpoint, result in (yield step):
        if isinstance(result, RedisUnavailable):  # recorded first: it must not be skipped
            state.note_unavailable(result)
            state.invalidate_on_recovery(endpoint)
        store = state.fallback(endpoint)
        if store is not None:
            yield Fallback(store, lambda fb: fb.clear())


def _redis_set(client: Any, *, key: str, data: Any, ms: int | None) -> Any:
    return client.set(key, data, px=ms)


def _add_and_drop(client: redis.Redis, *, key: str, data: Any) -> bool:
    added = bool(client.set(key, data, nx=True))
    if added:
        client.delete(key)
    return added


async def _aadd_and_drop(client: Any, *, key: str, data: Any) -> bool:
    added = bool(await client.set(key, data, nx=True))
    if added:
        await client.delete(key)
    return added


def _fallback_set(
    key: Any, value: Any, seconds: float | None, version: int | None, fb: BaseCache
) -> bool:
    fb.set(key, value, seconds, version=version)
    return True


def _fallback_delete(key: Any, version: int | None, fb: BaseCache) -> None:
    fb.delete(key, version=version)


def _refusals_only(replies: Any) -> Any:
    """A pipeline's replies, raising any error among them but a write refusal.

    Raised inside the pipeline's function, where the connection layer sees it
    (``MOVED`` is routed, ``WRONGTYPE`` reaches the caller); refusals stay in
    the list for the plan to report key by key. Sync lists and awaitables alike.
    """
    if inspect.isawaitable(replies):

        async def checked() -> Any:
            return _refusals_only(await replies)

        return checked()
    for reply in replies:
        if isinstance(reply, Exception) and not rejected(reply):
            raise reply
    return replies
