"""One settings object over ``REDIS_RESILIENCE`` and each resilient cache's ``OPTIONS``.

Values are read from Django settings on every access (so ``override_settings``
works) and validated without any network I/O. Every problem names the setting
and shows its value with secrets masked.

Precedence for connection settings: the URL's query string, then the cache's
``OPTIONS``, then ``REDIS_RESILIENCE``, then the built-in defaults.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from django.conf import settings

from django_redis_resilience.connection import (
    BreakerConfig,
    ClusterRefreshConfig,
    ConnectionOptions,
    RetryPolicy,
    Topology,
    mask_url,
    parse_location,
)
from django_redis_resilience.connection import _tls as tls
from django_redis_resilience.connection._tls import TLS_DEFAULTS, is_tls_option
from django_redis_resilience.exceptions import ConfigurationError, InvalidLocation, InvalidOption

BACKEND = "django_redis_resilience.cache.ResilientRedisCache"

#: Settings allowed both in ``REDIS_RESILIENCE`` (defaults) and per cache ``OPTIONS``.
CONNECTION_SETTINGS = (
    "SOCKET_CONNECT_TIMEOUT",
    "SOCKET_TIMEOUT",
    "HEALTH_CHECK_INTERVAL",
    "MAX_CONNECTIONS",
    "PROBE_TIMEOUT",
    "BREAKER",
    "RETRY",
    "CLUSTER",
)
#: Settings allowed only in ``REDIS_RESILIENCE``.
GLOBAL_SETTINGS = ("RATELIMIT", "HEALTH")
HEALTH_KEYS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "TIMEOUT": (lambda v: _is_num(v) and 0 < v <= 30, "seconds, more than 0 and at most 30"),
    "SLOW_MS": (lambda v: _is_num(v) and v > 0, "milliseconds > 0"),
    "NODE_ZONES": (
        lambda v: (
            isinstance(v, Mapping)
            and all(isinstance(k, str) and isinstance(z, str) for k, z in v.items())
        ),
        "a dict of host:port, host or announced hostname to zone name",
    ),
    "TOKEN": (
        lambda v: v is None or (isinstance(v, str) and len(v) >= 16),
        "a string of at least 16 characters, or None",
    ),
    "CACHE_SECONDS": (lambda v: _is_num(v) and 0 <= v <= 300, "seconds from 0 to 300"),
    "EVENTS": (lambda v: isinstance(v, bool), "True or False"),
    "EVENT_STORE": (
        lambda v: v in ("database", "memory"),
        "'database' (every process's events, in the DegradationEvent table) or 'memory' "
        "(this process's latest events only, no database writes)",
    ),
    "EVENT_INTERVAL": (lambda v: _is_num(v) and v >= 0, "seconds >= 0"),
    "EVENT_MAX_AGE_DAYS": (lambda v: _is_num(v) and v > 0, "days > 0"),
}
#: ``REDIS_RESILIENCE["HEALTH"]`` defaults.
HEALTH_DEFAULTS: dict[str, Any] = {
    "TIMEOUT": 1.0,
    "SLOW_MS": 100.0,
    "NODE_ZONES": {},
    "TOKEN": None,
    "CACHE_SECONDS": 5.0,
    "EVENTS": True,
    "EVENT_STORE": "database",
    "EVENT_INTERVAL": 10.0,
    "EVENT_MAX_AGE_DAYS": 30.0,
}
RATELIMIT_KEYS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "TRUSTED_PROXY_HOPS": (lambda v: _is_int(v) and 0 <= v <= 10, "an integer from 0 to 10"),
    "TRUSTED_PROXIES": (
        lambda v: v is None or _networks(v),
        "a list of the proxies' addresses or networks, such as ['10.0.0.0/8', '2001:db8::7']",
    ),
    "IPV4_PREFIX": (lambda v: _is_int(v) and 0 <= v <= 32, "an integer from 0 to 32"),
    "IPV6_PREFIX": (lambda v: _is_int(v) and 0 <= v <= 128, "an integer from 0 to 128"),
    "VIEW": (lambda v: _importable(v), "a dotted path to a view (request, decision)"),
    "CACHE": (lambda v: isinstance(v, str), "a CACHES alias of a ResilientRedisCache"),
    "ON_UNAVAILABLE": (lambda v: v in ("local", "allow", "deny"), "'local', 'allow' or 'deny'"),
    "RULES": (lambda v: _rules_problem(v) is None, "a list of valid rules"),
}
#: django-redis options read by the cache backend (validated where they are used).
CACHE_OPTIONS = (
    "SERIALIZER",
    "COMPRESSOR",
    "IGNORE_EXCEPTIONS",
    "FALLBACK",
    "STAMPEDE",
    "DEGRADED_COUNTERS",
    "RECOVERY",
    "CLEAR_FLUSHES_DB",
    "SENTINELS",
    "SENTINEL_KWARGS",
    "PICKLE_VERSION",  # read by django-redis's PickleSerializer, which gets the OPTIONS
)
OPTION_NAMES = (
    *CONNECTION_SETTINGS,
    "PASSWORD",
    "USERNAME",
    "CONNECTION_POOL_KWARGS",
    "READ_FROM_REPLICAS",
    *CACHE_OPTIONS,
)
#: django-redis options that this backend does not need; accepted with a warning.
IGNORED_OPTIONS = (
    "CLIENT_CLASS",
    "CLIENT_KWARGS",
    "PARSER_CLASS",
    "CONNECTION_POOL_CLASS",
    "CONNECTION_POOL_CLASS_KWARGS",
    "REDIS_CLIENT_CLASS",
    "REDIS_CLIENT_KWARGS",
    "CLOSE_CONNECTION",
    "LOG_IGNORED_EXCEPTIONS",
    "REPLICA_READ_ONLY",
    "CONNECTION_FACTORY",
    "pool_class",
    "parser_class",
)


@functools.cache
def _connection_arguments() -> frozenset[str]:
    """What redis-py's connections and pools accept as keyword arguments (lowercase OPTIONS)."""
    import inspect

    import redis.connection as rc

    classes = [rc.Connection, rc.SSLConnection, rc.UnixDomainSocketConnection, rc.ConnectionPool]
    if hasattr(rc, "AbstractConnection"):
        classes.append(rc.AbstractConnection)
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return frozenset(
        name
        for cls in classes
        for name, p in inspect.signature(cls).parameters.items()
        if p.kind in kinds
    )


