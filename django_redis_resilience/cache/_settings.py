"""The cache backend's own ``OPTIONS``, ``STAMPEDE``'s keys and the ignored django-redis options.

Problems only the cache can judge are found here too: a ``FALLBACK`` that would fail with
Redis, a ``KEY_FUNCTION`` whose keys ``clear()`` cannot find (E006), and sessions kept only
in a cache whose outage fallback lives in each process (W004).
"""

from __future__ import annotations

import math
import pickle
from collections.abc import Mapping
from typing import Any

from django.conf import settings

from django_redis_resilience import _schema
from django_redis_resilience._problems import CacheScope, Problem
from django_redis_resilience._schema import Section, Setting, importable, is_num
from django_redis_resilience.cache._codec import DEFAULT_COMPRESSOR, DEFAULT_SERIALIZER
from django_redis_resilience.cache._state import PRIVATE

BACKEND = "django_redis_resilience.cache.ResilientRedisCache"


def _seconds_or_none(value: Any) -> bool:
    return value is None or (is_num(value) and math.isfinite(value) and value >= 0)


STAMPEDE = _schema.register(Section("STAMPEDE", (
    Setting(
        "LOCK",
        default=False,
        test=lambda v: isinstance(v, bool),
        need="True or False",
        kind="`True` or `False`",
        doc=(
            "also once across processes: the computing caller holds the app's lock and the others"
            " read the value it stored (`get_or_set(..., lock=)` overrides it)"
        ),
        ids="E004",
    ),
    Setting(
        "LOCK_TIMEOUT",
        default=30.0,
        test=lambda v: is_num(v) and math.isfinite(v) and v > 0,
        need="seconds > 0",
        kind="seconds > 0",
        doc="that lock's lease, renewed while the loader runs",
        ids="E004",
    ),
    Setting(
        "EARLY_REFRESH",
        default=None,
        test=_seconds_or_none,
        need="a number >= 0 (XFetch's beta, 1.0 is usual) or None",
        kind="number ≥ 0 or `None`",
        doc=(
            "XFetch's beta (`1.0` is usual): recompute a value shortly before it expires, with a "
            "probability that grows as expiry nears (`get_or_set(..., early_refresh=)` overrides "
            "it)"
        ),
        ids="E004",
    ),
    Setting(
        "NULL_TIMEOUT",
        default=None,
        test=_seconds_or_none,
        need="seconds >= 0 or None",
        kind="seconds ≥ 0 or `None`",
        doc=(
            "keep a `None` result this long instead of the normal timeout (stops repeated lookups"
            " of absent rows)"
        ),
        ids="E004",
    ),
)))  # fmt: skip


def _dict_problem(section: Section, value: object, *, must: str) -> str | None:
    """Why a dict of ``section``'s settings is invalid (the first problem), or ``None``."""
    known = ", ".join(section.names)
    if not isinstance(value, Mapping):
        return f"{must} with any of {known}"
    for key, item in value.items():
        if key not in section:
            return f"has an unknown key {key!r} (known: {known})"
        if section[key].problem(item) is not None:
            return f"[{key!r}] = {item!r} is not valid: give {section[key].need}"
    return None


def stampede_problem(value: object) -> str | None:
    """Why ``OPTIONS["STAMPEDE"]`` is invalid, or ``None``."""
    return _dict_problem(STAMPEDE, value, must="must be a dict")


NEAR_CACHE = _schema.register(Section("NEAR_CACHE", (
    Setting(
        "MAX_ENTRIES",
        default=10_000,
        test=lambda v: isinstance(v, int) and not isinstance(v, bool) and v > 0,
        need="an integer > 0",
        kind="integer > 0",
        doc="values kept in each process at most; the least recently used goes first",
        ids="E004",
    ),
    Setting(
        "MAX_BYTES",
        default=64 * 2**20,
        shown="`64 * 2**20` (64 MiB)",
        test=lambda v: isinstance(v, int) and not isinstance(v, bool) and v > 0,
        need="an integer > 0 (bytes)",
        kind="bytes > 0",
        doc="bytes of values (as stored in Redis) kept in each process at most",
        ids="E004",
    ),
    Setting(
        "MAX_AGE",
        default=300.0,
        test=lambda v: is_num(v) and math.isfinite(v) and v > 0,
        need="seconds > 0",
        kind="seconds > 0",
        doc=(
            "the longest a value is served from the process without asking Redis again, a last "
            "resort: invalidations normally drop it within milliseconds"
        ),
        ids="E004",
    ),
    Setting(
        "KEY_PREFIXES",
        default=None,
        test=lambda v: v is None
        or (isinstance(v, list | tuple) and bool(v) and all(isinstance(p, str) for p in v)),
        need="a non-empty list of strings, or None",
        kind="list of strings or `None`",
        doc=(
            "keep only keys starting with one of these (the keys given to the cache, default "
            "`VERSION`); `None`: every key of the cache's default version"
        ),
        ids="E004",
    ),
)))  # fmt: skip


