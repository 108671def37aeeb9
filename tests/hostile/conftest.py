"""Fixtures of the hostile-input tests: one resilient cache per module on shared servers.

Hypothesis runs a test body many times, so the Django settings are switched once
per module rather than per example; each module has its own ``KEY_PREFIX``.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import redis
from django.core.cache import caches
from django.test import override_settings

from django_redis_resilience.cache import ResilientRedisCache
from django_redis_resilience.testing import RedisServer
from tests.cache.conftest import resilient_caches


@pytest.fixture(scope="module")
def shared_cache(drr_redis_server: RedisServer) -> Iterator[ResilientRedisCache]:
    """``caches["default"]`` on the session's standalone server, for this module only."""
    prefix = f"hostile-{uuid.uuid4().hex[:8]}"
    with override_settings(CACHES=resilient_caches(drr_redis_server.url, KEY_PREFIX=prefix)):
        cache = caches["default"]
        assert isinstance(cache, ResilientRedisCache)
        yield cache


@pytest.fixture(scope="module")
def raw(drr_redis_server: RedisServer) -> Iterator[redis.Redis]:
    """A plain client of the shared server, to see what Redis really holds."""
    with drr_redis_server.client() as client:
        yield client
