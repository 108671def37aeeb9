"""The connection settings: ``SOCKET_TIMEOUT``... with ``BREAKER``, ``RETRY`` and ``CLUSTER``.

They may be given in ``REDIS_RESILIENCE`` (for every resilient cache) and in a cache's
``OPTIONS`` (for that cache). This module also gives :mod:`django_redis_resilience.conf`
what it needs from the connection layer, by name through the schema: a cache's topology
and connection options, URL masking, and the problems only this layer can see (lowercase
options, pool arguments that would apply a command twice, TLS).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Mapping
from typing import Any

from django_redis_resilience import _schema
from django_redis_resilience._problems import CacheScope, Problem, shown
from django_redis_resilience._schema import Section, Setting, is_int, is_num
from django_redis_resilience.connection import _tls as tls
from django_redis_resilience.connection._breaker import BreakerConfig
from django_redis_resilience.connection._location import Topology, mask_url, parse_location
from django_redis_resilience.connection._options import ClusterRefreshConfig, ConnectionOptions
from django_redis_resilience.connection._retry import RetryPolicy
from django_redis_resilience.exceptions import InvalidLocation

_BOTH = "E002 / E004"
_SECONDS_TO_60 = "a number of seconds > 0 and <= 60"


def _timeout(value: object) -> bool:
    """A socket timeout: ``None`` (a warning, W002) or seconds in (0, 60]."""
    return value is None or (is_num(value) and 0 < value <= 60)  # type: ignore[operator]


CONNECTION = _schema.register(Section("connection", (
    Setting(
        "SOCKET_CONNECT_TIMEOUT",
        default=ConnectionOptions.socket_connect_timeout,
        test=_timeout,
        need=_SECONDS_TO_60,
        kind="seconds (0 < s ≤ 60) or `None`",
        doc="time to open a connection; `None` waits for ever and is reported as W002",
        ids="E002 / E004, W002",
    ),
    Setting(
        "SOCKET_TIMEOUT",
        default=ConnectionOptions.socket_timeout,
        test=_timeout,
        need=_SECONDS_TO_60,
        kind="seconds (0 < s ≤ 60) or `None`",
        doc="time to wait for a reply; `None` waits for ever (W002)",
        ids="E002 / E004, W002",
    ),
    Setting(
        "HEALTH_CHECK_INTERVAL",
        default=ConnectionOptions.health_check_interval,
        test=lambda v: is_num(v) and v >= 0.0,
        need="a number of seconds >= 0",
        kind="seconds ≥ 0",
        doc=(
            "a pooled connection idle for longer than this is PINGed before reuse, so a "
            "connection the server dropped is replaced instead of failing a command"
        ),
        ids=_BOTH,
    ),
    Setting(
        "MAX_CONNECTIONS",
        default=ConnectionOptions.max_connections,
        test=lambda v: v is None or (is_int(v) and v >= 1),
        need="None or an integer >= 1",
        kind="integer ≥ 1 or `None`",
        doc="pool size limit per endpoint and process (`None`: no limit)",
        ids=_BOTH,
    ),
    Setting(
        "PROBE_TIMEOUT",
        default=ConnectionOptions.probe_timeout,
        test=lambda v: is_num(v) and v >= 0.001,
        need="a number of seconds >= 0.001",
        kind="seconds ≥ 0.001",
        doc="timeout of the background probe that decides whether an open breaker may close",
        ids=_BOTH,
    ),
    Setting(
        "BREAKER",
        default={},
        keys="BREAKER",
        kind="dict",
        doc="the circuit breaker; keys [below](#breaker)",
        ids=_BOTH,
    ),
    Setting(
        "RETRY",
        default={},
        keys="RETRY",
        kind="dict",
        doc="retries of failed commands; keys [below](#retry)",
        ids=_BOTH,
    ),
    Setting(
        "CLUSTER",
        default={},
        keys="CLUSTER",
        kind="dict",
        doc="Redis Cluster slot-map refreshes; keys [below](#cluster)",
        ids=_BOTH,
    ),
)))  # fmt: skip

_SECONDS_ABOVE_0 = "a number of seconds > 0"

BREAKER = _schema.register(Section("BREAKER", (
    Setting(
        "FAILURE_THRESHOLD",
        default=BreakerConfig.failure_threshold,
        field="failure_threshold",
        test=lambda v: is_int(v) and v >= 1,
        need="an integer >= 1",
        kind="integer ≥ 1",
        doc="failed calls within `FAILURE_WINDOW` that open the breaker",
        ids=_BOTH,
    ),
    Setting(
        "FAILURE_WINDOW",
        default=BreakerConfig.failure_window,
        field="failure_window",
        test=lambda v: is_num(v) and v > 0,
        need=_SECONDS_ABOVE_0,
        kind="seconds > 0",
        doc="the window in which failures are counted",
        ids=_BOTH,
    ),
    Setting(
        "RECOVERY_TIMEOUT",
        default=BreakerConfig.recovery_timeout,
        field="recovery_timeout",
        test=lambda v: is_num(v) and v > 0,
        need=_SECONDS_ABOVE_0,
        kind="seconds > 0",
        doc="the first cool-down before the background probe tries the endpoint",
        ids=_BOTH,
    ),
    Setting(
        "MAX_RECOVERY_TIMEOUT",
        default=BreakerConfig.max_recovery_timeout,
        field="max_recovery_timeout",
        test=lambda v: is_num(v) and v > 0,
        need=_SECONDS_ABOVE_0,
        kind="seconds > 0",
        doc="the cool-down doubles after each failed probe, up to this",
        ids=_BOTH,
    ),
    Setting(
        "JITTER",
        default=BreakerConfig.jitter,
        field="jitter",
        test=lambda v: is_num(v) and 0 <= v < 1,
        need="a fraction in [0, 1)",
        kind="fraction in [0, 1)",
        doc="random spread of the cool-down, so processes do not probe in step",
        ids=_BOTH,
    ),
)))  # fmt: skip

RETRY = _schema.register(Section("RETRY", (
    Setting(
        "ATTEMPTS",
        default=RetryPolicy.attempts,
        field="attempts",
        test=lambda v: is_int(v) and 1 <= v <= 10,
        need="an integer from 1 to 10",
        kind="integer 1 to 10",
        doc="attempts per call, the first included",
        ids=_BOTH,
    ),
    Setting(
        "BACKOFF_BASE",
        default=RetryPolicy.backoff_base,
        field="backoff_base",
        test=lambda v: is_num(v) and v >= 0,
        need="a number of seconds >= 0",
        kind="seconds ≥ 0",
        doc=(
            "base of the full-jitter exponential backoff (the first retry does not wait: it uses "
            "a fresh connection)"
        ),
        ids=_BOTH,
    ),
    Setting(
        "BACKOFF_CAP",
        default=RetryPolicy.backoff_cap,
        field="backoff_cap",
        test=lambda v: is_num(v) and v >= 0,
        need="a number of seconds >= 0",
        kind="seconds ≥ 0",
        doc="the longest wait between two attempts",
        ids=_BOTH,
    ),
    Setting(
        "ON_TIMEOUT",
        default=RetryPolicy.retry_on_timeout,
        field="retry_on_timeout",
        test=lambda v: isinstance(v, bool),
        need="True or False",
        kind="`True` or `False`",
        doc=(
            "retry after a timeout too (a slow server gets slower when every client doubles its "
            "load)"
        ),
        ids=_BOTH,
    ),
)))  # fmt: skip

CLUSTER = _schema.register(Section("CLUSTER", (
    Setting(
        "REFRESH_INTERVAL",
        default=ClusterRefreshConfig.interval,
        field="interval",
        test=lambda v: is_num(v) and v >= 0,
        need="a number of seconds >= 0 (0 turns periodic refreshes off)",
        kind="seconds ≥ 0",
        doc=(
            "periodic slot-map refresh on the background thread; `0` turns periodic refreshes off"
            " (refreshes after `MOVED`, connection errors and recoveries still happen)"
        ),
        ids=_BOTH,
    ),
    Setting(
        "MIN_REFRESH_INTERVAL",
        default=ClusterRefreshConfig.min_interval,
        field="min_interval",
        test=lambda v: is_num(v) and v >= 0.05,
        need="a number of seconds >= 0.05",
        kind="seconds ≥ 0.05",
        doc=(
            "at most one refresh per this many seconds per process, so many workers never "
            "stampede one node"
        ),
        ids=_BOTH,
    ),
)))  # fmt: skip

#: Pool arguments that would undo the guarantees of the connection layer.
FORBIDDEN_POOL_KWARGS = ("retry", "retry_on_timeout", "retry_on_error", "connection_class")


# --- what conf builds from validated settings --------------------------------------------


def topology(*, location: object, sentinels: object, alias: str) -> Topology:
    """The nodes of ``alias``: its ``LOCATION``, or django-redis's ``SENTINELS`` form."""
    setting = f"CACHES[{alias!r}]['LOCATION']"
    if sentinels is not None:
        # django-redis's form: LOCATION names the service (redis://mymaster/0)
        # and OPTIONS["SENTINELS"] lists the Sentinels.
        location = _sentinel_location(location, sentinels, alias)
        setting = f"CACHES[{alias!r}]['OPTIONS']['SENTINELS']"
    return parse_location(location, setting=setting)  # type: ignore[arg-type]


