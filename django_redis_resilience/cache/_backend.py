"""``ResilientRedisCache``: Django's cache API on Redis, served by a fallback while Redis is down.

Every method has one shape: build the key, run one function through the
connection manager (breakers, retries, routing by key), and on
:class:`RedisUnavailable` hand the call to the fallback store. The degraded
paths are written once (:meth:`_read`, :meth:`_write`, and their grouped
forms); no method repeats a ``try``/``except``.

Keys in Redis are exactly Django's ``make_key(key, version)`` and values are
encoded as django-redis encodes them, so existing data and tools keep working.
"""

from __future__ import annotations

import re
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
from django_redis_resilience.cache._codec import DEFAULT_COMPRESSOR, DEFAULT_SERIALIZER, Codec
from django_redis_resilience.cache._state import (
    PRIVATE,
    CacheSettings,
    CacheState,
    state_for,
    unlink_matching,
)
from django_redis_resilience.clients import get_manager
from django_redis_resilience.connection import ConnectionManager
from django_redis_resilience.connection._errors import ErrorKind, classify, translate
from django_redis_resilience.connection._manager import LogicalEndpoint
from django_redis_resilience.exceptions import ConfigurationError, RedisUnavailable

T = TypeVar("T")
_MISSING = object()

_INCR = LuaScript("django_redis_resilience.cache", "incr")


#: What Django's ``memcache_key_warnings`` looks for, compiled eagerly: Django's
#: lazily compiled pattern costs a proxy lookup per key, which ``get_many`` pays 100 times.
_UNSAFE_KEY = re.compile(r"[\x00-\x20\x7f]")
_MAX_KEY_LENGTH = 250


