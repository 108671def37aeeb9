"""``ResilientRedisCache``: Django's cache API on Redis, served by a fallback while Redis is down.

Every method has one shape: build the key, run one function through the
connection manager (breakers, retries, routing by key), and on
:class:`RedisUnavailable` hand the call to the fallback store. The degraded
paths are written once (``_degraded.read``, ``_degraded.write``, and their
grouped forms); no method repeats a ``try``/``except``. What every plan needs
(options, key making, state) is the cache's :class:`CacheContext`.

Keys in Redis are exactly Django's ``make_key(key, version)`` and values are
encoded as django-redis encodes them, so existing data and tools keep working.
"""

from __future__ import annotations

import inspect
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import datetime, timedelta
from functools import partial
from typing import Any, TypeVar

import redis
import redis.exceptions as rex
import redis.lock
from django.conf import settings
from django.core.cache.backends.base import DEFAULT_TIMEOUT, BaseCache
from django.utils.module_loading import import_string

from django_redis_resilience._lua import LuaScript
from django_redis_resilience.cache import _degraded
from django_redis_resilience.cache._codec import DEFAULT_COMPRESSOR, DEFAULT_SERIALIZER, Codec
from django_redis_resilience.cache._context import MISSING, CacheContext, count
from django_redis_resilience.cache._namespace import (
    Namespace,
    UnknownNamespace,
    glob_escape,
    namespace_of,
)
from django_redis_resilience.cache._plan import (
    Compute,
    Execute,
    Fallback,
    Follow,
    Grouped,
    Plan,
    Primaries,
    ReleaseLock,
    TakeLock,
    arun,
    run,
)
from django_redis_resilience.cache._stampede import (
    ALONE,
    RETRY,
    StampedeConfig,
    refresh_early,
)
from django_redis_resilience.cache._state import (
    PRIVATE,
    CacheSettings,
    CacheState,
    aunlink_matching,
    unlink_matching,
)
from django_redis_resilience.clients import get_manager
from django_redis_resilience.conf import conf, stampede_problem
from django_redis_resilience.connection import ConnectionManager
from django_redis_resilience.connection._errors import ErrorKind, classify, refused, translate
from django_redis_resilience.exceptions import (
    ConfigurationError,
    RedisUnavailable,
)
from django_redis_resilience.locks import Lock

logger = logging.getLogger("django_redis_resilience")

T = TypeVar("T")


_INCR = LuaScript("django_redis_resilience.cache", "incr")


def _backend_class(path: object) -> object:
    try:
        return import_string(str(path))
    except ImportError:
        return None


def _find_alias(cls: type, location: Any, params: Mapping[str, Any]) -> str:
    """The ``CACHES`` alias this backend was built for (Django does not pass it)."""
    for alias, cfg in getattr(settings, "CACHES", {}).items():
        if not isinstance(cfg, Mapping) or cfg.get("LOCATION", "") != location:
            continue
        if _backend_class(cfg.get("BACKEND")) is not cls:
            continue  # e.g. a django-redis alias with the same settings, kept while migrating
        if all(cfg.get(k) == v for k, v in params.items()) and all(
            params.get(k) == v for k, v in cfg.items() if k not in ("BACKEND", "LOCATION")
        ):
            return str(alias)
    raise ConfigurationError(
        "ResilientRedisCache must be configured in settings.CACHES (its alias names its "
        "connection pools and breakers); it was built with a LOCATION found in no alias."
    )


def _fallback_get(store: BaseCache, *, key: Any, version: int | None) -> Any:
    return store.get(key, MISSING, version=version)


def _redis_set(client: Any, *, key: str, data: Any, ms: int | None) -> Any:
    return client.set(key, data, px=ms)


def _add_and_drop(client: redis.Redis, *, key: str, data: Any) -> bool:
    added = bool(client.set(key, data, nx=True))
    if added:
        client.delete(key)
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
        if isinstance(reply, Exception) and not refused(reply):
            raise reply
    return replies


async def _aadd_and_drop(client: Any, *, key: str, data: Any) -> bool:
    added = bool(await client.set(key, data, nx=True))
    if added:
        await client.delete(key)
    return added