def near_cache_problem(value: object) -> str | None:
    """Why ``OPTIONS["NEAR_CACHE"]`` is invalid, or ``None``."""
    if value is None:
        return None
    return _dict_problem(NEAR_CACHE, value, must="must be None or a dict")


def _class_problem(value: object) -> str | None:
    if importable(value):
        return None
    return (
        "is not an importable class (a dotted path such as "
        "'django_redis.serializers.json.JSONSerializer')"
    )


def _one_of(*choices: str) -> dict[str, Any]:
    return {
        "test": lambda v: v in choices,
        "need": "one of " + ", ".join(repr(c) for c in choices),
    }


_BOOL: dict[str, Any] = {"test": lambda v: isinstance(v, bool), "need": "True or False"}

OPTIONS = _schema.register(Section("options", (
    Setting(
        "PASSWORD",
        default=None,
        test=lambda v: v is None or isinstance(v, str),
        need="a string",
        secret=True,
        kind="string or `None`",
        doc="the servers' password (the URL's wins)",
        ids="E004",
    ),
    Setting(
        "USERNAME",
        default=None,
        test=lambda v: v is None or isinstance(v, str),
        need="a string",
        kind="string or `None`",
        doc="the ACL user (the URL's wins)",
        ids="E004",
    ),
    Setting(
        "CONNECTION_POOL_KWARGS",
        default={},
        test=lambda v: not v or isinstance(v, Mapping),
        need="a dict",
        kind="dict",
        doc=(
            "extra keyword arguments for every redis-py connection, as in django-redis; `retry`, "
            "`retry_on_timeout`, `retry_on_error` and `connection_class` are refused (E005) "
            "because the app decides retries itself"
        ),
        ids="E004, E005",
    ),
    Setting(
        "READ_FROM_REPLICAS",
        default=None,
        **_BOOL,
        kind="`True`, `False` or `None`",
        doc=(
            "send reads to the replicas; `None` means `True` for a list of URLs (as Django's "
            "`RedisCache`) and `False` on Sentinel; a cluster always reads from masters"
        ),
        ids="E004",
    ),
    Setting(
        "SERIALIZER",
        default=DEFAULT_SERIALIZER,
        check=_class_problem,
        kind="dotted path or class",
        doc="a django-redis serializer; read [Security](security.md#pickle) before keeping pickle",
        ids="E004",
    ),
    Setting(
        "COMPRESSOR",
        default=DEFAULT_COMPRESSOR,
        check=_class_problem,
        kind="dotted path or class",
        doc="a django-redis compressor (identity: none)",
        ids="E004",
    ),
    Setting(
        "IGNORE_EXCEPTIONS",
        default=True,
        **_BOOL,
        kind="`True` or `False`",
        doc=(
            "only matters with `FALLBACK=None`: `False` raises `RedisUnavailable` instead of "
            "returning misses"
        ),
        ids="E004",
    ),
    Setting(
        "FALLBACK",
        default=PRIVATE,  # checked by fallback_problems(), which knows the other caches
        shown="a private in-process store per endpoint (LocMem, 10 000 entries)",
        kind="alias, dotted path or `None`",
        doc=(
            "where reads and writes go while Redis is down: another `CACHES` alias (not a "
            "`ResilientRedisCache`, not itself), a cache backend class by dotted path (one store "
            "per process), or `None` for none"
        ),
        ids="E004",
    ),
    Setting(
        "STAMPEDE",
        default={},
        check=stampede_problem,
        kind="dict",
        doc="`get_or_set` stampede protection; keys [below](#stampede)",
        ids="E004",
    ),
    Setting(
        "NEAR_CACHE",
        default=None,
        check=near_cache_problem,
        kind="dict or `None`",
        doc=(
            "keep hot values in each process, kept correct by Redis's invalidation messages "
            "(`CLIENT TRACKING`); keys [below](#near_cache); `None`: off"
        ),
        ids="E004",
    ),
    Setting(
        "DEGRADED_COUNTERS",
        default="raise",
        **_one_of("raise", "local"),
        kind='`"raise"` or `"local"`',
        doc=(
            "`incr`/`decr` during an outage: raise `RedisUnavailable`, or count in the fallback "
            "(approximate; dropped when Redis returns)"
        ),
        ids="E004",
    ),
    Setting(
        "RECOVERY",
        default="journal",
        **_one_of("journal", "invalidate_namespace"),
        kind='`"journal"` or `"invalidate_namespace"`',
        doc=(
            "on recovery, delete from Redis the keys this process wrote during the outage, or the"
            " cache's whole namespace (strict across processes, cold cache)"
        ),
        ids="E004",
    ),
    Setting(
        "CLEAR_FLUSHES_DB",
        default=False,
        **_BOOL,
        kind="`True` or `False`",
        doc=(
            "`True` makes `clear()` run FLUSHDB, as Django's `RedisCache` does; by default it "
            "deletes this cache's keys only"
        ),
        ids="E004",
    ),
    Setting(
        "SENTINELS",
        default=None,  # checked with LOCATION (E003)
        kind="list of `(host, port)` or `None`",
        doc=(
            "django-redis's Sentinel form: `LOCATION` then names the service "
            "(`redis://mymaster/0`)"
        ),
        ids="E003",
    ),
    Setting(
        "SENTINEL_KWARGS",
        default={},
        test=lambda v: v is None or isinstance(v, Mapping),
        need="a dict of connection arguments for the Sentinels",
        kind="dict",
        doc="connection arguments for the Sentinels (for example their password)",
        ids="E004",
    ),
    Setting(
        "PICKLE_VERSION",
        # Read by django-redis's PickleSerializer, which the backend builds with the OPTIONS.
        default=pickle.DEFAULT_PROTOCOL,
        shown="`pickle.DEFAULT_PROTOCOL`",
        kind="integer",
        doc=(
            "the pickle protocol of django-redis's `PickleSerializer`, which reads it from these "
            "`OPTIONS` (a bad value raises `ImproperlyConfigured` when the cache is built)"
        ),
        ids="—",
    ),
)))  # fmt: skip


