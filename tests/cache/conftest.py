"""A ``ResilientRedisCache`` on every topology, configured through ``CACHES`` as users do.

``cache`` runs a test once per topology on servers shared by the session, so
its tests must not break them; each test gets its own ``KEY_PREFIX``, so keys
never collide. Tests that break servers build their own with the harness's
factories and :func:`resilient_caches`.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from django.core.cache import caches
from django.test import override_settings

from django_redis_resilience.cache import ResilientRedisCache
from tests._polling import wait_for  # noqa: F401 - re-exported for the tests here

BACKEND = "django_redis_resilience.cache.ResilientRedisCache"
TOPOLOGIES = ["standalone", "replicas", "sentinel", "cluster"]
#: Opens after 2 failures and probes again within ~0.1 s: outages in tests stay short.
FAST_BREAKER = {"FAILURE_THRESHOLD": 2, "RECOVERY_TIMEOUT": 0.05, "MAX_RECOVERY_TIMEOUT": 0.2}


#: Timeouts for a server the test never breaks: a loaded machine's slow connect or reply
#: must not open a breaker under a test that is about something else.
UNBROKEN = {"SOCKET_TIMEOUT": 2.0, "SOCKET_CONNECT_TIMEOUT": 2.0}


def resilient_caches(location: Any, **options: Any) -> dict[str, Any]:
    """``CACHES`` with one resilient ``default`` cache; ``KEY_PREFIX`` unique per call."""
    prefix = options.pop("KEY_PREFIX", f"t{uuid.uuid4().hex[:8]}")
    return {
        "default": {
            "BACKEND": BACKEND,
            "LOCATION": location,
            "KEY_PREFIX": prefix,
            "OPTIONS": options,
        }
    }


@contextmanager
def resilient_cache(location: Any, **options: Any) -> Iterator[ResilientRedisCache]:
    """``caches["default"]`` as a resilient cache on ``location`` (for servers a test breaks)."""
    with override_settings(CACHES=resilient_caches(location, **options)):
        cache = caches["default"]
        assert isinstance(cache, ResilientRedisCache)
        yield cache


def settle(cache: ResilientRedisCache) -> None:
    """Wait until the replicas hold every write so far: reads may be served by a replica."""
    manager = cache.manager
    if manager.cluster is None and manager.replicas:
        assert manager.primary is not None
        manager.primary.client.wait(len(manager.replicas), 5000)


@pytest.fixture(params=TOPOLOGIES)
def topology(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def location(request: pytest.FixtureRequest, topology: str) -> Any:
    """A location of the session's shared servers for ``topology``."""
    if topology == "standalone":
        return request.getfixturevalue("drr_redis_server").url
    if topology == "replicas":
        group = request.getfixturevalue("drr_replica_group")
        return group.location
    if topology == "sentinel":
        return request.getfixturevalue("drr_sentinel_group").location
    return request.getfixturevalue("drr_cluster").location


@pytest.fixture
def cache(location: Any, topology: str) -> Iterator[ResilientRedisCache]:
    """``caches["default"]``, a resilient cache on ``topology``'s shared servers.

    On a primary with replicas it reads from the primary: these tests check
    what a caller reads back after its own writes, which a replica serves only
    once it has caught up (eventual consistency, documented). Reads routed to
    replicas are tested in ``tests/connection/test_manager.py``.
    """
    options: dict[str, Any] = dict(UNBROKEN)
    if topology == "replicas":
        options["READ_FROM_REPLICAS"] = False
    with override_settings(CACHES=resilient_caches(location, **options)):
        backend = caches["default"]
        assert isinstance(backend, ResilientRedisCache)
        yield backend