#: Pool arguments that would undo the guarantees of the connection layer.
FORBIDDEN_POOL_KWARGS = ("retry", "retry_on_timeout", "retry_on_error", "connection_class")

BREAKER_KEYS: dict[str, tuple[str, Callable[[Any], bool], str]] = {
    "FAILURE_THRESHOLD": ("failure_threshold", lambda v: _is_int(v) and v >= 1, "an integer >= 1"),
    "FAILURE_WINDOW": ("failure_window", lambda v: _is_num(v) and v > 0, "a number of seconds > 0"),
    "RECOVERY_TIMEOUT": (
        "recovery_timeout",
        lambda v: _is_num(v) and v > 0,
        "a number of seconds > 0",
    ),
    "MAX_RECOVERY_TIMEOUT": (
        "max_recovery_timeout",
        lambda v: _is_num(v) and v > 0,
        "a number of seconds > 0",
    ),
    "JITTER": ("jitter", lambda v: _is_num(v) and 0 <= v < 1, "a fraction in [0, 1)"),
}
CLUSTER_KEYS: dict[str, tuple[str, Callable[[Any], bool], str]] = {
    "REFRESH_INTERVAL": (
        "interval",
        lambda v: _is_num(v) and v >= 0,
        "a number of seconds >= 0 (0 turns periodic refreshes off)",
    ),
    "MIN_REFRESH_INTERVAL": (
        "min_interval",
        lambda v: _is_num(v) and v >= 0.05,
        "a number of seconds >= 0.05",
    ),
}
RETRY_KEYS: dict[str, tuple[str, Callable[[Any], bool], str]] = {
    "ATTEMPTS": ("attempts", lambda v: _is_int(v) and 1 <= v <= 10, "an integer from 1 to 10"),
    "BACKOFF_BASE": ("backoff_base", lambda v: _is_num(v) and v >= 0, "a number of seconds >= 0"),
    "BACKOFF_CAP": ("backoff_cap", lambda v: _is_num(v) and v >= 0, "a number of seconds >= 0"),
    "ON_TIMEOUT": ("retry_on_timeout", lambda v: isinstance(v, bool), "True or False"),
}


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_num(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


@dataclass(frozen=True)
class Problem:
    """One finding about the configuration, in the shape of a Django system check."""

    id: str
    level: Literal["error", "warning"]
    setting: str
    value: object
    message: str
    hint: str | None = None

    @property
    def text(self) -> str:
        return f"{self.setting} = {_shown(self.value, self.setting)}: {self.message}"

    def error(self) -> InvalidOption | InvalidLocation:
        cls = InvalidLocation if self.id.endswith("E003") else InvalidOption
        hint = f" Hint: {self.hint}" if self.hint else ""
        return cls(f"{self.id}: {self.text}.{hint}")


def _shown(value: object, setting: str = "") -> str:
    """``value`` as a message shows it: secrets masked by their names (the setting's own and
    those inside it), then any URL's password (also inside a list's or bytes' ``repr``)."""
    value = _redacted(value, _last_name(setting))
    return repr(mask_url(value)) if isinstance(value, str) else mask_url(repr(value))


#: Words in a setting's or key's name that say its value is a secret (``REDIS_PASSWORD``,
#: ``ssl_password``, ``TOKEN``, ``sentinel_auth``...).
_SECRET_WORDS = ("pass", "pwd", "secret", "token", "auth", "credential")
#: A name that says its value holds secrets (``SENTINEL_KWARGS``, ``CLIENT_KWARGS``): a dict
#: is shown with its secrets masked; anything else (a string, a list) is masked whole.
_HOLDS_SECRETS = "kwargs"
_MASK = "***"
_MAX_DEPTH = 8


def _last_name(setting: str) -> str:
    """The last name in a setting's path: ``REDIS_PASSWORD`` in
    ``CACHES['default']['OPTIONS']['REDIS_PASSWORD']``, ``ssl_password`` in
    ``CACHES['default']['OPTIONS']: ssl_password``."""
    names = re.findall(r"\w+", setting)
    return names[-1] if names else ""


def _is_secret(name: object) -> bool:
    return isinstance(name, str) and any(word in name.lower() for word in _SECRET_WORDS)


def _redacted(value: object, name: object = "", depth: int = 0) -> object:
    """``value`` with each secret in it masked: the whole of it if ``name`` is a secret's,
    and each entry of a dict, list or ``(name, value)`` pair whose name is one."""
    if _is_secret(name) or depth > _MAX_DEPTH:
        return _MASK
    if isinstance(value, Mapping):
        return {key: _redacted(item, key, depth + 1) for key, item in value.items()}
    if isinstance(name, str) and _HOLDS_SECRETS in name.lower():
        return _MASK
    if isinstance(value, tuple) and len(value) == 2 and isinstance(value[0], str):
        return (value[0], _redacted(value[1], value[0], depth + 1))  # a (name, value) pair
    if isinstance(value, list | tuple):
        items = [_redacted(item, "", depth + 1) for item in value]
        return items if isinstance(value, list) else tuple(items)
    return value


PREFIX = "django_redis_resilience."


class Settings:
    """Typed access to every setting of the app; each property reads settings afresh."""

    # --- global -------------------------------------------------------------

    @property
    def user(self) -> Mapping[str, Any]:
        value = getattr(settings, "REDIS_RESILIENCE", {})
        return value if isinstance(value, Mapping) else {}

    @property
    def SOCKET_CONNECT_TIMEOUT(self) -> float | None:
        return self._global("SOCKET_CONNECT_TIMEOUT", ConnectionOptions.socket_connect_timeout)  # type: ignore[no-any-return]

    @property
    def SOCKET_TIMEOUT(self) -> float | None:
        return self._global("SOCKET_TIMEOUT", ConnectionOptions.socket_timeout)  # type: ignore[no-any-return]

    @property
    def HEALTH_CHECK_INTERVAL(self) -> float:
        return self._global("HEALTH_CHECK_INTERVAL", ConnectionOptions.health_check_interval)  # type: ignore[no-any-return]

    @property
    def MAX_CONNECTIONS(self) -> int | None:
        return self._global("MAX_CONNECTIONS", ConnectionOptions.max_connections)  # type: ignore[no-any-return]

    @property
    def PROBE_TIMEOUT(self) -> float:
        return self._global("PROBE_TIMEOUT", ConnectionOptions.probe_timeout)  # type: ignore[no-any-return]

    @property
    def BREAKER(self) -> Mapping[str, Any]:
        return self._global("BREAKER", {})  # type: ignore[no-any-return]

    @property
    def RETRY(self) -> Mapping[str, Any]:
        return self._global("RETRY", {})  # type: ignore[no-any-return]

    @property
    def RATELIMIT(self) -> Mapping[str, Any]:
        """``TRUSTED_PROXY_HOPS`` (0) or ``TRUSTED_PROXIES`` (None), ``IPV4_PREFIX`` (32),
        ``IPV6_PREFIX`` (64), ``VIEW``, ``CACHE``, ``ON_UNAVAILABLE``, ``RULES``."""
        return self._global("RATELIMIT", {})  # type: ignore[no-any-return]

    @property
    def HEALTH(self) -> Mapping[str, Any]:
        """``TIMEOUT`` (1 s per probe), ``SLOW_MS`` (100), ``NODE_ZONES`` ({}),
        ``TOKEN`` (None), ``CACHE_SECONDS`` (5), ``EVENTS`` (True), ``EVENT_STORE``
        ("database"), ``EVENT_INTERVAL`` (10), ``EVENT_MAX_AGE_DAYS`` (30), merged over the
        defaults."""
        return {**HEALTH_DEFAULTS, **self._global("HEALTH", {})}

    @property
    def CLUSTER(self) -> Mapping[str, Any]:
        return self._global("CLUSTER", {})  # type: ignore[no-any-return]

    def _global(self, name: str, default: Any) -> Any:
        return self.user.get(name, default)  # validated by problems() at startup

    # --- caches -------------------------------------------------------------

    def cache_settings(self, alias: str) -> Mapping[str, Any]:
        caches: Mapping[str, Any] = getattr(settings, "CACHES", {})
        return caches[alias]  # type: ignore[no-any-return]

    def resilient_aliases(self) -> list[str]:
        """Aliases in ``CACHES`` served by this app's backend."""
        caches: Mapping[str, Any] = getattr(settings, "CACHES", {})
        return [
            alias
            for alias, cfg in caches.items()
            if isinstance(cfg, Mapping) and cfg.get("BACKEND") == BACKEND
        ]

    def options(self, alias: str) -> Mapping[str, Any]:
        options = self.cache_settings(alias).get("OPTIONS") or {}
        return options if isinstance(options, Mapping) else {}

    def topology(self, alias: str) -> Topology:
        location = self.cache_settings(alias).get("LOCATION", "")
        setting = f"CACHES[{alias!r}]['LOCATION']"
        sentinels = self.options(alias).get("SENTINELS")
        if sentinels is not None:
            # django-redis's form: LOCATION names the service (redis://mymaster/0)
            # and OPTIONS["SENTINELS"] lists the Sentinels.
            location = _sentinel_location(location, sentinels, alias)
            setting = f"CACHES[{alias!r}]['OPTIONS']['SENTINELS']"
        return parse_location(location, setting=setting)

    def connection_options(self, alias: str) -> ConnectionOptions:
        """The validated connection options of ``alias``; raises on a bad value."""
        found = self._global_problems() + self._alias_problems(alias)
        errors = [p for p in found if p.level == "error"]
        if errors:
            raise errors[0].error()
        opts = self.options(alias)

        def pick(name: str) -> Any:
            return opts[name] if name in opts else self.user.get(name, _DEFAULTS[name])

        breaker = {**self.BREAKER, **(opts.get("BREAKER") or {})}
        retry = {**self.RETRY, **(opts.get("RETRY") or {})}
        cluster = {**self.CLUSTER, **(opts.get("CLUSTER") or {})}
        pool_kwargs = {k: v for k, v in opts.items() if k.islower() and k not in IGNORED_OPTIONS}
        pool_kwargs.update(opts.get("CONNECTION_POOL_KWARGS") or {})
        # Credentials given as pool arguments win over USERNAME/PASSWORD (they are
        # applied later), and live in the fields that repr() never shows.
        username = pool_kwargs.pop("username", opts.get("USERNAME"))
        password = pool_kwargs.pop("password", opts.get("PASSWORD"))
        return ConnectionOptions(
            socket_connect_timeout=pick("SOCKET_CONNECT_TIMEOUT"),
            socket_timeout=pick("SOCKET_TIMEOUT"),
            health_check_interval=pick("HEALTH_CHECK_INTERVAL"),
            max_connections=pick("MAX_CONNECTIONS"),
            probe_timeout=pick("PROBE_TIMEOUT"),
            read_from_replicas=opts.get("READ_FROM_REPLICAS"),
            sentinel_kwargs=tuple(sorted((opts.get("SENTINEL_KWARGS") or {}).items())),
            username=username,
            password=password,
            pool_kwargs=tuple(sorted(pool_kwargs.items())),
            breaker=BreakerConfig(**{BREAKER_KEYS[k][0]: v for k, v in breaker.items()}),
            retry=RetryPolicy(**{RETRY_KEYS[k][0]: v for k, v in retry.items()}),
            cluster=ClusterRefreshConfig(**{CLUSTER_KEYS[k][0]: v for k, v in cluster.items()}),
        )

    # --- validation ---------------------------------------------------------

    def problems(self) -> list[Problem]:
        """Every configuration problem, errors and warnings; no network I/O."""
        found = self._global_problems()
        for alias in self.resilient_aliases():
            found += self._alias_problems(alias)
        return found + _session_problems(self.resilient_aliases())

    def _global_problems(self) -> list[Problem]:
        raw = getattr(settings, "REDIS_RESILIENCE", {})
        if not isinstance(raw, Mapping):
            return [Problem(PREFIX + "E001", "error", "REDIS_RESILIENCE", raw, "must be a dict")]
        found: list[Problem] = []
        for key in raw:
            if key not in CONNECTION_SETTINGS and key not in GLOBAL_SETTINGS:
                found.append(
                    Problem(
                        PREFIX + "E001",
                        "error",
                        f"REDIS_RESILIENCE[{key!r}]",
                        raw[key],
                        "is not a known setting",
                        hint="known settings: "
                        + ", ".join((*CONNECTION_SETTINGS, *GLOBAL_SETTINGS)),
                    )
                )
        found += _connection_problems(raw, "REDIS_RESILIENCE", E="E002")
        found += _ratelimit_problems(raw.get("RATELIMIT", {}), self.resilient_aliases())
        found += _keyed_problems(raw.get("HEALTH", {}), "HEALTH", HEALTH_KEYS)
        return found

    def _alias_problems(self, alias: str) -> list[Problem]:
        base = f"CACHES[{alias!r}]"
        cfg = self.cache_settings(alias)
        found: list[Problem] = []
        topology: Topology | None = None
        try:
            topology = self.topology(alias)
        except InvalidLocation as exc:
            found.append(
                Problem(
                    PREFIX + "E003",
                    "error",
                    f"{base}['LOCATION']",
                    cfg.get("LOCATION", ""),
                    str(exc).rpartition(" is not a valid Redis location: ")[2].rstrip("."),
                )
            )
        options = cfg.get("OPTIONS") or {}
        if not isinstance(options, Mapping):
            return [
                *found,
                Problem(PREFIX + "E004", "error", f"{base}['OPTIONS']", options, "must be a dict"),
            ]
        for key, value in options.items():
            setting = f"{base}['OPTIONS'][{key!r}]"
            if key in IGNORED_OPTIONS:
                found.append(
                    Problem(
                        PREFIX + "W001",
                        "warning",
                        setting,
                        value,
                        "has no effect with django_redis_resilience's backend",
                        hint="remove it; the backend manages its own clients and pools",
                    )
                )
            elif key not in OPTION_NAMES and not key.islower():
                found.append(
                    Problem(
                        PREFIX + "E004",
                        "error",
                        setting,
                        value,
                        "is not a known option",
                        hint="known options: " + ", ".join(OPTION_NAMES),
                    )
                )
        found += _connection_problems(options, f"{base}['OPTIONS']", E="E004")
        for key, value in options.items():
            if not key.islower() or key in IGNORED_OPTIONS or key in FORBIDDEN_POOL_KWARGS:
                continue
            if key == "serializer":  # Django's RedisCache option: a different interface
                found.append(
                    Problem(PREFIX + "E004", "error", f"{base}['OPTIONS']['serializer']", value,
                            "is Django RedisCache's serializer option, which this backend "
                            "does not take",
                            hint="use 'SERIALIZER' with a django-redis serializer class, e.g. "
                                 "'django_redis.serializers.pickle.PickleSerializer'")
                )  # fmt: skip
            elif key not in _connection_arguments():
                found.append(
                    Problem(PREFIX + "E004", "error", f"{base}['OPTIONS'][{key!r}]",
                            "***" if "pass" in key else value,
                            "is not an argument of redis-py's connections (lowercase options "
                            "are passed to them)",
                            hint="see redis.connection.Connection for the arguments it takes")
                )  # fmt: skip
        for key, expected in (("PASSWORD", "a string"), ("USERNAME", "a string")):
            if key in options and options[key] is not None and not isinstance(options[key], str):
                found.append(
                    Problem(PREFIX + "E004", "error", f"{base}['OPTIONS'][{key!r}]",
                            "***" if key == "PASSWORD" else options[key], f"must be {expected}")
                )  # fmt: skip
        if "READ_FROM_REPLICAS" in options and not isinstance(options["READ_FROM_REPLICAS"], bool):
            found.append(
                Problem(PREFIX + "E004", "error", f"{base}['OPTIONS']['READ_FROM_REPLICAS']",
                        options["READ_FROM_REPLICAS"], "must be True or False")
            )  # fmt: skip
        found += _cache_option_problems(options, base, alias)
        found += _key_function_problems(cfg, base)
        sentinel_kwargs = options.get("SENTINEL_KWARGS")
        if sentinel_kwargs is not None and not isinstance(sentinel_kwargs, Mapping):
            found.append(
                Problem(PREFIX + "E004", "error", f"{base}['OPTIONS']['SENTINEL_KWARGS']",
                        sentinel_kwargs, "must be a dict of connection arguments for the Sentinels")
            )  # fmt: skip
        pool_kwargs = options.get("CONNECTION_POOL_KWARGS") or {}
        if not isinstance(pool_kwargs, Mapping):
            found.append(
                Problem(PREFIX + "E004", "error", f"{base}['OPTIONS']['CONNECTION_POOL_KWARGS']",
                        pool_kwargs, "must be a dict")
            )  # fmt: skip
            pool_kwargs = {}
        for key in FORBIDDEN_POOL_KWARGS:
            for where, source in (
                (f"{base}['OPTIONS'][{key!r}]", options),
                (f"{base}['OPTIONS']['CONNECTION_POOL_KWARGS'][{key!r}]", pool_kwargs),
            ):
                if key in source:
                    found.append(
                        Problem(
                            PREFIX + "E005",
                            "error",
                            where,
                            source[key],
                            "cannot be set: the backend decides retries itself so that a "
                            "command is never applied twice",
                            hint="use OPTIONS['RETRY'] = {'ATTEMPTS': ..., 'ON_TIMEOUT': ...}",
                        )
                    )
        if topology is not None:
            lowercase = {k: v for k, v in options.items() if k.islower()}
            found += _tls_problems(topology, {**lowercase, **pool_kwargs}, base)
        return found

    def validate(self) -> None:
        """Raise :class:`ConfigurationError` naming every invalid setting."""
        errors = [p for p in self.problems() if p.level == "error"]
        if len(errors) == 1:
            raise errors[0].error()
        if errors:
            lines = "\n".join(f"  - {p.id}: {p.text}" for p in errors)
            raise InvalidOption(
                f"{len(errors)} invalid settings for django_redis_resilience:\n{lines}"
            )


_CHOICES = {
    "DEGRADED_COUNTERS": ("raise", "local"),
    "RECOVERY": ("journal", "invalidate_namespace"),
}


def _cache_option_problems(options: Mapping[str, Any], base: str, alias: str) -> list[Problem]:
    """The cache backend's own options: choices, booleans, importable classes, fallbacks."""
    found: list[Problem] = []

    def bad(key: str, message: str, hint: str | None = None) -> None:
        found.append(
            Problem(PREFIX + "E004", "error", f"{base}['OPTIONS'][{key!r}]", options[key], message,
                    hint)
        )  # fmt: skip

    for key, choices in _CHOICES.items():
        if key in options and options[key] not in choices:
            bad(key, "must be one of " + ", ".join(repr(c) for c in choices))
    for key in ("CLEAR_FLUSHES_DB", "IGNORE_EXCEPTIONS"):
        if key in options and not isinstance(options[key], bool):
            bad(key, "must be True or False")
    for key in ("SERIALIZER", "COMPRESSOR"):
        if key in options and not _importable(options[key]):
            bad(key, "is not an importable class (a dotted path such as "
                "'django_redis.serializers.json.JSONSerializer')")  # fmt: skip
    if "STAMPEDE" in options and (problem := stampede_problem(options["STAMPEDE"])):
        bad("STAMPEDE", problem)
    if "FALLBACK" in options:
        fallback = options["FALLBACK"]
        caches_setting: Mapping[str, Any] = getattr(settings, "CACHES", {})
        if fallback is None:
            pass
        elif not isinstance(fallback, str):
            bad("FALLBACK", "must be a cache alias, a cache backend's dotted path, or None")
        elif fallback == alias:
            bad("FALLBACK", "names the cache itself", hint="use another alias or None")
        elif "." not in fallback and fallback not in caches_setting:
            bad(
                "FALLBACK",
                "is not an alias in CACHES",
                hint="aliases: " + ", ".join(caches_setting),
            )
        elif "." in fallback and not _importable(fallback):
            bad("FALLBACK", "is not an importable cache backend class")
        elif "." not in fallback and caches_setting[fallback].get("BACKEND") == BACKEND:
            bad("FALLBACK", "is another Redis cache of this app, which fails with Redis",
                hint="use an in-process or database cache")  # fmt: skip
    return found


def _key_function_problems(cfg: Mapping[str, Any], base: str) -> list[Problem]:
    """E006: a ``KEY_FUNCTION`` whose keys no SCAN can find, so that ``clear()`` and the
    namespace invalidation after an outage (journal overflow, ``clear()`` during it,
    ``RECOVERY="invalidate_namespace"``) would delete nothing and old values come back."""
    given = cfg.get("KEY_FUNCTION")
    if given is None:
        return []
    from django.core.cache.backends.base import get_key_func

    from django_redis_resilience.cache._namespace import UnknownNamespace, namespace_of

    try:
        func = get_key_func(given)
    except ImportError:
        return []  # Django refuses it itself when it builds the cache, naming the path
    try:
        namespace_of(func, str(cfg.get("KEY_PREFIX", "")), cfg.get("VERSION", 1))
    except UnknownNamespace as exc:
        return [
            Problem(PREFIX + "E006", "error", f"{base}['KEY_FUNCTION']", given,
                    f"{exc}; clear() and the namespace invalidation after an outage would "
                    "delete nothing, and old values would come back",
                    hint="set KEY_PREFIX and make KEY_FUNCTION start every key with it (e.g. "
                         "return f'{key_prefix}:' + digest), or remove KEY_FUNCTION to use "
                         "Django's '<prefix>:<version>:<key>'")
        ]  # fmt: skip
    return []


def _seconds_or_none(value: Any) -> bool:
    return value is None or (_is_num(value) and math.isfinite(value) and value >= 0)


_STAMPEDE_KEYS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "LOCK": (lambda v: isinstance(v, bool), "True or False"),
    "LOCK_TIMEOUT": (lambda v: _is_num(v) and math.isfinite(v) and v > 0, "seconds > 0"),
    "EARLY_REFRESH": (_seconds_or_none, "a number >= 0 (XFetch's beta, 1.0 is usual) or None"),
    "NULL_TIMEOUT": (_seconds_or_none, "seconds >= 0 or None"),
}


