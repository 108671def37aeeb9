"""The JSON health endpoints: status for everyone, details for staff or the bearer token."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.core.cache import caches
from django.test import Client, override_settings

from django_redis_resilience import views
from django_redis_resilience.clients import get_manager
from django_redis_resilience.testing import RedisServer
from tests.cache.conftest import FAST_BREAKER, resilient_caches

TOKEN = "t0ken-for-the-health-endpoint"
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
]


@pytest.fixture(autouse=True)
def _fresh_report() -> Iterator[None]:
    views.forget_cached_report()
    yield
    views.forget_cached_report()


def _settings(location: Any, **health: Any) -> Any:
    return override_settings(
        CACHES=resilient_caches(
            location, BREAKER=FAST_BREAKER, SOCKET_TIMEOUT=0.2, SOCKET_CONNECT_TIMEOUT=0.2
        ),
        ROOT_URLCONF="tests.health.urls",
        MIDDLEWARE=MIDDLEWARE,
        REDIS_RESILIENCE={"HEALTH": {"TOKEN": TOKEN, "TIMEOUT": 0.5, **health}},
    )


def _slowlog_calls(server: RedisServer) -> int:
    with server.client() as client:
        stats = client.info("commandstats")
    # Redis 7 counts subcommands apart ("cmdstat_slowlog|len"), 6.2 under the command.
    return sum(int(v.get("calls", 0)) for k, v in stats.items() if k.startswith("cmdstat_slowlog"))


def test_anonymous_callers_get_the_status_only(drr_redis_server: RedisServer) -> None:
    with _settings(drr_redis_server.url):
        client = Client()
        basic = client.get("/redis/health/")
        assert basic.status_code == 200
        assert basic.json() == {"status": "ok", "redis": "ok"}
        probed = client.get("/redis/health/redis/")
        assert probed.status_code == 200
        assert probed.json() == {"status": "ok"}
        assert probed["Cache-Control"].startswith("max-age=0")


def test_the_bearer_token_gives_the_details(drr_redis_server: RedisServer) -> None:
    with _settings(drr_redis_server.url):
        client = Client()
        good = client.get("/redis/health/redis/", headers={"Authorization": f"Bearer {TOKEN}"})
        assert good.status_code == 200
        body = good.json()
        assert body["status"] == "ok"
        assert body["caches"][0]["nodes"][0]["reachable"] is True
        for wrong in (f"Bearer {TOKEN}x", f"Basic {TOKEN}", TOKEN, "Bearer "):
            refused = client.get("/redis/health/redis/", headers={"Authorization": wrong})
            assert refused.json() == {"status": "ok"}, wrong


@pytest.mark.django_db
def test_staff_get_the_details_and_other_users_do_not(drr_redis_server: RedisServer) -> None:
    users = get_user_model()
    staff = users.objects.create_user("staff", password="x", is_staff=True)
    plain = users.objects.create_user("plain", password="x")
    with _settings(drr_redis_server.url):
        client = Client()
        client.force_login(plain)
        assert client.get("/redis/health/redis/").json() == {"status": "ok"}
        assert "caches" not in client.get("/redis/health/").json()
        client.force_login(staff)
        assert "caches" in client.get("/redis/health/redis/").json()
        assert client.get("/redis/health/").json()["caches"] == {"default": "ok"}


@pytest.mark.chaos
def test_redis_down_is_503_for_monitoring_and_200_for_the_load_balancer(
    drr_redis_factory: Any,
) -> None:
    server = drr_redis_factory(password="s3cret-pass-word")
    with _settings(server.url):
        from django.core.cache import caches

        server.kill()
        for _ in range(3):
            caches["default"].get("k")  # opens this process's breaker
        client = Client()
        basic = client.get("/redis/health/")
        assert basic.status_code == 200
        assert basic.json() == {"status": "ok", "redis": "degraded"}
        probed = client.get("/redis/health/redis/")
        assert probed.status_code == 503
        assert probed.json() == {"status": "critical"}
        detailed = client.get("/redis/health/redis/", headers={"Authorization": f"Bearer {TOKEN}"})
        assert detailed.status_code == 503
        assert "s3cret-pass-word" not in detailed.content.decode()
        codes = {f["code"] for f in detailed.json()["caches"][0]["findings"]}
        assert {"H001", "H030"} <= codes


@pytest.mark.chaos
def test_before_any_traffic_the_load_balancer_endpoint_probes(drr_redis_factory: Any) -> None:
    """A process that has sent nothing has untouched, closed breakers: they know nothing.
    Redis is down, so the answer must not be ``ok``; the site stays in rotation (200)."""
    server = drr_redis_factory()
    server.kill()
    with _settings(server.url):
        [endpoint] = get_manager("default").endpoints
        assert (endpoint.breaker.closed, endpoint.breaker.used) == (True, False)  # no traffic
        client = Client()
        basic = client.get("/redis/health/")
        assert basic.status_code == 200
        assert basic.json() == {"status": "ok", "redis": "degraded"}
        detailed = client.get("/redis/health/", headers={"Authorization": f"Bearer {TOKEN}"})
        assert detailed.status_code == 200
        assert detailed.json()["caches"] == {"default": "degraded"}
        assert detailed.json()["sources"] == {"default": "probe"}
        assert endpoint.breaker.closed  # the probe is not traffic: the breaker is untouched


def test_once_traffic_has_spoken_the_breakers_answer_without_probes(
    drr_redis_factory: Any,
) -> None:
    """Every answer is probed (cached for CACHE_SECONDS, 0 here) until the process's own
    traffic reaches Redis; from then on the breakers answer and nothing is sent to Redis."""
    server = drr_redis_factory()
    with _settings(server.url, CACHE_SECONDS=0):
        client = Client()
        auth = {"Authorization": f"Bearer {TOKEN}"}
        before = _slowlog_calls(server)
        for _ in range(2):
            probed = client.get("/redis/health/", headers=auth).json()
            assert (probed["redis"], probed["sources"]) == ("ok", {"default": "probe"})
        assert _slowlog_calls(server) - before == 2  # one probe per answer
        caches["default"].get("k")  # the process's own traffic
        before = _slowlog_calls(server)
        for _ in range(3):
            seen = client.get("/redis/health/", headers=auth).json()
            assert (seen["redis"], seen["sources"]) == ("ok", {"default": "traffic"})
        assert _slowlog_calls(server) - before == 0


def test_the_report_is_cached_so_probes_cannot_hammer_redis(drr_redis_factory: Any) -> None:
    server = drr_redis_factory()
    with _settings(server.url, CACHE_SECONDS=60):
        client = Client()
        before = _slowlog_calls(server)
        for _ in range(5):
            assert client.get("/redis/health/redis/").status_code == 200
        assert _slowlog_calls(server) - before == 1  # one probe (one SLOWLOG LEN) in all
    with _settings(server.url, CACHE_SECONDS=0):
        before = _slowlog_calls(server)
        for _ in range(3):
            Client().get("/redis/health/redis/")
        assert _slowlog_calls(server) - before == 3


def test_only_get_and_head_are_allowed(drr_redis_server: RedisServer) -> None:
    # The CSRF check is on, as in a real project: other methods get 405, not 403.
    with (
        _settings(drr_redis_server.url),
        override_settings(MIDDLEWARE=["django.middleware.csrf.CsrfViewMiddleware", *MIDDLEWARE]),
    ):
        client = Client(enforce_csrf_checks=True)
        for path in ("/redis/health/", "/redis/health/redis/"):
            for method in ("post", "put", "delete", "patch"):
                assert getattr(client, method)(path).status_code == 405, (method, path)
            assert client.head(path).status_code == 200


@pytest.mark.chaos
def test_a_report_made_before_this_process_saw_an_outage_is_not_served_after(
    drr_redis_factory: Any,
) -> None:
    """The probe report is cached, but its client view (this process's breakers) and the
    findings drawn from it must not outlive a breaker that opened since."""
    server = drr_redis_factory()
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    with _settings(server.url, CACHE_SECONDS=60):
        client = Client()
        before = client.get("/redis/health/redis/", headers=bearer)
        assert before.status_code == 200
        [endpoint] = before.json()["caches"][0]["client"]["endpoints"]
        assert endpoint["breaker"] == "closed"
        server.kill()
        cache = caches["default"]
        for _ in range(5):
            cache.get("anything")
        assert not get_manager("default").primary.breaker.closed
        after = client.get("/redis/health/redis/", headers=bearer)
        assert after.status_code == 503
        [endpoint] = after.json()["caches"][0]["client"]["endpoints"]
        assert endpoint["breaker"] in ("open", "half_open")
