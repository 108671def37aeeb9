"""Settings: defaults, precedence, and startup validation that names every bad setting.

Nothing here connects anywhere: LOCATION points at port 1, where nothing listens,
and the settings layer never opens a socket.
"""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

from django_redis_resilience import _schema, checks
from django_redis_resilience.conf import conf
from django_redis_resilience.connection import (
    BreakerConfig,
    ClusterRefreshConfig,
    ConnectionOptions,
    RetryPolicy,
    TopologyKind,
)
from django_redis_resilience.connection._endpoint import pool_kwargs
from django_redis_resilience.exceptions import ConfigurationError, InvalidLocation, InvalidOption

BACKEND = "django_redis_resilience.cache.ResilientRedisCache"
LOCATION = "redis://127.0.0.1:1/0"
OPTS = "CACHES['default']['OPTIONS']"
SECRET = "hunter2-Zq9"
assert checks  # every feature's settings section is registered

_UNSET: Any = object()


def configure(
    options: Any = _UNSET,
    *,
    location: Any = LOCATION,
    resilience: Any = _UNSET,
    alias: str = "default",
) -> override_settings:
    """``override_settings`` for one resilient cache (and ``REDIS_RESILIENCE`` if given)."""
    cache: dict[str, Any] = {"BACKEND": BACKEND, "LOCATION": location}
    if options is not _UNSET:
        cache["OPTIONS"] = options
    overrides: dict[str, Any] = {"CACHES": {alias: cache}}
    if resilience is not _UNSET:
        overrides["REDIS_RESILIENCE"] = resilience
    return override_settings(**overrides)


def effective_kwargs(alias: str = "default") -> dict[str, Any]:
    """The keyword arguments the primary's redis-py pool would be built with."""
    topology = conf.topology(alias)
    return pool_kwargs(topology.primary, conf.connection_options(alias), asyncio=False)


def invalid() -> str:
    """Run ``conf.validate()``, expect it to refuse, and return its message."""
    with pytest.raises(ConfigurationError) as info:
        conf.validate()
    assert isinstance(info.value, ImproperlyConfigured)
    return str(info.value)


# --- connection options ----------------------------------------------------------


def test_defaults() -> None:
    with configure():
        options = conf.connection_options("default")
    assert options == ConnectionOptions()
    assert options.socket_connect_timeout == 0.25
    assert options.socket_timeout == 0.25
    assert options.health_check_interval == 30.0
    assert options.max_connections is None
    assert options.probe_timeout == 0.5
    assert options.read_from_replicas is None  # the topology decides
    assert (options.username, options.password, options.pool_kwargs) == (None, None, ())
    assert options.breaker == BreakerConfig(
        failure_threshold=3,
        failure_window=2.0,
        recovery_timeout=1.0,
        max_recovery_timeout=30.0,
        jitter=0.2,
    )
    assert options.retry == RetryPolicy(
        attempts=3, backoff_base=0.005, backoff_cap=0.1, retry_on_timeout=False
    )


def test_global_properties_read_settings_afresh() -> None:
    assert conf.SOCKET_TIMEOUT == 0.25
    with override_settings(REDIS_RESILIENCE={"SOCKET_TIMEOUT": 0.75, "BREAKER": {"JITTER": 0}}):
        assert conf.SOCKET_TIMEOUT == 0.75
        assert conf.SOCKET_CONNECT_TIMEOUT == 0.25
        assert conf.BREAKER == {"JITTER": 0}
        assert conf.RETRY == {}
    assert conf.SOCKET_TIMEOUT == 0.25
    assert conf.BREAKER == {}


@pytest.mark.parametrize(
    ("resilience", "options", "query", "expected"),
    [
        ({}, {}, "", 0.25),
        ({"SOCKET_TIMEOUT": 1.0}, {}, "", 1.0),
        ({"SOCKET_TIMEOUT": 1.0}, {"SOCKET_TIMEOUT": 2.0}, "", 2.0),
        ({}, {"SOCKET_TIMEOUT": 2.0}, "", 2.0),
        ({"SOCKET_TIMEOUT": 1.0}, {"SOCKET_TIMEOUT": 2.0}, "?socket_timeout=0.5", 0.5),
        ({"SOCKET_TIMEOUT": 1.0}, {}, "?socket_timeout=0.5", 0.5),
    ],
)
def test_precedence_url_then_options_then_global_then_default(
    resilience: dict[str, Any], options: dict[str, Any], query: str, expected: float
) -> None:
    with configure(options, location=LOCATION + query, resilience=resilience):
        assert effective_kwargs()["socket_timeout"] == expected