def stampede_problem(value: object) -> str | None:
    """Why ``OPTIONS["STAMPEDE"]`` is invalid, or ``None``."""
    if not isinstance(value, Mapping):
        return "must be a dict with any of " + ", ".join(_STAMPEDE_KEYS)
    for key, item in value.items():
        if key not in _STAMPEDE_KEYS:
            return f"has an unknown key {key!r} (known: {', '.join(_STAMPEDE_KEYS)})"
        valid, need = _STAMPEDE_KEYS[key]
        if not valid(item):
            return f"[{key!r}] = {item!r} is not valid: give {need}"
    return None


def _networks(value: object) -> bool:
    """A list (or tuple) of IP addresses or networks, read as the ``ip`` key reads it."""
    from django_redis_resilience.ratelimiting._keys import proxy_networks

    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        return False
    try:
        proxy_networks(tuple(value))
    except ValueError:
        return False
    return True


def _rules_problem(rules: object) -> str | None:
    """Why the middleware's rules are invalid, or ``None``."""
    from django_redis_resilience.ratelimiting._middleware import load_rules

    try:
        load_rules({"RULES": rules})
    except ConfigurationError as exc:
        return str(exc)
    return None


_MIDDLEWARE = "django_redis_resilience.ratelimiting.RateLimitMiddleware"
_AUTH_MIDDLEWARE = "django.contrib.auth.middleware.AuthenticationMiddleware"


