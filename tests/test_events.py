"""Degradation events: written off the request path, rate-limited, and never failing."""

from __future__ import annotations

import datetime as dt
import logging
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.core.cache import caches
from django.db import connection
from django.test import override_settings
from django.test.utils import CaptureQueriesContext
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
    # Rows that an earlier test's background thread wrote on its own connection outlive that
    # test's transaction (pytest-django runs the admin's tests before these): not this test's.
    DegradationEvent.objects.all().delete()
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


def test_events_queued_when_the_caches_are_rebuilt_are_still_written() -> None:
    """Settings changed between an event and its write: the old registry's background thread
    stopped with the flush it was given, so the next event has the current one flush both."""
    from django_redis_resilience.connection import reset_registry

    events.record("breaker_opened", alias="a", endpoint="redis://x:1/0")
    reset_registry()
    events.record("breaker_closed", alias="a", endpoint="redis://x:1/0")
    assert wait_for(_flushed, timeout=10)
    kinds = sorted(DegradationEvent.objects.values_list("kind", flat=True))
    assert kinds == ["breaker_closed", "breaker_opened"]


def _degradations(records: list[logging.LogRecord]) -> list[logging.LogRecord]:
    return [r for r in records if "egradation event" in r.getMessage()]


@pytest.mark.chaos
def test_a_table_not_migrated_is_one_warning_with_the_fix_and_no_traceback(
    drr_redis_factory: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """Two real outages with the table missing: the site is served from the fallback, the
    background thread logs one line per process naming the problem and the fix, never a
    traceback, and the events are kept in memory, where the admin reads them."""
    server = drr_redis_factory()
    with connection.schema_editor() as editor:
        editor.delete_model(DegradationEvent)  # as before `migrate`: every write fails
    try:
        with (
            _caches(server),
            override_settings(REDIS_RESILIENCE={"HEALTH": {"EVENT_INTERVAL": 0}}),
            caplog.at_level(logging.WARNING, logger="django_redis_resilience"),
        ):
            cache = caches["default"]
            endpoint = get_manager("default").endpoints[0]
            for outage in (1, 2):
                server.kill()
                for _ in range(5):
                    cache.set("k", "v")  # degraded, never raises
                    assert cache.get("k") == "v"
                assert endpoint.breaker.state is not BreakerState.CLOSED
                server.restart()
                assert wait_for(lambda: endpoint.breaker.state is BreakerState.CLOSED, timeout=10)
                # The background thread has tried (the first time) and is done.
                assert wait_for(lambda: bool(_degradations(caplog.records)), timeout=10)
                assert wait_for(lambda n=outage: _closed() == n, timeout=10)
                assert wait_for(_flushed, timeout=10)
            assert events.flush() == 0
            listed, shared = events.recent(20)  # what the admin lists: this process's
    finally:
        with connection.schema_editor() as editor:
            editor.create_model(DegradationEvent)
    [warning] = _degradations(caplog.records)
    text = warning.getMessage()
    assert warning.levelno == logging.WARNING
    assert "django_redis_resilience_degradationevent does not exist" in text
    assert "manage.py migrate django_redis_resilience" in text
    assert "REDIS_RESILIENCE['HEALTH']['EVENT_STORE'] = 'memory'" in text
    assert "\n" not in text
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
    assert "Traceback" not in caplog.text
    kinds = [e.kind for e in listed]
    assert shared is False
    assert kinds.count("breaker_opened") == kinds.count("breaker_closed") == 2


def _closed() -> int:
    return sum(1 for e in events.remembered(50) if e.kind == "breaker_closed")


def _flushed() -> bool:
    return not events._queue and not events._flush_scheduled


NO_DATABASE = """
import logging, sys, threading, time
import django
from django.conf import settings

settings.configure(
    INSTALLED_APPS=["django.contrib.contenttypes", "django.contrib.auth",
                    "django_redis_resilience"],
    CACHES={"default": {
        "BACKEND": "django_redis_resilience.cache.ResilientRedisCache",
        "LOCATION": sys.argv[1],
        "OPTIONS": {"BREAKER": {"FAILURE_THRESHOLD": 1, "RECOVERY_TIMEOUT": 60},
                    "SOCKET_CONNECT_TIMEOUT": 0.2, "SOCKET_TIMEOUT": 0.2},
    }},
    REDIS_RESILIENCE={"HEALTH": {"EVENT_INTERVAL": 0}},
    USE_TZ=True,
    LOGGING={"version": 1, "disable_existing_loggers": False,
             "handlers": {"err": {"class": "logging.StreamHandler"}},
             "loggers": {"django_redis_resilience": {"handlers": ["err"], "level": "INFO"}}},
)  # no DATABASES at all
django.setup()
from django.core.cache import cache
from django_redis_resilience import events
from django_redis_resilience.clients import get_manager
from django_redis_resilience.connection import get_registry

breaker = get_manager("default").endpoints[0].breaker
for outage in range(3):
    cache.get("k")  # the server is gone: the breaker opens, an event is queued
    assert not breaker.closed
    done = threading.Event()  # due after the flush, on the same background thread
    get_registry().scheduler.call_later(events.FLUSH_DELAY + 0.1, done.set, name="done")
    assert done.wait(10)
    breaker.reset()  # closed again (an operator's reset), ready for the next outage
print("ran", len(events.remembered(50)), "events", flush=True)
"""


@pytest.mark.chaos
def test_no_database_at_all_is_one_warning_and_no_traceback(
    drr_redis_factory: Any, tmp_path: Path
) -> None:
    """A project without DATABASES: three outages in one process, one warning line."""
    server = drr_redis_factory()
    server.kill()
    script = tmp_path / "no_database.py"
    script.write_text(NO_DATABASE, encoding="utf-8")
    run = subprocess.run(
        [sys.executable, str(script), server.url],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    assert "ran 6 events" in run.stdout, run.stdout  # three opened, three reset-closed
    assert "Traceback" not in run.stderr, run.stderr
    [line] = [x for x in run.stderr.splitlines() if "egradation event" in x]
    assert "no database is configured (settings.DATABASES)" in line
    assert "run 'manage.py migrate'" in line
    assert "EVENT_STORE" in line


@pytest.mark.chaos
def test_in_memory_events_touch_no_database(drr_redis_factory: Any) -> None:
    """EVENT_STORE = "memory": an outage is recorded and listed, and nothing is written."""
    server = drr_redis_factory()
    memory = {"HEALTH": {"EVENT_STORE": "memory"}}
    with _caches(server), override_settings(REDIS_RESILIENCE=memory):
        cache = caches["default"]
        cache.set("k", "v")
        server.kill()
        for _ in range(5):
            cache.get("k")
        endpoint = get_manager("default").endpoints[0]
        assert endpoint.breaker.state is not BreakerState.CLOSED
        server.restart()
        assert wait_for(lambda: endpoint.breaker.state is BreakerState.CLOSED, timeout=10)
        with CaptureQueriesContext(connection) as queries:
            assert events.flush() == 0
            listed, shared = events.recent(20)
        assert len(queries) == 0
        assert not events._flush_scheduled  # nothing for the background thread to write
    assert not DegradationEvent.objects.exists()
    assert shared is False
    assert [e.kind for e in listed][:2] == ["breaker_closed", "breaker_opened"]
    assert {e.alias for e in listed} == {"default"}
    assert all(e.pk is None for e in listed)  # never saved


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