def test_options_override_global_for_every_connection_setting() -> None:
    resilience = {
        "SOCKET_CONNECT_TIMEOUT": 0.1,
        "SOCKET_TIMEOUT": 0.2,
        "HEALTH_CHECK_INTERVAL": 5,
        "MAX_CONNECTIONS": 10,
        "PROBE_TIMEOUT": 0.3,
    }
    with configure({"SOCKET_CONNECT_TIMEOUT": 0.4, "MAX_CONNECTIONS": 20}, resilience=resilience):
        options = conf.connection_options("default")
        kwargs = effective_kwargs()
    assert options.socket_connect_timeout == 0.4
    assert options.socket_timeout == 0.2
    assert options.health_check_interval == 5
    assert options.max_connections == 20
    assert options.probe_timeout == 0.3
    assert kwargs["socket_connect_timeout"] == 0.4
    assert kwargs["max_connections"] == 20


def test_breaker_and_retry_dicts_are_merged_key_by_key() -> None:
    resilience = {
        "BREAKER": {"FAILURE_THRESHOLD": 5, "JITTER": 0.1},
        "RETRY": {"ATTEMPTS": 5, "BACKOFF_BASE": 0.01},
    }
    options = {
        "BREAKER": {"FAILURE_THRESHOLD": 7, "RECOVERY_TIMEOUT": 2, "MAX_RECOVERY_TIMEOUT": 10},
        "RETRY": {"ON_TIMEOUT": True, "BACKOFF_CAP": 0.5},
    }
    with configure(options, resilience=resilience):
        result = conf.connection_options("default")
    assert result.breaker == BreakerConfig(
        failure_threshold=7,
        failure_window=2.0,
        recovery_timeout=2,
        max_recovery_timeout=10,
        jitter=0.1,
    )
    assert result.retry == RetryPolicy(
        attempts=5, backoff_base=0.01, backoff_cap=0.5, retry_on_timeout=True
    )


def test_cluster_refresh_settings_are_merged_key_by_key() -> None:
    resilience = {"CLUSTER": {"REFRESH_INTERVAL": 10, "MIN_REFRESH_INTERVAL": 2}}
    with configure({"CLUSTER": {"REFRESH_INTERVAL": 0}}, resilience=resilience):
        result = conf.connection_options("default")
    assert result.cluster == ClusterRefreshConfig(interval=0, min_interval=2)
    with configure():
        assert conf.connection_options("default").cluster == ClusterRefreshConfig()


def test_lowercase_options_and_pool_kwargs_reach_the_pool() -> None:
    options = {
        "client_name": "web",
        "socket_keepalive_options": {},
        "parser_class": "ignored.Parser",
        "CONNECTION_POOL_KWARGS": {"client_name": "api", "socket_keepalive": False},
    }
    with configure(options):
        result = conf.connection_options("default")
        kwargs = effective_kwargs()
    assert result.pool_kwargs == (
        ("client_name", "api"),
        ("socket_keepalive", False),
        ("socket_keepalive_options", {}),
    )
    assert kwargs["client_name"] == "api"
    assert kwargs["socket_keepalive"] is False
    assert "parser_class" not in kwargs


def test_read_from_replicas_username_and_password() -> None:
    options = {"READ_FROM_REPLICAS": False, "USERNAME": "app", "PASSWORD": SECRET}
    with configure(options, location=[LOCATION, "redis://127.0.0.1:2/0"]):
        result = conf.connection_options("default")
        kwargs = effective_kwargs()
    assert result.read_from_replicas is False
    assert (result.username, result.password) == ("app", SECRET)
    assert (kwargs["username"], kwargs["password"]) == ("app", SECRET)
    assert SECRET not in repr(result)
    assert SECRET not in str(result)


@pytest.mark.parametrize(
    "options",
    [
        {"password": SECRET},
        {"CONNECTION_POOL_KWARGS": {"password": SECRET}},
        {"PASSWORD": "other", "password": SECRET},
    ],
)
def test_password_given_as_a_pool_argument_is_kept_out_of_repr(options: dict[str, Any]) -> None:
    with configure(options):
        result = conf.connection_options("default")
        kwargs = effective_kwargs()
    assert kwargs["password"] == SECRET
    assert SECRET not in repr(result)