def _keyed_problems(
    value: object, name: str, keys: Mapping[str, tuple[Callable[[Any], bool], str]]
) -> list[Problem]:
    """A dict setting whose keys each have one rule."""
    where = f"REDIS_RESILIENCE[{name!r}]"
    hint = "keys: " + ", ".join(keys)
    if not isinstance(value, Mapping):
        return [Problem(PREFIX + "E002", "error", where, value, "must be a dict", hint=hint)]
    found: list[Problem] = []
    for key, sub in value.items():
        if key not in keys:
            found.append(Problem(PREFIX + "E002", "error", f"{where}[{key!r}]", sub,
                                 "is not a known key", hint=hint))  # fmt: skip
        elif not keys[key][0](sub):
            shown = "***" if key == "TOKEN" else sub
            found.append(Problem(PREFIX + "E002", "error", f"{where}[{key!r}]", shown,
                                 f"must be {keys[key][1]}"))  # fmt: skip
    return found


def _ratelimit_problems(value: object, aliases: list[str]) -> list[Problem]:
    where = "REDIS_RESILIENCE['RATELIMIT']"
    if not isinstance(value, Mapping):
        return [Problem(PREFIX + "E002", "error", where, value, "must be a dict",
                        hint="keys: " + ", ".join(RATELIMIT_KEYS))]  # fmt: skip
    found: list[Problem] = []
    for key, sub in value.items():
        if key not in RATELIMIT_KEYS:
            hint = "keys: " + ", ".join(RATELIMIT_KEYS)
            found.append(Problem(PREFIX + "E002", "error", f"{where}[{key!r}]", sub,
                                 "is not a known key", hint=hint))  # fmt: skip
        elif key == "RULES" and (reason := _rules_problem(sub)) is not None:
            found.append(Problem(PREFIX + "E002", "error", f"{where}['RULES']", sub, reason))
        elif not RATELIMIT_KEYS[key][0](sub):
            found.append(Problem(PREFIX + "E002", "error", f"{where}[{key!r}]", sub,
                                 f"must be {RATELIMIT_KEYS[key][1]}"))  # fmt: skip
        elif key == "TRUSTED_PROXIES" and sub and value.get("TRUSTED_PROXY_HOPS"):
            found.append(Problem(PREFIX + "E002", "error", f"{where}['TRUSTED_PROXIES']", sub,
                                 "cannot be combined with TRUSTED_PROXY_HOPS: the two say "
                                 "differently which X-Forwarded-For entry to trust",
                                 hint="keep one of them"))  # fmt: skip
        elif key == "CACHE" and sub not in aliases:
            found.append(Problem(PREFIX + "E002", "error", f"{where}['CACHE']", sub,
                                 "is not a ResilientRedisCache alias: rate limits need a Redis "
                                 "that every process shares"))  # fmt: skip
    middleware = list(getattr(settings, "MIDDLEWARE", None) or [])
    if (
        _MIDDLEWARE in middleware
        and _AUTH_MIDDLEWARE in middleware
        and middleware.index(_MIDDLEWARE) < middleware.index(_AUTH_MIDDLEWARE)
    ):
        found.append(Problem(PREFIX + "W005", "warning", "MIDDLEWARE", _MIDDLEWARE,
                                 "comes before AuthenticationMiddleware, so its 'user' and "
                                 "'user_or_ip' keys never see a logged-in user",
                                 hint="move it after AuthenticationMiddleware"))  # fmt: skip
    return found


