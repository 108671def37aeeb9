"""Who a request counts as: ``ip``, ``user``, ``user_or_ip``, ``header:``/``get:``/``post:<name>``,
a callable ``(group, request)`` or a dotted path to one; checked when the decorator is applied."""

from __future__ import annotations

import inspect
import ipaddress
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from django.http import HttpRequest
from django.utils.module_loading import import_string

from django_redis_resilience.conf import conf
from django_redis_resilience.exceptions import InvalidRateLimit

KeyFunc = Callable[[str, HttpRequest], "str | None"]
_SOURCES = {"header": "headers", "get": "GET", "post": "POST"}


def client_ip(request: HttpRequest) -> str:
    """The client's address, masked (IPv6 to /64 by default), trusting only configured hops.

    With ``TRUSTED_PROXY_HOPS = n`` the address is the n-th entry from the
    right of ``X-Forwarded-For`` (the one the outermost trusted proxy saw);
    entries further left can be written by anyone and are never used. A
    request that did not pass through all n proxies counts as ``REMOTE_ADDR``.
    """
    settings = conf.RATELIMIT
    hops: int = settings.get("TRUSTED_PROXY_HOPS", 0)
    remote = _address(str(request.META.get("REMOTE_ADDR", "")))
    ip = remote
    if hops:
        # Empty entries count: skipping them would shift the choice into what a client wrote.
        forwarded = str(request.META.get("HTTP_X_FORWARDED_FOR", "")).split(",")
        if request.META.get("HTTP_X_FORWARDED_FOR") and len(forwarded) >= hops:
            ip = _address(forwarded[-hops]) or remote
    if ip is None:
        return str(request.META.get("REMOTE_ADDR", "")) or "unknown"
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped  # a dual-stack listener's view of an IPv4 client
    bits = settings.get("IPV6_PREFIX", 64) if ip.version == 6 else settings.get("IPV4_PREFIX", 32)
    return str(ipaddress.ip_network(f"{ip}/{bits}", strict=False))


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """An address from ``1.2.3.4``, ``1.2.3.4:5555``, ``2001:db8::1`` or ``[2001:db8::1]:443``."""
    text = text.strip()
    if text.startswith("["):
        text = text[1:].partition("]")[0]
    elif text.count(":") == 1:
        text = text.partition(":")[0]  # IPv4 with a port
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


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
