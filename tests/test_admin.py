"""The admin's Redis health panel through Django's test client: permissions, CSRF,
actions, outages, custom admin sites. The browser tests are in test_admin_browser.py."""

from __future__ import annotations

import datetime as dt
import re
import time
from typing import Any

import pytest
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.test import Client, override_settings
from django.urls import path

from django_redis_resilience import admin as health_admin
from django_redis_resilience import events
from django_redis_resilience.clients import get_manager
from django_redis_resilience.health import _cached, process_label
from django_redis_resilience.models import DegradationEvent
from django_redis_resilience.testing import RedisServer, RedisServerFactory
from tests.cache.conftest import FAST_BREAKER, resilient_caches

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fresh_health_report")]

PANEL = "/admin/django_redis_resilience/redishealth/"
ACTION = PANEL + "action/"
SECRET = "s3cret-pass-for-admin-tests"


def _client(*perms: str, superuser: bool = False, csrf: bool = False) -> Client:
    model = get_user_model()
    name = f"u{model.objects.count()}"
    if superuser:
        user = model.objects.create_superuser(name, f"{name}@example.com", "pw")
    else:
        user = model.objects.create_user(name, f"{name}@example.com", "pw", is_staff=True)
        for codename in perms:
            user.user_permissions.add(Permission.objects.get(codename=codename))
    client = Client(enforce_csrf_checks=csrf)
    client.force_login(user)
    return client


def _settings(location: Any, **options: Any) -> Any:
    health = options.pop("HEALTH", {})
    return override_settings(
        CACHES=resilient_caches(
            location,
            BREAKER=FAST_BREAKER,
            SOCKET_TIMEOUT=0.3,
            SOCKET_CONNECT_TIMEOUT=0.3,
            **options,
        ),
        REDIS_RESILIENCE={"HEALTH": {"TIMEOUT": 0.5, **health}},
    )


def _messages(response: Any) -> list[str]:
    return [str(m) for m in response.context["messages"]]


def test_the_panel_is_listed_and_opens_for_the_view_permission(
    drr_redis_server: RedisServer,
) -> None:
    with _settings(drr_redis_server.url):
        viewer = _client("view_redishealth")
        index = viewer.get("/admin/").content.decode()
        assert f'href="{PANEL}"' in index
        page = viewer.get(PANEL)
        assert page.status_code == 200
        html = page.content.decode()
        assert f'data-address="{drr_redis_server.host}:{drr_redis_server.port}"' in html
        assert 'data-status="ok"' in html
        # Viewing is not acting: no buttons, and the actions refuse.
        assert "Probe now" not in html
        assert "Reset breaker" not in html
        assert viewer.post(ACTION, {"action": "probe"}).status_code == 403
        assert not DegradationEvent.objects.filter(kind="admin_action").exists()


def test_staff_without_the_permission_get_neither_the_entry_nor_the_page(
    drr_redis_server: RedisServer,
) -> None:
    with _settings(drr_redis_server.url):
        clerk = _client("view_user")
        assert "Redis health" not in clerk.get("/admin/").content.decode()
        assert clerk.get(PANEL).status_code == 403
        assert clerk.get(PANEL + "panel/").status_code == 403
        assert clerk.post(ACTION, {"action": "probe"}).status_code == 403
        # Not staff at all: the admin's login page, as for any admin URL.
        anonymous = Client()
        response = anonymous.get(PANEL)
        assert response.status_code == 302
        assert "/admin/login/" in response["Location"]
        assert anonymous.post(ACTION, {"action": "probe"}).status_code == 302
        assert not DegradationEvent.objects.filter(kind="admin_action").exists()


def test_actions_need_post_and_a_csrf_token(drr_redis_server: RedisServer) -> None:
    with _settings(drr_redis_server.url):
        ops = _client(superuser=True, csrf=True)
        assert ops.get(ACTION).status_code == 405
        assert ops.post(ACTION, {"action": "probe"}).status_code == 403  # no token
        page = ops.get(PANEL).content.decode()
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)
        assert token is not None
        done = ops.post(
            ACTION, {"action": "probe", "csrfmiddlewaretoken": token.group(1)}, follow=True
        )
        assert done.status_code == 200
        assert any(m.startswith("Probed 1 node of 1 cache in") for m in _messages(done))
        event = DegradationEvent.objects.get(kind="admin_action")
        assert event.message.startswith(f"{done.context['user'].get_username()}: Probed")