def _sentinel_location(location: object, sentinels: object, alias: str) -> str:
    """Turn django-redis's ``LOCATION`` + ``SENTINELS`` into a ``redis+sentinel://`` URL."""
    setting = f"CACHES[{alias!r}]['OPTIONS']['SENTINELS']"
    pairs = sentinels if isinstance(sentinels, list | tuple) else None
    if not pairs or not all(
        isinstance(p, list | tuple) and len(p) == 2 and isinstance(p[0], str) and is_int(p[1])
        for p in pairs
    ):
        raise InvalidLocation(
            f"{setting} = {shown(sentinels)} is not a valid Redis location: "
            "expected a list of (host, port) pairs."
        )
    if not isinstance(location, str) or "://" not in location:
        raise InvalidLocation(
            f"CACHES[{alias!r}]['LOCATION'] = {shown(location)} is not a valid Redis location: "
            "with SENTINELS it must be redis://[user:password@]<service_name>[/db]."
        )
    scheme, _, rest = location.partition("://")
    netloc, slash, path = rest.partition("/")
    userinfo, at, service = netloc.rpartition("@")
    hosts = ",".join(f"{host}:{port}" for host, port in pairs)
    return f"{scheme}+sentinel://{userinfo}{at}{hosts}/{service}{slash}{path}"


