"""System checks: stable IDs, the right level, and a message that names the setting."""

from __future__ import annotations

from typing import Any

import pytest
from django.core import checks as django_checks
from django.core.checks.registry import registry
from django.test import override_settings

from django_redis_resilience import checks
from django_redis_resilience.conf import conf
from django_redis_resilience.exceptions import ConfigurationError

BACKEND = "django_redis_resilience.cache.ResilientRedisCache"
LOCATION = "redis://127.0.0.1:1/0"
OPTS = "CACHES['default']['OPTIONS']"


def caches(options: dict[str, Any] | None = None, location: Any = LOCATION) -> dict[str, Any]:
    return {"default": {"BACKEND": BACKEND, "LOCATION": location, "OPTIONS": options or {}}}


def only(messages: list[django_checks.CheckMessage]) -> django_checks.CheckMessage:
    assert len(messages) == 1, messages
    return messages[0]


def test_check_is_registered_with_the_caches_tag() -> None:
    assert checks.check_settings in registry.get_checks()
    assert django_checks.Tags.caches in checks.check_settings.tags  # type: ignore[attr-defined]


def test_clean_configuration_has_no_messages() -> None:
    options = {
        "SOCKET_TIMEOUT": 0.5,
        "BREAKER": {"FAILURE_THRESHOLD": 5},
        "RETRY": {"ATTEMPTS": 2},
        "PASSWORD": "pw",
        "CONNECTION_POOL_KWARGS": {"client_name": "web"},
    }
    with override_settings(
        CACHES=caches(options, location=[LOCATION, "redis://127.0.0.1:2/0"]),
        REDIS_RESILIENCE={
            "SOCKET_CONNECT_TIMEOUT": 0.1,
            "RATELIMIT": {"TRUSTED_PROXIES": ["10.0.0.0/8", "2001:db8::7", " 192.0.2.1/24 "]},
        },
    ):
        assert checks.check_settings() == []


def test_default_test_settings_have_no_messages() -> None:
    assert checks.check_settings() == []


@pytest.mark.parametrize("option", ["CLIENT_CLASS", "PARSER_CLASS", "CONNECTION_POOL_CLASS"])
def test_w001_django_redis_option_without_effect(option: str) -> None:
    with override_settings(CACHES=caches({option: "django_redis.something"})):
        message = only(checks.check_settings())
    assert isinstance(message, django_checks.Warning)
    assert message.id == "django_redis_resilience.W001"
    assert message.level == django_checks.WARNING
    assert f"{OPTS}[{option!r}]" in message.msg
    assert message.hint


@pytest.mark.parametrize(
    ("overrides", "setting"),
    [
        ({"CACHES": caches({"SOCKET_TIMEOUT": None})}, f"{OPTS}['SOCKET_TIMEOUT']"),
        ({"CACHES": caches({"SOCKET_CONNECT_TIMEOUT": None})}, f"{OPTS}['SOCKET_CONNECT_TIMEOUT']"),
        ({"REDIS_RESILIENCE": {"SOCKET_TIMEOUT": None}}, "REDIS_RESILIENCE['SOCKET_TIMEOUT']"),
    ],
)
def test_w002_socket_timeout_none(overrides: dict[str, Any], setting: str) -> None:
    with override_settings(**overrides):
        message = only(checks.check_settings())
    assert isinstance(message, django_checks.Warning)
    assert message.id == "django_redis_resilience.W002"
    assert message.level == django_checks.WARNING
    assert f"{setting} = None" in message.msg


_PROXIES = "REDIS_RESILIENCE['RATELIMIT']['TRUSTED_PROXIES']"


@pytest.mark.parametrize(
    ("resilience", "check_id", "setting"),
    [
        ("fast", "E001", "REDIS_RESILIENCE"),
        ({"SOCKET_TIMEOT": 1}, "E001", "REDIS_RESILIENCE['SOCKET_TIMEOT']"),
        ({"SOCKET_TIMEOUT": 0}, "E002", "REDIS_RESILIENCE['SOCKET_TIMEOUT']"),
        ({"RETRY": {"ATTEMPTS": 11}}, "E002", "REDIS_RESILIENCE['RETRY']['ATTEMPTS']"),
        ({"RATELIMIT": {"TRUSTED_PROXIES": "10.0.0.0/8"}}, "E002", _PROXIES),  # not a list
        ({"RATELIMIT": {"TRUSTED_PROXIES": ["10.0.0.0/33"]}}, "E002", _PROXIES),
        ({"RATELIMIT": {"TRUSTED_PROXIES": ["proxy.internal"]}}, "E002", _PROXIES),
        ({"RATELIMIT": {"TRUSTED_PROXIES": [167772160]}}, "E002", _PROXIES),
        ({"RATELIMIT": {"FLEET": "no"}}, "E002", "REDIS_RESILIENCE['RATELIMIT']['FLEET']"),
        ({"RATELIMIT": {"TRUSTED_PROXIES": ["10.0.0.0/8"], "TRUSTED_PROXY_HOPS": 1}}, "E002",
         _PROXIES),
    ],
)  # fmt: skip
def test_e001_e002_global_settings(resilience: Any, check_id: str, setting: str) -> None:
    with override_settings(REDIS_RESILIENCE=resilience):
        message = only(checks.check_settings())
    assert isinstance(message, django_checks.Error)
    assert message.id == f"django_redis_resilience.{check_id}"
    assert message.level == django_checks.ERROR
    assert message.msg.startswith(f"{setting} = ")


