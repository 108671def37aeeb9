"""Every error this app raises, under one root.

``RedisUnavailable`` also subclasses redis-py's ``ConnectionError`` so that code
written against django-redis, which catches redis-py's errors, keeps working.
Errors that the user must see (``WRONGTYPE``, bad arguments, script errors) are
not wrapped: they are raised as redis-py raised them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import redis.exceptions
from django.core.exceptions import ImproperlyConfigured

if TYPE_CHECKING:
    from django_redis_resilience.connection import ErrorKind

__all__ = [
    "BreakerOpen",
    "ConfigurationError",
    "CrossSlotKeys",
    "InvalidLocation",
    "InvalidLock",
    "InvalidOption",
    "InvalidRateLimit",
    "InvalidValue",
    "LockAlreadyHeld",
    "LockError",
    "LockLost",
    "LockNotAcquired",
    "RedisAuthenticationError",
    "RedisResilienceError",
    "RedisTLSError",
    "RedisUnavailable",
    "StaleFence",
]


class RedisResilienceError(Exception):
    """Root of every error raised by django-redis-resilience."""


# --- configuration ---------------------------------------------------------


class ConfigurationError(RedisResilienceError, ImproperlyConfigured):
    """A setting or argument is invalid; raised at startup, before any network I/O."""


class InvalidLocation(ConfigurationError):
    """A cache ``LOCATION`` cannot be understood."""


class InvalidOption(ConfigurationError):
    """A setting in ``REDIS_RESILIENCE`` or a cache's ``OPTIONS`` has a bad value."""


# --- availability ----------------------------------------------------------


class RedisUnavailable(RedisResilienceError, redis.exceptions.ConnectionError):
    """Redis could not serve the command; the caller may degrade."""

    def __init__(
        self,
        message: str,
        *,
        kind: ErrorKind | None = None,
        endpoint: str = "",
        alias: str = "",
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.endpoint = endpoint
        self.alias = alias


class BreakerOpen(RedisUnavailable):
    """The endpoint's circuit breaker is open, so nothing was sent."""


class RedisAuthenticationError(RedisUnavailable):
    """The server refused the credentials (wrong password or user)."""


class RedisTLSError(RedisUnavailable):
    """The TLS handshake failed (certificate, hostname or protocol)."""


# --- values ----------------------------------------------------------------


class InvalidValue(RedisResilienceError, ValueError):
    """A value or argument cannot be written to Redis; nothing was sent."""


class CrossSlotKeys(InvalidValue):
    """The keys of one multi-key command lie in different Redis Cluster slots."""


# --- locks -----------------------------------------------------------------


class LockError(RedisResilienceError):
    """Base class for lock errors."""


class LockNotAcquired(LockError):
    """The lock was busy for longer than the caller agreed to wait."""


class LockLost(LockError):
    """The lease expired or could not be renewed while the lock was held."""


class LockAlreadyHeld(LockError):
    """This thread or task already holds the lock: locks are not reentrant."""


class StaleFence(LockError):
    """A newer holder of the lock already wrote these rows: this holder's write was undone."""


class InvalidLock(ConfigurationError, ValueError):
    """A name, template, timeout or policy given to ``lock``/``Redlock`` is invalid."""


# --- rate limits -------------------------------------------------------------


class InvalidRateLimit(ConfigurationError, ValueError):
    """A rate, key, algorithm or policy given to ``ratelimit``/``hit`` is invalid."""
