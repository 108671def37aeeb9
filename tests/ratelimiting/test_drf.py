"""The DRF throttle: token-authenticated users limited after DRF's authentication."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import AnonymousUser
from django.test import RequestFactory, override_settings
from rest_framework.request import Request

from django_redis_resilience.ratelimiting.drf import RedisRateThrottle
from tests.cache.conftest import resilient_caches


class TwoPerMinute(RedisRateThrottle):
    rate = "2/min"  # DRF's spelling of units works too


class _User:
    is_authenticated = True

    def __init__(self, pk: int) -> None:
        self.pk = pk


def _request(user: Any, ip: str = "10.2.0.1") -> Request:
    request = Request(RequestFactory().get("/", REMOTE_ADDR=ip))
    request._force_auth_user = user
    request.user = user
    return request


def test_users_are_limited_one_by_one_and_wait_is_retry_after(drr_redis_server: Any) -> None:
    with override_settings(CACHES=resilient_caches(drr_redis_server.url)):
        throttle = TwoPerMinute()
        alice, bob = _User(1), _User(2)
        assert [TwoPerMinute().allow_request(_request(alice), None) for _ in range(2)] == [
            True,
            True,
        ]
        assert throttle.allow_request(_request(alice), None) is False
        assert 0 < throttle.wait() <= 30  # type: ignore[operator]
        assert TwoPerMinute().allow_request(_request(bob), None) is True
        # Anonymous users count by address.
        assert TwoPerMinute().allow_request(_request(AnonymousUser(), "10.2.0.9"), None) is True


def test_the_concurrency_algorithm_is_refused_for_a_throttle() -> None:
    import pytest

    from django_redis_resilience.exceptions import InvalidRateLimit

    class Slots(RedisRateThrottle):
        rate = "2/30s"
        algorithm = "concurrency"

    with pytest.raises(InvalidRateLimit, match="cannot release slots"):
        Slots()