def test_password_in_the_url_wins_over_options() -> None:
    with configure({"PASSWORD": "from-options"}, location=f"redis://:{SECRET}@127.0.0.1:1/0"):
        assert effective_kwargs()["password"] == SECRET


def test_topology_of_an_alias() -> None:
    with configure(location="redis://127.0.0.1:1/3,redis://127.0.0.1:2/3", alias="sessions"):
        topology = conf.topology("sessions")
    assert topology.kind is TopologyKind.STANDALONE
    assert [n.port for n in topology.nodes] == [1, 2]
    assert topology.db == 3


def test_connection_options_refuses_a_bad_cache_option() -> None:
    with (
        configure({"SOCKET_TIMEOUT": -1}),
        pytest.raises(InvalidOption, match=r"\['SOCKET_TIMEOUT'\] = -1"),
    ):
        conf.connection_options("default")


@pytest.mark.parametrize(
    ("resilience", "setting"),
    [
        ({"BREAKER": {"FAILURE_TRESHOLD": 5}}, "REDIS_RESILIENCE['BREAKER']['FAILURE_TRESHOLD']"),
        ({"SOCKET_TIMEOUT": "1"}, "REDIS_RESILIENCE['SOCKET_TIMEOUT']"),
        ({"RETRY": {"ATTEMPTS": 0}}, "REDIS_RESILIENCE['RETRY']['ATTEMPTS']"),
    ],
)
def test_connection_options_refuses_a_bad_global_setting(
    resilience: dict[str, Any], setting: str
) -> None:
    # After override_settings (or any change after startup) the global value is not
    # re-validated by AppConfig.ready(), so building options must not pass it through.
    with configure(resilience=resilience), pytest.raises(ConfigurationError) as info:
        conf.connection_options("default")
    assert setting in str(info.value)


def test_resilient_aliases_skip_other_backends() -> None:
    caches = {
        "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
        "redis": {"BACKEND": BACKEND, "LOCATION": LOCATION},
        "django_redis": {"BACKEND": "django_redis.cache.RedisCache", "LOCATION": LOCATION},
        "sessions": {"BACKEND": BACKEND, "LOCATION": LOCATION},
    }
    with override_settings(CACHES=caches):
        assert conf.resilient_aliases() == ["redis", "sessions"]


# --- validation: one bad setting -------------------------------------------------


BAD_NUMBERS = [-1, 0, True, "0.5", 61, [0.5]]


def _global_cases() -> list[Any]:
    cases: list[Any] = [
        ([("SOCKET_TIMEOUT", 1)], "E001", "REDIS_RESILIENCE", "[('SOCKET_TIMEOUT', 1)]"),
        ({"SOCKET_TIMEOT": 0.5}, "E001", "REDIS_RESILIENCE['SOCKET_TIMEOT']", "0.5"),
        ({"BREAKER": "fast"}, "E002", "REDIS_RESILIENCE['BREAKER']", "'fast'"),
        ({"MAX_CONNECTIONS": 0}, "E002", "REDIS_RESILIENCE['MAX_CONNECTIONS']", "0"),
        ({"PROBE_TIMEOUT": 0}, "E002", "REDIS_RESILIENCE['PROBE_TIMEOUT']", "0"),
        (
            {"HEALTH_CHECK_INTERVAL": -5},
            "E002",
            "REDIS_RESILIENCE['HEALTH_CHECK_INTERVAL']",
            "-5",
        ),
    ]
    for value in BAD_NUMBERS:
        cases.append(
            ({"SOCKET_TIMEOUT": value}, "E002", "REDIS_RESILIENCE['SOCKET_TIMEOUT']", repr(value))
        )
    for group, key, value in _sub_cases():
        setting = f"REDIS_RESILIENCE[{group!r}][{key!r}]"
        cases.append(({group: {key: value}}, "E002", setting, repr(value)))
    return cases


