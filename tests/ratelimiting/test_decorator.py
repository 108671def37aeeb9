"""``@ratelimit`` through Django's test client: status codes, headers, keys, outages."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.http import HttpRequest, HttpResponse
from django.test import AsyncClient, Client, RequestFactory, override_settings

from django_redis_resilience import ratelimit, signals
from django_redis_resilience.exceptions import InvalidRateLimit
from django_redis_resilience.ratelimiting import client_ip
from tests._memory import MEGABYTE, retained_by
from tests.cache.conftest import FAST_BREAKER, resilient_caches

POLICY = re.compile(r'^"(?P<name>[^"]+)";q=(?P<q>\d+);w=(?P<w>\d+)$')
STATE = re.compile(r'^"(?P<name>[^"]+)";r=(?P<r>\d+);t=(?P<t>\d+)$')


@pytest.fixture
def site(drr_redis_server: Any) -> Iterator[None]:
    with override_settings(
        CACHES=resilient_caches(drr_redis_server.url), ROOT_URLCONF="tests.ratelimiting.urls"
    ):
        yield


def _statuses(client: Client, url: str, n: int, **extra: Any) -> list[int]:
    return [client.get(url, **extra).status_code for _ in range(n)]


def test_function_view_answers_429_with_retry_after_and_ietf_fields(site: None) -> None:
    client = Client(REMOTE_ADDR="10.0.0.1")
    responses = [client.get("/fn/") for _ in range(4)]
    assert [r.status_code for r in responses] == [200, 200, 200, 429]
    first, refused = responses[0], responses[-1]
    policy = POLICY.match(first.headers["RateLimit-Policy"])
    assert policy is not None
    assert policy.group("name", "q", "w") == ("fn", "3", "60")
    state = STATE.match(first.headers["RateLimit"])
    assert state is not None
    assert state.group("name", "r") == ("fn", "2")
    assert int(state.group("t")) >= 1
    assert STATE.match(refused.headers["RateLimit"]).group("r") == "0"  # type: ignore[union-attr]
    assert 1 <= int(refused.headers["Retry-After"]) <= 20  # GCRA: one every 20 s after the burst
    assert "Retry-After" not in first.headers
    # Another client has its own quota.
    assert Client(REMOTE_ADDR="10.0.0.2").get("/fn/").status_code == 200


def test_async_view_limits_by_user_or_ip(site: None) -> None:
    client = AsyncClient(REMOTE_ADDR="10.0.1.1")

    async def three() -> list[int]:
        return [(await client.get("/async/")).status_code for _ in range(3)]

    from asgiref.sync import async_to_sync

    assert async_to_sync(three)() == [200, 200, 429]


def test_block_false_only_annotates(site: None) -> None:
    client = Client(REMOTE_ADDR="10.0.2.1")
    first, second = client.get("/annotate/"), client.get("/annotate/")
    assert (first.status_code, second.status_code) == (200, 200)
    assert first.json() == {"allowed": True, "remaining": 0}
    assert second.json()["allowed"] is False


def test_only_the_given_methods_are_limited(site: None) -> None:
    client = Client(REMOTE_ADDR="10.0.3.1")
    assert _statuses(client, "/post-only/", 3) == [200, 200, 200]
    assert "RateLimit" not in client.get("/post-only/").headers
    assert [client.post("/post-only/").status_code for _ in range(2)] == [200, 429]


def test_two_limits_add_two_members_to_each_field(site: None) -> None:
    client = Client(REMOTE_ADDR="10.0.4.1")
    response = client.get("/two/", HTTP_X_API_KEY="k1")
    assert [m.strip() for m in response.headers["RateLimit-Policy"].split(",")] == [
        '"by-ip";q=100;w=60',
        '"by-header";q=2;w=60',
    ]
    assert len(response.headers["RateLimit"].split(",")) == 2
    assert client.get("/two/", HTTP_X_API_KEY="k1").status_code == 200
    assert client.get("/two/", HTTP_X_API_KEY="k1").status_code == 429
    assert client.get("/two/", HTTP_X_API_KEY="k2").status_code == 200


@pytest.mark.parametrize("url", ["/cbv-method/", "/mixin/", "/async-mixin/"])
def test_class_based_views(site: None, url: str) -> None:
    client = Client(REMOTE_ADDR="10.0.5.1")
    statuses = _statuses(client, url, 3)
    assert statuses == [200, 200, 429]


def test_exceeded_signal_carries_the_request_and_decision(site: None) -> None:
    seen: list[Any] = []

    def receiver(sender: object, request: Any, decision: Any, **kwargs: Any) -> None:
        seen.append((request.path, decision.allowed, decision.name))

    signals.ratelimit_exceeded.connect(receiver)
    try:
        _statuses(Client(REMOTE_ADDR="10.0.6.1"), "/fn/", 4)
    finally:
        signals.ratelimit_exceeded.disconnect(receiver)
    assert seen == [("/fn/", False, "fn")]


# --- who a request is ---------------------------------------------------------------------


class _Request:
    def __init__(self, remote: str, forwarded: str = "") -> None:
        self.META = {"REMOTE_ADDR": remote}
        if forwarded:
            self.META["HTTP_X_FORWARDED_FOR"] = forwarded


@pytest.mark.parametrize(
    ("hops", "remote", "forwarded", "expected"),
    [
        (0, "203.0.113.9", "198.51.100.1", "203.0.113.9/32"),  # no trusted proxy: XFF ignored
        (1, "10.0.0.2", "6.6.6.6, 198.51.100.1", "198.51.100.1/32"),  # the proxy's view wins
        (2, "10.0.0.2", "6.6.6.6, 198.51.100.1, 10.0.0.3", "198.51.100.1/32"),
        (2, "10.0.0.2", "198.51.100.1", "10.0.0.2/32"),  # fewer hops than trusted: REMOTE_ADDR
        (0, "2001:db8:1:2:3:4:5:6", "", "2001:db8:1:2::/64"),
        (0, "not-an-ip", "", "not-an-ip"),
        (0, "::ffff:192.0.2.7", "", "192.0.2.7/32"),  # dual-stack listener, IPv4 client
        (1, "10.0.0.2", "198.51.100.1:5555", "198.51.100.1/32"),  # a proxy that adds the port
        (1, "10.0.0.2", "[2001:db8::9]:443", "2001:db8::/64"),
        (1, "10.0.0.2", "6.6.6.6, ", "10.0.0.2/32"),  # the trusted entry is empty: REMOTE_ADDR
        (1, "10.0.0.2", "6.6.6.6, garbage", "10.0.0.2/32"),  # unparseable: REMOTE_ADDR
    ],
)
def test_client_ip_trusts_only_the_configured_hops(
    hops: int, remote: str, forwarded: str, expected: str
) -> None:
    with override_settings(REDIS_RESILIENCE={"RATELIMIT": {"TRUSTED_PROXY_HOPS": hops}}):
        assert client_ip(_Request(remote, forwarded)) == expected  # type: ignore[arg-type]


PROXIES = ["10.0.0.0/8", "2001:db8:ffff::/48", "192.0.2.80"]


@pytest.mark.parametrize(
    ("remote", "forwarded", "expected"),
    [
        ("203.0.113.9", "198.51.100.1", "203.0.113.9/32"),  # reached directly: XFF ignored
        ("10.0.0.2", "6.6.6.6, 198.51.100.1", "198.51.100.1/32"),  # one proxy
        ("10.0.0.2", "6.6.6.6, 198.51.100.1, 192.0.2.80, 10.9.9.9", "198.51.100.1/32"),  # three
        ("10.0.0.2", "198.51.100.1", "198.51.100.1/32"),  # as many proxies as it passed
        ("10.0.0.2", "", "10.0.0.2/32"),  # a proxy's own request
        ("10.0.0.2", "10.0.0.3, 10.0.0.4", "10.0.0.3/32"),  # only proxies: the left-most
        ("10.0.0.2", "6.6.6.6, garbage", "10.0.0.2/32"),  # the proxy wrote no address
        ("10.0.0.2", "6.6.6.6, , 10.0.0.3", "10.0.0.3/32"),  # an empty entry stops there too
        ("192.0.2.81", "198.51.100.1", "192.0.2.81/32"),  # next to a trusted address: not one
        ("::ffff:10.0.0.2", "198.51.100.1", "198.51.100.1/32"),  # dual-stack view of a proxy
        ("2001:db8:ffff:1::5", "[2001:db8:7::9]:443", "2001:db8:7::/64"),
        ("10.0.0.2", "198.51.100.1:5555", "198.51.100.1/32"),  # a proxy that adds the port
    ],
)
def test_client_ip_walks_back_through_trusted_proxies(
    remote: str, forwarded: str, expected: str
) -> None:
    with override_settings(REDIS_RESILIENCE={"RATELIMIT": {"TRUSTED_PROXIES": PROXIES}}):
        assert client_ip(_Request(remote, forwarded)) == expected  # type: ignore[arg-type]


def test_trusted_proxies_limit_the_client_not_the_proxy(site: None) -> None:
    """Two clients behind one trusted proxy have a quota each; a spoofed entry buys nothing."""
    settings = {"RATELIMIT": {"TRUSTED_PROXIES": ["10.0.0.0/8"]}}
    with override_settings(REDIS_RESILIENCE=settings):
        proxy = Client(REMOTE_ADDR="10.1.2.3")
        first = [proxy.get("/fn/", HTTP_X_FORWARDED_FOR="198.51.100.1") for _ in range(3)]
        assert [r.status_code for r in first] == [200, 200, 200]
        # The same client writing a made-up address of its own is still itself.
        spoofed = proxy.get("/fn/", HTTP_X_FORWARDED_FOR="1.2.3.4, 198.51.100.1")
        assert spoofed.status_code == 429
        other = proxy.get("/fn/", HTTP_X_FORWARDED_FOR="198.51.100.2")
        assert other.status_code == 200


def test_ipv6_addresses_in_one_64_share_a_quota(site: None) -> None:
    first = Client(REMOTE_ADDR="2001:db8:7::1")
    second = Client(REMOTE_ADDR="2001:db8:7::ffff")
    assert [first.get("/fn/").status_code for _ in range(3)] == [200, 200, 200]
    assert second.get("/fn/").status_code == 429


def test_spoofed_forwarded_for_does_not_buy_a_new_quota(site: None) -> None:
    client = Client(REMOTE_ADDR="10.0.7.1")
    statuses = [
        client.get("/fn/", HTTP_X_FORWARDED_FOR=f"198.51.100.{i}").status_code for i in range(4)
    ]
    assert statuses == [200, 200, 200, 429]


# --- outages ------------------------------------------------------------------------------


@pytest.mark.chaos
def test_outage_policies_deny_allow_and_local(drr_redis_factory: Any) -> None:
    server = drr_redis_factory()
    caches = resilient_caches(server.url, BREAKER=FAST_BREAKER)
    with override_settings(CACHES=caches, ROOT_URLCONF="tests.ratelimiting.urls"):
        client = Client(REMOTE_ADDR="10.0.8.1")
        server.kill()
        denied = client.get("/deny/")
        assert denied.status_code == 503
        assert int(denied.headers["Retry-After"]) >= 1
        assert _statuses(client, "/allow/", 4) == [200, 200, 200, 200]
        # "local" (the default): the same algorithm in this process.
        assert _statuses(client, "/fn/", 4) == [200, 200, 200, 429]


# --- bad arguments fail when decorating ------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"key": "ip", "rate": "ten/m"}, "'ten/m'"),
        ({"key": "nope", "rate": "1/m"}, "'nope'"),
        ({"key": "ip", "rate": "1/m", "algorithm": "leaky"}, "'leaky'"),
        ({"key": "ip", "rate": "1/m", "cost": 0}, "cost=0"),
        ({"key": "ip", "rate": "1/m", "on_unavailable": "maybe"}, "'maybe'"),
        ({"key": "ip", "rate": "1/m", "method": 3}, "method=3"),
        ({"key": "ip", "rate": "1/m", "algorithm": "fixed_window", "burst": 5}, "burst"),
        ({"key": "ip", "rate": "5/m", "cost": 10}, "cost=10 exceeds the limit of 5"),
        ({"key": "ip", "rate": "1/m", "group": 123}, "group=123"),
        ({"key": "ip", "rate": "1/m", "block": "no"}, "block='no'"),
        ({"key": "ip", "rate": "3000000/s"}, "more than one per microsecond"),
    ],
)
def test_bad_arguments_fail_when_the_decorator_is_applied(
    kwargs: dict[str, Any], named: str
) -> None:
    with pytest.raises(InvalidRateLimit) as error:
        ratelimit(**kwargs)
    assert named in str(error.value)


@pytest.mark.django_db
def test_async_view_counts_the_logged_in_user_from_auser(site: None) -> None:
    from django.contrib.auth.models import User

    alice = User.objects.create_user("alice", password="pw")
    bob = User.objects.create_user("bob", password="pw")
    middleware = [
        "django.contrib.sessions.middleware.SessionMiddleware",
        "django.contrib.auth.middleware.AuthenticationMiddleware",
    ]
    with override_settings(MIDDLEWARE=middleware):
        from asgiref.sync import async_to_sync

        async def statuses(user: Any, n: int) -> list[int]:
            client = AsyncClient(REMOTE_ADDR="10.0.9.1")  # one address for everyone
            await client.aforce_login(user)
            return [(await client.get("/async-user/")).status_code for _ in range(n)]

        assert async_to_sync(statuses)(alice, 2) == [200, 429]
        assert async_to_sync(statuses)(bob, 1) == [200]  # same address, another user
        anonymous = Client(REMOTE_ADDR="10.0.9.1")
        assert _statuses(anonymous, "/async-user/", 3) == [200, 200, 200]  # "user": not limited


def test_the_refusal_view_is_configurable(drr_redis_server: Any) -> None:
    with override_settings(
        CACHES=resilient_caches(drr_redis_server.url),
        ROOT_URLCONF="tests.ratelimiting.urls",
        REDIS_RESILIENCE={"RATELIMIT": {"VIEW": "tests.ratelimiting.urls.custom_refusal"}},
    ):
        client = Client(REMOTE_ADDR="10.0.10.1")
        refused = [client.get("/fn/") for _ in range(4)][-1]
        assert refused.status_code == 429
        assert refused.json() == {"error": "slow down"}
        assert "Retry-After" in refused.headers


def test_an_async_key_function_is_awaited(site: None) -> None:
    from asgiref.sync import async_to_sync

    async def api_key(group: str, request: Any) -> str:
        return request.headers.get("x-key", "")

    @ratelimit(key=api_key, rate="1/m", group="async-key")
    async def view(request: Any) -> Any:
        from django.http import HttpResponse

        return HttpResponse("ok")

    from django.test import AsyncRequestFactory

    factory = AsyncRequestFactory()

    async def statuses() -> list[int]:
        out = []
        for key in ("a", "a", "b"):
            response = await view(factory.get("/", headers={"x-key": key}))
            out.append(response.status_code)
        return out

    assert async_to_sync(statuses)() == [200, 429, 200]


def _token(group: str, request: Any) -> str:
    return str(request.headers.get("x-token", ""))


@pytest.mark.parametrize(
    ("key", "request_with"),
    [
        ("header:x-token", lambda big: RequestFactory().get("/", HTTP_X_TOKEN=big)),
        ("get:q", lambda big: RequestFactory().get("/", {"q": big})),
        ("post:field", lambda big: RequestFactory().post("/", {"field": big})),
        (_token, lambda big: RequestFactory().get("/", HTTP_X_TOKEN=big)),
    ],
    ids=["header", "get", "post", "callable"],
)
def test_huge_request_values_are_not_remembered_for_any_key(
    site: None, key: Any, request_with: Callable[[str], HttpRequest]
) -> None:
    """Anonymous requests with a 1 MB field once grew the process by 1 MB each."""

    @ratelimit(key=key, rate="5/m", group=f"huge-{key}")
    def view(request: HttpRequest) -> HttpResponse:
        return HttpResponse("ok")

    assert view(request_with("warm-up")).status_code == 200

    def huge_requests() -> None:
        for n in range(100):
            assert view(request_with(f"{n}:" + "x" * MEGABYTE)).status_code == 200

    assert retained_by(huge_requests) < 5 * MEGABYTE