@pytest.mark.parametrize(
    ("location", "shown"),
    [
        ("redis://127.0.0.1:port/0", "'redis://127.0.0.1:port/0'"),
        ("redis://:hunter2@127.0.0.1:port/0", "'redis://:***@127.0.0.1:port/0'"),
        ("redis+cluster://:hunter2@127.0.0.1:1?db=3", "'redis+cluster://:***@127.0.0.1:1?db=3'"),
        (42, "42"),
    ],
)
def test_e003_invalid_location(location: Any, shown: str) -> None:
    with override_settings(CACHES=caches(location=location)):
        message = only(checks.check_settings())
    assert isinstance(message, django_checks.Error)
    assert message.id == "django_redis_resilience.E003"
    assert message.level == django_checks.ERROR
    assert message.msg.startswith(f"CACHES['default']['LOCATION'] = {shown}: ")
    assert "hunter2" not in message.msg


@pytest.mark.parametrize(
    ("options", "setting"),
    [
        ({"SOCKET_TIMEOUT": -1}, f"{OPTS}['SOCKET_TIMEOUT'] = -1"),
        ({"SOCKET_TIMEOT": 1}, f"{OPTS}['SOCKET_TIMEOT'] = 1"),
        ({"BREAKER": {"JITTER": 1.0}}, f"{OPTS}['BREAKER']['JITTER'] = 1.0"),
        ({"READ_FROM_REPLICAS": "yes"}, f"{OPTS}['READ_FROM_REPLICAS'] = 'yes'"),
        ({"PASSWORD": 123456}, f"{OPTS}['PASSWORD'] = '***'"),
    ],
)
def test_e004_bad_option(options: dict[str, Any], setting: str) -> None:
    with override_settings(CACHES=caches(options)):
        message = only(checks.check_settings())
    assert isinstance(message, django_checks.Error)
    assert message.id == "django_redis_resilience.E004"
    assert message.level == django_checks.ERROR
    assert message.msg.startswith(f"{setting}: ")
    assert "123456" not in message.msg


def test_e004_options_not_a_dict() -> None:
    with override_settings(
        CACHES={"default": {"BACKEND": BACKEND, "LOCATION": LOCATION, "OPTIONS": "fast"}}
    ):
        message = only(checks.check_settings())
    assert message.id == "django_redis_resilience.E004"
    assert message.msg.startswith(f"{OPTS} = 'fast': must be a dict")


@pytest.mark.parametrize(
    ("options", "setting"),
    [
        ({"CONNECTION_POOL_KWARGS": {"retry": None}}, f"{OPTS}['CONNECTION_POOL_KWARGS']['retry']"),
        (
            {"CONNECTION_POOL_KWARGS": {"connection_class": "x.Y"}},
            f"{OPTS}['CONNECTION_POOL_KWARGS']['connection_class']",
        ),
        ({"retry_on_error": []}, f"{OPTS}['retry_on_error']"),
    ],
)
def test_e005_pool_argument_that_allows_double_application(
    options: dict[str, Any], setting: str
) -> None:
    with override_settings(CACHES=caches(options)):
        message = only(checks.check_settings())
    assert isinstance(message, django_checks.Error)
    assert message.id == "django_redis_resilience.E005"
    assert message.level == django_checks.ERROR
    assert message.msg.startswith(f"{setting} = ")
    assert "RETRY" in (message.hint or "")


NAMESPACE = "tests.cache.test_namespace"