def _glob_escape(text: str) -> str:
    """Escape Redis glob characters with a backslash (Redis has no ``[]]`` form)."""
    return "".join(f"\\{c}" if c in "*?[]\\" else c for c in text)


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
        self._codec = Codec(
            serializer=options.get("SERIALIZER", DEFAULT_SERIALIZER),
            compressor=options.get("COMPRESSOR", DEFAULT_COMPRESSOR),
            options=options,
        )
        self._ignore_exceptions = bool(options.get("IGNORE_EXCEPTIONS", True))
        self._degraded_counters = options.get("DEGRADED_COUNTERS", "raise")
        self._clear_flushes_db = bool(options.get("CLEAR_FLUSHES_DB", False))
        self._recovery = options.get("RECOVERY", "journal")
        self._fallback_spec: str | type | None = options.get("FALLBACK", PRIVATE)
        self._alias = _find_alias(type(self), server, params)
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
        return self._state_of(self.manager)

    def _state_of(self, manager: ConnectionManager) -> CacheState:
        state: CacheState | None = manager.extensions.get("cache")
        return state if state is not None else state_for(manager, self._cache_settings)

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
            namespace=self.namespace_pattern(),
        )

    def namespace_pattern(self) -> str:
        """The SCAN pattern of this cache's keys: every version, never the app's own keys."""
        prefix = _glob_escape(self.key_prefix)
        if self._params.get("KEY_FUNCTION") is None:
            return f"{prefix}:[0-9]*"  # Django's format "<prefix>:<version>:<key>"
        return str(self.key_func("*", prefix, "*"))

    def _endpoint(self, redis_key: str) -> LogicalEndpoint:
        return self.manager.route(write=True, key=redis_key)[0]

    # --- the two degraded paths -------------------------------------------------------

    def _read(
        self,
        manager: ConnectionManager,
        state: CacheState,
        redis_key: str,
        fn: Callable[[redis.Redis], T],
        fallback: Callable[[BaseCache], T],
        default: T,
    ) -> T:
        """Run a read on Redis; on an outage (or a key journaled) ask the fallback.

        The caller passes the manager and state it resolved, once per call.
        """
        if state.journaled(redis_key, lambda: self._endpoint(redis_key)):
            self._strict_check(redis_key)
            return self._from_fallback(state, redis_key, fallback, default)
        try:
            return manager.execute(fn, key=redis_key, write=False)
        except RedisUnavailable as exc:
            state.note_unavailable(exc)
            if self._fallback_spec is None and not self._ignore_exceptions:
                raise
            return self._from_fallback(state, redis_key, fallback, default)

    def _strict_check(self, redis_key: str) -> None:
        """Without a fallback and with errors asked for, a journaled key is an error too:
        its value in Redis may be older than the caller's last (failed) write."""
        if self._fallback_spec is None and not self._ignore_exceptions:
            endpoint = self._endpoint(redis_key)
            raise translate(
                rex.ConnectionError("a write of this key failed; its Redis value may be outdated"),
                ErrorKind.UNREACHABLE,
                endpoint=endpoint.display,
                alias=self._alias,
            )

    def _from_fallback(
        self, state: CacheState, redis_key: str, fallback: Callable[[BaseCache], T], default: T
    ) -> T:
        store = state.fallback(self._endpoint(redis_key))
        if store is None:
            return default
        state.counters.fallback_reads += 1
        return fallback(store)

    def _write(
        self,
        redis_key: str,
        original: tuple[Any, int | None],
        fn: Callable[[redis.Redis], T],
        fallback: Callable[[BaseCache], T],
        default: T,
        *,
        idempotent: bool = True,
    ) -> T:
        """Run a write on Redis; on an outage journal the key and write to the fallback."""
        state = self.state
        manager = self.manager
        error: RedisUnavailable | None = None
        for force in (False, True):
            try:
                return manager.execute(fn, key=redis_key, idempotent=idempotent)
            except RedisUnavailable as exc:
                error = exc
            if state.record_write(
                self._endpoint(redis_key), redis_key, original, error, force=force
            ):
                break
        assert error is not None
        state.note_unavailable(error)
        if self._fallback_spec is None and not self._ignore_exceptions:
            raise error
        store = state.fallback(self._endpoint(redis_key))
        if store is None:
            return default
        state.counters.fallback_writes += 1
        return fallback(store)

    # --- timeouts and keys --------------------------------------------------------------

    def _ms(self, timeout: Any) -> int | None:
        """The timeout in milliseconds; ``None`` keeps the key forever."""
        if timeout is DEFAULT_TIMEOUT:
            timeout = self.default_timeout
        return None if timeout is None else int(timeout * 1000)

    def _key(self, key: Any, version: int | None) -> str:
        made = str(self.make_key(key, version=version))
        if len(made) > _MAX_KEY_LENGTH or _UNSAFE_KEY.search(made):
            self.validate_key(made)  # Django's own warnings, word for word
        return made

    # --- Django's cache API ---------------------------------------------------------------

    def get(self, key: Any, default: Any = None, version: int | None = None) -> Any:
        k = self._key(key, version)

        def fetch(client: redis.Redis) -> Any:
            raw = client.get(k)
            return _MISSING if raw is None else self._codec.decode(raw)

        manager = self.manager
        state = self._state_of(manager)
        value = self._read(
            manager, state, k, fetch, lambda fb: fb.get(key, _MISSING, version=version), _MISSING
        )
        counters = state.counters
        if value is _MISSING:
            counters.misses += 1
            return default
        counters.hits += 1
        return value

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
        k = self._key(key, version)
        ms = self._ms(timeout)
        if ms is not None and ms <= 0:
            if nx:
                return not self.has_key(key, version=version)
            self.delete(key, version=version)
            return True
        data = self._codec.encode(value)
        seconds = None if ms is None else ms / 1000

        def fallback(fb: BaseCache) -> bool:
            if nx:
                return bool(fb.add(key, value, seconds, version=version))
            if xx and not fb.has_key(key, version=version):
                return False
            fb.set(key, value, seconds, version=version)
            return True

        return self._write(
            k,
            (key, version),
            lambda c: bool(c.set(k, data, px=ms, nx=nx, xx=xx)),
            fallback,
            False,
            idempotent=not nx,
        )

    def add(
        self, key: Any, value: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None
    ) -> bool:
        """Store only if absent. During an outage this is the fallback's ``add``: not a
        cross-process mutex then (use ``lock`` for that)."""
        ms = self._ms(timeout)
        if ms is not None and ms <= 0:
            k = self._key(key, version)
            data = self._codec.encode(value)

            def add_and_expire(c: redis.Redis) -> bool:
                added = bool(c.set(k, data, nx=True))
                if added:
                    c.delete(k)
                return added

            return self._write(
                k,
                (key, version),
                add_and_expire,
                lambda fb: bool(fb.add(key, value, 0, version=version)),
                False,
                idempotent=False,
            )
        return self.set(key, value, timeout, version=version, nx=True)

    def touch(self, key: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None) -> bool:
        k = self._key(key, version)
        ms = self._ms(timeout)
        if ms is not None and ms <= 0:
            return self.delete(key, version=version)
        seconds = None if ms is None else ms / 1000
        return self._write(
            k,
            (key, version),
            lambda c: bool(c.persist(k) if ms is None else c.pexpire(k, ms)),
            lambda fb: bool(fb.touch(key, seconds, version=version)),
            False,
        )

    def delete(self, key: Any, version: int | None = None) -> bool:
        k = self._key(key, version)
        return self._write(
            k,
            (key, version),
            lambda c: bool(c.delete(k)),
            lambda fb: bool(fb.delete(key, version=version)),
            False,
        )

    def has_key(self, key: Any, version: int | None = None) -> bool:
        k = self._key(key, version)
        manager = self.manager
        return self._read(
            manager,
            self._state_of(manager),
            k,
            lambda c: bool(c.exists(k)),
            lambda fb: bool(fb.has_key(key, version=version)),
            False,
        )

    def incr(self, key: Any, delta: int = 1, version: int | None = None) -> int:
        """Atomic in Redis (one script); ``ValueError`` for a missing key, as Django's.

        During an outage: ``RedisUnavailable`` (``DEGRADED_COUNTERS="raise"``, the
        default), or an approximate count in the fallback (``"local"``) that is
        never written over the real value when Redis returns.
        """
        k = self._key(key, version)
        try:
            value = self.manager.execute(
                lambda c: self._incr_in_redis(c, k, delta), key=k, idempotent=False
            )
        except RedisUnavailable as exc:
            state = self.state
            state.note_unavailable(exc)
            store = state.fallback(self._endpoint(k))
            if self._degraded_counters != "local" or store is None:
                raise
            # Approximate by design: the real count is in Redis, out of reach;
            # the local one starts from zero and is dropped when Redis returns.
            store.add(key, 0, version=version)
            return int(store.incr(key, delta, version=version))
        if value is None:
            raise ValueError(f"Key '{key}' not found.")
        return value  # type: ignore[no-any-return]

    def _incr_in_redis(self, client: redis.Redis, k: str, delta: int) -> Any:
        try:
            result = _INCR(client, [k], [delta])
        except rex.ResponseError as exc:
            if "not an integer" not in str(exc) and "overflow" not in str(exc):
                raise
            # A serialized number (a float, a big int): as django-redis, read,
            # add and write back keeping the TTL; not atomic.
            raw = client.get(k)
            if raw is None:
                return None
            value = self._codec.decode(raw) + delta
            client.set(k, self._codec.encode(value), keepttl=True)
            return value
        return None if result is None else int(result)

    def decr(self, key: Any, delta: int = 1, version: int | None = None) -> int:
        return self.incr(key, -delta, version=version)

    def get_many(self, keys: Iterable[Any], version: int | None = None) -> dict[Any, Any]:
        made = {self._key(key, version): key for key in keys}
        found: dict[Any, Any] = {}
        manager = self.manager
        state = self._state_of(manager)
        journaled = {k for k in made if state.journaled(k, partial(self._endpoint, k))}
        in_redis = [k for k in made if k not in journaled]
        fetch = self._mget if manager.cluster is None else self._pipelined_get
        for k in journaled:
            self._strict_check(k)
        degraded: list[str] = sorted(journaled)
        for group, result in manager.execute_grouped(in_redis, fetch, write=False):
            if isinstance(result, RedisUnavailable):
                state.note_unavailable(result)
                if self._fallback_spec is None and not self._ignore_exceptions:
                    raise result
                degraded += group
                continue
            for k, raw in zip(group, result, strict=True):
                if raw is not None:
                    found[made[k]] = self._codec.decode(raw)
        for k in degraded:
            store = state.fallback(self._endpoint(k))
            if store is not None:
                state.counters.fallback_reads += 1
                value = store.get(made[k], _MISSING, version=version)
                if value is not _MISSING:
                    found[made[k]] = value
        state.counters.hits += len(found)
        state.counters.misses += len(made) - len(found)
        return found

    @staticmethod
    def _mget(client: redis.Redis, group: list[str]) -> list[Any]:
        return list(client.mget(group))

    @staticmethod
    def _pipelined_get(client: redis.Redis, group: list[str]) -> list[Any]:
        pipe = client.pipeline(transaction=False)
        for k in group:
            pipe.get(k)
        return list(pipe.execute())

    def set_many(
        self, data: Mapping[Any, Any], timeout: Any = DEFAULT_TIMEOUT, version: int | None = None
    ) -> list[Any]:
        """Returns the keys that could not be stored (none while a fallback takes them)."""
        ms = self._ms(timeout)
        if ms is not None and ms <= 0:
            self.delete_many(list(data), version=version)
            return []
        made = {self._key(key, version): key for key in data}
        encoded = {k: self._codec.encode(data[key]) for k, key in made.items()}

        def store(client: redis.Redis, group: list[str]) -> list[Any]:
            pipe = client.pipeline(transaction=False)
            for k in group:
                pipe.set(k, encoded[k], px=ms)
            return list(pipe.execute())

        failed: list[Any] = []
        seconds = None if ms is None else ms / 1000
        for group, result in self.manager.execute_grouped(list(made), store):
            if not isinstance(result, RedisUnavailable):
                continue
            for k in group:
                if not self._set_one(k, made[k], data[made[k]], encoded[k], ms, seconds, version):
                    failed.append(made[k])
        return failed

    def _set_one(
        self,
        k: str,
        key: Any,
        value: Any,
        data: bytes | int,
        ms: int | None,
        seconds: float | None,
        version: int | None,
    ) -> bool:
        def fallback(fb: BaseCache) -> bool:
            fb.set(key, value, seconds, version=version)
            return True

        return self._write(
            k, (key, version), lambda c: bool(c.set(k, data, px=ms)), fallback, False
        )

    def delete_many(self, keys: Iterable[Any], version: int | None = None) -> None:
        made = {self._key(key, version): key for key in keys}
        cluster = self.manager.cluster is not None

        def remove(client: redis.Redis, group: list[str]) -> int:
            if not cluster:
                return int(client.delete(*group))
            pipe = client.pipeline(transaction=False)
            for k in group:
                pipe.delete(k)
            return sum(int(r) for r in pipe.execute())

        for group, result in self.manager.execute_grouped(list(made), remove):
            if isinstance(result, RedisUnavailable):
                for k in group:
                    self.delete(made[k], version=version)

    def clear(self) -> None:
        """Delete this cache's keys (its key prefix, every version, every master) with
        SCAN + UNLINK, never the app's lock and rate-limit keys; ``CLEAR_FLUSHES_DB``
        restores Django's FLUSHDB. Masters that are down are cleared when they return."""
        pattern = self.namespace_pattern()
        flush = self._clear_flushes_db
        state = self.state
        for endpoint, result in self.manager.for_each_primary(
            lambda c: c.flushdb() if flush else unlink_matching(c, pattern)
        ):
            store = state.fallback(endpoint)
            if store is not None:
                store.clear()
            if isinstance(result, RedisUnavailable):
                state.note_unavailable(result)
                state.invalidate_on_recovery(endpoint)

    def close(self, **kwargs: Any) -> None:
        """Nothing to do: pools live in the process-wide registry, not on this object."""

    # --- django-redis's extras ---------------------------------------------------------------

    def get_client(self, key: Any = None, *, write: bool = True) -> Any:
        """The raw redis-py client (a ``RedisCluster`` on a cluster); no breaker on it."""
        return self.manager.get_client(write=write)

    def ttl(self, key: Any, version: int | None = None) -> int | None:
        """Seconds left; ``None`` for a key without expiry, ``0`` when missing.
        Raises :class:`RedisUnavailable` during an outage."""
        ms = self.pttl(key, version=version)
        return None if ms is None else (ms + 999) // 1000 if ms > 0 else 0

    def pttl(self, key: Any, version: int | None = None) -> int | None:
        k = self._key(key, version)
        result = int(self.manager.execute(lambda c: c.pttl(k), key=k, write=False))
        if result == -1:
            return None
        return max(result, 0)

    def expire(self, key: Any, timeout: float, version: int | None = None) -> bool:
        return self.touch(key, timeout, version=version)

    def pexpire(self, key: Any, timeout: int, version: int | None = None) -> bool:
        return self.touch(key, timeout / 1000, version=version)

    def expire_at(self, key: Any, when: datetime, version: int | None = None) -> bool:
        now = datetime.now(tz=when.tzinfo)
        return self.touch(key, (when - now) / timedelta(seconds=1), version=version)

    def pexpire_at(self, key: Any, when: datetime, version: int | None = None) -> bool:
        return self.expire_at(key, when, version=version)

    def persist(self, key: Any, version: int | None = None) -> bool:
        return self.touch(key, None, version=version)

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
        k = self._key(key, version)
        client = self.manager.get_client() if self.manager.cluster else self._endpoint(k).client
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
        version_text = _glob_escape(str(self.version if version is None else version))
        return str(self.key_func(pattern, _glob_escape(self.key_prefix), version_text))

    def iter_keys(
        self, search: str, itersize: int | None = None, version: int | None = None
    ) -> Iterator[str]:
        """Keys matching ``search`` on every master (SCAN, never KEYS), without prefix and
        version. Raises :class:`RedisUnavailable` when a master cannot be scanned."""
        pattern = self.make_pattern(search, version=version)
        for _, result in self.manager.for_each_primary(
            lambda c: [k.decode() for k in c.scan_iter(match=pattern, count=itersize or 1000)]
        ):
            if isinstance(result, RedisUnavailable):
                raise result
            for key in result:
                yield self._reverse_key(key)

    def _reverse_key(self, made: str) -> str:
        """The caller's key inside a Redis key made by Django's default key function."""
        head = f"{self.key_prefix}:"
        if self._params.get("KEY_FUNCTION") is None and made.startswith(head):
            return made[len(head) :].split(":", 1)[-1]
        return made.split(":", 2)[2] if made.count(":") >= 2 else made

    def keys(self, search: str, version: int | None = None) -> list[str]:
        return list(self.iter_keys(search, version=version))

    def delete_pattern(
        self, pattern: str, version: int | None = None, itersize: int | None = None, **_: Any
    ) -> int:
        """Delete keys matching ``pattern`` on every master (SCAN + UNLINK); raises
        :class:`RedisUnavailable` when a master is down (its keys could not be deleted)."""
        glob = self.make_pattern(pattern, version=version)
        total = 0
        errors: list[RedisUnavailable] = []
        for _endpoint, result in self.manager.for_each_primary(lambda c: unlink_matching(c, glob)):
            if isinstance(result, RedisUnavailable):
                errors.append(result)
            else:
                total += result
        if errors:
            raise errors[0]
        return total

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