@pytest.mark.chaos
def test_resetting_an_open_breaker_closes_it_in_this_process(
    drr_redis_factory: RedisServerFactory,
) -> None:
    server = drr_redis_factory()
    breaker = {**FAST_BREAKER, "RECOVERY_TIMEOUT": 60, "MAX_RECOVERY_TIMEOUT": 60}
    with override_settings(
        CACHES=resilient_caches(server.url, BREAKER=breaker, SOCKET_TIMEOUT=0.2),
        REDIS_RESILIENCE={"HEALTH": {"TIMEOUT": 0.5}},
    ):
        from django.core.cache import cache

        server.kill()
        for _ in range(3):
            cache.get("k")
        endpoint = get_manager().primary
        assert endpoint.breaker.state.value == "open"
        server.restart()
        ops = _client(superuser=True)
        page = ops.get(PANEL).content.decode()
        assert f'data-endpoint="{endpoint.display}" data-breaker="open"' in page
        assert "Reset breaker" in page
        done = ops.post(
            ACTION,
            {"action": "reset_breaker", "alias": "default", "endpoint": endpoint.display},
            follow=True,
        )
        (message,) = _messages(done)
        assert "reset in process" in message
        assert "it was open, it is closed" in message
        assert endpoint.breaker.state.value == "closed"
        cache.set("k", 1)
        assert server.client().exists(cache.make_key("k")) == 1  # Redis serves again at once
        event = DegradationEvent.objects.get(kind="admin_action")
        assert event.endpoint == endpoint.display
        assert event.alias == "default"


def test_resetting_a_closed_breaker_does_nothing(drr_redis_server: RedisServer) -> None:
    """The POST lands on any worker, usually one whose breaker is closed. Before, the
    recovery hooks ran anyway: with RECOVERY="invalidate_namespace" the whole namespace
    of a healthy cache was deleted."""
    with _settings(drr_redis_server.url, RECOVERY="invalidate_namespace"):
        from django.core.cache import cache

        cache.set_many({"a": 1, "b": 2})
        endpoint = get_manager().primary
        assert endpoint is not None
        assert endpoint.breaker.state.value == "closed"
        operator = _client("view_redishealth", "change_redishealth")  # staff, not superuser
        done = operator.post(
            ACTION,
            {"action": "reset_breaker", "alias": "default", "endpoint": endpoint.display},
            follow=True,
        )
        assert done.status_code == 200
        with drr_redis_server.client() as client:
            assert client.exists(cache.make_key("a"), cache.make_key("b")) == 2
        assert cache.get_many(["a", "b"]) == {"a": 1, "b": 2}
        (message,) = _messages(done)
        assert message.startswith(f"Breaker of {endpoint.display} (default) in process ")
        assert "is closed: nothing to reset, nothing was done." in message
        assert endpoint.breaker.state.value == "closed"
        assert not DegradationEvent.objects.filter(kind="admin_action").exists()


def test_bad_action_arguments_say_what_is_wrong_and_do_nothing(
    drr_redis_server: RedisServer,
) -> None:
    with _settings(drr_redis_server.url):
        ops = _client(superuser=True)
        cases = {
            ("explode", "default", ""): "Unknown action 'explode'.",
            ("reset_breaker", "nope", ""): "'nope' is not a cache that uses ResilientRedisCache.",
            ("reset_breaker", "default", "redis://elsewhere:1/0"): "default has no endpoint "
            "'redis://elsewhere:1/0' in this process.",
            ("refresh_topology", "default", ""): "default is not a Redis Cluster: it has no "
            "topology to refresh.",
        }
        for (action, alias, endpoint), expected in cases.items():
            done = ops.post(
                ACTION, {"action": action, "alias": alias, "endpoint": endpoint}, follow=True
            )
            assert _messages(done) == [expected]
        assert not DegradationEvent.objects.filter(kind="admin_action").exists()


def test_refreshing_a_cluster_topology_reports_its_shards(drr_cluster: Any) -> None:
    with _settings(drr_cluster.location):
        from django.core.cache import cache

        cache.set("warm", 1)
        router = get_manager().cluster
        assert router is not None
        before = router.refresh_count
        ops = _client(superuser=True)
        html = ops.get(PANEL).content.decode()
        assert html.count('class="drr-seg drr-seg-served"') == 3
        assert "Slot coverage: <strong>16384</strong>" in html
        done = ops.post(ACTION, {"action": "refresh_topology", "alias": "default"}, follow=True)
        (message,) = _messages(done)
        assert message.startswith("Cluster topology of default refreshed in process")
        assert message.endswith("3 shards.")
        assert router.refresh_count == before + 1


