"""Locks on the session's shared servers, one ``default`` cache per test (its own prefix)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from django.test import override_settings

from tests.cache.conftest import resilient_caches

TOPOLOGIES = ["standalone", "sentinel", "cluster"]


def unique(label: str = "lock") -> str:
    return f"{label}-{uuid.uuid4().hex[:10]}"


@pytest.fixture(params=TOPOLOGIES)
def topology(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def location(request: pytest.FixtureRequest, topology: str) -> Any:
    if topology == "standalone":
        return request.getfixturevalue("drr_redis_server").url
    if topology == "sentinel":
        return request.getfixturevalue("drr_sentinel_group").location
    return request.getfixturevalue("drr_cluster").location


@pytest.fixture
def shared(location: Any) -> Iterator[str]:
    """``default`` on ``topology``'s shared servers; yields the cache's ``KEY_PREFIX``."""
    prefix = unique("lk")
    with override_settings(CACHES=resilient_caches(location, KEY_PREFIX=prefix)):
        yield prefix


@pytest.fixture
def standalone(drr_redis_server: Any) -> Iterator[str]:
    """``default`` on the shared standalone server; yields its ``KEY_PREFIX``."""
    prefix = unique("lk")
    with override_settings(CACHES=resilient_caches(drr_redis_server.url, KEY_PREFIX=prefix)):
        yield prefix