def _sub_cases() -> list[tuple[str, str, Any]]:
    return [
        ("BREAKER", "THRESHOLD", 3),
        ("BREAKER", "FAILURE_THRESHOLD", 0),
        ("BREAKER", "FAILURE_THRESHOLD", 1.5),
        ("BREAKER", "FAILURE_THRESHOLD", True),
        ("BREAKER", "FAILURE_WINDOW", 0),
        ("BREAKER", "RECOVERY_TIMEOUT", -1),
        ("BREAKER", "MAX_RECOVERY_TIMEOUT", "30"),
        ("BREAKER", "JITTER", 1.0),
        ("BREAKER", "JITTER", -0.1),
        ("RETRY", "ATTEMPTS", 0),
        ("RETRY", "ATTEMPTS", 11),
        ("RETRY", "ATTEMPTS", 2.0),
        ("RETRY", "BACKOFF_BASE", -0.1),
        ("RETRY", "BACKOFF_CAP", None),
        ("RETRY", "ON_TIMEOUT", "yes"),
        ("RETRY", "ON_TIMEOUT", 1),
        ("RETRY", "RETRIES", 3),
        ("CLUSTER", "REFRESH_INTERVAL", -1),
        ("CLUSTER", "REFRESH_INTERVAL", "30"),
        ("CLUSTER", "MIN_REFRESH_INTERVAL", 0),
        ("CLUSTER", "MIN_REFRESH_INTERVAL", None),
        ("CLUSTER", "INTERVAL", 5),
    ]


@pytest.mark.parametrize(("resilience", "check_id", "setting", "shown"), _global_cases())
def test_bad_global_setting(resilience: Any, check_id: str, setting: str, shown: str) -> None:
    with override_settings(REDIS_RESILIENCE=resilience):
        message = invalid()
    assert f"django_redis_resilience.{check_id}" in message
    assert f"{setting} = {shown}:" in message


def _option_cases() -> list[Any]:
    cases: list[Any] = [
        ({"SOCKET_TIMEOT": 0.5}, "E004", f"{OPTS}['SOCKET_TIMEOT']", "0.5"),
        ({"Socket_Timeout": 0.5}, "E004", f"{OPTS}['Socket_Timeout']", "0.5"),
        ({"BREAKER": "fast"}, "E004", f"{OPTS}['BREAKER']", "'fast'"),
        ({"RETRY": 3}, "E004", f"{OPTS}['RETRY']", "3"),
        ({"MAX_CONNECTIONS": 0}, "E004", f"{OPTS}['MAX_CONNECTIONS']", "0"),
        ({"MAX_CONNECTIONS": 2.5}, "E004", f"{OPTS}['MAX_CONNECTIONS']", "2.5"),
        ({"READ_FROM_REPLICAS": "yes"}, "E004", f"{OPTS}['READ_FROM_REPLICAS']", "'yes'"),
        ({"USERNAME": 5}, "E004", f"{OPTS}['USERNAME']", "5"),
        ({"CONNECTION_POOL_KWARGS": "x"}, "E004", f"{OPTS}['CONNECTION_POOL_KWARGS']", "'***'"),
        ({"SOCKET_CONNECT_TIMEOUT": 0}, "E004", f"{OPTS}['SOCKET_CONNECT_TIMEOUT']", "0"),
    ]
    for value in BAD_NUMBERS:
        cases.append(({"SOCKET_TIMEOUT": value}, "E004", f"{OPTS}['SOCKET_TIMEOUT']", repr(value)))
    for group, key, value in _sub_cases():
        cases.append(({group: {key: value}}, "E004", f"{OPTS}[{group!r}][{key!r}]", repr(value)))
    for key in ("retry", "retry_on_timeout", "retry_on_error", "connection_class"):
        setting = f"{OPTS}['CONNECTION_POOL_KWARGS'][{key!r}]"
        cases.append(({"CONNECTION_POOL_KWARGS": {key: None}}, "E005", setting, "None"))
    # Django's RedisCache passes lowercase OPTIONS to the pool: the same keys are refused.
    cases.append(({"retry_on_timeout": True}, "E005", f"{OPTS}['retry_on_timeout']", "True"))
    # The cache backend's own options.
    for key, value in (
        ("SERIALIZER", "x.Y"),
        ("COMPRESSOR", "django_redis.compressors.nope.Nope"),
        ("DEGRADED_COUNTERS", "maybe"),
        ("RECOVERY", "flushdb"),
        ("CLEAR_FLUSHES_DB", "yes"),
        ("IGNORE_EXCEPTIONS", 1),
        ("FALLBACK", 3),
        ("FALLBACK", "nope"),
        ("FALLBACK", "default"),
        ("FALLBACK", "django.core.cache.backends.nope.NopeCache"),
    ):
        cases.append(({key: value}, "E004", f"{OPTS}[{key!r}]", repr(value)))
    return cases


