"""``AppConfig.ready()``: a bad setting stops the process; a good one costs no network I/O."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import pytest
from django.apps import AppConfig, apps
from django.test import override_settings

from django_redis_resilience.connection import _registry, get_registry, reset_registry
from django_redis_resilience.exceptions import ConfigurationError

BACKEND = "django_redis_resilience.cache.ResilientRedisCache"
LOCATION = "redis://127.0.0.1:1/0"  # nothing listens on port 1


@pytest.fixture
def app_config() -> Iterator[AppConfig]:
    """A fresh config of the app; the manager hooks its ready() adds are undone afterwards."""
    installed = apps.get_app_config("django_redis_resilience")
    saved_hooks = list(_registry._hooks)
    yield type(installed)(installed.name, installed.module)
    _registry._hooks[:] = saved_hooks
    reset_registry()


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Record (and refuse) every attempt to open a connection."""
    attempts: list[Any] = []

    def refuse(*args: Any, **kwargs: Any) -> Any:
        attempts.append(args)
        raise OSError("network I/O is not allowed here")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    return attempts


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        (
            {"REDIS_RESILIENCE": {"SOCKET_TIMEOUT": -1}},
            "REDIS_RESILIENCE['SOCKET_TIMEOUT'] = -1",
        ),
        (
            {
                "CACHES": {
                    "default": {
                        "BACKEND": BACKEND,
                        "LOCATION": LOCATION,
                        "OPTIONS": {"RETRY": {"ATTEMPTS": 0}},
                    }
                }
            },
            "CACHES['default']['OPTIONS']['RETRY']['ATTEMPTS'] = 0",
        ),
        (
            {"CACHES": {"sessions": {"BACKEND": BACKEND, "LOCATION": "redis://:pw9@h:x"}}},
            "CACHES['sessions']['LOCATION'] = 'redis://:***@h:x'",
        ),
    ],
)
def test_ready_refuses_a_bad_setting(
    app_config: AppConfig, overrides: dict[str, Any], named: str
) -> None:
    with override_settings(**overrides), pytest.raises(ConfigurationError) as info:
        app_config.ready()
    assert named in str(info.value)
    assert "pw9" not in str(info.value)


def test_ready_with_good_settings_builds_nothing(
    app_config: AppConfig, no_network: list[Any]
) -> None:
    caches = {
        "default": {"BACKEND": BACKEND, "LOCATION": LOCATION},
        "replicated": {
            "BACKEND": BACKEND,
            "LOCATION": [LOCATION, "redis://127.0.0.1:2/0"],
            "OPTIONS": {"SOCKET_TIMEOUT": None, "CLIENT_CLASS": "x"},  # warnings only
        },
    }
    with override_settings(CACHES=caches, REDIS_RESILIENCE={"SOCKET_CONNECT_TIMEOUT": 0.1}):
        app_config.ready()
        assert get_registry().managers() == []
    assert no_network == []


def test_ready_with_the_default_test_settings(app_config: AppConfig, no_network: list[Any]) -> None:
    app_config.ready()
    assert get_registry().managers() == []
    assert no_network == []


def test_ready_is_idempotent(app_config: AppConfig) -> None:
    hooks = list(_registry._hooks)
    app_config.ready()
    app_config.ready()
    assert _registry._hooks == hooks  # signals would otherwise fire twice per transition
