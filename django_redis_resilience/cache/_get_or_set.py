"""The ``get_or_set`` plan: one computation per key and process (single flight),
optionally one in all processes (the app's lock), optionally refreshed a little
before expiry (XFetch's ``early_refresh``)."""

from __future__ import annotations

import logging
import time
from typing import Any

from django_redis_resilience._steps import Call, Plan
from django_redis_resilience.cache._context import MISSING, CacheContext, count
from django_redis_resilience.cache._degraded import read
from django_redis_resilience.cache._reads import get, lookup
from django_redis_resilience.cache._stampede import ALONE, RETRY, Flight, refresh_early
from django_redis_resilience.cache._steps import Follow, ReleaseLock, TakeLock
from django_redis_resilience.cache._writes import add, set_value
from django_redis_resilience.exceptions import RedisUnavailable
from django_redis_resilience.locks import Lock

logger = logging.getLogger("django_redis_resilience")


def get_or_set(
    ctx: CacheContext,
    key: Any,
    default: Any,
    timeout: Any,
    version: int | None,
    lock: bool | None,
    early_refresh: float | None,
) -> Plan[Any]:
    """One computation per key and process (single flight), optionally one in all
    processes (the app's lock), optionally refreshed a little before expiry."""
    while True:
        value = yield from _once(ctx, key, default, timeout, version, lock, early_refresh)
        if value is not RETRY:
            return value
        # The leader we followed was cancelled or interrupted: that is not
        # ours to raise. Start over (one of the followers leads now).


def _once(
    ctx: CacheContext,
    key: Any,
    default: Any,
    timeout: Any,
    version: int | None,
    lock: bool | None,
    early_refresh: float | None,
) -> Plan[Any]:
    beta = ctx.stampede.early_refresh if early_refresh is None else early_refresh
    k = ctx.key(key, version)
    flights = ctx.state.flights
    value, ttl_ms = yield from _current(ctx, key, k, version, beta)
    if value is not MISSING:
        if not refresh_early(beta=beta, duration=flights.duration(k), ttl_ms=ttl_ms):
            return value
        flight = flights.lead(k)
        if flight is None:  # someone here refreshes it already
            return value
    else:
        flight, leader = flights.join(k)
        if not leader:
            return (yield from _follow(ctx, key, k, default, timeout, version, flight))
        value = yield from _read_again(ctx, key, k, version, flight)
        if value is not MISSING:
            return value
    use_lock = ctx.stampede.lock if lock is None else lock
    return (yield from _lead(ctx, key, k, default, timeout, version, flight, value, use_lock))


def _current(
    ctx: CacheContext, key: Any, k: str, version: int | None, beta: float | None
) -> Plan[tuple[Any, int | None]]:
    """The cached value (or ``MISSING``) and, for an early refresh, its TTL in the
    same round trip."""
    if not beta:
        return (yield from get(ctx, key, MISSING, version)), None
    manager, state = ctx.current()
    missing: tuple[Any, int | None] = (MISSING, None)
    value, ttl_ms = yield from read(
        ctx,
        manager,
        state,
        k,
        lambda c: c.pipeline(transaction=False).get(k).pttl(k).execute(),
        lambda reply: (ctx.decoded(reply[0]), int(reply[1])),
        lambda fb: (fb.get(key, MISSING, version=version), None),
        missing,
    )
    count(state, value)
    return value, ttl_ms


def _follow(
    ctx: CacheContext,
    key: Any,
    k: str,
    default: Any,
    timeout: Any,
    version: int | None,
    flight: Flight,
) -> Plan[Any]:
    """Wait for this process's leader of the key and take its outcome."""
    outcome = yield Follow(flight)
    if outcome is not ALONE:
        return outcome
    # Waiting here would block the leader (same thread): compute
    # alone, without the lock, which would wait for the leader too.
    result, _ = yield from _compute(
        ctx, key, k, default, timeout, version, use_lock=False, current=MISSING
    )
    return result


def _read_again(
    ctx: CacheContext, key: Any, k: str, version: int | None, flight: Flight
) -> Plan[Any]:
    """A flight may have landed between our miss and our lead: read again (and land
    ours with what is found)."""
    flights = ctx.state.flights
    try:
        value = yield from lookup(ctx, key, version, count_it=False)
    except BaseException as exc:
        flights.abandon(k, flight, exc)
        raise
    if value is not MISSING:
        flights.land(k, flight, value=value)
    return value


def _lead(
    ctx: CacheContext,
    key: Any,
    k: str,
    default: Any,
    timeout: Any,
    version: int | None,
    flight: Flight,
    value: Any,
    use_lock: bool,
) -> Plan[Any]:
    """Compute the value as this process's leader of the key; ``value`` is the one
    being refreshed early, or ``MISSING``."""
    flights = ctx.state.flights
    refreshing = value is not MISSING
    try:
        result, took = yield from _compute(
            ctx, key, k, default, timeout, version, use_lock=use_lock, current=value
        )
    except Exception as exc:
        if not refreshing:
            flights.abandon(k, flight, exc)  # nothing stored: the next miss computes again
            raise
        # An early refresh that failed: the value we had is still valid.
        logger.warning("get_or_set(%r): early refresh failed: %r", key, exc)
        flights.land(k, flight, value=value)
        return value
    except BaseException as exc:
        flights.abandon(k, flight, exc)
        raise
    flights.land(k, flight, value=result, duration=took)
    return result


def _compute(
    ctx: CacheContext,
    key: Any,
    k: str,
    default: Any,
    timeout: Any,
    version: int | None,
    *,
    use_lock: bool,
    current: Any,
) -> Plan[tuple[Any, float | None]]:
    """Compute and store ``key``'s value; with the lock, only when no other process
    stored one while this one waited (then that value is returned)."""
    refreshing = current is not MISSING
    held = None
    if use_lock:
        held = yield TakeLock(
            Lock(
                # Braces doubled: the key is a name, not a template.
                "get_or_set:" + k.replace("{", "{{").replace("}", "}}"),
                cache=ctx.alias,
                timeout=ctx.stampede.lock_timeout,
                # An early refresh never waits: someone else is refreshing.
                wait=0 if refreshing else ctx.stampede.lock_timeout,
                on_busy="skip",
                on_unavailable="run",
                on_lost="log",
            )
        )
        if held is None and refreshing:
            return current, None
    try:
        if held and not refreshing:
            stored = yield from get(ctx, key, MISSING, version)
            if stored is not MISSING:  # another process computed it meanwhile
                return stored, None
        started = time.monotonic()
        value = (yield Call(default)) if callable(default) else default
        took = time.monotonic() - started
        if value is None and ctx.stampede.null_timeout is not None:
            timeout = ctx.stampede.null_timeout
        if use_lock or refreshing:
            yield from set_value(ctx, key, value, timeout, version, False, False)
            return value, took
        # As Django: the first value stored wins, so every caller returns the same one.
        yield from add(ctx, key, value, timeout, version)
        return (yield from get(ctx, key, value, version)), took
    finally:
        if held is not None:  # a falsy one too (skipped in an outage): ends its record
            try:
                yield ReleaseLock(held)
            except RedisUnavailable:
                logger.warning("get_or_set(%r): its lock could not be released", key)