def _ignored(name: str, doc: str) -> Setting:
    return Setting(name, shown="—", kind="—", doc=doc, ids="W001")


#: django-redis options that this backend does not need; accepted with a warning.
IGNORED = _schema.register(Section("ignored", (
    _ignored("CLIENT_CLASS", "django-redis's client class"),
    _ignored("CONNECTION_FACTORY",
             "django-redis's connection factory: the backend builds its own connections"),
    _ignored("REPLICA_READ_ONLY", "replicas are only read from, never written"),
    _ignored("CLIENT_KWARGS", "its arguments"),
    _ignored("PARSER_CLASS", "redis-py's parser"),
    _ignored("CONNECTION_POOL_CLASS", "the pool class"),
    _ignored("CONNECTION_POOL_CLASS_KWARGS", "its arguments"),
    _ignored("REDIS_CLIENT_CLASS", "the redis-py client class"),
    _ignored("REDIS_CLIENT_KWARGS", "its arguments"),
    _ignored("CLOSE_CONNECTION",
             "close connections after each request (pools here outlive requests by design)"),
    _ignored("LOG_IGNORED_EXCEPTIONS",
             "outages are logged here once on open, once on close, and in a summary while open"),
    _ignored("pool_class", "Django `RedisCache`'s pool class"),
    _ignored("parser_class", "Django `RedisCache`'s parser class"),
)))  # fmt: skip


# --- problems only the cache can judge ---------------------------------------------------


