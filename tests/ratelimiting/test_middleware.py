"""``RateLimitMiddleware``: rules from settings, one round trip for all of a request's rules."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.http import HttpRequest, HttpResponse
from django.test import AsyncClient, Client, override_settings
from django.urls import path

from django_redis_resilience.conf import conf
from django_redis_resilience.exceptions import InvalidOption, InvalidRateLimit
from django_redis_resilience.ratelimiting._middleware import load_rules
from tests.cache.conftest import resilient_caches

MIDDLEWARE = ["django_redis_resilience.ratelimiting.RateLimitMiddleware"]
RULES = [
    {"PATH": r"^/api/", "KEY": "ip", "RATE": "3/m", "NAME": "api-ip"},
    {"PATH": r"^/api/", "KEY": "header:x-client", "RATE": "100/m", "NAME": "api-client"},
    {"PATH": r"^/api/write", "METHOD": "POST", "KEY": "ip", "RATE": "1/m", "NAME": "writes",
     "ALGORITHM": "fixed_window"},
]  # fmt: skip


def view(request: HttpRequest) -> HttpResponse:
    return HttpResponse("ok")


async def async_view(request: HttpRequest) -> HttpResponse:
    return HttpResponse("ok")


urlpatterns = [
    path("api/read", view),
    path("api/write", view),
    path("api/async", async_view),
    path("page", view),
]


def _evalsha_calls(server: Any) -> int:
    with server.client() as client:
        stats = client.info("commandstats").get("cmdstat_evalsha", {})
    return int(stats.get("calls", 0)) if isinstance(stats, dict) else 0


@pytest.fixture
def site(drr_redis_server: Any) -> Iterator[Any]:
    with override_settings(
        CACHES=resilient_caches(drr_redis_server.url),
        ROOT_URLCONF=__name__,
        MIDDLEWARE=MIDDLEWARE,
        REDIS_RESILIENCE={"RATELIMIT": {"RULES": RULES}},
    ):
        yield drr_redis_server


def test_all_rules_of_a_request_cost_one_round_trip(site: Any) -> None:
    client = Client(REMOTE_ADDR="10.1.0.1")
    client.get("/api/read", HTTP_X_CLIENT="a")  # loads the script
    before = _evalsha_calls(site)
    response = client.get("/api/read", HTTP_X_CLIENT="a")
    assert _evalsha_calls(site) - before == 1  # two rules, one EVALSHA
    names = [m.split(";")[0] for m in response.headers["RateLimit-Policy"].split(", ")]
    assert names == ['"api-ip"', '"api-client"']
    assert client.get("/api/read", HTTP_X_CLIENT="a").status_code == 200
    assert client.get("/api/read", HTTP_X_CLIENT="a").status_code == 429


def test_unmatched_paths_and_methods_are_not_limited(site: Any) -> None:
    client = Client(REMOTE_ADDR="10.1.0.2")
    before = _evalsha_calls(site)
    for _ in range(5):
        response = client.get("/page")
        assert response.status_code == 200
        assert "RateLimit" not in response.headers
    assert _evalsha_calls(site) == before
    assert [client.get("/api/write").status_code for _ in range(2)] == [200, 200]


def test_all_or_nothing_a_refused_rule_consumes_no_other(site: Any) -> None:
    client = Client(REMOTE_ADDR="10.1.0.3")
    assert client.post("/api/write").status_code == 200  # writes: 1/m used, api-ip: 1 of 3
    refused = client.post("/api/write")  # writes refuses: api-ip must not be consumed
    assert refused.status_code == 429
    # Had the refused call consumed api-ip, the second read would be refused already.
    assert [client.get("/api/read").status_code for _ in range(3)] == [200, 200, 429]


def test_async_stack(site: Any) -> None:
    client = AsyncClient(REMOTE_ADDR="10.1.0.4")

    async def four() -> list[int]:
        return [(await client.get("/api/async")).status_code for _ in range(4)]

    assert async_to_sync(four)() == [200, 200, 200, 429]


@pytest.mark.parametrize(
    ("rules", "named"),
    [
        ("nope", "must be a list"),
        ([{"PATH": "^/", "KEY": "ip"}], "needs 'RATE'"),
        ([{"PATH": "(", "KEY": "ip", "RATE": "1/m"}], "is not a regex"),
        ([{"PATH": "^/", "KEY": "ip", "RATE": "1/m", "LIMIT": 3}], "unknown keys ['LIMIT']"),
        ([{"PATH": "^/", "KEY": "ip", "RATE": "many"}], "RULES'][0]: Rate 'many'"),
        ([{"PATH": "^/", "KEY": "who", "RATE": "1/m"}], "key='who'"),
    ],
)
def test_bad_rules_are_refused_at_startup_with_the_rule_named(rules: Any, named: str) -> None:
    with pytest.raises(InvalidRateLimit) as error:
        load_rules({"RULES": rules})
    assert named in str(error.value)
    with override_settings(REDIS_RESILIENCE={"RATELIMIT": {"RULES": rules}}):
        with pytest.raises(InvalidOption) as startup:
            conf.validate()
        assert "django_redis_resilience.E002" in str(startup.value)


def test_w005_middleware_before_authentication_and_e002_cache_not_redis() -> None:
    from django_redis_resilience import checks

    auth = "django.contrib.auth.middleware.AuthenticationMiddleware"
    with override_settings(MIDDLEWARE=[*MIDDLEWARE, auth]):
        ids = [m.id for m in checks.check_settings()]
    assert "django_redis_resilience.W005" in ids
    with override_settings(MIDDLEWARE=[auth, *MIDDLEWARE]):
        assert "django_redis_resilience.W005" not in [m.id for m in checks.check_settings()]
    with override_settings(REDIS_RESILIENCE={"RATELIMIT": {"CACHE": "default"}}):
        messages = [m for m in checks.check_settings() if m.id.endswith("E002")]
    assert messages
    assert "not a ResilientRedisCache alias" in messages[0].msg


def test_a_non_blocking_rule_over_its_limit_does_not_disable_the_others(
    drr_redis_server: Any,
) -> None:
    rules = [
        {"PATH": "^/page", "KEY": "ip", "RATE": "1/m", "NAME": "soft", "BLOCK": False},
        {"PATH": "^/page", "KEY": "ip", "RATE": "2/m", "NAME": "hard"},
    ]
    with override_settings(
        CACHES=resilient_caches(drr_redis_server.url),
        ROOT_URLCONF=__name__,
        MIDDLEWARE=MIDDLEWARE,
        REDIS_RESILIENCE={"RATELIMIT": {"RULES": rules}},
    ):
        client = Client(REMOTE_ADDR="10.1.0.5")
        assert [client.get("/page").status_code for _ in range(4)] == [200, 200, 429, 429]


def test_retry_after_is_the_longest_wait_of_the_refusing_rules(drr_redis_server: Any) -> None:
    rules = [
        {"PATH": "^/page", "KEY": "ip", "RATE": "1/h", "NAME": "hourly",
         "ALGORITHM": "fixed_window"},
        {"PATH": "^/page", "KEY": "ip", "RATE": "1/10s", "NAME": "short"},
    ]  # fmt: skip
    with override_settings(
        CACHES=resilient_caches(drr_redis_server.url),
        ROOT_URLCONF=__name__,
        MIDDLEWARE=MIDDLEWARE,
        REDIS_RESILIENCE={"RATELIMIT": {"RULES": rules}},
    ):
        client = Client(REMOTE_ADDR="10.1.0.6")
        assert client.get("/page").status_code == 200
        refused = client.get("/page")
        hour_left = 3600 - time.time() % 3600  # the fixed window ends on the hour
        assert refused.status_code == 429
        # The longer of the two waits: the hour's, unless it ends within the 10 s one.
        retry_after = int(refused.headers["Retry-After"])
        assert max(hour_left, 10) - 2 <= retry_after <= max(hour_left, 10) + 2
