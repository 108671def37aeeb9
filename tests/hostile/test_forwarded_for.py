"""``X-Forwarded-For`` from hostile clients against ``key="ip"`` rate limits.

The README: the client is ``REMOTE_ADDR``; with ``TRUSTED_PROXY_HOPS = n`` it is
the n-th address from the right of ``X-Forwarded-For``, the one the outermost
trusted proxy wrote, "never an entry a client could have written"; with
``TRUSTED_PROXIES`` it is the right-most address that is not one of them. So whatever
a client puts in the header (garbage, thousands of entries, IPv6, ports, other
people's addresses), the address it is limited by does not change, and nothing
crashes.
"""

from __future__ import annotations

import ipaddress
import itertools
from collections.abc import Iterator
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.test import AsyncClient, Client, override_settings
from hypothesis import example, given
from hypothesis import strategies as st

from django_redis_resilience.cache import ResilientRedisCache
from django_redis_resilience.ratelimiting import client_ip
from tests.hostile._support import LATIN1, examples
from tests.hostile.urls import LIMIT

_addresses = itertools.count(1)


def fresh_ipv4() -> str:
    """An address no other example has used, so its quota is untouched (replays included)."""
    n = next(_addresses)
    return str(ipaddress.IPv4Address("10.64.0.0") + n)


class _Request:
    """What ``client_ip`` reads: the WSGI environ."""

    def __init__(self, remote: str, forwarded: str | None) -> None:
        self.META: dict[str, str] = {"REMOTE_ADDR": remote}
        if forwarded is not None:
            self.META["HTTP_X_FORWARDED_FOR"] = forwarded


ENTRY = st.one_of(
    st.ip_addresses().map(str),
    st.ip_addresses(v=4).map(lambda ip: f"{ip}:{ip.packed[0] * 200}"),
    st.ip_addresses(v=6).map(lambda ip: f"[{ip}]:443"),
    st.ip_addresses(v=6).map(lambda ip: f"{ip}%eth0"),
    st.sampled_from(["", " ", "unknown", "_hidden", "::ffff:10.0.0.1", "1.2.3", "256.1.1.1"]),
    st.text(LATIN1, max_size=30),
)
#: What a client writes: any number of entries, any garbage, or a huge header.
SPOOFED = st.one_of(
    st.lists(ENTRY, max_size=8).map(", ".join),
    st.text(LATIN1, max_size=200),
    st.integers(1000, 20_000).map(lambda n: "," * n),
    st.integers(100, 2000).map(lambda n: ", ".join(f"203.0.113.{i % 256}" for i in range(n))),
)


@examples(300)
@given(
    hops=st.integers(0, 3),
    spoofed=SPOOFED,
    client=st.ip_addresses().map(str),
    proxies=st.lists(st.ip_addresses(v=4).map(str), min_size=3, max_size=3),
)
@example(hops=1, spoofed="1.2.3.4", client="198.51.100.7", proxies=["10.0.0.1"] * 3)
@example(hops=2, spoofed=", , ,", client="2001:db8::1", proxies=["10.0.0.1"] * 3)
def test_what_a_client_writes_never_changes_who_it_is(
    hops: int, spoofed: str, client: str, proxies: list[str]
) -> None:
    """Behind ``hops`` proxies, each appending the address it saw, the limited identity is
    the same whatever the client put in front, and the same as when it put nothing."""
    # The last proxy connects to Django; each proxy appends the address of its peer.
    chain = [client, *proxies[: max(hops - 1, 0)]]
    remote = proxies[hops - 1] if hops else client
    trusted = ", ".join(chain) if hops else ""
    honest = _Request(remote, trusted or None)
    hostile = _Request(remote, f"{spoofed}, {trusted}" if hops else spoofed)
    with override_settings(REDIS_RESILIENCE={"RATELIMIT": {"TRUSTED_PROXY_HOPS": hops}}):
        assert client_ip(hostile) == client_ip(honest)  # type: ignore[arg-type]
        seen = client_ip(honest)  # type: ignore[arg-type]
    expected = ipaddress.ip_address(client)
    if isinstance(expected, ipaddress.IPv6Address) and expected.ipv4_mapped is not None:
        expected = expected.ipv4_mapped
    assert expected in ipaddress.ip_network(seen), (seen, client)


