"""One snapshot of this process's state: the report, the metrics, the views and the admin agree."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.core.cache import caches
from django.test import Client, override_settings
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from django_redis_resilience import lock, metrics
from django_redis_resilience.cache import ResilientRedisCache
from django_redis_resilience.clients import get_manager
from django_redis_resilience.connection import get_registry
from django_redis_resilience.exceptions import RedisUnavailable
from django_redis_resilience.health import cached_report, take_snapshot
from django_redis_resilience.testing import RedisServerFactory
from tests.cache.conftest import resilient_caches

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fresh_health_report")]

TOKEN = "t0ken-for-the-snapshot-test"
#: Opens after two failures and stays open for the whole test: every reader must see "open".
STAYS_OPEN = {"FAILURE_THRESHOLD": 2, "RECOVERY_TIMEOUT": 600, "MAX_RECOVERY_TIMEOUT": 600}


def _settings(location: str) -> Any:
    return override_settings(
        CACHES=resilient_caches(
            location, BREAKER=STAYS_OPEN, SOCKET_TIMEOUT=0.2, SOCKET_CONNECT_TIMEOUT=0.2
        ),
        REDIS_RESILIENCE={"HEALTH": {"TOKEN": TOKEN, "TIMEOUT": 0.3}},
    )


def _scrape() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    registry = CollectorRegistry()
    metrics.register(registry, probe=True)
    text = generate_latest(registry).decode()
    return {
        (s.name, tuple(sorted((k, v) for k, v in s.labels.items() if k != "process"))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


@pytest.mark.chaos
def test_a_breaker_opened_by_a_killed_server_reads_the_same_everywhere(
    drr_redis_factory: RedisServerFactory,
) -> None:
    server = drr_redis_factory()
    with _settings(server.url):
        cache = caches["default"]
        assert isinstance(cache, ResilientRedisCache)
        cache.set("before", 1)
        assert cache.get("before") == 1
        server.kill()
        for _ in range(3):  # two failed reads open the breaker
            assert cache.get("before") is None
        for i in range(3):
            cache.set(f"during-{i}", i)  # served by the fallback and journaled
        assert cache.get("during-0") == 0
        with pytest.raises(RedisUnavailable), lock("snapshot-lock", wait=0):
            pass
        endpoint = get_manager("default").primary
        assert endpoint is not None
        assert endpoint.breaker.state.value == "open"

        snapshot = take_snapshot()
        mine = snapshot.cache("default")
        (state,) = mine.endpoints
        assert (state.breaker, state.fallback_in_use, state.used) == ("open", True, True)
        assert state.journal_size == 3
        assert state.last_error is not None
        assert mine.counters is not None
        assert snapshot.lock_acquisitions == {"unavailable": 1}

        # The health report: this process's side is the snapshot's.
        report = cached_report()
        client = report.caches[0].client
        assert client["process"] == snapshot.process
        (shown,) = client["endpoints"]
        expected = state.as_dict()
        assert {k: v for k, v in shown.items() if k != "opened_at"} == {
            k: v for k, v in expected.items() if k != "opened_at"
        }
        assert shown["opened_at"] is not None
        assert client["counters"]["hits"] == mine.counters["hits"]
        assert client["counters"]["fallback_writes"] == mine.counters["fallback_writes"]
        assert [f.code for f in report.caches[0].findings].count("H030") == 1

        # The metrics: the same breaker, counters and lock outcome.
        samples = _scrape()
        at = (("alias", "default"), ("endpoint", state.endpoint))
        assert samples[("drr_breaker_state", at)] == 2
        assert samples[("drr_cache_hits_total", (("alias", "default"),))] == mine.counters["hits"]
        writes = mine.endpoint_counts.get(("fallback_writes", state.endpoint), 0)
        assert writes >= 3
        assert samples[("drr_fallback_operations_total", (*at, ("operation", "write")))] == writes
        locks = samples[("drr_lock_acquisitions_total", (("outcome", "unavailable"),))]
        assert locks == 1
        node = (("alias", "default"), ("kind", "primary"), ("node", f"127.0.0.1:{server.port}"))
        assert samples[("drr_node_up", node)] == 0

        # The load-balancer endpoint: degraded, from this process's traffic.
        body = Client().get("/redis/health/", headers={"Authorization": f"Bearer {TOKEN}"}).json()
        assert body["redis"] == "degraded"
        assert body["caches"] == {"default": "degraded"}
        assert body["sources"] == {"default": "traffic"}
        assert body["process"] == snapshot.process

        # The admin panel: the same breaker and journal.
        model = get_user_model()
        admin_user = model.objects.create_superuser("snap", "snap@example.com", "pw")
        browser = Client()
        browser.force_login(admin_user)
        page = browser.get("/admin/django_redis_resilience/redishealth/")
        assert page.status_code == 200
        (card,) = page.context["cards"]
        (row,) = card.endpoints
        assert {k: v for k, v in row.items() if k != "opened_at"} == {
            k: v for k, v in expected.items() if k != "opened_at"
        }
        assert card.counters["hits"] == mine.counters["hits"]


def test_process_counters_and_the_cached_report_belong_to_the_registry(
    drr_redis_factory: RedisServerFactory,
) -> None:
    """Rebuilt caches (settings changed, or a forked child) start from zero: no counts and no
    report of the caches they replace."""
    server = drr_redis_factory()
    with _settings(server.url):
        with lock("snapshot-counted", wait=0):
            pass
        assert take_snapshot().lock_acquisitions == {"acquired": 1}
        first = cached_report()
        assert cached_report() is first
        registry = get_registry()
    with _settings(server.url):
        assert get_registry() is not registry
        assert take_snapshot().lock_acquisitions == {}
        assert cached_report() is not first