@pytest.mark.parametrize(("options", "check_id", "setting", "shown"), _option_cases())
def test_bad_cache_option(options: Any, check_id: str, setting: str, shown: str) -> None:
    with configure(options):
        message = invalid()
    assert f"django_redis_resilience.{check_id}" in message
    assert f"{setting} = {shown}:" in message


def test_unknown_option_hint_lists_the_known_ones() -> None:
    with configure({"SOCKET_TIMEOT": 0.5}):
        message = invalid()
    assert "is not a known option" in message
    assert "SOCKET_TIMEOUT" in message.split("Hint:")[1]


def test_options_not_a_dict() -> None:
    with configure([("SOCKET_TIMEOUT", 1)]):
        message = invalid()
    assert f"django_redis_resilience.E004: {OPTS} = [('SOCKET_TIMEOUT', 1)]: must be a dict" in (
        message
    )


def test_error_names_the_alias() -> None:
    with configure({"SOCKET_TIMEOUT": -1}, alias="sessions"):
        message = invalid()
    assert "CACHES['sessions']['OPTIONS']['SOCKET_TIMEOUT'] = -1" in message


def test_bad_password_type_is_not_shown() -> None:
    with configure({"PASSWORD": 918273}):
        message = invalid()
    assert "django_redis_resilience.E004" in message
    assert f"{OPTS}['PASSWORD'] = '***': must be a string" in message
    assert "918273" not in message


@pytest.mark.parametrize(
    "location",
    [
        f"redis://:{SECRET}@127.0.0.1:port/0",
        f"redis://user:{SECRET}@127.0.0.1:1/zero",
        f"rediss://user:{SECRET}@127.0.0.1:1/0?password={SECRET}",
        f"redis://u:{SECRET}@127.0.0.1:1/0,redis://u:{SECRET}@127.0.0.1:x/0",
        [f"redis://:{SECRET}@127.0.0.1:1/0", f"redis://:{SECRET}@127.0.0.1:70000/0"],
        [f"redis://:{SECRET}@127.0.0.1:1/0", 6379],
        f"redis://user:ab/{SECRET}@127.0.0.1:1/0",
    ],
)
def test_invalid_location_masks_the_password(location: Any) -> None:
    with configure(location=location):
        with pytest.raises(InvalidLocation) as info:
            conf.validate()
        message = str(info.value)
    assert message.startswith("django_redis_resilience.E003: CACHES['default']['LOCATION'] = ")
    assert SECRET not in message
    assert "***" in message


@pytest.mark.parametrize(
    ("location", "reason"),
    [
        ("http://127.0.0.1:1/0", "scheme 'http'"),
        ("", "empty"),
        (42, "expected a URL string"),
        ({"host": "127.0.0.1", "port": 1}, "expected a URL string"),
        ("redis+sentinel://127.0.0.1:1", "service name is missing"),
        ("redis+cluster://127.0.0.1:1?db=2", "only has database 0"),
    ],
)
def test_invalid_location(location: Any, reason: str) -> None:
    with configure(location=location):
        message = invalid()
    assert f"django_redis_resilience.E003: CACHES['default']['LOCATION'] = {location!r}: " in (
        message
    )
    assert reason in message


def test_missing_location() -> None:
    with override_settings(CACHES={"default": {"BACKEND": BACKEND}}):
        message = invalid()
    assert "E003: CACHES['default']['LOCATION'] = '': it is empty" in message


# --- validation: several problems, valid configurations -------------------------------


def test_all_errors_are_reported_at_once() -> None:
    resilience = {"SOCKET_TIMEOT": 0.5, "BREAKER": {"JITTER": 1.0}}
    options = {"SOCKET_TIMEOUT": -1, "CONNECTION_POOL_KWARGS": {"retry": None}}
    with configure(options, resilience=resilience, location=f"redis://:{SECRET}@127.0.0.1:x"):
        with pytest.raises(InvalidOption) as info:
            conf.validate()
        message = str(info.value)
    assert message.startswith("5 invalid settings for django_redis_resilience:\n")
    for expected in (
        "E001: REDIS_RESILIENCE['SOCKET_TIMEOT'] = 0.5",
        "E002: REDIS_RESILIENCE['BREAKER']['JITTER'] = 1.0",
        "E003: CACHES['default']['LOCATION'] = 'redis://:***@127.0.0.1:x'",
        f"E004: {OPTS}['SOCKET_TIMEOUT'] = -1",
        f"E005: {OPTS}['CONNECTION_POOL_KWARGS']['retry'] = None",
    ):
        assert f"  - django_redis_resilience.{expected}:" in message
    assert SECRET not in message