@pytest.mark.parametrize(
    ("key_function", "prefix", "why"),
    [
        (f"{NAMESPACE}.digest_of_everything", "site", "do not all start with KEY_PREFIX"),
        (f"{NAMESPACE}.digest_after_prefix", "", "KEY_PREFIX is empty"),
    ],
)
def test_e006_key_function_whose_keys_clear_cannot_find(
    key_function: str, prefix: str, why: str
) -> None:
    setting = caches()
    setting["default"].update(KEY_FUNCTION=key_function, KEY_PREFIX=prefix)
    with override_settings(CACHES=setting):
        message = only(checks.check_settings())
        with pytest.raises(ConfigurationError, match="E006"):
            conf.validate()  # at startup too: system checks do not run under every server
    assert isinstance(message, django_checks.Error)
    assert message.id == "django_redis_resilience.E006"
    assert message.msg.startswith(
        f"CACHES['default']['KEY_FUNCTION'] = {key_function!r}: makes keys that clear() "
        "cannot find: "
    )
    assert why in message.msg
    assert "old values would come back" in message.msg
    assert "KEY_PREFIX" in (message.hint or "")


@pytest.mark.parametrize(
    ("key_function", "prefix"),
    [
        ("django.core.cache.backends.base.default_key_func", ""),
        (f"{NAMESPACE}.version_first", ""),  # one fixed form around the key and the version
        (f"{NAMESPACE}.digest_after_prefix", "site"),  # every key starts with KEY_PREFIX
    ],
)
def test_key_functions_whose_keys_clear_finds_pass(key_function: str, prefix: str) -> None:
    setting = caches()
    setting["default"].update(KEY_FUNCTION=key_function, KEY_PREFIX=prefix)
    with override_settings(CACHES=setting):
        assert checks.check_settings() == []


def test_every_problem_is_reported() -> None:
    options = {"CLIENT_CLASS": "x", "SOCKET_TIMEOUT": None, "MAX_CONNECTIONS": 0}
    with override_settings(
        CACHES=caches(options, location="redis://127.0.0.1:x"),
        REDIS_RESILIENCE={"SOCKET_TIMEOT": 1},
    ):
        ids = sorted(m.id for m in checks.check_settings())
    assert ids == [
        "django_redis_resilience.E001",
        "django_redis_resilience.E003",
        "django_redis_resilience.E004",
        "django_redis_resilience.W001",
        "django_redis_resilience.W002",
    ]


def test_other_backends_are_not_checked() -> None:
    with override_settings(
        CACHES={
            "default": {
                "BACKEND": "django_redis.cache.RedisCache",
                "LOCATION": "redis://127.0.0.1:x",
                "OPTIONS": {"CLIENT_CLASS": "x", "SOCKET_TIMEOUT": None},
            }
        }
    ):
        assert checks.check_settings() == []


SESSIONS_IN_CACHE = "django.contrib.sessions.backends.cache"


@pytest.mark.parametrize(
    ("options", "extra", "warned"),
    [
        ({}, {}, True),  # the default fallback: private, in-process
        (
            {"FALLBACK": "local"},
            {"local": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}},
            True,
        ),
        (
            {"FALLBACK": "db"},
            {"db": {"BACKEND": "django.core.cache.backends.db.DatabaseCache", "LOCATION": "t"}},
            False,
        ),
        ({"FALLBACK": None}, {}, False),
    ],
)
def test_w004_sessions_only_in_a_cache_with_an_in_process_fallback(
    options: dict[str, Any], extra: dict[str, Any], warned: bool
) -> None:
    settings = {**caches(options), **extra}
    with override_settings(CACHES=settings, SESSION_ENGINE=SESSIONS_IN_CACHE):
        messages = [m for m in checks.check_settings() if m.id.endswith("W004")]
    assert bool(messages) is warned
    if warned:
        assert messages[0].level == django_checks.WARNING
        assert "cached_db" in messages[0].hint
    with override_settings(
        CACHES=settings, SESSION_ENGINE="django.contrib.sessions.backends.cached_db"
    ):
        assert not [m for m in checks.check_settings() if m.id.endswith("W004")]


@pytest.mark.parametrize(
    ("option", "value", "shown"),
    [
        (
            "CONNECTION_POOL_CLASS_KWARGS",
            {"password": "hunter2", "max_connections": 5},
            "{'password': '***', 'max_connections': 5}",
        ),
        ("REDIS_CLIENT_KWARGS", {"username": "app", "password": "hunter2"},
         "{'username': 'app', 'password': '***'}"),
        ("CLIENT_KWARGS", "password=hunter2", "'***'"),
    ],
)  # fmt: skip
def test_w001_shows_no_password_from_an_ignored_option(option: str, value: Any, shown: str) -> None:
    with override_settings(CACHES=caches({option: value})):
        message = only(checks.check_settings())
    assert message.id == "django_redis_resilience.W001"
    assert message.msg.startswith(f"{OPTS}[{option!r}] = {shown}: has no effect")
    assert "hunter2" not in message.msg