def _fallback_problem(fallback: object, scope: CacheScope) -> tuple[str, str | None] | None:
    """Why ``FALLBACK`` cannot serve while Redis is down (and a hint), or ``None``."""
    if fallback is None:
        return None
    if not isinstance(fallback, str):
        return "must be a cache alias, a cache backend's dotted path, or None", None
    if fallback == scope.alias:
        return "names the cache itself", "use another alias or None"
    if "." in fallback:
        return None if importable(fallback) else ("is not an importable cache backend class", None)
    return _fallback_alias_problem(fallback, scope.caches)


def _fallback_alias_problem(
    fallback: str, caches: Mapping[str, Any]
) -> tuple[str, str | None] | None:
    """A ``FALLBACK`` alias must name a cache that keeps working without Redis."""
    if fallback not in caches:
        return "is not an alias in CACHES", "aliases: " + ", ".join(caches)
    if caches[fallback].get("BACKEND") == BACKEND:
        return ("is another Redis cache of this app, which fails with Redis",
                "use an in-process or database cache")  # fmt: skip
    return None


def fallback_problems(scope: CacheScope) -> list[Problem]:
    if "FALLBACK" not in scope.options:
        return []
    fallback = scope.options["FALLBACK"]
    found = _fallback_problem(fallback, scope)
    if found is None:
        return []
    message, hint = found
    return [Problem.of("E004", f"{scope.where}['FALLBACK']", fallback, message, hint)]


def key_function_problems(scope: CacheScope) -> list[Problem]:
    """E006: a ``KEY_FUNCTION`` whose keys no SCAN can find, so that ``clear()`` and the
    namespace invalidation after an outage (journal overflow, ``clear()`` during it,
    ``RECOVERY="invalidate_namespace"``) would delete nothing and old values come back."""
    given = scope.cfg.get("KEY_FUNCTION")
    if given is None:
        return []
    from django.core.cache.backends.base import get_key_func

    from django_redis_resilience.cache._namespace import UnknownNamespace, namespace_of

    try:
        func = get_key_func(given)
    except ImportError:
        return []  # Django refuses it itself when it builds the cache, naming the path
    try:
        namespace_of(func, str(scope.cfg.get("KEY_PREFIX", "")), scope.cfg.get("VERSION", 1))
    except UnknownNamespace as exc:
        return [
            Problem.of("E006", f"{scope.base}['KEY_FUNCTION']", given,
                       f"{exc}; clear() and the namespace invalidation after an outage would "
                       "delete nothing, and old values would come back",
                       hint="set KEY_PREFIX and make KEY_FUNCTION start every key with it (e.g. "
                            "return f'{key_prefix}:' + digest), or remove KEY_FUNCTION to use "
                            "Django's '<prefix>:<version>:<key>'")
        ]  # fmt: skip
    return []


def _fallback_is_local(fallback: object, caches: Mapping[str, Any]) -> bool:
    """Whether ``FALLBACK`` keeps its data in each process (LocMem, the private store)."""
    if fallback is None:
        return False
    if isinstance(fallback, str) and "." not in fallback and fallback != PRIVATE:
        return "locmem" in str(caches.get(fallback, {}).get("BACKEND", "")).lower()
    return fallback == PRIVATE or "locmem" in str(fallback).lower()


def session_problems(aliases: list[str], caches: Mapping[str, Any]) -> list[Problem]:
    """W004: sessions only in a cache whose outage fallback lives in each process."""
    engine = getattr(settings, "SESSION_ENGINE", "")
    alias = getattr(settings, "SESSION_CACHE_ALIAS", "default")
    if engine != "django.contrib.sessions.backends.cache" or alias not in aliases:
        return []
    options = caches[alias].get("OPTIONS") or {}
    if not _fallback_is_local(OPTIONS.read(options, "FALLBACK"), caches):
        return []
    return [
        Problem.of(
            "W004",
            "SESSION_ENGINE",
            engine,
            f"sessions live only in the cache {alias!r}, whose fallback during a Redis outage "
            "is in-process memory: users would be logged out whenever a request reaches "
            "another worker",
            hint="use 'django.contrib.sessions.backends.cached_db', which falls back to the "
            "database",
        )
    ]


_schema.add_finder("cache", fallback_problems, order=30)
_schema.add_finder("cache", key_function_problems, order=40)
_schema.add_finder("project", session_problems, order=10)