def test_errors_in_several_caches() -> None:
    caches = {
        "default": {"BACKEND": BACKEND, "LOCATION": LOCATION, "OPTIONS": {"MAX_CONNECTIONS": 0}},
        "sessions": {"BACKEND": BACKEND, "LOCATION": "nope://"},
    }
    with override_settings(CACHES=caches):
        message = invalid()
    assert "2 invalid settings" in message
    assert "CACHES['default']['OPTIONS']['MAX_CONNECTIONS'] = 0" in message
    assert "CACHES['sessions']['LOCATION'] = 'nope://'" in message


VALID_OPTIONS: list[dict[str, Any]] = [
    {},
    {"SOCKET_TIMEOUT": None},
    {"SOCKET_CONNECT_TIMEOUT": None, "SOCKET_TIMEOUT": 60, "MAX_CONNECTIONS": None},
    {"SOCKET_TIMEOUT": 0.001, "HEALTH_CHECK_INTERVAL": 0, "PROBE_TIMEOUT": 0.001},
    {
        "BREAKER": {
            "FAILURE_THRESHOLD": 1,
            "FAILURE_WINDOW": 0.5,
            "RECOVERY_TIMEOUT": 1,
            "MAX_RECOVERY_TIMEOUT": 60,
            "JITTER": 0,
        },
        "RETRY": {"ATTEMPTS": 10, "BACKOFF_BASE": 0, "BACKOFF_CAP": 1, "ON_TIMEOUT": True},
    },
    {"RETRY": {"ATTEMPTS": 1}, "BREAKER": {"JITTER": 0.99}},
    {"PASSWORD": None, "USERNAME": None},
    {"PASSWORD": SECRET, "USERNAME": "app", "READ_FROM_REPLICAS": False},
    {"CONNECTION_POOL_KWARGS": {"client_name": "web"}, "socket_keepalive": True},
    {"CLIENT_CLASS": "django_redis.client.DefaultClient", "PARSER_CLASS": "x"},
    {
        "SERIALIZER": "django_redis.serializers.json.JSONSerializer",
        "COMPRESSOR": "django_redis.compressors.zlib.ZlibCompressor",
        "IGNORE_EXCEPTIONS": True,
    },
    {"FALLBACK": None, "DEGRADED_COUNTERS": "local", "RECOVERY": "invalidate_namespace"},
    {"FALLBACK": "django.core.cache.backends.locmem.LocMemCache", "CLEAR_FLUSHES_DB": True},
]


@pytest.mark.parametrize("options", VALID_OPTIONS)
def test_valid_options_do_not_raise(options: dict[str, Any]) -> None:
    with configure(options):
        conf.validate()
        conf.connection_options("default")
        assert not [p for p in conf.problems() if p.level == "error"]


@pytest.mark.parametrize(
    "location",
    [
        LOCATION,
        "rediss://127.0.0.1:1/0?ssl_cert_reqs=none",
        "unix:///tmp/does-not-exist.sock?db=1",
        [LOCATION, "redis://127.0.0.1:2/0"],
        f"redis://user:{SECRET}@127.0.0.1:1/0",
    ],
)
def test_valid_locations_do_not_raise(location: Any) -> None:
    with configure(location=location):
        conf.validate()


def test_valid_global_settings_do_not_raise() -> None:
    resilience = {
        "SOCKET_CONNECT_TIMEOUT": 0.1,
        "SOCKET_TIMEOUT": None,
        "HEALTH_CHECK_INTERVAL": 10,
        "MAX_CONNECTIONS": 100,
        "PROBE_TIMEOUT": 1,
        "BREAKER": {"FAILURE_THRESHOLD": 10},
        "RETRY": {"ON_TIMEOUT": False},
    }
    with configure(resilience=resilience):
        conf.validate()
        assert conf.connection_options("default").socket_timeout is None


