"""Who a request counts as: ``ip``, ``user``, ``user_or_ip``, ``header:``/``get:``/``post:<name>``,
a callable ``(group, request)`` or a dotted path to one; checked when the decorator is applied."""

from __future__ import annotations

import functools
import inspect
import ipaddress
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from django.http import HttpRequest
from django.utils.module_loading import import_string

from django_redis_resilience.conf import conf
from django_redis_resilience.exceptions import InvalidRateLimit
from django_redis_resilience.ratelimiting._settings import RATELIMIT

KeyFunc = Callable[[str, HttpRequest], "str | None"]
_SOURCES = {"header": "headers", "get": "GET", "post": "POST"}
Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def client_ip(request: HttpRequest) -> str:
    """The client's address, masked (IPv6 to /64 by default), trusting only configured proxies.

    With ``TRUSTED_PROXY_HOPS = n`` the address is the n-th entry from the
    right of ``X-Forwarded-For`` (the one the outermost trusted proxy saw);
    entries further left can be written by anyone and are never used. A
    request that did not pass through all n proxies counts as ``REMOTE_ADDR``.

    With ``TRUSTED_PROXIES`` (networks) the chain is walked from the right
    while the address in hand is one of those proxies: the first address that
    is not is the client, however many proxies the request passed. A client
    that reaches the app directly is its ``REMOTE_ADDR``, whatever it wrote.
    """
    settings = conf.RATELIMIT
    remote = _address(str(request.META.get("REMOTE_ADDR", "")))
    forwarded = str(request.META.get("HTTP_X_FORWARDED_FOR", ""))
    ip = remote
    if proxies := settings.get("TRUSTED_PROXIES"):
        ip = _behind(remote, forwarded, proxy_networks(tuple(proxies)))
    elif hops := RATELIMIT.read(settings, "TRUSTED_PROXY_HOPS"):
        # Empty entries count: skipping them would shift the choice into what a client wrote.
        entries = forwarded.split(",")
        if forwarded and len(entries) >= hops:
            ip = _address(entries[-hops]) or remote
    if ip is None:
        return str(request.META.get("REMOTE_ADDR", "")) or "unknown"
    bits = RATELIMIT.read(settings, "IPV6_PREFIX" if ip.version == 6 else "IPV4_PREFIX")
    return str(ipaddress.ip_network(f"{ip}/{bits}", strict=False))


@functools.lru_cache(maxsize=8)
def proxy_networks(proxies: tuple[str, ...]) -> tuple[Network, ...]:
    """``TRUSTED_PROXIES`` parsed once per distinct value; the check validated it at startup
    (``"10.0.0.7"`` is one address, ``"10.0.0.0/8"`` a network, host bits allowed)."""
    return tuple(ipaddress.ip_network(proxy.strip(), strict=False) for proxy in proxies)


def _behind(
    remote: Address | None, forwarded: str, networks: tuple[Network, ...]
) -> Address | None:
    """The right-most address of the chain ``X-Forwarded-For, REMOTE_ADDR`` that is no
    trusted proxy; every one trusted: the left-most. An entry that is no address stops
    the walk at the proxy that wrote it (a client cannot place it there)."""
    ip = remote
    if ip is None or not any(ip in network for network in networks):
        return ip
    for entry in reversed(forwarded.split(",") if forwarded else []):
        hop = _address(entry)
        if hop is None:
            return ip
        ip = hop
        if not any(hop in network for network in networks):
            return hop
    return ip


def _address(text: str) -> Address | None:
    """An address from ``1.2.3.4``, ``1.2.3.4:5555``, ``2001:db8::1`` or ``[2001:db8::1]:443``."""
    text = text.strip()
    if text.startswith("["):
        text = text[1:].partition("]")[0]
    elif text.count(":") == 1:
        text = text.partition(":")[0]  # IPv4 with a port
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped  # a dual-stack listener's view of an IPv4 client
    return ip


def _user_key(user: Any) -> str | None:
    if user is not None and getattr(user, "is_authenticated", False):
        return f"user:{user.pk}"
    return None


@dataclass(frozen=True)
class KeySpec:
    """A key function, and whether it needs the user (``await request.auser()`` in async)."""

    name: str
    fn: KeyFunc
    user: str = ""  # "user" or "user_or_ip": resolved from the user in async views

    def resolve(self, group: str, request: HttpRequest) -> str | None:
        if inspect.iscoroutinefunction(self.fn):
            raise InvalidRateLimit(f"The key function {self.name} is async: use it on async views.")
        return self.fn(group, request)

    async def aresolve(self, group: str, request: HttpRequest) -> str | None:
        if not self.user:
            found: Any = self.fn(group, request)
            if inspect.isawaitable(found):
                found = await found
            return None if found is None else str(found)
        # Without AuthenticationMiddleware there is no user: anonymous.
        auser = getattr(request, "auser", None)
        user = await auser() if auser is not None else None
        user_key = _user_key(user)
        if user_key is None and self.user == "user_or_ip":
            return f"ip:{client_ip(request)}"
        return user_key


def _from(source: str, name: str) -> KeyFunc:
    def key(group: str, request: HttpRequest) -> str:
        values: Any = getattr(request, _SOURCES[source])
        return f"{source}:{name}:{values.get(name, '')}"

    return key


def resolve_key(key: Any) -> KeySpec:
    """A :class:`KeySpec` for ``key``; :class:`InvalidRateLimit` for anything else."""
    if callable(key):
        return KeySpec(getattr(key, "__name__", "callable"), key)
    if not isinstance(key, str):
        raise _invalid(key)
    if key == "ip":
        return KeySpec("ip", lambda group, request: f"ip:{client_ip(request)}")
    if key == "user":
        return KeySpec("user", lambda group, request: _user_key(getattr(request, "user", None)),
                       user="user")  # fmt: skip
    if key == "user_or_ip":
        return KeySpec(
            "user_or_ip",
            lambda group, request: (
                _user_key(getattr(request, "user", None)) or f"ip:{client_ip(request)}"
            ),
            user="user_or_ip",
        )
    source, colon, name = key.partition(":")
    if colon and source in _SOURCES and name:
        return KeySpec(key, _from(source, name))
    if "." in key:
        try:
            fn = import_string(key)
        except ImportError:
            raise _invalid(key) from None
        if callable(fn):
            return KeySpec(key, fn)
    raise _invalid(key)


def _invalid(key: Any) -> InvalidRateLimit:
    return InvalidRateLimit(
        f"key={key!r} is not valid: use 'ip', 'user', 'user_or_ip', 'header:<name>', "
        "'get:<name>', 'post:<name>', a callable (group, request) or a dotted path to one."
    )


AsyncKey = Callable[[str, HttpRequest], Awaitable["str | None"]]
