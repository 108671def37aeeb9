"""The two degraded paths every plan goes through: a read and a write that survive an outage.

:func:`read` asks Redis and, during an outage or for a key journaled (a write
of it failed), the fallback store. :func:`write` writes to Redis and, during
an outage, journals the key and writes to the fallback. :func:`rejected_write`
handles a write Redis refused while it answers (memory full, ``MISCONF``).
No plan repeats their ``try``/``except``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, TypeVar

import redis.exceptions as rex
from django.core.cache.backends.base import BaseCache

from django_redis_resilience._steps import AsyncClientFn, ClientFn, Execute, Plan
from django_redis_resilience.cache._context import CacheContext
from django_redis_resilience.cache._near import writing
from django_redis_resilience.cache._state import CacheState, EndpointCounter
from django_redis_resilience.cache._steps import Fallback
from django_redis_resilience.connection import ConnectionManager, ErrorKind, rejected, translate
from django_redis_resilience.exceptions import RedisUnavailable

logger = logging.getLogger("django_redis_resilience")

T = TypeVar("T")


def read(
    ctx: CacheContext,
    manager: ConnectionManager,
    state: CacheState,
    redis_key: str,
    fn: ClientFn,
    then: Callable[[Any], T],
    fallback: Callable[[BaseCache], T],
    default: T,
    *,
    primary: bool = False,
    afn: AsyncClientFn | None = None,
) -> Plan[T]:
    """Read from Redis (``then`` reads the reply; ``primary``: never from a replica); on
    an outage, or for a key journaled, ask the fallback. The caller resolves manager
    and state once."""
    if state.journaling and state.journaled(redis_key, lambda: ctx.endpoint(redis_key)):
        strict_check(ctx, redis_key)
    else:
        try:
            return then((yield Execute(manager, fn, key=redis_key, write=primary, afn=afn)))
        except RedisUnavailable as exc:
            state.note_unavailable(exc)
            if ctx.raises:
                raise
    return (yield from _in_fallback(ctx, state, redis_key, "fallback_reads", fallback, default))


def _in_fallback(
    ctx: CacheContext,
    state: CacheState,
    redis_key: str,
    counter: EndpointCounter,
    fallback: Callable[[BaseCache], T],
    default: T,
) -> Plan[T]:
    """Serve the call from the key's fallback store, counted; ``default`` without one."""
    endpoint = ctx.endpoint(redis_key)
    store = state.fallback(endpoint)
    if store is None:
        return default
    state.count(counter, endpoint.display)
    return (yield Fallback(store, fallback))  # type: ignore[no-any-return]


def strict_check(ctx: CacheContext, redis_key: str) -> None:
    """Without a fallback and with errors asked for, a journaled key is an error too:
    its value in Redis may be older than the caller's last (failed) write."""
    if ctx.raises:
        raise outdated(ctx, redis_key)


def outdated(ctx: CacheContext, redis_key: str) -> RedisUnavailable:
    """The error for a journaled key: Redis is reachable, but its value of the key may be
    older than the caller's last write, until recovery has deleted it."""
    return translate(
        rex.ConnectionError("a write of this key failed; its Redis value may be outdated"),
        ErrorKind.UNREACHABLE,
        endpoint=ctx.endpoint(redis_key).display,
        alias=ctx.alias,
    )


def write(
    ctx: CacheContext,
    redis_key: str,
    original: tuple[Any, int | None],
    fn: ClientFn,
    then: Callable[[Any], T],
    fallback: Callable[[BaseCache], T],
    default: T,
    *,
    idempotent: bool = True,
    afn: AsyncClientFn | None = None,
) -> Plan[T]:
    """Write to Redis; on an outage journal the key and write to the fallback."""
    manager, state = ctx.current()
    plan = _write(
        ctx, manager, state, redis_key, original, fn, then, fallback, default, idempotent, afn
    )
    if state.near is None:
        return (yield from plan)
    with writing(state.near, (redis_key,)):
        return (yield from plan)


def _write(
    ctx: CacheContext,
    manager: ConnectionManager,
    state: CacheState,
    redis_key: str,
    original: tuple[Any, int | None],
    fn: ClientFn,
    then: Callable[[Any], T],
    fallback: Callable[[BaseCache], T],
    default: T,
    idempotent: bool,
    afn: AsyncClientFn | None,
) -> Plan[T]:
    error: RedisUnavailable | None = None
    for force in (False, True):
        try:
            step = Execute(manager, fn, key=redis_key, idempotent=idempotent, afn=afn)
            result = then((yield step))
        except RedisUnavailable as exc:
            error = exc
        except rex.ResponseError as exc:
            if not rejected(exc):
                raise
            yield from rejected_write(ctx, redis_key, original, exc)
            return default
        else:
            if state.journaling:  # one cheap test on the hot path while nothing is
                yield from mirror(ctx, state, redis_key, fallback)
            return result
        if state.record_write(ctx.endpoint(redis_key), redis_key, original, error, force=force):
            break
    assert error is not None
    state.note_unavailable(error)
    if ctx.raises:
        raise error
    return (yield from _in_fallback(ctx, state, redis_key, "fallback_writes", fallback, default))


def mirror(
    ctx: CacheContext, state: CacheState, redis_key: str, fallback: Callable[[BaseCache], Any]
) -> Plan[None]:
    """After a write that reached Redis: if the key is still journaled, write the fallback too.

    A journaled key is read from the fallback until the background drain
    deletes it from Redis; without this, a write that succeeds in that window
    (the breaker never opened, or closed again) would be read back older.
    """
    if state.journaling and state.journaled(redis_key, lambda: ctx.endpoint(redis_key)):
        store = state.fallback(ctx.endpoint(redis_key))
        if store is not None:
            yield Fallback(store, fallback)


def rejected_write(
    ctx: CacheContext, redis_key: str, original: tuple[Any, int | None], error: Exception
) -> Plan[None]:
    """Redis is up but refused a write (memory full under ``noeviction``, ``MISCONF``...).

    Nothing was stored, and the caller is told so (``set`` returns False,
    ``set_many`` lists the key). The key is deleted, which Redis allows
    when memory is full, so that an older value is not read back as if
    the write had happened. The breaker and the fallback stay out of it:
    the server answers, it is the write that failed.
    """
    state = ctx.state
    state.count("refused_writes", ctx.endpoint(redis_key).display)
    state.warn_refused(ctx.alias, error)
    try:
        yield Execute(ctx.manager, lambda c: c.delete(redis_key), key=redis_key)
    except RedisUnavailable as exc:  # then the journal deletes it before reads resume
        state.record_write(ctx.endpoint(redis_key), redis_key, original, exc, force=True)
    except rex.ResponseError as exc:
        if not rejected(exc):
            raise
        logger.warning("Could not delete %s after a refused write: %s", redis_key, exc)
    if ctx.raises:
        raise error  # errors were asked for
