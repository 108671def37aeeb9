"""A Django REST framework throttle on this app's limits (the optional ``drf`` extra).

DRF authenticates inside the view, so the middleware cannot see token users;
this throttle runs after authentication and limits them exactly, in one round
trip, with the same algorithms and outage policy as the decorator.
"""

from __future__ import annotations

from typing import Any

from rest_framework.settings import api_settings
from rest_framework.throttling import BaseThrottle

from django_redis_resilience.exceptions import InvalidRateLimit
from django_redis_resilience.ratelimiting._core import Decision, Limit, check_many, policy_for
from django_redis_resilience.ratelimiting._keys import KeySpec, resolve_key


class RedisRateThrottle(BaseThrottle):  # type: ignore[misc]
    """``rate`` (or ``scope`` in ``DEFAULT_THROTTLE_RATES``), ``key`` (``"user_or_ip"``),
    ``algorithm`` (``"gcra"``), ``cache`` and ``on_unavailable`` as class attributes."""

    rate: Any = None
    scope: str | None = None
    key: Any = "user_or_ip"
    algorithm: str = "gcra"
    cache: str | None = None
    on_unavailable: str = "local"

    def __init__(self) -> None:
        rate = self.rate
        if rate is None and self.scope is not None:
            rate = api_settings.DEFAULT_THROTTLE_RATES.get(self.scope)
        if rate is None and self.scope is None:
            raise InvalidRateLimit(f"{type(self).__name__} needs a rate or a scope.")
        if self.algorithm == "concurrency":
            raise InvalidRateLimit(
                "A DRF throttle cannot release slots when the response ends: use the "
                "ratelimit decorator or the middleware for the concurrency algorithm."
            )
        if rate is not None:
            policy_for(rate, self.algorithm)
        self._rate = rate
        self._key: KeySpec = resolve_key(type(self).key)
        self.decision: Decision | None = None

    def allow_request(self, request: Any, view: Any) -> bool:
        if self._rate is None:  # a scope whose rate is None: not throttled, as in DRF
            return True
        group = self.scope or f"{type(self).__module__}.{type(self).__qualname__}"
        identity = self._key.resolve(group, request)
        if identity is None:
            return True
        limit = Limit(identity, self._rate, self.algorithm, 1, None, group, group)
        self.decision = check_many([limit], cache=self.cache, on_unavailable=self.on_unavailable)[0]
        return self.decision.allowed

    def wait(self) -> float | None:
        return self.decision.retry_after if self.decision is not None else None
