"""What every cache plan needs, in one object: the cache's settings, key making, state.

The plans (``_reads``, ``_writes``, ``_counters``, ``_get_or_set``, ``_extras``)
are plain functions of a :class:`CacheContext`; ``ResilientRedisCache`` builds
one and its methods only run a plan. Key making stays the cache's own
(``make_key``, ``validate_key``, ``default_timeout`` may be overridden on it),
so the context asks the cache for them rather than copying them.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from django.core.cache.backends.base import DEFAULT_TIMEOUT, BaseCache

from django_redis_resilience.cache._codec import Codec
from django_redis_resilience.cache._stampede import StampedeConfig
from django_redis_resilience.cache._state import (
    CACHE_STATE,
    CacheSettings,
    CacheState,
    state_for,
)
from django_redis_resilience.clients import get_manager
from django_redis_resilience.connection import (
    ConnectionManager,
    LogicalEndpoint,
    Registry,
    get_registry,
)
from django_redis_resilience.exceptions import InvalidValue

#: A value the cache does not have (``None`` is a value a cache may hold).
MISSING = object()

_MAX_KEY_LENGTH = 250
#: The longest lifetime given to Redis: ``PX`` must stay below LLONG_MAX less the
#: server's clock in milliseconds.
_MAX_TIMEOUT_MS = 2**62 - 1


class CacheContext:
    """One cache alias as its plans see it: options read once, the rest asked for each time."""

    def __init__(
        self,
        cache: BaseCache,
        *,
        alias: str,
        codec: Codec,
        settings: Callable[[], CacheSettings],
        fallback_spec: str | type | None,
        ignore_exceptions: bool,
        degraded_counters: Any,
        clear_flushes_db: bool,
        stampede: StampedeConfig,
        default_key_func: bool,
    ) -> None:
        self.cache = cache
        self.alias = alias
        self.codec = codec
        self._settings = settings
        self.fallback_spec = fallback_spec
        self.ignore_exceptions = ignore_exceptions
        self.degraded_counters = degraded_counters
        self.clear_flushes_db = clear_flushes_db
        self.stampede = stampede
        #: Django's own key function: ``keys()`` can give back the caller's keys exactly.
        self.default_key_func = default_key_func
        self._known: tuple[Registry, ConnectionManager, CacheState] | None = None

    # --- process-wide parts -----------------------------------------------------------

    def current(self) -> tuple[ConnectionManager, CacheState]:
        """This alias's manager and the cache's state on it, remembered while the
        registry that holds them is the process's (a new one after ``fork()`` or a
        settings change): one identity check per operation instead of four calls."""
        registry = get_registry()
        known = self._known
        if known is not None and known[0] is registry:
            return known[1], known[2]
        manager = get_manager(self.alias)
        state = self.state_of(manager)
        self._known = (registry, manager, state)
        return manager, state

    @property
    def manager(self) -> ConnectionManager:
        return self.current()[0]

    @property
    def state(self) -> CacheState:
        return self.current()[1]

    def state_of(self, manager: ConnectionManager) -> CacheState:
        state = manager.extensions.get(CACHE_STATE)
        return state if state is not None else state_for(manager, self._settings)

    def endpoint(self, redis_key: str) -> LogicalEndpoint:
        return self.manager.route(write=True, key=redis_key)[0]

    @property
    def raises(self) -> bool:
        """No fallback and ``IGNORE_EXCEPTIONS`` off: an outage is the caller's error."""
        return self.fallback_spec is None and not self.ignore_exceptions

    # --- timeouts, keys, values ---------------------------------------------------------

    def ms(self, timeout: Any) -> int | None:
        """The timeout in milliseconds; ``None`` keeps the key forever, ``<= 0`` ends it now.

        Checked before anything is sent: a string is read as Django's RedisCache
        reads it (``int("10")``), a value that is no number of seconds is refused
        by name, and so is NaN or an infinity, which have no lifetime to give.
        """
        if timeout is DEFAULT_TIMEOUT:
            timeout = self.cache.default_timeout
        if timeout is None:
            return None
        given = timeout
        if isinstance(timeout, str):
            try:
                timeout = int(timeout)
            except ValueError:
                timeout = None
        if not isinstance(timeout, int | float):
            raise TypeError(f"A cache timeout is a number of seconds or None, not {given!r}.")
        if isinstance(timeout, float) and not math.isfinite(timeout):
            raise ValueError(f"A cache timeout must be a finite number of seconds, not {given!r}.")
        if timeout <= 0:
            return 0
        if timeout > _MAX_TIMEOUT_MS / 1000:
            raise InvalidValue(
                "A cache timeout is longer than Redis can keep a key for (at most "
                f"{_MAX_TIMEOUT_MS // 1000:,} seconds, about 146 million years); use None to "
                "keep the key forever."
            )
        return int(timeout * 1000)

    def key(self, key: Any, version: int | None) -> str:
        made = str(self.cache.make_key(key, version=version))
        # isprintable() is false for every control character (and some harmless
        # ones, which Django's check then lets pass): a C loop, cheaper than a regex.
        if len(made) > _MAX_KEY_LENGTH or " " in made or not made.isprintable():
            self.cache.validate_key(made)  # Django's own warnings, word for word
        return made

    def decoded(self, raw: Any) -> Any:
        return MISSING if raw is None else self.codec.decode(raw)


def expired(ms: int | None) -> bool:
    """A timeout of zero or less: the key ends now (Django deletes it, or adds and drops it)."""
    return ms is not None and ms <= 0


def seconds_of(ms: int | None) -> float | None:
    """A lifetime in milliseconds as the fallback store takes it (seconds; ``None``: forever)."""
    return None if ms is None else ms / 1000


def count(state: CacheState, value: Any) -> None:
    """One read in the counters: a hit, or a miss for :data:`MISSING`."""
    if value is MISSING:
        state.counters.misses += 1
    else:
        state.counters.hits += 1
