"""``ResilientRedisCache``: Django's cache API on Redis, served by a fallback while Redis is down.

A facade: each method runs one *plan* (a generator of I/O steps, see
``_drive``; the cache's own kinds of step are in ``_steps``) with :func:`run`
or :func:`arun`, so the sync and async forms share every decision. The plans
are plain functions of a :class:`CacheContext`, grouped by concern:
``_reads``, ``_writes``, ``_counters``, ``_get_or_set`` and ``_extras``
(django-redis's), all through the degraded paths of ``_degraded``. What stays
here is the cache's construction (its options, read
once) and the parts the health report and ``django_redis`` ask for.

Keys in Redis are exactly Django's ``make_key(key, version)`` and values are
encoded as django-redis encodes them, so existing data and tools keep working.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any

import redis.lock
from django.conf import settings
from django.core.cache.backends.base import DEFAULT_TIMEOUT, BaseCache
from django.utils.module_loading import import_string

from django_redis_resilience import _schema
from django_redis_resilience._steps import arun, run
from django_redis_resilience.cache import _counters, _extras, _get_or_set, _reads, _writes
from django_redis_resilience.cache._codec import Codec
from django_redis_resilience.cache._context import MISSING, CacheContext
from django_redis_resilience.cache._helpers import DataStructureHelpers
from django_redis_resilience.cache._namespace import Namespace, UnknownNamespace, namespace_of
from django_redis_resilience.cache._near import NearSettings, near_prefixes
from django_redis_resilience.cache._settings import OPTIONS, near_cache_problem, stampede_problem
from django_redis_resilience.cache._stampede import StampedeConfig
from django_redis_resilience.cache._state import CacheSettings, CacheState
from django_redis_resilience.clients import get_manager
from django_redis_resilience.conf import conf
from django_redis_resilience.connection import ConnectionManager
from django_redis_resilience.exceptions import ConfigurationError


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
    """The parts of django-redis's ``cache.client`` that code written for it uses:
    ``get_client()`` (``django_redis.get_redis_connection(alias)`` calls it), key
    making, encoding, and the serializer and compression tests seen in its own tests."""

    def __init__(self, cache: ResilientRedisCache) -> None:
        self._cache = cache
        self._serializer = cache._ctx.codec.serializer

    def get_client(self, write: bool = True, *args: Any, **kwargs: Any) -> Any:
        return self._cache.get_client(write=write)

    def make_key(self, key: Any, version: int | None = None, prefix: str | None = None) -> str:
        if prefix is None:
            return self._cache.make_key(key, version=version)
        made_version = self._cache.version if version is None else version
        return str(self._cache.key_func(key, prefix, made_version))

    def encode(self, value: Any) -> bytes:
        return self._cache._ctx.codec.encode(value)

    def decode(self, value: bytes) -> Any:
        return self._cache._ctx.codec.decode(value)

    @property
    def _backend(self) -> ResilientRedisCache:
        return self._cache

    def _has_compression_enabled(self) -> bool:
        return self._cache._ctx.codec.compresses


def _seconds(ms: Any) -> Any:
    """A timeout in milliseconds as ``touch`` takes it (``DEFAULT_TIMEOUT``, ``None`` kept)."""
    return ms if ms is DEFAULT_TIMEOUT or ms is None else ms / 1000


class ResilientRedisCache(DataStructureHelpers, BaseCache):
    """A Redis cache (standalone, replicas, Sentinel, Cluster) that degrades instead of failing."""

    def __init__(self, server: str | Sequence[str], params: dict[str, Any]) -> None:
        super().__init__(params)
        self._location = server
        self._params = params
        options: Mapping[str, Any] = params.get("OPTIONS") or {}
        codec = Codec(
            serializer=OPTIONS.read(options, "SERIALIZER"),
            compressor=OPTIONS.read(options, "COMPRESSOR"),
            options=options,
        )
        ignore_exceptions = bool(OPTIONS.read(options, "IGNORE_EXCEPTIONS"))
        degraded_counters = OPTIONS.read(options, "DEGRADED_COUNTERS")
        clear_flushes_db = bool(OPTIONS.read(options, "CLEAR_FLUSHES_DB"))
        self._recovery = OPTIONS.read(options, "RECOVERY")
        self._fallback_spec: str | type | None = OPTIONS.read(options, "FALLBACK")
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
        self._near = options.get("NEAR_CACHE") is not None

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
            near=self._near_settings(),
        )

    def _near_settings(self) -> NearSettings | None:
        options = self._params.get("OPTIONS") or {}
        near = options.get("NEAR_CACHE")
        if near is None:
            return None
        if near_cache_problem(near):
            conf.connection_options(self._alias)  # raises E004 naming the setting
        section = _schema.section("NEAR_CACHE")
        return NearSettings(
            max_entries=int(section.read(near, "MAX_ENTRIES")),
            max_bytes=int(section.read(near, "MAX_BYTES")),
            max_age=float(section.read(near, "MAX_AGE")),
            prefixes=near_prefixes(self.make_key, section.read(near, "KEY_PREFIXES")),
            timeout=1.0,
        )

    def namespace(self) -> Namespace:
        """This cache's keys in Redis (every version, never the app's own keys): what
        ``clear()`` and the recovery's namespace invalidation delete."""
        try:
            return namespace_of(self.key_func, self.key_prefix, self.version)
        except UnknownNamespace as exc:  # the settings refuse it first (E006)
            raise ConfigurationError(f"CACHES[{self._alias!r}]['KEY_FUNCTION'] {exc}.") from exc

    # --- Django's cache API ---------------------------------------------------------------

    def get(self, key: Any, default: Any = None, version: int | None = None) -> Any:
        if self._near:  # a near hit needs no I/O: served without a plan
            value = _reads.near_hit(self._ctx, key, version)
            if value is not MISSING:
                return value
            return run(_reads.get(self._ctx, key, default, version, near_missed=True))
        return run(_reads.get(self._ctx, key, default, version))

    async def aget(self, key: Any, default: Any = None, version: int | None = None) -> Any:
        if self._near:
            value = _reads.near_hit(self._ctx, key, version)
            if value is not MISSING:
                return value
            return await arun(_reads.get(self._ctx, key, default, version, near_missed=True))
        return await arun(_reads.get(self._ctx, key, default, version))

    def set(  # type: ignore[override]
        self,
        key: Any,
        value: Any,
        timeout: Any = DEFAULT_TIMEOUT,
        version: int | None = None,
        client: Any = None,
        *,
        nx: bool = False,
        xx: bool = False,
    ) -> bool:
        """Django's ``set``, plus django-redis's ``nx``/``xx``; returns whether it was stored.

        ``client`` (django-redis's): a redis-py client or pipeline to write with
        instead, as given: outside the breaker, without fallback.
        """
        if client is not None:
            return run(_writes.set_on(self._ctx, client, key, value, timeout, version, nx, xx))
        return run(_writes.set_value(self._ctx, key, value, timeout, version, nx, xx))

    async def aset(  # type: ignore[override]
        self,
        key: Any,
        value: Any,
        timeout: Any = DEFAULT_TIMEOUT,
        version: int | None = None,
        client: Any = None,
        *,
        nx: bool = False,
        xx: bool = False,
    ) -> bool:
        if client is not None:
            plan = _writes.set_on(self._ctx, client, key, value, timeout, version, nx, xx)
            return await arun(plan)
        return await arun(_writes.set_value(self._ctx, key, value, timeout, version, nx, xx))

    def add(
        self, key: Any, value: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None
    ) -> bool:
        """Store only if absent. During an outage this is the fallback's ``add``: not a
        cross-process mutex then (use ``lock`` for that)."""
        return run(_writes.add(self._ctx, key, value, timeout, version))

    async def aadd(
        self, key: Any, value: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None
    ) -> bool:
        return await arun(_writes.add(self._ctx, key, value, timeout, version))

    def touch(self, key: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None) -> bool:
        return run(_writes.touch(self._ctx, key, timeout, version))

    async def atouch(
        self, key: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None
    ) -> bool:
        return await arun(_writes.touch(self._ctx, key, timeout, version))

    def delete(self, key: Any, version: int | None = None) -> bool:
        return run(_writes.delete(self._ctx, key, version))

    async def adelete(self, key: Any, version: int | None = None) -> bool:
        return await arun(_writes.delete(self._ctx, key, version))

    def has_key(self, key: Any, version: int | None = None) -> bool:
        return run(_reads.has_key(self._ctx, key, version))

    async def ahas_key(self, key: Any, version: int | None = None) -> bool:
        return await arun(_reads.has_key(self._ctx, key, version))

    def incr(
        self,
        key: Any,
        delta: int = 1,
        version: int | None = None,
        client: Any = None,
        ignore_key_check: bool = False,
    ) -> int:
        """Atomic in Redis (one round trip); ``ValueError`` for a missing key, as Django's,
        unless ``ignore_key_check`` (django-redis's): then the key starts from zero.

        During an outage: ``RedisUnavailable`` (``DEGRADED_COUNTERS="raise"``, the
        default), or an approximate count in the fallback (``"local"``) that is
        never written over the real value when Redis returns. ``client`` is
        accepted for django-redis's signature and not used.
        """
        return run(_counters.incr(self._ctx, key, delta, version, ignore_key_check))

    async def aincr(
        self,
        key: Any,
        delta: int = 1,
        version: int | None = None,
        client: Any = None,
        ignore_key_check: bool = False,
    ) -> int:
        return await arun(_counters.incr(self._ctx, key, delta, version, ignore_key_check))

    def decr(self, key: Any, delta: int = 1, version: int | None = None) -> int:
        return run(_counters.incr(self._ctx, key, -delta, version))

    async def adecr(self, key: Any, delta: int = 1, version: int | None = None) -> int:
        return await arun(_counters.incr(self._ctx, key, -delta, version))

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
        return run(
            _get_or_set.get_or_set(self._ctx, key, default, timeout, version, lock, early_refresh)
        )

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
        return await arun(
            _get_or_set.get_or_set(self._ctx, key, default, timeout, version, lock, early_refresh)
        )

    def get_many(self, keys: Iterable[Any], version: int | None = None) -> dict[Any, Any]:
        return run(_reads.get_many(self._ctx, keys, version))

    async def aget_many(self, keys: Iterable[Any], version: int | None = None) -> dict[Any, Any]:
        return await arun(_reads.get_many(self._ctx, keys, version))

    def set_many(
        self, data: Mapping[Any, Any], timeout: Any = DEFAULT_TIMEOUT, version: int | None = None
    ) -> list[Any]:
        """Returns the keys that could not be stored (none while a fallback takes them)."""
        return run(_writes.set_many(self._ctx, data, timeout, version))

    async def aset_many(
        self, data: Mapping[Any, Any], timeout: Any = DEFAULT_TIMEOUT, version: int | None = None
    ) -> list[Any]:
        return await arun(_writes.set_many(self._ctx, data, timeout, version))

    def delete_many(self, keys: Iterable[Any], version: int | None = None) -> int:  # type: ignore[override]
        """How many keys were deleted, as django-redis returns (Django returns ``None``)."""
        return run(_writes.delete_many(self._ctx, keys, version))

    async def adelete_many(self, keys: Iterable[Any], version: int | None = None) -> int:  # type: ignore[override]
        return await arun(_writes.delete_many(self._ctx, keys, version))

    def clear(self) -> None:
        """Delete this cache's keys (its key prefix, every version, every master) with
        SCAN + UNLINK, never the app's lock and rate-limit keys; ``CLEAR_FLUSHES_DB``
        restores Django's FLUSHDB. Masters that are down are cleared when they return."""
        run(_writes.clear(self._ctx))

    async def aclear(self) -> None:
        await arun(_writes.clear(self._ctx))

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
        return _extras.seconds(self.pttl(key, version=version))

    async def attl(self, key: Any, version: int | None = None) -> int | None:
        return _extras.seconds(await self.apttl(key, version=version))

    def pttl(self, key: Any, version: int | None = None) -> int | None:
        return run(_extras.pttl(self._ctx, key, version))

    async def apttl(self, key: Any, version: int | None = None) -> int | None:
        return await arun(_extras.pttl(self._ctx, key, version))

    def expire(self, key: Any, timeout: Any, version: int | None = None) -> bool:
        """``timeout`` in seconds, ``DEFAULT_TIMEOUT`` (the cache's) or ``None`` (persist)."""
        return self.touch(key, timeout, version=version)

    async def aexpire(self, key: Any, timeout: Any, version: int | None = None) -> bool:
        return await self.atouch(key, timeout, version=version)

    def pexpire(self, key: Any, timeout: Any, version: int | None = None) -> bool:
        """``timeout`` in milliseconds, or ``DEFAULT_TIMEOUT`` (the cache's)."""
        return self.touch(key, _seconds(timeout), version=version)

    async def apexpire(self, key: Any, timeout: Any, version: int | None = None) -> bool:
        return await self.atouch(key, _seconds(timeout), version=version)

    def expire_at(self, key: Any, when: datetime | float, version: int | None = None) -> bool:
        """Expire at ``when``: a datetime or a Unix timestamp in seconds."""
        return run(_extras.expire_at(self._ctx, key, when, version, 1))

    async def aexpire_at(
        self, key: Any, when: datetime | float, version: int | None = None
    ) -> bool:
        return await arun(_extras.expire_at(self._ctx, key, when, version, 1))

    def pexpire_at(self, key: Any, when: datetime | float, version: int | None = None) -> bool:
        """Expire at ``when``: a datetime or a Unix timestamp in milliseconds."""
        return run(_extras.expire_at(self._ctx, key, when, version, 1000))

    async def apexpire_at(
        self, key: Any, when: datetime | float, version: int | None = None
    ) -> bool:
        return await arun(_extras.expire_at(self._ctx, key, when, version, 1000))

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
        return _extras.lock(
            self._ctx, key, version, timeout, sleep, blocking, blocking_timeout, thread_local
        )

    def make_pattern(self, pattern: str, version: int | None = None) -> str:
        return _extras.make_pattern(self._ctx, pattern, version)

    def iter_keys(
        self, search: str, itersize: int | None = None, version: int | None = None
    ) -> Iterator[str]:
        """Keys matching ``search`` on every master (SCAN, never KEYS), without prefix and
        version. Raises :class:`RedisUnavailable` when a master cannot be scanned."""
        yield from run(_extras.keys(self._ctx, search, itersize, version))

    def keys(self, search: str, version: int | None = None) -> list[str]:
        return run(_extras.keys(self._ctx, search, None, version))

    async def akeys(self, search: str, version: int | None = None) -> list[str]:
        return await arun(_extras.keys(self._ctx, search, None, version))

    def delete_pattern(
        self, pattern: str, version: int | None = None, itersize: int | None = None, **_: Any
    ) -> int:
        """Delete keys matching ``pattern`` on every master (SCAN + UNLINK); raises
        :class:`RedisUnavailable` when a master is down (its keys could not be deleted)."""
        return run(_extras.delete_pattern(self._ctx, pattern, version, itersize))

    async def adelete_pattern(
        self, pattern: str, version: int | None = None, itersize: int | None = None, **_: Any
    ) -> int:
        return await arun(_extras.delete_pattern(self._ctx, pattern, version, itersize))

    # --- for the health report -----------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """This process's counters for this cache, and how many keys wait in the journal."""
        state: CacheState = self.state
        near = state.near
        return {
            **state.counters.snapshot(),
            **(near.stats() if near is not None else {}),
            "journal_size": state.pending(),
            "journal_overflowed": state.overflowed(),
            "at": time.time(),
        }