def connection_options(
    *, options: Mapping[str, Any], shared: Mapping[str, Any]
) -> ConnectionOptions:
    """A cache's options from its validated ``OPTIONS`` over ``REDIS_RESILIENCE`` (``shared``)
    over the schema's defaults; ``BREAKER``, ``RETRY`` and ``CLUSTER`` merge key by key."""
    cache_options = _schema.section("options")

    def pick(name: str) -> Any:
        return options[name] if name in options else CONNECTION.read(shared, name)

    def merged(section: Section) -> dict[str, Any]:
        given = {**CONNECTION.read(shared, section.name), **(options.get(section.name) or {})}
        return {section[key].field or key: value for key, value in given.items()}

    ignored = _schema.section("ignored")
    pool_kwargs = {k: v for k, v in options.items() if k.islower() and k not in ignored}
    pool_kwargs.update(cache_options.read(options, "CONNECTION_POOL_KWARGS") or {})
    # Credentials given as pool arguments win over USERNAME/PASSWORD (they are
    # applied later), and live in the fields that repr() never shows.
    username = pool_kwargs.pop("username", cache_options.read(options, "USERNAME"))
    password = pool_kwargs.pop("password", cache_options.read(options, "PASSWORD"))
    sentinel_kwargs = cache_options.read(options, "SENTINEL_KWARGS") or {}
    return ConnectionOptions(
        socket_connect_timeout=pick("SOCKET_CONNECT_TIMEOUT"),
        socket_timeout=pick("SOCKET_TIMEOUT"),
        health_check_interval=pick("HEALTH_CHECK_INTERVAL"),
        max_connections=pick("MAX_CONNECTIONS"),
        probe_timeout=pick("PROBE_TIMEOUT"),
        read_from_replicas=cache_options.read(options, "READ_FROM_REPLICAS"),
        sentinel_kwargs=tuple(sorted(sentinel_kwargs.items())),
        username=username,
        password=password,
        pool_kwargs=tuple(sorted(pool_kwargs.items())),
        breaker=BreakerConfig(**merged(BREAKER)),
        retry=RetryPolicy(**merged(RETRY)),
        cluster=ClusterRefreshConfig(**merged(CLUSTER)),
    )


# --- problems only the connection layer can see ------------------------------------------


def _waits_forever(source: Mapping[str, Any], where: str) -> list[Problem]:
    """W002: a socket timeout of ``None``, which a hung server turns into a hung request."""
    return [
        Problem.of("W002", f"{where}[{key!r}]", None, "waits forever on a hung server",
                   hint="use a sub-second timeout; the breaker handles slow servers")
        for key in ("SOCKET_CONNECT_TIMEOUT", "SOCKET_TIMEOUT")
        if key in source and source[key] is None
    ]  # fmt: skip


def shared_timeout_problems(raw: Mapping[str, Any], aliases: list[str]) -> list[Problem]:
    return _waits_forever(raw, "REDIS_RESILIENCE")


def cache_timeout_problems(scope: CacheScope) -> list[Problem]:
    return _waits_forever(scope.options, scope.where)


@functools.cache
def _connection_arguments() -> frozenset[str]:
    """What redis-py's connections and pools accept as keyword arguments (lowercase OPTIONS)."""
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