def _session_problems(aliases: list[str]) -> list[Problem]:
    """W004: sessions only in a cache whose outage fallback lives in each process."""
    engine = getattr(settings, "SESSION_ENGINE", "")
    alias = getattr(settings, "SESSION_CACHE_ALIAS", "default")
    if engine != "django.contrib.sessions.backends.cache" or alias not in aliases:
        return []
    options = (getattr(settings, "CACHES", {})[alias].get("OPTIONS")) or {}
    fallback = options.get("FALLBACK", "private")
    if fallback is None:
        local = False
    elif isinstance(fallback, str) and "." not in fallback and fallback != "private":
        cfg = getattr(settings, "CACHES", {}).get(fallback, {})
        local = "locmem" in str(cfg.get("BACKEND", "")).lower()
    else:
        local = fallback == "private" or "locmem" in str(fallback).lower()
    if not local:
        return []
    return [
        Problem(
            PREFIX + "W004",
            "warning",
            "SESSION_ENGINE",
            engine,
            f"sessions live only in the cache {alias!r}, whose fallback during a Redis outage "
            "is in-process memory: users would be logged out whenever a request reaches "
            "another worker",
            hint="use 'django.contrib.sessions.backends.cached_db', which falls back to the "
            "database",
        )
    ]


def _importable(path: object) -> bool:
    if isinstance(path, type):
        return True
    if not isinstance(path, str):
        return False
    from django.utils.module_loading import import_string

    try:
        import_string(path)
    except ImportError:
        return False
    return True