#: The proxies of the ``TRUSTED_PROXIES`` property below, and addresses outside them.
PROXY_NETWORK = ipaddress.ip_network("10.0.0.0/8")


def _plain(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    ip = ipaddress.ip_address(text)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


OUTSIDE = st.ip_addresses().map(str).filter(lambda ip: _plain(ip) not in PROXY_NETWORK)


@examples(300)
@given(
    hops=st.integers(0, 3),
    spoofed=SPOOFED,
    client=OUTSIDE,
    proxies=st.lists(
        st.integers(1, 2**24 - 2).map(lambda n: str(PROXY_NETWORK[n])), min_size=3, max_size=3
    ),
)
@example(hops=2, spoofed="10.0.0.9, 1.2.3.4", client="198.51.100.7", proxies=["10.0.0.1"] * 3)
@example(hops=0, spoofed="198.51.100.8", client="198.51.100.7", proxies=["10.0.0.1"] * 3)
def test_with_trusted_proxies_what_a_client_writes_never_changes_who_it_is(
    hops: int, spoofed: str, client: str, proxies: list[str]
) -> None:
    """The same with ``TRUSTED_PROXIES``: however many of them the request passed, even
    none (the client reached the app directly), the client cannot choose its identity."""
    chain = [client, *proxies[: max(hops - 1, 0)]]
    remote = proxies[hops - 1] if hops else client
    trusted = ", ".join(chain) if hops else ""
    honest = _Request(remote, trusted or None)
    hostile = _Request(remote, f"{spoofed}, {trusted}" if hops else spoofed)
    settings = {"RATELIMIT": {"TRUSTED_PROXIES": [str(PROXY_NETWORK)]}}
    with override_settings(REDIS_RESILIENCE=settings):
        assert client_ip(hostile) == client_ip(honest)  # type: ignore[arg-type]
        seen = client_ip(honest)  # type: ignore[arg-type]
    assert _plain(client) in ipaddress.ip_network(seen), (seen, client)


@pytest.fixture(scope="module")
def limited_site(shared_cache: ResilientRedisCache) -> Iterator[None]:
    with override_settings(ROOT_URLCONF="tests.hostile.urls"):
        yield


def _statuses(hops: int, spoofs: list[str], path: str = "/limited/") -> list[int]:
    client_address = fresh_ipv4()
    proxy = "192.0.2.10"
    remote = proxy if hops else client_address
    trusted = ", ".join([client_address, *[proxy] * (hops - 1)]) if hops else ""
    with override_settings(REDIS_RESILIENCE={"RATELIMIT": {"TRUSTED_PROXY_HOPS": hops}}):
        client = Client(REMOTE_ADDR=remote)
        statuses = []
        for spoof in spoofs:
            forwarded = f"{spoof}, {trusted}" if hops else spoof
            statuses.append(client.get(path, HTTP_X_FORWARDED_FOR=forwarded).status_code)
    return statuses


@examples(40)
@given(hops=st.integers(0, 2), spoofs=st.lists(SPOOFED, min_size=LIMIT + 2, max_size=LIMIT + 2))
def test_rotating_spoofed_headers_never_buy_a_new_quota(
    limited_site: None, hops: int, spoofs: list[str]
) -> None:
    assert _statuses(hops, spoofs) == [200] * LIMIT + [429, 429]


class _PeerAsyncClient(AsyncClient):
    """Under ASGI the peer is the scope's ``client`` (``REMOTE_ADDR`` there), not a header."""

    def __init__(self, peer: str) -> None:
        super().__init__()
        self.peer = peer

    def _base_scope(self, **request: Any) -> dict[str, Any]:
        scope: dict[str, Any] = super()._base_scope(**request)
        scope["client"] = [self.peer, 0]
        return scope


@examples(15)
@given(hops=st.integers(0, 2), spoofs=st.lists(SPOOFED, min_size=LIMIT + 1, max_size=LIMIT + 1))
def test_rotating_spoofed_headers_in_async_views_too(
    limited_site: None, hops: int, spoofs: list[str]
) -> None:
    client_address = fresh_ipv4()
    proxy = "192.0.2.11"
    remote = proxy if hops else client_address
    trusted = ", ".join([client_address, *[proxy] * (hops - 1)]) if hops else ""

    async def send() -> list[int]:
        client = _PeerAsyncClient(remote)
        statuses = []
        for spoof in spoofs:
            forwarded = f"{spoof}, {trusted}" if hops else spoof
            response = await client.get("/limited/async/", headers={"X-Forwarded-For": forwarded})
            statuses.append(response.status_code)
        return statuses

    with override_settings(REDIS_RESILIENCE={"RATELIMIT": {"TRUSTED_PROXY_HOPS": hops}}):
        assert async_to_sync(send)() == [200] * LIMIT + [429]


@pytest.mark.parametrize(
    "forwarded",
    [
        "," * 100_000,
        "x" * 1_000_000,
        ", ".join(["2001:db8::1"] * 10_000),
        "[::1]:99999999999999999999999",
        "1.2.3.4:" + "9" * 5000,
        "[" * 1000 + "]" * 1000,
        "\x00\xff\xfe, \x85",
        "fe80::1%" + "e" * 10_000,
    ],
    ids=[
        "commas",
        "one-huge-entry",
        "many-ipv6",
        "huge-port",
        "digits-port",
        "brackets",
        "bytes",
        "long-zone",
    ],
)
@pytest.mark.parametrize("hops", [0, 1, 3])
def test_malformed_headers_never_crash_the_view(
    limited_site: None, hops: int, forwarded: str
) -> None:
    with override_settings(REDIS_RESILIENCE={"RATELIMIT": {"TRUSTED_PROXY_HOPS": hops}}):
        response = Client(REMOTE_ADDR=fresh_ipv4()).get("/limited/", HTTP_X_FORWARDED_FOR=forwarded)
    assert response.status_code in (200, 429)


@pytest.mark.parametrize("remote", ["", "unknown", "not-an-ip", "\x00", "::1%lo", "x" * 10_000])
def test_a_strange_remote_addr_is_limited_too(limited_site: None, remote: str) -> None:
    """A server behind a unix socket or a strange one: still one quota per value, no crash."""
    client = Client(REMOTE_ADDR=remote)
    statuses = [client.get("/limited/").status_code for _ in range(LIMIT + 1)]
    assert statuses[-1] == 429
    assert all(s in (200, 429) for s in statuses)
    # A strange value is still only itself: spoofing beside it buys nothing.
    spoofed = client.get("/limited/", HTTP_X_FORWARDED_FOR=fresh_ipv4()).status_code
    assert spoofed == 429


def test_the_same_client_is_one_identity_through_a_proxy_or_directly(limited_site: None) -> None:
    """The identity is the client's address, not the route: a proxy in between changes nothing."""
    address = fresh_ipv4()
    with override_settings(REDIS_RESILIENCE={"RATELIMIT": {"TRUSTED_PROXY_HOPS": 1}}):
        first = Client(REMOTE_ADDR="192.0.2.99").get("/limited/", HTTP_X_FORWARDED_FOR=address)
    assert first.json()["remaining"] == LIMIT - 1
    with override_settings(REDIS_RESILIENCE={"RATELIMIT": {"TRUSTED_PROXY_HOPS": 0}}):
        second = Client(REMOTE_ADDR=address).get("/limited/")
    assert second.json()["remaining"] == LIMIT - 2  # the same client, whichever way it came