def _lowercase_problem(key: str, value: object, where: str) -> Problem | None:
    """A lowercase option is passed to redis-py's connections: it must be one of theirs."""
    if key == "serializer":  # Django's RedisCache option: a different interface
        return Problem.of("E004", f"{where}['serializer']", value,
                          "is Django RedisCache's serializer option, which this backend "
                          "does not take",
                          hint="use 'SERIALIZER' with a django-redis serializer class, e.g. "
                               "'django_redis.serializers.pickle.PickleSerializer'"
                          )  # fmt: skip
    if key not in _connection_arguments():
        return Problem.of("E004", f"{where}[{key!r}]", "***" if "pass" in key else value,
                          "is not an argument of redis-py's connections (lowercase options "
                          "are passed to them)",
                          hint="see redis.connection.Connection for the arguments it takes"
                          )  # fmt: skip
    return None


def lowercase_problems(scope: CacheScope) -> list[Problem]:
    ignored = _schema.section("ignored")
    found = []
    for key, value in scope.options.items():
        if key.islower() and key not in ignored and key not in FORBIDDEN_POOL_KWARGS:
            problem = _lowercase_problem(key, value, scope.where)
            if problem is not None:
                found.append(problem)
    return found


def _pool_kwargs(options: Mapping[str, Any]) -> Mapping[str, Any]:
    """``CONNECTION_POOL_KWARGS`` when it is a dict (a bad one is reported on its own)."""
    given = options.get("CONNECTION_POOL_KWARGS") or {}
    return given if isinstance(given, Mapping) else {}


def forbidden_problems(scope: CacheScope) -> list[Problem]:
    """E005: a pool argument that would let redis-py apply a command twice."""
    pool_kwargs = _pool_kwargs(scope.options)
    found = []
    for key in FORBIDDEN_POOL_KWARGS:
        for where, source in (
            (f"{scope.where}[{key!r}]", scope.options),
            (f"{scope.where}['CONNECTION_POOL_KWARGS'][{key!r}]", pool_kwargs),
        ):
            if key in source:
                found.append(
                    Problem.of("E005", where, source[key],
                               "cannot be set: the backend decides retries itself so that a "
                               "command is never applied twice",
                               hint="use OPTIONS['RETRY'] = {'ATTEMPTS': ..., 'ON_TIMEOUT': ...}")
                )  # fmt: skip
    return found


def tls_problems(scope: CacheScope) -> list[Problem]:
    """TLS options checked per node: URL query values win over OPTIONS, as at run time."""
    if scope.topology is None:
        return []
    lowercase = {k: v for k, v in scope.options.items() if k.islower()}
    pool_kwargs = {**lowercase, **_pool_kwargs(scope.options)}
    found: list[Problem] = []
    seen: set[tuple[str, str]] = set()
    for node in scope.topology.nodes:
        for key, problem in _node_tls_problems(node, pool_kwargs, scope.base):
            if key not in seen:
                seen.add(key)
                found.append(problem)
    return found


def _node_tls_problems(
    node: Any, pool_kwargs: Mapping[str, Any], base: str
) -> list[tuple[tuple[str, str], Problem]]:
    """One node's TLS problems, each with the key that reports it once per cache."""
    from_url = dict(node.params)
    merged = {**(tls.TLS_DEFAULTS if node.tls else {}), **pool_kwargs, **from_url}

    def where(name: str) -> str:
        return f"{base}['LOCATION']" if name in from_url else f"{base}['OPTIONS']"

    if not node.tls:
        return [
            ((name, where(name)),
             Problem.of("E004", f"{where(name)}: {name}", merged[name],
                        "is a TLS option but the location is not rediss://",
                        hint="use a rediss:// URL or remove the option"))
            for name in sorted(n for n in merged if tls.is_tls_option(n))
        ]  # fmt: skip
    found = [
        ((name, where(name)), Problem.of("E004", f"{where(name)}: {name}", value, message))
        for name, value, message in tls.problems(merged)
    ]
    reason = tls.verification_disabled(merged)
    if reason:
        found.append(
            (("W003", node.display),
             Problem.of("W003", f"{base} TLS to {node.display}", merged.get("ssl_cert_reqs"),
                        reason,
                        hint="anyone on the network path can read and change cache data; "
                             "give ssl_ca_certs instead of turning verification off"))
        )  # fmt: skip
    return found


_schema.provide("mask_url", mask_url)
_schema.provide("topology", topology)
_schema.provide("connection_options", connection_options)
_schema.add_finder("global", shared_timeout_problems, order=10)
_schema.add_finder("cache", cache_timeout_problems, order=10)
_schema.add_finder("cache", lowercase_problems, order=20)
_schema.add_finder("cache", forbidden_problems, order=60)
_schema.add_finder("cache", tls_problems, order=70)
