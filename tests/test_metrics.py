"""The Prometheus collector: what it reports after real traffic, outages and probes."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.core.cache import caches
from django.test import override_settings
from prometheus_client import CollectorRegistry, generate_latest

from django_redis_resilience import lock, metrics, views
from django_redis_resilience.exceptions import RedisUnavailable
from django_redis_resilience.ratelimiting import hit
from tests.cache.conftest import FAST_BREAKER, resilient_caches


@pytest.fixture(autouse=True)
def _fresh() -> Iterator[None]:
    metrics.reset()
    views.forget_cached_report()
    yield
    views.forget_cached_report()


def _scrape(probe: bool = True) -> dict[str, float]:
    registry = CollectorRegistry()
    metrics.register(registry, probe=probe)
    samples: dict[str, float] = {}
    for line in generate_latest(registry).decode().splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            samples[name] = float(value)
    return samples


def _value(samples: dict[str, float], prefix: str, *labels: str) -> float:
    found = [v for k, v in samples.items() if k.startswith(prefix) and all(x in k for x in labels)]
    assert len(found) == 1, (prefix, labels, sorted(samples))
    return found[0]


def test_decisions_locks_and_nodes(drr_redis_server: Any) -> None:
    with override_settings(CACHES=resilient_caches(drr_redis_server.url)):
        for _ in range(3):
            hit("who", "2/m")  # 2 allowed, 1 denied
        with lock("metrics-lock", wait=0):
            pass
        samples = _scrape()
    assert _value(samples, "drr_ratelimit_decisions_total", 'outcome="allowed"') == 2
    assert _value(samples, "drr_ratelimit_decisions_total", 'outcome="denied"') == 1
    assert _value(samples, "drr_lock_acquisitions_total", 'outcome="acquired"') == 1
    assert _value(samples, "drr_lock_wait_seconds_count") == 1
    node = f'node="127.0.0.1:{drr_redis_server.port}"'
    assert _value(samples, "drr_node_up", node) == 1
    assert _value(samples, "drr_breaker_state", 'alias="default"') == 0


@pytest.mark.chaos
def test_an_outage_shows_as_an_open_breaker_fallback_use_and_a_node_down(
    drr_redis_factory: Any,
) -> None:
    server = drr_redis_factory(password="metrics-secret-pw")
    options = {"BREAKER": FAST_BREAKER, "SOCKET_TIMEOUT": 0.2, "SOCKET_CONNECT_TIMEOUT": 0.2}
    with override_settings(
        CACHES=resilient_caches(server.url, **options),
        REDIS_RESILIENCE={"HEALTH": {"TIMEOUT": 0.3}},
    ):
        cache = caches["default"]
        server.kill()
        for _ in range(4):
            cache.set("k", "v")
            cache.get("k")
        with pytest.raises(RedisUnavailable), lock("metrics-down", wait=0):
            pass
        samples = _scrape()
    assert _value(samples, "drr_breaker_state", 'alias="default"') == 2
    assert _value(samples, "drr_fallback_operations_total", 'operation="read"') >= 1
    assert _value(samples, "drr_fallback_operations_total", 'operation="write"') >= 1
    assert _value(samples, "drr_lock_acquisitions_total", 'outcome="unavailable"') == 1
    assert _value(samples, "drr_node_up") == 0
    assert not any("metrics-secret-pw" in k for k in samples)


def test_a_cluster_reports_its_coverage_and_refreshes(drr_cluster: Any) -> None:
    with override_settings(CACHES=resilient_caches(drr_cluster.location)):
        caches["default"].set("k", "v")  # discovers the slot map
        samples = _scrape()
    assert _value(samples, "drr_cluster_slots_coverage_ratio") == 1.0
    assert _value(samples, "drr_topology_refreshes_total") >= 1
    assert _value(samples, "drr_topology_refresh_duration_seconds") > 0
    assert len([k for k in samples if k.startswith("drr_node_up")]) == 3


def test_without_probing_a_scrape_touches_no_server(drr_redis_factory: Any) -> None:
    server = drr_redis_factory()
    with override_settings(CACHES=resilient_caches(server.url)):
        server.kill()
        samples = _scrape(probe=False)
    assert not any(k.startswith("drr_node_up") for k in samples)
    assert _value(samples, "drr_breaker_state") == 0