def test_socket_timeout_none_is_only_a_warning() -> None:
    with configure({"SOCKET_TIMEOUT": None}, resilience={"SOCKET_CONNECT_TIMEOUT": None}):
        conf.validate()
        problems = conf.problems()
    assert [(p.id, p.level, p.setting) for p in problems] == [
        (
            "django_redis_resilience.W002",
            "warning",
            "REDIS_RESILIENCE['SOCKET_CONNECT_TIMEOUT']",
        ),
        ("django_redis_resilience.W002", "warning", f"{OPTS}['SOCKET_TIMEOUT']"),
    ]


def test_non_resilient_caches_are_ignored() -> None:
    caches = {
        "default": {
            "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
            "OPTIONS": {"SOCKET_TIMEOUT": -1, "MAX_ENTRIES": 10},
        },
        "django_redis": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": "not a url",
            "OPTIONS": {"CLIENT_CLASS": "x", "SOCKET_TIMEOUT": "slow", "retry": None},
        },
        "django": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": f"redis://:{SECRET}@127.0.0.1:port",
        },
    }
    with override_settings(CACHES=caches):
        conf.validate()
        assert conf.problems() == []


# --- Sentinel ----------------------------------------------------------------------


def test_django_redis_sentinels_option_builds_a_sentinel_topology() -> None:
    options = {
        "SENTINELS": [("127.0.0.1", 26379), ("127.0.0.2", 26380)],
        "SENTINEL_KWARGS": {"password": "sentinel-secret"},
    }
    with configure(options, location=f"redis://:{SECRET}@mymaster/3"):
        conf.validate()
        topology = conf.topology("default")
        result = conf.connection_options("default")
    assert topology.kind.value == "sentinel"
    assert topology.service_name == "mymaster"
    assert topology.db == 3
    assert [(n.host, n.port) for n in topology.nodes] == [
        ("127.0.0.1", 26379),
        ("127.0.0.2", 26380),
    ]
    assert topology.nodes[0].password == SECRET
    assert dict(result.sentinel_kwargs) == {"password": "sentinel-secret"}
    assert "sentinel-secret" not in repr(result)
    assert SECRET not in topology.display


@pytest.mark.parametrize(
    ("options", "location", "text"),
    [
        ({"SENTINELS": "127.0.0.1:26379"}, "redis://mymaster/0", "(host, port) pairs"),
        ({"SENTINELS": [("127.0.0.1", "26379")]}, "redis://mymaster/0", "(host, port) pairs"),
        ({"SENTINELS": [("127.0.0.1", 26379)]}, "mymaster", "service_name"),
        ({"SENTINELS": [("127.0.0.1", 26379)], "SENTINEL_KWARGS": "pw"}, "redis://m/0", "dict"),
    ],
)
def test_invalid_sentinel_options(options: dict[str, Any], location: str, text: str) -> None:
    with configure(options, location=location):
        assert text in invalid()


# --- secrets in configuration errors ------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "shown"),
    [
        # A misspelt or unknown option named for a secret.
        ({"REDIS_PASSWORD": SECRET}, f"{OPTS}['REDIS_PASSWORD'] = '***': is not a known option"),
        ({"AUTH_TOKEN": SECRET}, f"{OPTS}['AUTH_TOKEN'] = '***': is not a known option"),
        # Connection arguments that are not a dict: a string or pairs may hold the password.
        (
            {"SENTINEL_KWARGS": f"password={SECRET}"},
            f"{OPTS}['SENTINEL_KWARGS'] = '***': must be a dict",
        ),
        (
            {"SENTINEL_KWARGS": [("password", SECRET)]},
            f"{OPTS}['SENTINEL_KWARGS'] = '***': must be a dict",
        ),
        (
            {"CONNECTION_POOL_KWARGS": f"password={SECRET}"},
            f"{OPTS}['CONNECTION_POOL_KWARGS'] = '***': must be a dict",
        ),
        # A TLS option on a location without TLS: a key's passphrase.
        ({"ssl_password": SECRET}, f"{OPTS}: ssl_password = '***': is a TLS option"),
        # A dict that holds a secret next to a bad value.
        (
            {"CONNECTION_POOL_KWARGS": {"password": SECRET, "retry": None}},
            f"{OPTS}['CONNECTION_POOL_KWARGS']['retry'] = None: cannot be set",
        ),
    ],
)
def test_an_error_shows_no_secret_from_a_value_named_for_one(
    options: dict[str, Any], shown: str
) -> None:
    with configure(options):
        message = invalid()
    assert SECRET not in message
    assert shown in message