def _sentinel_location(location: object, sentinels: object, alias: str) -> str:
    """Turn django-redis's ``LOCATION`` + ``SENTINELS`` into a ``redis+sentinel://`` URL."""
    setting = f"CACHES[{alias!r}]['OPTIONS']['SENTINELS']"
    pairs = sentinels if isinstance(sentinels, list | tuple) else None
    if not pairs or not all(
        isinstance(p, list | tuple) and len(p) == 2 and isinstance(p[0], str) and _is_int(p[1])
        for p in pairs
    ):
        raise InvalidLocation(
            f"{setting} = {_shown(sentinels)} is not a valid Redis location: "
            "expected a list of (host, port) pairs."
        )
    if not isinstance(location, str) or "://" not in location:
        raise InvalidLocation(
            f"CACHES[{alias!r}]['LOCATION'] = {_shown(location)} is not a valid Redis location: "
            "with SENTINELS it must be redis://[user:password@]<service_name>[/db]."
        )
    scheme, _, rest = location.partition("://")
    netloc, slash, path = rest.partition("/")
    userinfo, at, service = netloc.rpartition("@")
    hosts = ",".join(f"{host}:{port}" for host, port in pairs)
    return f"{scheme}+sentinel://{userinfo}{at}{hosts}/{service}{slash}{path}"


