"""The reading plans: ``get``, ``has_key``, ``get_many``.

Each reads Redis through :func:`~django_redis_resilience.cache._degraded.read`
(or, for many keys, shard by shard with the same rules) and counts hits and
misses in the cache's state.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from functools import partial
from operator import methodcaller
from typing import Any

from django.core.cache.backends.base import BaseCache

from django_redis_resilience._lua import LuaScript
from django_redis_resilience._steps import Grouped, Plan
from django_redis_resilience.cache._context import MISSING, CacheContext, count
from django_redis_resilience.cache._degraded import read, strict_check
from django_redis_resilience.cache._near import NearCache
from django_redis_resilience.cache._state import CacheState
from django_redis_resilience.cache._steps import Fallback
from django_redis_resilience.connection import ConnectionManager
from django_redis_resilience.exceptions import RedisUnavailable

_NEAR_GET = LuaScript("django_redis_resilience.cache", "near_get")


def get(
    ctx: CacheContext, key: Any, default: Any, version: int | None, *, near_missed: bool = False
) -> Plan[Any]:
    """``near_missed``: :func:`near_hit` was just asked, in vain."""
    return lookup(ctx, key, version, count_it=True, default=default, near_missed=near_missed)


def lookup(
    ctx: CacheContext,
    key: Any,
    version: int | None,
    *,
    count_it: bool,
    default: Any = MISSING,
    near_missed: bool = False,
) -> Plan[Any]:
    """The value, or ``default``; ``count_it``: as a hit or a miss in the counters."""
    k = ctx.key(key, version)
    manager, state = ctx.current()
    near = state.near
    if near is not None and near.eligible(k):
        value = yield from _near_lookup(ctx, manager, state, near, key, k, version, near_missed)
    else:
        value = yield from read(
            ctx,
            manager,
            state,
            k,
            methodcaller("get", k),  # called in C: no Python frame on the hot path
            ctx.decoded,
            lambda fb: fb.get(key, MISSING, version=version),
            MISSING,
        )
    if count_it:
        count(state, value)
    return default if value is MISSING else value


def near_hit(ctx: CacheContext, key: Any, version: int | None) -> Any:
    """The value if the near cache holds it now (counted as a hit), else ``MISSING``."""
    k = ctx.key(key, version)
    state = ctx.current()[1]
    near = state.near
    if near is None or not near.eligible(k):
        return MISSING
    raw = near.get(k)
    if raw is None:
        return MISSING
    counters = state.counters
    counters.near_hits += 1
    counters.hits += 1
    return ctx.codec.decode(raw)


def _near_lookup(
    ctx: CacheContext,
    manager: ConnectionManager,
    state: CacheState,
    near: NearCache,
    key: Any,
    k: str,
    version: int | None,
    near_missed: bool,
) -> Plan[Any]:
    """The value from the process if its node's link vouches for it, else from the
    primary (kept near if nothing changed meanwhile)."""
    raw = None if near_missed else near.get(k)
    if raw is not None:
        state.counters.near_hits += 1
        return ctx.codec.decode(raw)
    state.counters.near_misses += 1
    before = near.version

    def then(reply: Any) -> Any:
        if reply is None:
            return MISSING
        ttl, _, raw = reply.partition(b":")
        near.keep(k, raw, before, int(ttl), ctx.endpoint(k))
        return ctx.codec.decode(raw)

    fallback = lambda fb: fb.get(key, MISSING, version=version)  # noqa: E731
    fetch, afetch = _get_and_ttl(k)
    return (
        yield from read(
            ctx, manager, state, k, fetch, then, fallback, MISSING, primary=True, afn=afetch
        )
    )


def _get_and_ttl(k: str) -> tuple[Callable[[Any], Any], Callable[[Any], Any]]:
    """The value and its time to live, in one command (a script: cheaper than a
    pipeline): a near value must not outlive its key."""
    return (lambda c: _NEAR_GET(c, [k])), (lambda c: _NEAR_GET.acall(c, [k]))


def has_key(ctx: CacheContext, key: Any, version: int | None) -> Plan[bool]:
    k = ctx.key(key, version)
    manager, state = ctx.current()
    near = state.near
    if near is not None and near.eligible(k):
        if near.get(k) is not None:
            state.counters.near_hits += 1
            return True
        state.counters.near_misses += 1
    return (
        yield from read(
            ctx,
            manager,
            state,
            k,
            lambda c: c.exists(k),
            bool,
            lambda fb: bool(fb.has_key(key, version=version)),
            False,
            primary=near is not None,  # a replica may not have this process's last write yet
        )
    )


def get_many(ctx: CacheContext, keys: Iterable[Any], version: int | None) -> Plan[dict[Any, Any]]:
    made = {ctx.key(key, version): key for key in keys}
    asked = len(made)
    found: dict[Any, Any] = {}
    manager, state = ctx.current()
    near = state.near
    before = 0
    if near is not None:
        before = near.version  # before anything is fetched: what may be kept
        _near_many(state, near, made, found, ctx.codec.decode)
    degraded = _journaled(ctx, state, made)
    skip = set(degraded)
    in_redis = [k for k in made if k not in skip] if skip else list(made)
    if near is not None:
        fetch = _near_fetch
    else:
        fetch = _mget if manager.cluster is None else _pipelined_get
    for group, result in (yield Grouped(manager, in_redis, fetch, write=near is not None)):
        if isinstance(result, RedisUnavailable):
            state.note_unavailable(result)
            if ctx.raises:
                raise result
            degraded += group
        elif near is None:
            decode = ctx.codec.decode
            for k, raw in zip(group, result, strict=True):
                if raw is not None:
                    found[made[k]] = decode(raw)
        else:
            _found_near(ctx, near, before, made, group, result, found)
    yield from _from_fallback(ctx, state, made, degraded, version, found)
    state.counters.hits += len(found)
    state.counters.misses += asked - len(found)
    return found


def _found_near(
    ctx: CacheContext,
    near: NearCache,
    before: int,
    made: Mapping[str, Any],
    group: list[str],
    replies: list[Any],
    found: dict[Any, Any],
) -> None:
    """Decode what :func:`_near_fetch` read, and keep it near unless something changed."""
    decode = ctx.codec.decode
    for k, reply in zip(group, replies, strict=True):
        if reply is not None:
            ttl, _, raw = reply.partition(b":")
            if near.eligible(k):
                near.keep(k, raw, before, int(ttl), ctx.endpoint(k))
            found[made[k]] = decode(raw)


def _from_fallback(
    ctx: CacheContext,
    state: CacheState,
    made: Mapping[str, Any],
    degraded: list[str],
    version: int | None,
    found: dict[Any, Any],
) -> Plan[None]:
    """The keys Redis could not be asked for (or must not be: journaled), from the fallback."""
    for k in degraded:
        endpoint = ctx.endpoint(k)
        store = state.fallback(endpoint)
        if store is not None:
            state.count("fallback_reads", endpoint.display)
            key = made[k]
            value = yield Fallback(store, partial(_fallback_get, key=key, version=version))
            if value is not MISSING:
                found[key] = value


def _near_fetch(client: Any, group: list[str]) -> Any:
    """Each key's value and time to live (the near cache keeps them), one pipeline a shard.

    ``EVAL`` with the script's text, not ``EVALSHA``: a pipeline cannot load a
    script that a restarted server forgot; the server compiles it once anyway.
    """
    pipe = client.pipeline(transaction=False)
    for k in group:
        pipe.eval(_NEAR_GET.source, 1, k)
    return pipe.execute()


def _near_many(
    state: CacheState,
    near: NearCache,
    made: dict[str, Any],
    found: dict[Any, Any],
    decode: Callable[[Any], Any],
) -> None:
    """Move the near hits of ``made`` into ``found``; the rest is read from Redis."""
    for k in [k for k in made if near.eligible(k)]:
        raw = near.get(k)
        if raw is None:
            state.counters.near_misses += 1
        else:
            state.counters.near_hits += 1
            found[made.pop(k)] = decode(raw)


def _journaled(ctx: CacheContext, state: CacheState, made: Mapping[str, Any]) -> list[str]:
    """The keys of ``made`` waiting in their endpoint's journal, in order (checked one
    by one only while some journal holds keys: almost never outside an outage)."""
    if not state.journaling:
        return []
    journaled = sorted(k for k in made if state.journaled(k, partial(ctx.endpoint, k)))
    for k in journaled:
        strict_check(ctx, k)
    return journaled


def _mget(client: Any, group: list[str]) -> Any:
    return client.mget(group)


def _pipelined_get(client: Any, group: list[str]) -> Any:
    """A cluster's ``MGET`` must stay in one slot: one ``GET`` a key, pipelined."""
    pipe = client.pipeline(transaction=False)
    for k in group:
        pipe.get(k)
    return pipe.execute()


def _fallback_get(store: BaseCache, *, key: Any, version: int | None) -> Any:
    return store.get(key, MISSING, version=version)
