"""redis-py connection classes that remember whether a request left the client.

A failure while connecting or while writing the request proves the server
never ran the command, which is what makes retrying a non-idempotent command
safe. redis-py's own retry cannot tell these phases apart, so it is switched
off and the exception is marked here instead.
"""

from __future__ import annotations

from typing import Any

import redis.asyncio.connection as aconn
import redis.connection as sconn

from django_redis_resilience.connection._errors import mark_unsent


class _SyncMixin:
    def connect(self, *args: Any, **kwargs: Any) -> None:
        try:
            super().connect(*args, **kwargs)  # type: ignore[misc]
        except BaseException as exc:
            mark_unsent(exc)
            raise

    def send_packed_command(self, *args: Any, **kwargs: Any) -> None:
        try:
            super().send_packed_command(*args, **kwargs)  # type: ignore[misc]
        except BaseException as exc:
            mark_unsent(exc)
            raise


class _AsyncMixin:
    async def connect(self, *args: Any, **kwargs: Any) -> None:
        try:
            await super().connect(*args, **kwargs)  # type: ignore[misc]
        except BaseException as exc:
            mark_unsent(exc)
            raise

    async def send_packed_command(self, *args: Any, **kwargs: Any) -> None:
        try:
            await super().send_packed_command(*args, **kwargs)  # type: ignore[misc]
        except BaseException as exc:
            mark_unsent(exc)
            raise


class Connection(_SyncMixin, sconn.Connection):
    """TCP connection."""


class SSLConnection(_SyncMixin, sconn.SSLConnection):
    """TLS connection."""


class UnixDomainSocketConnection(_SyncMixin, sconn.UnixDomainSocketConnection):
    """Unix socket connection."""


class AsyncConnection(_AsyncMixin, aconn.Connection):
    """asyncio TCP connection."""


class AsyncSSLConnection(_AsyncMixin, aconn.SSLConnection):
    """asyncio TLS connection."""


class AsyncUnixDomainSocketConnection(_AsyncMixin, aconn.UnixDomainSocketConnection):
    """asyncio Unix socket connection."""


def connection_class(*, tls: bool, unix: bool, asyncio: bool) -> type[Any]:
    """The connection class for an address."""
    if asyncio:
        if unix:
            return AsyncUnixDomainSocketConnection
        return AsyncSSLConnection if tls else AsyncConnection
    if unix:
        return UnixDomainSocketConnection
    return SSLConnection if tls else Connection