def _tls_problems(topology: Topology, pool_kwargs: Mapping[str, Any], base: str) -> list[Problem]:
    """TLS options checked per node: URL query values win over OPTIONS, as at run time."""
    found: list[Problem] = []
    seen: set[tuple[str, str]] = set()
    for node in topology.nodes:
        from_url = dict(node.params)
        merged = {**(TLS_DEFAULTS if node.tls else {}), **pool_kwargs, **from_url}
        if not node.tls:
            for name in sorted(n for n in merged if is_tls_option(n)):
                where = f"{base}['LOCATION']" if name in from_url else f"{base}['OPTIONS']"
                if (name, where) not in seen:
                    seen.add((name, where))
                    found.append(
                        Problem(PREFIX + "E004", "error", f"{where}: {name}", merged[name],
                                "is a TLS option but the location is not rediss://",
                                hint="use a rediss:// URL or remove the option")
                    )  # fmt: skip
            continue
        for name, value, message in tls.problems(merged):
            where = f"{base}['LOCATION']" if name in from_url else f"{base}['OPTIONS']"
            if (name, where) not in seen:
                seen.add((name, where))
                found.append(Problem(PREFIX + "E004", "error", f"{where}: {name}", value, message))
        reason = tls.verification_disabled(merged)
        if reason and ("W003", node.display) not in seen:
            seen.add(("W003", node.display))
            found.append(
                Problem(PREFIX + "W003", "warning", f"{base} TLS to {node.display}",
                        merged.get("ssl_cert_reqs"), reason,
                        hint="anyone on the network path can read and change cache data; "
                             "give ssl_ca_certs instead of turning verification off")
            )  # fmt: skip
    return found