@pytest.mark.chaos
def test_a_hung_node_shows_as_down_and_the_page_still_renders(
    drr_redis_factory: RedisServerFactory,
) -> None:
    server = drr_redis_factory()
    with _settings(server.url):
        ops = _client(superuser=True)
        server.hang()
        try:
            started = time.monotonic()
            page = ops.get(PANEL)
            elapsed = time.monotonic() - started
        finally:
            server.resume()
        html = page.content.decode()
        assert page.status_code == 200
        assert f'data-address="{server.host}:{server.port}" data-status="down"' in html
        assert "timeout" in html
        assert 'data-code="H001"' in html
        assert elapsed < 10, f"the panel took {elapsed:.1f} s with a hung node"


def test_secrets_never_reach_the_page(drr_redis_factory: RedisServerFactory) -> None:
    server = drr_redis_factory(password=SECRET)
    location = f"redis://:{SECRET}@{server.host}:{server.port}/0"
    with _settings(location):
        from django.core.cache import cache

        cache.set("k", 1)
        ops = _client(superuser=True)
        html = ops.get(PANEL).content.decode() + ops.get(PANEL + "panel/").content.decode()
        assert SECRET not in html
        assert f"{server.host}:{server.port}" in html


def test_a_report_that_cannot_be_made_is_shown_not_raised(
    drr_redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch, caplog: Any
) -> None:
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError(f"cannot reach redis://:{SECRET}@10.0.0.1:6390/0")

    monkeypatch.setattr(_cached, "build_report", broken)
    with _settings(drr_redis_server.url):
        page = _client(superuser=True).get(PANEL)
        html = page.content.decode()
        assert page.status_code == 200
        assert "The health report could not be made: RuntimeError" in html
        assert SECRET not in html
        assert "The Redis health report could not be made" in caplog.text


@override_settings(TIME_ZONE="America/Chicago")
def test_times_are_shown_in_utc_and_labelled_so(drr_redis_server: RedisServer) -> None:
    """Whatever the site's TIME_ZONE: the report's moment and the events' are UTC, said so."""
    at = dt.datetime(2025, 1, 31, 12, 34, 56, tzinfo=dt.timezone.utc)
    event = DegradationEvent.objects.create(created_at=at, kind="node_lost", process="1@h")
    assert str(event).startswith("2025-01-31 12:34:56 UTC")
    with _settings(drr_redis_server.url):
        ops = _client(superuser=True)
        html = ops.get(PANEL).content.decode()
        made = re.search(r'report made <time datetime="([^"]+)">([^<]+)</time>', html)
        assert made is not None, html
        moment = dt.datetime.fromisoformat(made.group(1))
        assert moment.utcoffset() == dt.timedelta(0)
        assert abs(dt.datetime.now(dt.timezone.utc) - moment) < dt.timedelta(minutes=10)
        assert made.group(2) == moment.strftime("%Y-%m-%d %H:%M:%S UTC")
        stamp = '<time datetime="2025-01-31T12:34:56+00:00">2025-01-31 12:34:56 UTC</time>'
        assert stamp in html  # not 06:34:56, Chicago's time
        log = ops.get("/admin/django_redis_resilience/degradationevent/").content.decode()
        assert "When (UTC)" in log
        assert stamp in log


@pytest.mark.chaos
def test_events_kept_in_memory_are_listed_on_the_panel(
    drr_redis_factory: RedisServerFactory,
) -> None:
    """EVENT_STORE = "memory": the panel lists this process's events, says whose they are,
    and neither an outage nor an admin action writes a row."""
    events.reset()
    server = drr_redis_factory()
    with _settings(server.url, HEALTH={"EVENT_STORE": "memory"}):
        from django.core.cache import cache

        server.kill()
        for _ in range(3):
            cache.get("k")  # opens this process's breaker: an event
        ops = _client(superuser=True)
        done = ops.post(ACTION, {"action": "probe"}, follow=True)
        assert done.status_code == 200
        html = ops.get(PANEL).content.decode()
    events.reset()
    # (An earlier test's background flush may land meanwhile: look for this test's rows.)
    assert not DegradationEvent.objects.filter(endpoint__contains=f":{server.port}").exists()
    assert not DegradationEvent.objects.filter(kind="admin_action").exists()
    assert f"(this process, {process_label()}, in memory)" in html
    assert '<tr class="drr-event drr-event-breaker_opened">' in html
    assert '<tr class="drr-event drr-event-admin_action">' in html
    assert ">All events</a>" not in html  # the database's log has nothing of them


