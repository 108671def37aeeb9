"""redis-py connection classes that remember whether a request left the client.

A failure while connecting or while writing the request proves the server
never ran the command, which is what makes retrying a non-idempotent command
safe. redis-py's own retry cannot tell these phases apart, so it is switched
off and the exception is marked here instead.
"""

from __future__ import annotations

import contextlib
import select
import ssl
import sys
from typing import Any

import redis.asyncio.connection as aconn
import redis.asyncio.sentinel as asentinel
import redis.connection as sconn
import redis.sentinel as ssentinel

from django_redis_resilience.connection._errors import mark_unsent
from django_redis_resilience.exceptions import InvalidValue

#: Integers past this many bits are written in decimal by us, not by the packer:
#: hiredis crashes the process on one whose decimal form Python refuses to make
#: (past ``sys.get_int_max_str_digits()``), and the pure-Python packer raises a
#: bare ``ValueError``. 64 bits covers every integer Redis itself accepts.
_PACKER_SAFE_BITS = 64


def safe_args(args: tuple[Any, ...]) -> tuple[Any, ...]:
    """``args`` with every big integer already in decimal bytes, or :class:`InvalidValue`.

    Checked on every command this app's connections send, whatever built it (the
    cache, a script call, a raw ``get_client()`` command), before redis-py packs it.
    """
    for a in args:  # a plain loop: this runs for every command, and any() costs twice as much
        if type(a) is int and a.bit_length() > _PACKER_SAFE_BITS:
            break
    else:
        return args
    return tuple(
        int_bytes(a) if type(a) is int and a.bit_length() > _PACKER_SAFE_BITS else a for a in args
    )


def int_bytes(value: int) -> bytes:
    """``value`` in decimal, as Redis stores integers; too long a one is refused by name."""
    try:
        return str(value).encode()
    except ValueError:
        raise InvalidValue(
            f"An integer of {value.bit_length()} bits has too many digits to write to Redis "
            f"(Python writes at most {sys.get_int_max_str_digits()} digits); store it "
            "serialized, e.g. as bytes or a string."
        ) from None


class _SafePacker:
    """Wraps a redis-py command packer (hiredis's or the pure-Python one)."""

    def __init__(self, packer: Any) -> None:
        self._packer = packer

    def pack(self, *args: Any) -> Any:
        for a in args:  # safe_args() inlined: one call less on every command
            if type(a) is int and a.bit_length() > _PACKER_SAFE_BITS:
                return self._packer.pack(*safe_args(args))
        return self._packer.pack(*args)


class _SyncMixin:
    _command_packer: Any
    _sock: Any

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Every sync path (send_command, pack_command, pipelines) packs through this.
        self._command_packer = _SafePacker(self._command_packer)

    def connect(self, *args: Any, **kwargs: Any) -> None:
        if self._sock is not None:
            # Connected: redis-py would find this only after a retry wrapper and two
            # calls, which every command pays (redis-py 8 calls connect() each time).
            return
        try:
            super().connect(*args, **kwargs)  # type: ignore[misc]
        except BaseException as exc:
            mark_unsent(exc)
            # redis-py closes the socket when the handshake fails with a redis
            # error, not with others (an OSError from a server restarting mid
            # TLS handshake): never leave an open socket to the garbage collector.
            if getattr(self, "_sock", None) is not None:
                with contextlib.suppress(Exception):
                    self.disconnect()  # type: ignore[attr-defined]
            raise

    def send_packed_command(self, *args: Any, **kwargs: Any) -> None:
        try:
            super().send_packed_command(*args, **kwargs)  # type: ignore[misc]
        except BaseException as exc:
            mark_unsent(exc)
            raise


def _readable_now(connection: object) -> bool:
    """Whether an idle asyncio connection's socket already has data or EOF waiting.

    asyncio only notices a server-side close when the loop next polls the
    socket, which may be after the pool hands the connection out again; a
    zero-timeout ``select`` sees it at once. On an idle connection anything
    readable (EOF, a TLS alert, stray bytes) means it is not fit for a command.
    """
    writer = getattr(connection, "_writer", None)
    transport = getattr(writer, "transport", None)
    sock = transport.get_extra_info("socket") if transport is not None else None
    if sock is None:
        return False
    try:
        readable, _, _ = select.select([sock.fileno()], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(readable)


class _AsyncMixin:
    def pack_command(self, *args: Any) -> Any:
        # Every asyncio path (send_command, pipelines) packs through this.
        return super().pack_command(*safe_args(args))  # type: ignore[misc]

    async def can_read(self, *args: Any, **kwargs: Any) -> bool:
        if _readable_now(self):
            return True  # the pool then reconnects before sending anything
        return await super().can_read(*args, **kwargs)  # type: ignore[misc, no-any-return]

    async def can_read_destructive(self, *args: Any, **kwargs: Any) -> bool:
        # redis-py 5 checks pooled connections with this one instead of can_read.
        if _readable_now(self):
            return True
        return await super().can_read_destructive(*args, **kwargs)  # type: ignore[misc, no-any-return]

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
    """TLS connection sharing its endpoint's SSL context (see ``_tls.build_context``)."""

    def __init__(self, *args: Any, drr_ssl_context: ssl.SSLContext | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._drr_ssl_context = drr_ssl_context

    def _connect(self) -> Any:
        context = self._drr_ssl_context
        if context is None:
            return super()._connect()  # type: ignore[no-untyped-call]
        sock = sconn.Connection._connect(self)  # type: ignore[no-untyped-call]
        try:
            return context.wrap_socket(sock, server_hostname=self.host)
        except BaseException:
            sock.close()
            raise


class UnixDomainSocketConnection(_SyncMixin, sconn.UnixDomainSocketConnection):
    """Unix socket connection."""


class AsyncConnection(_AsyncMixin, aconn.Connection):
    """asyncio TCP connection."""


class AsyncSSLConnection(_AsyncMixin, aconn.SSLConnection):
    """asyncio TLS connection sharing its endpoint's SSL context."""

    def __init__(self, *args: Any, drr_ssl_context: ssl.SSLContext | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        if drr_ssl_context is not None:
            # RedisSSLContext.get() builds a context only while ``context`` is unset.
            self.ssl_context.context = drr_ssl_context


class AsyncUnixDomainSocketConnection(_AsyncMixin, aconn.UnixDomainSocketConnection):
    """asyncio Unix socket connection."""


class SentinelManagedConnection(_SyncMixin, ssentinel.SentinelManagedConnection):
    """Connection to whichever server Sentinel names for the service."""


class SentinelManagedSSLConnection(_SyncMixin, ssentinel.SentinelManagedSSLConnection):
    """TLS connection to whichever server Sentinel names for the service."""


class AsyncSentinelManagedConnection(_AsyncMixin, asentinel.SentinelManagedConnection):
    """asyncio connection to whichever server Sentinel names for the service."""


class AsyncSentinelManagedSSLConnection(_AsyncMixin, asentinel.SentinelManagedSSLConnection):
    """asyncio TLS connection to whichever server Sentinel names for the service."""


def connection_class(*, tls: bool, unix: bool, asyncio: bool, sentinel: bool = False) -> type[Any]:
    """The connection class for an address."""
    if sentinel:
        if asyncio:
            return AsyncSentinelManagedSSLConnection if tls else AsyncSentinelManagedConnection
        return SentinelManagedSSLConnection if tls else SentinelManagedConnection
    if asyncio:
        if unix:
            return AsyncUnixDomainSocketConnection
        return AsyncSSLConnection if tls else AsyncConnection
    if unix:
        return UnixDomainSocketConnection
    return SSLConnection if tls else Connection
