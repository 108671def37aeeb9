"""The exception hierarchy that callers write ``except`` clauses against."""

from __future__ import annotations

import inspect

import pytest
import redis.exceptions
from django.core.exceptions import ImproperlyConfigured

from django_redis_resilience import exceptions
from django_redis_resilience.connection import ErrorKind
from django_redis_resilience.exceptions import (
    BreakerOpen,
    ConfigurationError,
    InvalidLocation,
    InvalidOption,
    LockError,
    LockLost,
    LockNotAcquired,
    RedisAuthenticationError,
    RedisResilienceError,
    RedisTLSError,
    RedisUnavailable,
)

ALL = [getattr(exceptions, name) for name in exceptions.__all__]
UNAVAILABLE = [RedisUnavailable, BreakerOpen, RedisAuthenticationError, RedisTLSError]
CONFIGURATION = [ConfigurationError, InvalidLocation, InvalidOption]
LOCKS = [LockNotAcquired, LockLost]


def test_all_lists_every_exception_class() -> None:
    defined = {
        name
        for name, obj in vars(exceptions).items()
        if inspect.isclass(obj)
        and issubclass(obj, BaseException)
        and obj.__module__ == exceptions.__name__
    }
    assert defined == set(exceptions.__all__)


@pytest.mark.parametrize("cls", ALL, ids=lambda c: c.__name__)
def test_every_exception_is_a_redis_resilience_error(cls: type[Exception]) -> None:
    assert issubclass(cls, RedisResilienceError)


@pytest.mark.parametrize("cls", ALL, ids=lambda c: c.__name__)
def test_every_exception_has_a_one_line_docstring(cls: type[Exception]) -> None:
    doc = cls.__dict__.get("__doc__")
    assert doc
    assert doc.strip()
    assert "\n" not in doc.strip()


@pytest.mark.parametrize("cls", UNAVAILABLE, ids=lambda c: c.__name__)
def test_unavailable_errors_are_caught_as_redis_connection_errors(
    cls: type[RedisUnavailable],
) -> None:
    with pytest.raises(redis.exceptions.ConnectionError) as info:
        raise cls("down", kind=ErrorKind.TIMEOUT, endpoint="redis://h:6379/0", alias="default")
    error = info.value
    assert isinstance(error, RedisUnavailable)
    assert isinstance(error, redis.exceptions.RedisError)
    assert (error.kind, error.endpoint, error.alias) == (
        ErrorKind.TIMEOUT,
        "redis://h:6379/0",
        "default",
    )
    assert str(error) == "down"


def test_unavailable_context_defaults() -> None:
    error = BreakerOpen("open")
    assert (error.kind, error.endpoint, error.alias) == (None, "", "")


@pytest.mark.parametrize("cls", [BreakerOpen, RedisAuthenticationError, RedisTLSError])
def test_specific_unavailable_errors_are_redis_unavailable(cls: type[Exception]) -> None:
    assert issubclass(cls, RedisUnavailable)


@pytest.mark.parametrize("cls", CONFIGURATION, ids=lambda c: c.__name__)
def test_configuration_errors_are_improperly_configured(cls: type[Exception]) -> None:
    assert issubclass(cls, ConfigurationError)
    with pytest.raises(ImproperlyConfigured):
        raise cls("bad setting")


@pytest.mark.parametrize("cls", CONFIGURATION + LOCKS + [LockError], ids=lambda c: c.__name__)
def test_non_availability_errors_are_not_redis_errors(cls: type[Exception]) -> None:
    # Code that degrades on ``except redis.ConnectionError`` must not hide these.
    assert not issubclass(cls, redis.exceptions.RedisError)


@pytest.mark.parametrize("cls", LOCKS, ids=lambda c: c.__name__)
def test_lock_errors(cls: type[Exception]) -> None:
    with pytest.raises(LockError):
        raise cls("lock")
    assert not issubclass(cls, ConfigurationError)