def _seconds(ms: int | None) -> int | None:
    return None if ms is None else (ms + 999) // 1000 if ms > 0 else 0


async def _ascan(client: Any, pattern: str, count: int) -> list[str]:
    return [k.decode() async for k in client.scan_iter(match=pattern, count=count)]


class _ClientShim:
    """What ``django_redis.get_redis_connection(alias)`` asks for: ``cache.client.get_client()``."""

    def __init__(self, cache: ResilientRedisCache) -> None:
        self._cache = cache

    def get_client(self, write: bool = True, *args: Any, **kwargs: Any) -> Any:
        return self._cache.get_client(write=write)


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


class ResilientRedisCache(BaseCache):
    """A Redis cache (standalone, replicas, Sentinel, Cluster) that degrades instead of failing."""

    def __init__(self, server: str | Sequence[str], params: dict[str, Any]) -> None:
        super().__init__(params)
        self._location = server
        self._params = params
        options: Mapping[str, Any] = params.get("OPTIONS") or {}
        codec = Codec(
            serializer=options.get("SERIALIZER", DEFAULT_SERIALIZER),
            compressor=options.get("COMPRESSOR", DEFAULT_COMPRESSOR),
            options=options,
        )
        ignore_exceptions = bool(options.get("IGNORE_EXCEPTIONS", True))
        degraded_counters = options.get("DEGRADED_COUNTERS", "raise")
        clear_flushes_db = bool(options.get("CLEAR_FLUSHES_DB", False))
        self._recovery = options.get("RECOVERY", "journal")
        self._fallback_spec: str | type | None = options.get("FALLBACK", PRIVATE)
        self._alias = _find_alias(type(self), server, params)
        if "STAMPEDE" in options and stampede_problem(options["STAMPEDE"]):
            conf.connection_options(self._alias)  # raises E004 naming the setting
        self._ctx = CacheContext(
            self,
            alias=self._alias,
            codec=codec,
            settings=self._cache_settings,
            fallback_spec=self._fallback_spec,
            ignore_exceptions=ignore_exceptions,
            degraded_counters=degraded_counters,
            clear_flushes_db=clear_flushes_db,
            stampede=StampedeConfig.from_options(options.get("STAMPEDE")),
            default_key_func=params.get("KEY_FUNCTION") is None,
        )
        #: ``django_redis.get_redis_connection(alias)`` reads ``cache.client.get_client``.
        self.client = _ClientShim(self)

    def __repr__(self) -> str:
        return f"<ResilientRedisCache {self._alias}>"

    # --- process-wide parts -----------------------------------------------------------

    @property
    def manager(self) -> ConnectionManager:
        return get_manager(self._alias)

    @property
    def state(self) -> CacheState:
        return self._ctx.state_of(self.manager)

    def _state_of(self, manager: ConnectionManager) -> CacheState:
        return self._ctx.state_of(manager)

    def _cache_settings(self) -> CacheSettings:
        return CacheSettings(
            alias=self._alias,
            fallback=self._fallback_spec,
            fallback_params={
                "TIMEOUT": self.default_timeout,
                "KEY_PREFIX": self.key_prefix,
                "VERSION": self.version,
                "KEY_FUNCTION": self.key_func,
                "OPTIONS": {"MAX_ENTRIES": 10_000},
            },
            recovery=self._recovery,
            namespace=self.namespace(),
            key_prefix=self.key_prefix,
        )

    def namespace(self) -> Namespace:
        """This cache's keys in Redis (every version, never the app's own keys): what
        ``clear()`` and the recovery's namespace invalidation delete."""
        try:
            return namespace_of(self.key_func, self.key_prefix, self.version)
        except UnknownNamespace as exc:  # the settings refuse it first (E006)
            raise ConfigurationError(f"CACHES[{self._alias!r}]['KEY_FUNCTION'] {exc}.") from exc

    # --- Django's cache API: the plans ----------------------------------------------------

    def _get(self, key: Any, default: Any, version: int | None) -> Plan[Any]:
        value = yield from self._lookup(key, version, count_it=True)
        return default if value is MISSING else value

    def _lookup(self, key: Any, version: int | None, *, count_it: bool) -> Plan[Any]:
        """The value, or ``MISSING``; ``count_it``: as a hit or a miss in the counters."""
        k = self._ctx.key(key, version)
        manager = self.manager
        state = self._ctx.state_of(manager)
        value = yield from _degraded.read(
            self._ctx,
            manager,
            state,
            k,
            lambda c: c.get(k),
            self._ctx.decoded,
            lambda fb: fb.get(key, MISSING, version=version),
            MISSING,
        )
        if count_it:
            count(state, value)
        return value

    def _set(
        self, key: Any, value: Any, timeout: Any, version: int | None, nx: bool, xx: bool
    ) -> Plan[bool]:
        k = self._ctx.key(key, version)
        ms = self._ctx.ms(timeout)
        if ms is not None and ms <= 0:
            if nx:
                return not (yield from self._has_key(key, version))
            yield from self._delete(key, version)
            return True
        data = self._ctx.codec.encode(value)
        seconds = None if ms is None else ms / 1000

        def fallback(fb: BaseCache) -> bool:
            if nx:
                return bool(fb.add(key, value, seconds, version=version))
            if xx and not fb.has_key(key, version=version):
                return False
            fb.set(key, value, seconds, version=version)
            return True

        return (
            yield from _degraded.write(
                self._ctx,
                k,
                (key, version),
                lambda c: c.set(k, data, px=ms, nx=nx, xx=xx),
                bool,
                fallback,
                False,
                idempotent=not nx,
            )
        )

    def _add(self, key: Any, value: Any, timeout: Any, version: int | None) -> Plan[bool]:
        ms = self._ctx.ms(timeout)
        if ms is not None and ms <= 0:
            # Added and gone at once, as Django's backends do with a timeout <= 0.
            k = self._ctx.key(key, version)
            data = self._ctx.codec.encode(value)
            return (
                yield from _degraded.write(
                    self._ctx,
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
        return (yield from self._set(key, value, timeout, version, True, False))

    def _touch(self, key: Any, timeout: Any, version: int | None) -> Plan[bool]:
        k = self._ctx.key(key, version)
        ms = self._ctx.ms(timeout)
        if ms is not None and ms <= 0:
            return (yield from self._delete(key, version))
        seconds = None if ms is None else ms / 1000
        return (
            yield from _degraded.write(
                self._ctx,
                k,
                (key, version),
                lambda c: c.persist(k) if ms is None else c.pexpire(k, ms),
                bool,
                lambda fb: bool(fb.touch(key, seconds, version=version)),
                False,
            )
        )

    def _delete(self, key: Any, version: int | None) -> Plan[bool]:
        k = self._ctx.key(key, version)
        return (
            yield from _degraded.write(
                self._ctx,
                k,
                (key, version),
                lambda c: c.delete(k),
                bool,
                lambda fb: bool(fb.delete(key, version=version)),
                False,
            )
        )

    def _has_key(self, key: Any, version: int | None) -> Plan[bool]:
        k = self._ctx.key(key, version)
        manager = self.manager
        return (
            yield from _degraded.read(
                self._ctx,
                manager,
                self._ctx.state_of(manager),
                k,
                lambda c: c.exists(k),
                bool,
                lambda fb: bool(fb.has_key(key, version=version)),
                False,
            )
        )

    def _incr(self, key: Any, delta: int, version: int | None) -> Plan[int]:
        k = self._ctx.key(key, version)
        manager = self.manager
        try:
            value = yield from self._incr_in_redis(manager, k, delta)
        except RedisUnavailable as exc:
            state = self._ctx.state_of(manager)
            state.note_unavailable(exc)
            endpoint = self._ctx.endpoint(k)
            store = state.fallback(endpoint)
            if self._ctx.degraded_counters != "local" or store is None:
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

    def _incr_in_redis(self, manager: ConnectionManager, k: str, delta: int) -> Plan[Any]:
        try:
            result = yield Execute(
                manager,
                lambda c: _INCR(c, [k], [delta]),
                afn=lambda c: _INCR.acall(c, [k], [delta]),
                key=k,
                idempotent=False,
            )
        except rex.ResponseError as exc:
            if "not an integer" not in str(exc) and "overflow" not in str(exc):
                raise
            result = None
            # A serialized number (a float, a big int): as django-redis, read,
            # add and write back keeping the TTL; not atomic.
            raw = yield Execute(manager, lambda c: c.get(k), key=k)
            if raw is None:
                return None
            value = self._ctx.codec.decode(raw) + delta
            data = self._ctx.codec.encode(value)
            yield Execute(manager, lambda c: c.set(k, data, keepttl=True), key=k)
            return value
        return None if result is None else int(result)

    def _get_many(self, keys: Iterable[Any], version: int | None) -> Plan[dict[Any, Any]]:
        made = {self._ctx.key(key, version): key for key in keys}
        found: dict[Any, Any] = {}
        manager = self.manager
        state = self._ctx.state_of(manager)
        journaled = {k for k in made if state.journaled(k, partial(self._ctx.endpoint, k))}
        in_redis = [k for k in made if k not in journaled]
        fetch = self._mget if manager.cluster is None else self._pipelined_get
        for k in journaled:
            _degraded.strict_check(self._ctx, k)
        degraded: list[str] = sorted(journaled)
        for group, result in (yield Grouped(manager, in_redis, fetch, write=False)):
            if isinstance(result, RedisUnavailable):
                state.note_unavailable(result)
                if self._ctx.raises:
                    raise result
                degraded += group
                continue
            for k, raw in zip(group, result, strict=True):
                if raw is not None:
                    found[made[k]] = self._ctx.codec.decode(raw)
        for k in degraded:
            endpoint = self._ctx.endpoint(k)
            store = state.fallback(endpoint)
            if store is not None:
                state.count("fallback_reads", endpoint.display)
                key = made[k]
                value = yield Fallback(store, partial(_fallback_get, key=key, version=version))
                if value is not MISSING:
                    found[key] = value
        state.counters.hits += len(found)
        state.counters.misses += len(made) - len(found)
        return found

    @staticmethod
    def _mget(client: Any, group: list[str]) -> Any:
        return client.mget(group)

    @staticmethod
    def _pipelined_get(client: Any, group: list[str]) -> Any:
        pipe = client.pipeline(transaction=False)
        for k in group:
            pipe.get(k)
        return pipe.execute()

    def _set_many(
        self, data: Mapping[Any, Any], timeout: Any, version: int | None
    ) -> Plan[list[Any]]:
        ms = self._ctx.ms(timeout)
        if ms is not None and ms <= 0:
            yield from self._delete_many(list(data), version)
            return []
        made = {self._ctx.key(key, version): key for key in data}
        encoded = {k: self._ctx.codec.encode(data[key]) for k, key in made.items()}

        def store(client: Any, group: list[str]) -> Any:
            pipe = client.pipeline(transaction=False)
            for k in group:
                pipe.set(k, encoded[k], px=ms)
            return _refusals_only(pipe.execute(raise_on_error=False))

        failed: list[Any] = []
        seconds = None if ms is None else ms / 1000
        state = self._ctx.state_of(self.manager)
        for group, result in (yield Grouped(self.manager, list(made), store)):
            if isinstance(result, RedisUnavailable):
                for k in group:
                    key = made[k]
                    stored = yield from _degraded.write(
                        self._ctx,
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
            mirror = state.journaling  # once per shard, not per key: usually nothing is
            for k, reply in zip(group, result, strict=True):
                if isinstance(reply, Exception):  # refused: the others raised in store()
                    yield from _degraded.refused(self._ctx, k, (made[k], version), reply)
                    failed.append(made[k])
                elif mirror:
                    setter = partial(_fallback_set, made[k], data[made[k]], seconds, version)
                    yield from _degraded.mirror(self._ctx, state, k, setter)
        return failed

    def _delete_many(self, keys: Iterable[Any], version: int | None) -> Plan[None]:
        made = {self._ctx.key(key, version): key for key in keys}
        cluster = self.manager.cluster is not None

        def remove(client: Any, group: list[str]) -> Any:
            if not cluster:
                return client.delete(*group)
            pipe = client.pipeline(transaction=False)
            for k in group:
                pipe.delete(k)
            return pipe.execute()

        state = self._ctx.state_of(self.manager)
        for group, result in (yield Grouped(self.manager, list(made), remove)):
            if isinstance(result, RedisUnavailable):
                for k in group:
                    yield from self._delete(made[k], version)
            elif state.journaling:
                for k in group:
                    yield from _degraded.mirror(
                        self._ctx, state, k, partial(_fallback_delete, made[k], version)
                    )

    def _clear(self) -> Plan[None]:
        manager = self.manager
        state = self._ctx.state_of(manager)
        pattern = state.settings.namespace
        assert pattern is not None  # built by _cache_settings, which raises without one
        if self._ctx.clear_flushes_db:
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

    def _get_or_set(
        self,
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
            value = yield from self._get_or_set_once(
                key, default, timeout, version, lock, early_refresh
            )
            if value is not RETRY:
                return value
            # The leader we followed was cancelled or interrupted: that is not
            # ours to raise. Start over (one of the followers leads now).

    def _get_or_set_once(
        self,
        key: Any,
        default: Any,
        timeout: Any,
        version: int | None,
        lock: bool | None,
        early_refresh: float | None,
    ) -> Plan[Any]:
        config = self._ctx.stampede
        beta = config.early_refresh if early_refresh is None else early_refresh
        k = self._ctx.key(key, version)
        manager = self.manager
        state = self._ctx.state_of(manager)
        flights = state.flights
        missing: tuple[Any, int | None] = (MISSING, None)
        if beta:
            value, ttl_ms = yield from _degraded.read(
                self._ctx,
                manager,
                state,
                k,
                lambda c: c.pipeline(transaction=False).get(k).pttl(k).execute(),
                lambda reply: (self._ctx.decoded(reply[0]), int(reply[1])),
                lambda fb: (fb.get(key, MISSING, version=version), None),
                missing,
            )
            count(state, value)
        else:
            value, ttl_ms = (yield from self._get(key, MISSING, version)), None
        if value is not MISSING:
            if not refresh_early(beta=beta, duration=flights.duration(k), ttl_ms=ttl_ms):
                return value
            lead = flights.lead(k)
            if lead is None:  # someone here refreshes it already
                return value
            flight = lead
        else:
            flight, leader = flights.join(k)
            if not leader:
                outcome = yield Follow(flight)
                if outcome is not ALONE:
                    return outcome
                # Waiting here would block the leader (same thread): compute
                # alone, without the lock, which would wait for the leader too.
                result, _ = yield from self._compute(
                    key, k, default, timeout, version, use_lock=False, current=MISSING
                )
                return result
            try:
                # A flight may have landed between our miss and our lead: read again.
                value = yield from self._lookup(key, version, count_it=False)
            except BaseException as exc:
                flights.abandon(k, flight, exc)
                raise
            if value is not MISSING:
                flights.land(k, flight, value=value)
                return value
        refreshing = value is not MISSING
        try:
            result, took = yield from self._compute(
                key,
                k,
                default,
                timeout,
                version,
                use_lock=config.lock if lock is None else lock,
                current=value,
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
        self,
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
                    cache=self._alias,
                    timeout=self._ctx.stampede.lock_timeout,
                    # An early refresh never waits: someone else is refreshing.
                    wait=0 if refreshing else self._ctx.stampede.lock_timeout,
                    on_busy="skip",
                    on_unavailable="run",
                    on_lost="log",
                )
            )
            if held is None and refreshing:
                return current, None
        try:
            if held and not refreshing:
                stored = yield from self._get(key, MISSING, version)
                if stored is not MISSING:  # another process computed it meanwhile
                    return stored, None
            started = time.monotonic()
            value = (yield Compute(default)) if callable(default) else default
            took = time.monotonic() - started
            if value is None and self._ctx.stampede.null_timeout is not None:
                timeout = self._ctx.stampede.null_timeout
            if use_lock or refreshing:
                yield from self._set(key, value, timeout, version, False, False)
                return value, took
            # As Django: the first value stored wins, so every caller returns the same one.
            yield from self._add(key, value, timeout, version)
            return (yield from self._get(key, value, version)), took
        finally:
            if held is not None:  # a falsy one too (skipped in an outage): ends its record
                try:
                    yield ReleaseLock(held)
                except RedisUnavailable:
                    logger.warning("get_or_set(%r): its lock could not be released", key)

    def _pttl(self, key: Any, version: int | None) -> Plan[int | None]:
        k = self._ctx.key(key, version)
        # Asked of the primary: a replica that lags would call a fresh key missing.
        result = int((yield Execute(self.manager, lambda c: c.pttl(k), key=k)))
        if result == -1:
            return None
        return max(result, 0)

    def _expire_at(self, key: Any, when: datetime, version: int | None) -> Plan[bool]:
        now = datetime.now(tz=when.tzinfo)
        return (yield from self._touch(key, (when - now) / timedelta(seconds=1), version))

    def _keys(self, search: str, itersize: int | None, version: int | None) -> Plan[list[str]]:
        pattern = self.make_pattern(search, version=version)
        count = itersize or 1000
        found: list[str] = []
        step = Primaries(
            self.manager,
            lambda c: [k.decode() for k in c.scan_iter(match=pattern, count=count)],
            lambda c: _ascan(c, pattern, count),
        )
        for _, result in (yield step):
            if isinstance(result, RedisUnavailable):
                raise result
            found += (self._reverse_key(k) for k in result)
        return found

    def _delete_pattern(self, pattern: str, version: int | None, itersize: int | None) -> Plan[int]:
        glob = self.make_pattern(pattern, version=version)
        total = 0
        errors: list[RedisUnavailable] = []
        step = Primaries(
            self.manager, lambda c: unlink_matching(c, glob), lambda c: aunlink_matching(c, glob)
        )
        for _endpoint, result in (yield step):
            if isinstance(result, RedisUnavailable):
                errors.append(result)
            else:
                total += result
        if errors:
            raise errors[0]
        return total

    # --- Django's cache API ---------------------------------------------------------------

    def get(self, key: Any, default: Any = None, version: int | None = None) -> Any:
        return run(self._get(key, default, version))

    async def aget(self, key: Any, default: Any = None, version: int | None = None) -> Any:
        return await arun(self._get(key, default, version))

    def set(  # type: ignore[override]
        self,
        key: Any,
        value: Any,
        timeout: Any = DEFAULT_TIMEOUT,
        version: int | None = None,
        *,
        nx: bool = False,
        xx: bool = False,
    ) -> bool:
        """Django's ``set``, plus django-redis's ``nx``/``xx``; returns whether it was stored."""
        return run(self._set(key, value, timeout, version, nx, xx))

    async def aset(  # type: ignore[override]
        self,
        key: Any,
        value: Any,
        timeout: Any = DEFAULT_TIMEOUT,
        version: int | None = None,
        *,
        nx: bool = False,
        xx: bool = False,
    ) -> bool:
        return await arun(self._set(key, value, timeout, version, nx, xx))

    def add(
        self, key: Any, value: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None
    ) -> bool:
        """Store only if absent. During an outage this is the fallback's ``add``: not a
        cross-process mutex then (use ``lock`` for that)."""
        return run(self._add(key, value, timeout, version))

    async def aadd(
        self, key: Any, value: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None
    ) -> bool:
        return await arun(self._add(key, value, timeout, version))

    def touch(self, key: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None) -> bool:
        return run(self._touch(key, timeout, version))

    async def atouch(
        self, key: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None
    ) -> bool:
        return await arun(self._touch(key, timeout, version))

    def delete(self, key: Any, version: int | None = None) -> bool:
        return run(self._delete(key, version))

    async def adelete(self, key: Any, version: int | None = None) -> bool:
        return await arun(self._delete(key, version))

    def has_key(self, key: Any, version: int | None = None) -> bool:
        return run(self._has_key(key, version))

    async def ahas_key(self, key: Any, version: int | None = None) -> bool:
        return await arun(self._has_key(key, version))

    def incr(self, key: Any, delta: int = 1, version: int | None = None) -> int:
        """Atomic in Redis (one script); ``ValueError`` for a missing key, as Django's.

        During an outage: ``RedisUnavailable`` (``DEGRADED_COUNTERS="raise"``, the
        default), or an approximate count in the fallback (``"local"``) that is
        never written over the real value when Redis returns.
        """
        return run(self._incr(key, delta, version))

    async def aincr(self, key: Any, delta: int = 1, version: int | None = None) -> int:
        return await arun(self._incr(key, delta, version))

    def decr(self, key: Any, delta: int = 1, version: int | None = None) -> int:
        return run(self._incr(key, -delta, version))

    async def adecr(self, key: Any, delta: int = 1, version: int | None = None) -> int:
        return await arun(self._incr(key, -delta, version))

    def get_or_set(
        self,
        key: Any,
        default: Any,
        timeout: Any = DEFAULT_TIMEOUT,
        version: int | None = None,
        *,
        lock: bool | None = None,
        early_refresh: float | None = None,
    ) -> Any:
        """Django's ``get_or_set`` with stampede protection.

        ``default`` (a value or a callable) is computed once per key and
        process at a time; callers that miss meanwhile get its result. With
        ``lock=True`` (or ``OPTIONS["STAMPEDE"]["LOCK"]``) once across
        processes. ``early_refresh`` (XFetch's beta) recomputes a value shortly
        before it expires. During an outage the value goes to the fallback.
        """
        return run(self._get_or_set(key, default, timeout, version, lock, early_refresh))

    async def aget_or_set(
        self,
        key: Any,
        default: Any,
        timeout: Any = DEFAULT_TIMEOUT,
        version: int | None = None,
        *,
        lock: bool | None = None,
        early_refresh: float | None = None,
    ) -> Any:
        """:meth:`get_or_set` for async code; ``default`` may be an async function."""
        return await arun(self._get_or_set(key, default, timeout, version, lock, early_refresh))

    def get_many(self, keys: Iterable[Any], version: int | None = None) -> dict[Any, Any]:
        return run(self._get_many(keys, version))

    async def aget_many(self, keys: Iterable[Any], version: int | None = None) -> dict[Any, Any]:
        return await arun(self._get_many(keys, version))

    def set_many(
        self, data: Mapping[Any, Any], timeout: Any = DEFAULT_TIMEOUT, version: int | None = None
    ) -> list[Any]:
        """Returns the keys that could not be stored (none while a fallback takes them)."""
        return run(self._set_many(data, timeout, version))

    async def aset_many(
        self, data: Mapping[Any, Any], timeout: Any = DEFAULT_TIMEOUT, version: int | None = None
    ) -> list[Any]:
        return await arun(self._set_many(data, timeout, version))

    def delete_many(self, keys: Iterable[Any], version: int | None = None) -> None:
        run(self._delete_many(keys, version))

    async def adelete_many(self, keys: Iterable[Any], version: int | None = None) -> None:
        await arun(self._delete_many(keys, version))

    def clear(self) -> None:
        """Delete this cache's keys (its key prefix, every version, every master) with
        SCAN + UNLINK, never the app's lock and rate-limit keys; ``CLEAR_FLUSHES_DB``
        restores Django's FLUSHDB. Masters that are down are cleared when they return."""
        run(self._clear())

    async def aclear(self) -> None:
        await arun(self._clear())

    def close(self, **kwargs: Any) -> None:
        """Nothing to do: pools live in the process-wide registry, not on this object."""

    async def aclose(self, **kwargs: Any) -> None:
        """Nothing to do (see :meth:`close`)."""

    # --- django-redis's extras ---------------------------------------------------------------

    def get_client(self, key: Any = None, *, write: bool = True) -> Any:
        """The raw redis-py client (a ``RedisCluster`` on a cluster); no breaker on it."""
        return self.manager.get_client(write=write)

    def ttl(self, key: Any, version: int | None = None) -> int | None:
        """Seconds left; ``None`` for a key without expiry, ``0`` when missing.
        Raises :class:`RedisUnavailable` during an outage."""
        return _seconds(self.pttl(key, version=version))

    async def attl(self, key: Any, version: int | None = None) -> int | None:
        return _seconds(await self.apttl(key, version=version))

    def pttl(self, key: Any, version: int | None = None) -> int | None:
        return run(self._pttl(key, version))

    async def apttl(self, key: Any, version: int | None = None) -> int | None:
        return await arun(self._pttl(key, version))

    def expire(self, key: Any, timeout: float, version: int | None = None) -> bool:
        return self.touch(key, timeout, version=version)

    async def aexpire(self, key: Any, timeout: float, version: int | None = None) -> bool:
        return await self.atouch(key, timeout, version=version)

    def pexpire(self, key: Any, timeout: int, version: int | None = None) -> bool:
        return self.touch(key, timeout / 1000, version=version)

    async def apexpire(self, key: Any, timeout: int, version: int | None = None) -> bool:
        return await self.atouch(key, timeout / 1000, version=version)

    def expire_at(self, key: Any, when: datetime, version: int | None = None) -> bool:
        return run(self._expire_at(key, when, version))

    async def aexpire_at(self, key: Any, when: datetime, version: int | None = None) -> bool:
        return await arun(self._expire_at(key, when, version))

    def pexpire_at(self, key: Any, when: datetime, version: int | None = None) -> bool:
        return self.expire_at(key, when, version=version)

    async def apexpire_at(self, key: Any, when: datetime, version: int | None = None) -> bool:
        return await self.aexpire_at(key, when, version=version)

    def persist(self, key: Any, version: int | None = None) -> bool:
        return self.touch(key, None, version=version)

    async def apersist(self, key: Any, version: int | None = None) -> bool:
        return await self.atouch(key, None, version=version)

    def lock(
        self,
        key: Any,
        version: int | None = None,
        timeout: float | None = None,
        sleep: float = 0.1,
        blocking: bool = True,
        blocking_timeout: float | None = None,
        thread_local: bool = True,
    ) -> redis.lock.Lock:
        """redis-py's ``Lock`` (as django-redis gives it); its connection failures are
        :class:`RedisUnavailable`. The app's own ``lock`` adds leases and fencing."""
        k = self._ctx.key(key, version)
        client = self.manager.get_client() if self.manager.cluster else self._ctx.endpoint(k).client
        return _Lock(
            client,
            k,
            timeout=timeout,
            sleep=sleep,
            blocking=blocking,
            blocking_timeout=blocking_timeout,
            thread_local=thread_local,
        )

    def make_pattern(self, pattern: str, version: int | None = None) -> str:
        version_text = glob_escape(str(self.version if version is None else version))
        return str(self.key_func(pattern, glob_escape(self.key_prefix), version_text))

    def iter_keys(
        self, search: str, itersize: int | None = None, version: int | None = None
    ) -> Iterator[str]:
        """Keys matching ``search`` on every master (SCAN, never KEYS), without prefix and
        version. Raises :class:`RedisUnavailable` when a master cannot be scanned."""
        yield from run(self._keys(search, itersize, version))

    def _reverse_key(self, made: str) -> str:
        """The caller's key inside a Redis key made by Django's default key function."""
        head = f"{self.key_prefix}:"
        if self._params.get("KEY_FUNCTION") is None and made.startswith(head):
            return made[len(head) :].split(":", 1)[-1]
        return made.split(":", 2)[2] if made.count(":") >= 2 else made

    def keys(self, search: str, version: int | None = None) -> list[str]:
        return run(self._keys(search, None, version))

    async def akeys(self, search: str, version: int | None = None) -> list[str]:
        return await arun(self._keys(search, None, version))

    def delete_pattern(
        self, pattern: str, version: int | None = None, itersize: int | None = None, **_: Any
    ) -> int:
        """Delete keys matching ``pattern`` on every master (SCAN + UNLINK); raises
        :class:`RedisUnavailable` when a master is down (its keys could not be deleted)."""
        return run(self._delete_pattern(pattern, version, itersize))

    async def adelete_pattern(
        self, pattern: str, version: int | None = None, itersize: int | None = None, **_: Any
    ) -> int:
        return await arun(self._delete_pattern(pattern, version, itersize))

    # --- for the health report -----------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """This process's counters for this cache, and how many keys wait in the journal."""
        state: CacheState = self.state
        return {
            **state.counters.snapshot(),
            "journal_size": state.pending(),
            "journal_overflowed": state.overflowed(),
            "at": time.time(),
        }
