"""Degradation events: written off the request path, rate-limited, and never failing."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from django.core.cache import caches
from django.db import connection
from django.test import override_settings
from django.utils import timezone

from django_redis_resilience import events
from django_redis_resilience.clients import get_manager
from django_redis_resilience.connection import BreakerState
from django_redis_resilience.models import DegradationEvent
from tests._polling import wait_for
from tests.cache.conftest import FAST_BREAKER, resilient_caches

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _fresh() -> Iterator[None]:
    events.reset()
    yield
    events.reset()


def _caches(server: Any) -> Any:
    options = {"BREAKER": FAST_BREAKER, "SOCKET_TIMEOUT": 0.2, "SOCKET_CONNECT_TIMEOUT": 0.2}
    return override_settings(CACHES=resilient_caches(server.url, **options))


@pytest.mark.chaos
def test_an_outage_and_its_recovery_are_written_once_each(drr_redis_factory: Any) -> None:
    server = drr_redis_factory(password="hidden-password-1")
    with _caches(server):
        cache = caches["default"]
        cache.set("k", "v")
        server.kill()
        for _ in range(5):
            cache.get("k")  # opens the breaker; every call degraded, one event
        endpoint = get_manager("default").endpoints[0]
        assert endpoint.breaker.state is not BreakerState.CLOSED
        server.restart()
        assert wait_for(lambda: endpoint.breaker.state is BreakerState.CLOSED, timeout=10)
        events.flush()
        kinds = list(DegradationEvent.objects.order_by("id").values_list("kind", flat=True))
    assert kinds[:2] == ["breaker_opened", "breaker_closed"]
    row = DegradationEvent.objects.get(kind="breaker_closed")
    assert row.alias == "default"
    assert row.outage_seconds is not None
    assert row.outage_seconds > 0
    assert "hidden-password-1" not in row.endpoint
    assert row.process.split("@")[0].isdigit()


def test_a_flood_is_one_row_and_a_count() -> None:
    for _ in range(100):
        events.record("breaker_opened", alias="a", endpoint="redis://x:1/0")
    assert events.flush() == 2
    rows = {r.kind: r for r in DegradationEvent.objects.all()}
    assert set(rows) == {"breaker_opened", "suppressed"}
    assert rows["suppressed"].message.startswith("99 more")


def test_a_database_that_is_down_breaks_nothing(
    drr_redis_factory: Any, caplog: pytest.LogCaptureFixture
) -> None:
    server = drr_redis_factory()
    with connection.schema_editor() as editor:
        editor.delete_model(DegradationEvent)  # the table is gone: every write fails
    try:
        with _caches(server):
            server.kill()
            cache = caches["default"]
            for _ in range(5):
                cache.set("k", "v")  # degraded, never raises
                assert cache.get("k") == "v"
            with caplog.at_level(logging.WARNING, logger="django_redis_resilience"):
                assert events.flush() == 0
            assert "Could not write" in caplog.text
    finally:
        with connection.schema_editor() as editor:
            editor.create_model(DegradationEvent)


def test_old_events_are_pruned() -> None:
    old = timezone.now() - dt.timedelta(days=400)
    DegradationEvent.objects.create(created_at=old, kind="node_lost", process="1@h")
    events.record("breaker_opened", alias="a", endpoint="e")
    events.flush()
    assert not DegradationEvent.objects.filter(created_at__lt=old + dt.timedelta(days=1)).exists()
    assert DegradationEvent.objects.filter(kind="breaker_opened").exists()


def test_events_can_be_turned_off() -> None:
    with override_settings(REDIS_RESILIENCE={"HEALTH": {"EVENTS": False}}):
        assert not events.record("breaker_opened", alias="a", endpoint="e")
    assert events.flush() == 0


@pytest.mark.chaos
def test_a_failover_and_a_lost_node_are_seen_by_the_health_report(
    drr_sentinel_factory: Any,
) -> None:
    from django_redis_resilience.health import build_report

    group = drr_sentinel_factory()
    old = group.current_primary()
    with override_settings(CACHES=resilient_caches(group.location)):
        build_report(timeout=0.5)  # what the next report compares with
        old.kill()
        new = group.wait_for_failover(old)
        build_report(timeout=0.5)
        events.flush()
    rows = {r.kind: r for r in DegradationEvent.objects.all()}
    assert f":{new.port}" in rows["failover"].message
    assert rows["failover"].message.startswith(f"masters were 127.0.0.1:{old.port}")
    assert rows["node_lost"].endpoint == f"127.0.0.1:{old.port}"


@pytest.mark.chaos
def test_a_node_that_returns_is_recorded(drr_redis_factory: Any) -> None:
    from django_redis_resilience.health import build_report

    server = drr_redis_factory()
    with _caches(server):
        build_report(timeout=0.5)
        server.kill()
        build_report(timeout=0.5)
        server.restart()
        build_report(timeout=0.5)
        events.flush()
    kinds = list(DegradationEvent.objects.order_by("id").values_list("kind", flat=True))
    assert kinds == ["node_lost", "node_recovered"]