def test_a_global_setting_named_for_a_secret_is_masked() -> None:
    with override_settings(REDIS_RESILIENCE={"PASSWORD": SECRET, "HEALTH": {"API_TOKEN": SECRET}}):
        message = invalid()
    assert SECRET not in message
    assert "REDIS_RESILIENCE['PASSWORD'] = '***': is not a known setting" in message
    assert "REDIS_RESILIENCE['HEALTH']['API_TOKEN'] = '***': is not a known key" in message


def test_a_bad_sentinels_list_shows_no_secret_inside_it() -> None:
    options = {"SENTINELS": [("127.0.0.1", 26379, {"password": SECRET})]}
    with configure(options, location="redis://mymaster/0"):
        assert SECRET not in invalid()
        with pytest.raises(InvalidLocation) as info:
            conf.topology("default")  # what using the cache raises
    message = str(info.value)
    assert SECRET not in message
    assert "{'password': '***'}" in message
    assert "(host, port) pairs" in message


@pytest.mark.parametrize(
    "location",
    [
        f"redis://:Ab3/{SECRET}@mymaster/0",  # a '/' in the password
        f"redis://:Ab3@{SECRET}/x@mymaster/0",  # an '@' and a '/' in it
    ],
)
def test_django_redis_sentinel_form_with_an_unencoded_password_is_refused_masked(
    location: str,
) -> None:
    with configure({"SENTINELS": [("127.0.0.1", 26379)]}, location=location):
        message = invalid()
    assert SECRET not in message
    assert "percent-encode" in message


# --- the settings schema ----------------------------------------------------------------


def test_conf_imports_no_feature_package() -> None:
    """conf reads the schema; the features register their sections, not the other way round."""
    code = (
        "import sys, django_redis_resilience.conf\n"
        "features = ('cache', 'connection', 'health', 'locks', 'ratelimiting')\n"
        "print(sorted(f for f in features if f'django_redis_resilience.{f}' in sys.modules))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == "[]"


def test_settings_read_without_django_setup_are_validated_in_full() -> None:
    """A script that builds a cache without ``django.setup()`` never imports the checks: the
    schema imports the features on its first read, so no section goes unvalidated."""
    code = (
        "from django.conf import settings\n"
        f"settings.configure(CACHES={{'default': {{'BACKEND': {BACKEND!r}, "
        f"'LOCATION': {LOCATION!r}}}}}, "
        "REDIS_RESILIENCE={'HEALTH': {'TIMEOUT': 0}, 'RATELIMIT': {'CACHE': 'nope'}})\n"
        "from django_redis_resilience.conf import conf\n"
        "print(sorted(p.setting for p in conf.problems()))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == str(
        ["REDIS_RESILIENCE['HEALTH']['TIMEOUT']", "REDIS_RESILIENCE['RATELIMIT']['CACHE']"]
    )


def test_every_feature_section_is_registered_once_checks_are_imported() -> None:
    assert set(_schema.sections()) == {
        "connection", "global", "options", "ignored", "BREAKER", "RETRY", "CLUSTER",
        "HEALTH", "RATELIMIT", "RULES", "STAMPEDE", "NEAR_CACHE",
    }  # fmt: skip


def test_an_unregistered_section_is_an_error_not_an_empty_section() -> None:
    with pytest.raises(LookupError, match="no feature declares the settings section 'NO_SUCH'"):
        _schema.section("NO_SUCH")


def test_a_section_name_cannot_be_taken_twice() -> None:
    with pytest.raises(ValueError, match="HEALTH"):
        _schema.register(_schema.Section("HEALTH", (_schema.Setting("X"),)))


def test_a_default_read_from_the_schema_is_a_fresh_copy() -> None:
    rules = _schema.section("RATELIMIT").read({}, "RULES")
    rules.append({"PATH": "^/"})
    assert _schema.section("RATELIMIT").read({}, "RULES") == []
    assert _schema.section("RATELIMIT").read({"RULES": rules}, "RULES") is rules


def test_runtime_defaults_come_from_the_schema() -> None:
    with configure():
        options = conf.connection_options("default")
    assert (
        options.breaker.failure_threshold == _schema.section("BREAKER")["FAILURE_THRESHOLD"].default
    )
    assert options.socket_timeout == _schema.section("connection")["SOCKET_TIMEOUT"].default
    assert conf.HEALTH["CACHE_SECONDS"] == _schema.section("HEALTH")["CACHE_SECONDS"].default