_DEFAULTS: dict[str, Any] = {
    "SOCKET_CONNECT_TIMEOUT": ConnectionOptions.socket_connect_timeout,
    "SOCKET_TIMEOUT": ConnectionOptions.socket_timeout,
    "HEALTH_CHECK_INTERVAL": ConnectionOptions.health_check_interval,
    "MAX_CONNECTIONS": ConnectionOptions.max_connections,
    "PROBE_TIMEOUT": ConnectionOptions.probe_timeout,
}


def _connection_problems(source: Mapping[str, Any], where: str, *, E: str) -> list[Problem]:
    found: list[Problem] = []

    def bad(key: str, value: object, message: str, hint: str | None = None) -> None:
        found.append(Problem(PREFIX + E, "error", f"{where}{key}", value, message, hint))

    for key in ("SOCKET_CONNECT_TIMEOUT", "SOCKET_TIMEOUT"):
        if key not in source:
            continue
        value = source[key]
        if value is None:
            found.append(
                Problem(PREFIX + "W002", "warning", f"{where}[{key!r}]", value,
                        "waits forever on a hung server",
                        hint="use a sub-second timeout; the breaker handles slow servers")
            )  # fmt: skip
        elif not _is_num(value) or not 0 < value <= 60:
            bad(f"[{key!r}]", value, "must be a number of seconds > 0 and <= 60")
    for key, minimum in (("HEALTH_CHECK_INTERVAL", 0.0), ("PROBE_TIMEOUT", 0.001)):
        if key in source and (not _is_num(source[key]) or source[key] < minimum):
            bad(f"[{key!r}]", source[key], f"must be a number of seconds >= {minimum:g}")
    if "MAX_CONNECTIONS" in source:
        value = source["MAX_CONNECTIONS"]
        if value is not None and (not _is_int(value) or value < 1):
            bad("['MAX_CONNECTIONS']", value, "must be None or an integer >= 1")
    for key, spec in (("BREAKER", BREAKER_KEYS), ("RETRY", RETRY_KEYS), ("CLUSTER", CLUSTER_KEYS)):
        if key not in source:
            continue
        value = source[key]
        if not isinstance(value, Mapping):
            bad(f"[{key!r}]", value, "must be a dict", hint="keys: " + ", ".join(spec))
            continue
        for sub, sub_value in value.items():
            if sub not in spec:
                bad(f"[{key!r}][{sub!r}]", sub_value, "is not a known key",
                    hint="keys: " + ", ".join(spec))  # fmt: skip
            elif not spec[sub][1](sub_value):
                bad(f"[{key!r}][{sub!r}]", sub_value, f"must be {spec[sub][2]}")
    return found


conf = Settings()
