"""A wrong password, full of characters that break URLs: the site degrades, nothing leaks.

The server requires a password; ``LOCATION`` carries another one (percent-encoded,
as the docs say). Cache calls never raise and are served by the fallback; one
ERROR line says the credentials were refused; ``redis_health`` (table and JSON)
and the health endpoint report the auth finding, H002, not "unreachable"; and
neither password shows anywhere, in any escaping.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from io import StringIO
from typing import Any
from urllib.parse import quote

import pytest
from django.core.cache import caches
from django.core.management import call_command
from django.test import Client, override_settings

from django_redis_resilience import views
from django_redis_resilience.cache import ResilientRedisCache
from django_redis_resilience.testing import RedisServer
from tests.cache.conftest import FAST_BREAKER, resilient_caches
from tests.hostile._support import leaked, secret_forms

RIGHT = "r1ghtPw9924:/?#@%, é"
WRONG = "wr0ngPw7731@:/?#%,\té"
FORMS = secret_forms("r1ghtPw9924", RIGHT) + secret_forms("wr0ngPw7731", WRONG)
TOKEN = "hostile-health-token-0123456789"


def _run_health(*args: str) -> tuple[int, str]:
    """``redis_health``'s exit code and everything it printed."""
    out, err = StringIO(), StringIO()
    try:
        call_command("redis_health", *args, stdout=out, stderr=err)
    except SystemExit as exc:
        code = exc.code
        assert isinstance(code, int)
    else:
        code = 0
    return code, out.getvalue() + err.getvalue()


@pytest.fixture
def refused(
    drr_redis_factory: Any, caplog: pytest.LogCaptureFixture
) -> Iterator[tuple[RedisServer, ResilientRedisCache]]:
    """A server that wants ``RIGHT``, and a cache that offers ``WRONG``."""
    server: RedisServer = drr_redis_factory(password=RIGHT)
    location = f"redis://:{quote(WRONG, safe='')}@{server.host}:{server.port}/0"
    caplog.set_level(logging.DEBUG, logger="django_redis_resilience")
    views.forget_cached_report()
    with override_settings(
        CACHES=resilient_caches(location, BREAKER=FAST_BREAKER),
        REDIS_RESILIENCE={"HEALTH": {"TOKEN": TOKEN, "TIMEOUT": 0.5, "CACHE_SECONDS": 0}},
        ROOT_URLCONF="tests.hostile.urls",
    ):
        cache = caches["default"]
        assert isinstance(cache, ResilientRedisCache)
        yield server, cache
    views.forget_cached_report()


def test_a_wrong_password_degrades_the_cache_and_says_so_once_without_the_password(
    refused: tuple[RedisServer, ResilientRedisCache], caplog: pytest.LogCaptureFixture
) -> None:
    server, cache = refused
    assert cache.set("k", "v", 60) is True  # served by the fallback, never raised
    assert cache.get("k") == "v"
    assert cache.get_many(["k", "other"]) == {"k": "v"}
    assert cache.add("k", "again") is False
    stats = cache.stats()
    assert stats["fallback_writes"] >= 1
    assert stats["fallback_reads"] >= 1
    with server.client() as admin:
        assert admin.dbsize() == 0  # nothing reached Redis
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors, "no ERROR line for refused credentials"
    assert any("auth" in r.getMessage().lower() for r in errors), [r.getMessage() for r in errors]
    assert leaked(caplog.text, FORMS) == [], caplog.text


def test_redis_health_reports_h002_without_the_password(
    refused: tuple[RedisServer, ResilientRedisCache],
) -> None:
    _, cache = refused
    cache.get("k")  # this process has met the refusal too
    code, table = _run_health("--timeout", "0.5")
    assert code == 2, table
    assert "H002" in table, table
    code, text = _run_health("--json", "--timeout", "0.5")
    assert code == 2, text
    report = json.loads(text)
    (entry,) = report["caches"]
    assert entry["nodes"][0]["error"] == "auth"
    codes = {f["code"] for f in entry["findings"]}
    assert "H002" in codes
    assert "H001" not in codes, "refused credentials reported as an unreachable node"
    for output in (table, text):
        assert leaked(output, FORMS) == [], output


def test_the_health_endpoint_reports_h002_without_the_password(
    refused: tuple[RedisServer, ResilientRedisCache],
) -> None:
    _, cache = refused
    cache.get("k")
    client = Client()
    anonymous = client.get("/redis/health/redis/")
    assert anonymous.status_code == 503
    assert anonymous.json() == {"status": "critical"}
    detailed = client.get("/redis/health/redis/", headers={"Authorization": f"Bearer {TOKEN}"})
    assert detailed.status_code == 503
    body = detailed.content.decode()
    assert leaked(body, FORMS) == [], body
    codes = {f["code"] for f in detailed.json()["caches"][0]["findings"]}
    assert "H002" in codes
    assert "H001" not in codes
    basic = client.get("/redis/health/", headers={"Authorization": f"Bearer {TOKEN}"})
    assert basic.status_code == 200
    assert basic.json()["redis"] == "degraded"
    assert leaked(basic.content.decode(), FORMS) == []
