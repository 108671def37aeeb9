"""The health endpoints probed by strangers: hostile query strings, headers and methods.

Anonymous callers get the status only (``health/``: ``status`` and ``redis``;
``health/redis/``: ``status``), whatever they send; only the exact bearer token
(or a staff session) gets details; methods other than GET get 405; nothing
answers 500, with Redis up or down.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.test import Client, override_settings
from hypothesis import example, given
from hypothesis import strategies as st

from django_redis_resilience import views
from django_redis_resilience.testing import RedisServer, free_port
from tests.cache.conftest import FAST_BREAKER, resilient_caches
from tests.hostile._support import LATIN1, examples

TOKEN = "hostile-health-token-9f8e7d6c5b4a"
#: A project's usual stack: CSRF protection included, as ``startproject`` writes it.
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
PATHS = {"/redis/health/": {"status", "redis"}, "/redis/health/redis/": {"status"}}


def _site(location: Any) -> Any:
    return override_settings(
        CACHES=resilient_caches(location, BREAKER=FAST_BREAKER, SOCKET_TIMEOUT=0.2),
        REDIS_RESILIENCE={"HEALTH": {"TOKEN": TOKEN, "TIMEOUT": 0.3, "CACHE_SECONDS": 30}},
        ROOT_URLCONF="tests.hostile.urls",
        MIDDLEWARE=MIDDLEWARE,
    )


@pytest.fixture(scope="module", params=["redis-up", "redis-down"])
def site(request: pytest.FixtureRequest) -> Iterator[str]:
    """The endpoints over the shared server, or over a port nothing listens on."""
    if request.param == "redis-up":
        server: RedisServer = request.getfixturevalue("drr_redis_server")
        location = server.url
    else:
        location = f"redis://127.0.0.1:{free_port()}/0"
    views.forget_cached_report()
    with _site(location):
        yield request.param
    views.forget_cached_report()


def authorizes(header: str | None) -> bool:
    """The README's rule: ``Authorization: Bearer <TOKEN>``."""
    if header is None:
        return False
    scheme, _, given_token = header.partition(" ")
    return scheme.lower() == "bearer" and given_token.strip() == TOKEN


AUTHORIZATION = st.one_of(
    st.none(),
    st.text(LATIN1, max_size=60),
    st.text(LATIN1, max_size=60).map(lambda t: f"Bearer {t}"),
    st.sampled_from(
        [
            "Bearer",
            "Bearer ",
            "bearer",
            "Basic " + TOKEN,
            TOKEN,
            f"Bearer {TOKEN}x",
            f"Bearer {TOKEN[:-1]}",
            f"Bearer {TOKEN.upper()}",
            f"Bearer\t{TOKEN}",
            f"Bearer {TOKEN}\x00",
            f"Bearer x{TOKEN}",
            "Bearer None",
            "Bearer null",
            "Bearer " + "A" * 100_000,
            "Bearer \u00e9\u00ff\u0085",
            "Token " + TOKEN,
        ]
    ),
).filter(lambda header: not authorizes(header))
QUERY = st.one_of(
    st.text(LATIN1, max_size=80),
    st.sampled_from(
        [
            "",
            "?",
            "details=1",
            "format=json&verbose=true",
            "%ff%fe%00",
            "a=" + "b" * 50_000,
            "&" * 10_000,
            "x[]=1&x[]=2",
            "__proto__=1",
            "callback=alert(1)",
        ]
    ),
)
COOKIE = st.one_of(
    st.none(),
    st.sampled_from(["sessionid=forged", "sessionid=" + "x" * 4000, "sessionid=", "=;=;"]),
    st.text(LATIN1, max_size=40).map(lambda t: f"sessionid={t}"),
)
OTHER_HEADERS = st.dictionaries(
    st.sampled_from(
        [
            "HTTP_X_FORWARDED_FOR",
            "HTTP_HOST",
            "HTTP_ACCEPT",
            "HTTP_X_REAL_IP",
            "HTTP_ORIGIN",
            "HTTP_X_HTTP_METHOD_OVERRIDE",
            "CONTENT_TYPE",
        ]
    ),
    st.text(LATIN1, max_size=40),
    max_size=3,
)


@pytest.mark.django_db  # a forged session cookie is looked up (and not found)
@examples(80)
@given(
    path=st.sampled_from(sorted(PATHS)),
    query=QUERY,
    authorization=AUTHORIZATION,
    cookie=COOKIE,
    headers=OTHER_HEADERS,
)
@example(path="/redis/health/redis/", query="", authorization=None, cookie=None, headers={})
@example(
    path="/redis/health/",
    query="",
    authorization="Bearer " + "\u00e9" * 5000,
    cookie="sessionid=forged",
    headers={"HTTP_X_HTTP_METHOD_OVERRIDE": "DELETE"},
)
def test_a_stranger_gets_the_status_only(
    site: str,
    path: str,
    query: str,
    authorization: str | None,
    cookie: str | None,
    headers: dict[str, str],
) -> None:
    extra = dict(headers)
    extra.setdefault("HTTP_HOST", "testserver")
    if authorization is not None:
        extra["HTTP_AUTHORIZATION"] = authorization
    if cookie is not None:
        extra["HTTP_COOKIE"] = cookie
    extra["QUERY_STRING"] = query
    client = Client(raise_request_exception=True)
    response = client.get(path, **extra)
    if extra["HTTP_HOST"] != "testserver" and response.status_code == 400:
        return  # Django refused the Host header (ALLOWED_HOSTS) before any view ran
    allowed = {200} if path == "/redis/health/" else {200, 503}
    assert response.status_code in allowed, response.content[:300]
    body = response.json()
    assert set(body) == PATHS[path], body
    assert body["status"] in ("ok", "warning", "critical", "unknown"), body
    if site == "redis-down" and path == "/redis/health/redis/":
        assert (response.status_code, body["status"]) == (503, "critical")


@pytest.mark.django_db
def test_methods_other_than_get_are_405(drr_redis_server: RedisServer) -> None:
    """The endpoints only read, so nothing but GET (and HEAD) is meant for them, with the token or
    without. The client checks CSRF as a browser-less caller meets it (no CSRF token):
    a refused method must still be "405 Method Not Allowed", not a CSRF failure page."""
    answers: dict[tuple[str, str, bool], int] = {}
    with _site(drr_redis_server.url):
        client = Client(enforce_csrf_checks=True)
        for path in sorted(PATHS):
            for method in ("post", "put", "delete", "patch"):
                for authorized in (False, True):
                    headers = {"Authorization": f"Bearer {TOKEN}"} if authorized else {}
                    response = getattr(client, method)(
                        path,
                        data="x=1",
                        content_type="application/x-www-form-urlencoded",
                        headers=headers,
                    )
                    assert response.status_code != 500
                    assert b"caches" not in response.content
                    answers[(method.upper(), path, authorized)] = response.status_code
                    if response.status_code == 405:
                        assert response["Allow"] == "GET, HEAD"
    wrong = {k: v for k, v in answers.items() if v != 405}
    assert not wrong, f"not 405: {wrong}"


@pytest.mark.parametrize("path", sorted(PATHS))
def test_the_exact_token_gets_the_details(site: str, path: str) -> None:
    """The control for the tests above: the same client with the right token sees more."""
    client = Client()
    detailed = client.get(path, headers={"Authorization": f"Bearer {TOKEN}"})
    assert detailed.status_code in (200, 503)
    assert "caches" in detailed.json()