def test_no_resilient_cache_says_so() -> None:
    page = _client(superuser=True).get(PANEL)
    assert page.status_code == 200
    assert "there is nothing to probe" in page.content.decode()


def test_the_panel_fragment_holds_the_cards_without_the_admin_chrome(
    drr_redis_server: RedisServer,
) -> None:
    with _settings(drr_redis_server.url):
        fragment = _client(superuser=True).get(PANEL + "panel/").content.decode()
        assert 'class="drr-cache module"' in fragment
        assert "<html" not in fragment
        assert "Recent degradation events" in fragment


class OpsSite(admin.AdminSite):
    site_header = "Ops console"


ops_site = OpsSite(name="ops")
health_admin.register(ops_site)
urlpatterns = [path("ops/", ops_site.urls)]


def test_a_custom_admin_site_gets_the_panel_with_its_own_urls(
    drr_redis_server: RedisServer,
) -> None:
    with _settings(drr_redis_server.url), override_settings(ROOT_URLCONF=__name__):
        ops = _client(superuser=True)
        index = ops.get("/ops/").content.decode()
        assert "Ops console" in index
        assert 'href="/ops/django_redis_resilience/redishealth/"' in index
        page = ops.get("/ops/django_redis_resilience/redishealth/").content.decode()
        assert "Ops console" in page
        assert 'data-url="/ops/django_redis_resilience/redishealth/panel/"' in page
        assert 'action="/ops/django_redis_resilience/redishealth/action/"' in page
        done = ops.post("/ops/django_redis_resilience/redishealth/action/", {"action": "probe"})
        assert done["Location"] == "/ops/django_redis_resilience/redishealth/"


# --- audit rows -----------------------------------------------------------------------------------


def _csrf_token(client: Client, url: str) -> str:
    page = client.get(url).content.decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)
    assert token is not None
    return token.group(1)


@pytest.mark.parametrize("action", ["probe", "reset_breaker", "refresh_topology"])
def test_an_action_on_an_alias_that_is_no_configured_cache_is_refused_and_stores_nothing(
    drr_redis_server: RedisServer, action: str
) -> None:
    """Any text could be posted as the alias, and "probe now" stored it: 5,000 characters
    in the audit row on SQLite, a 500 from PostgreSQL's 200-character column."""
    with _settings(drr_redis_server.url):
        ops = _client("view_redishealth", "change_redishealth", csrf=True)
        token = _csrf_token(ops, PANEL)
        posted = {"action": action, "alias": "x" * 5000, "csrfmiddlewaretoken": token}
        done = ops.post(ACTION, posted, follow=True)
        assert done.status_code == 200
        (message,) = _messages(done)
        assert message.endswith("is not a cache that uses ResilientRedisCache.")
        assert message.startswith("'xxxxxxxx")
        assert len(message) < 200  # the posted text is not echoed whole
        assert not DegradationEvent.objects.filter(kind="admin_action").exists()
        # The probe's own form posts no alias (every cache); a configured one is fine too.
        for alias in ("", "default"):
            posted = {"action": "probe", "alias": alias, "csrfmiddlewaretoken": token}
            assert ops.post(ACTION, posted).status_code == 302
        assert list(
            DegradationEvent.objects.filter(kind="admin_action").values_list("alias", flat=True)
        ) == ["default", ""]


def test_degradation_events_cannot_be_deleted_from_the_admin() -> None:
    """They are an audit log: not even a superuser deletes them, one or in bulk."""
    event = DegradationEvent.objects.create(
        created_at=dt.datetime.now(dt.timezone.utc), kind="admin_action", alias="default",
        process="1@h", message="ops: Probed 1 node",
    )  # fmt: skip
    log = "/admin/django_redis_resilience/degradationevent/"
    root = _client(superuser=True, csrf=True)
    listing = root.get(log).content.decode()
    assert "delete_selected" not in listing
    token = _csrf_token(root, log)
    assert root.get(f"{log}{event.pk}/delete/").status_code == 403
    confirm = {"post": "yes", "csrfmiddlewaretoken": token}
    assert root.post(f"{log}{event.pk}/delete/", confirm).status_code == 403
    bulk = {"action": "delete_selected", "_selected_action": [event.pk], "post": "yes",
            "csrfmiddlewaretoken": token}  # fmt: skip
    root.post(log, bulk)
    assert DegradationEvent.objects.filter(pk=event.pk).exists()
