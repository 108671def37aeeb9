"""An invalidation link: one connection to one node that hears about every key written.

Redis's server-assisted client-side caching (``CLIENT TRACKING``) in broadcast
mode: the link asks for the invalidations of every key under some prefixes,
redirected to itself (RESP2), and subscribes to ``__redis__:invalidate``. From
then on the node writes one message on this socket for every change of such a
key, whoever made it, and a null message when the database is flushed.

Broadcast mode keeps the data connections untouched (they need no tracking
state, so no pooled or asyncio connection can ever read without it) and the
server keeps no table of who read which key.

Reading is never blocking: :meth:`InvalidationLink.poll` takes what the socket
holds now (a system call of about a microsecond when it holds nothing), so
the thread about to serve a near value applies pending invalidations itself.
Everything here is called under the caller's lock; nothing here is thread-safe.
"""

from __future__ import annotations

import select
import socket
import ssl
from collections.abc import Callable, Sequence
from typing import Any

CHANNEL = b"__redis__:invalidate"
#: What :meth:`InvalidationLink.poll` reports for a flushed database: every key changed.
FLUSHED = None


class LinkBroken(Exception):
    """The link's connection failed or was closed; what it was told may be lost."""


class _Incomplete(Exception):
    """The buffer ends in the middle of a reply."""


def _parse(buf: bytes, at: int) -> tuple[Any, int]:
    """One reply of ``buf`` from ``at``: the value and where the next one starts.

    RESP2, and the RESP3 types a link can receive (pushes and nulls), since a
    connection may be made with either protocol.
    """
    end = buf.find(b"\r\n", at)
    if end < 0:
        raise _Incomplete
    kind, line = buf[at : at + 1], buf[at + 1 : end]
    at = end + 2
    if kind in (b"$", b"*", b">"):
        return _sized(buf, at, kind, int(line))
    if kind == b"+":
        return line, at
    if kind == b"-":
        return LinkBroken(line.decode(errors="replace")), at
    if kind == b":":
        return int(line), at
    if kind == b"_":  # RESP3's null
        return None, at
    raise LinkBroken(f"unexpected reply from the server: {kind + line[:40]!r}")


def _sized(buf: bytes, at: int, kind: bytes, size: int) -> tuple[Any, int]:
    """A bulk string, an array or a RESP3 push (an array's shape) of ``size``."""
    if size < 0:
        return None, at
    if kind == b"$":
        if len(buf) < at + size + 2:
            raise _Incomplete
        return buf[at : at + size], at + size + 2
    items = []
    for _ in range(size):
        item, at = _parse(buf, at)
        items.append(item)
    return items, at


def _command(*args: bytes | str | int) -> bytes:
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg if isinstance(arg, bytes) else str(arg).encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


class InvalidationLink:
    """The invalidation connection to one node (see the module's docstring)."""

    def __init__(self, connection: Any) -> None:
        #: A connected redis-py connection (authenticated, database selected).
        self._connection = connection
        self._sock: socket.socket = connection._sock
        self._buffer = b""
        # A readiness check costs a third of a failed non-blocking recv (no exception).
        self._poller = select.poll()
        self._poller.register(self._sock, select.POLLIN)
        #: A TLS socket may hold decrypted bytes that the kernel no longer shows.
        self._tls = isinstance(self._sock, ssl.SSLSocket)
        #: For a caller watching several links with one ``select.poll`` (one system call
        #: for all of them): the socket's descriptor, and whether a readiness check can
        #: be trusted (a TLS socket may hold decrypted bytes the kernel does not show).
        self.fileno = self._sock.fileno()
        self.pollable = not self._tls
        self.pings_sent = 0
        self.pongs = 0

    @classmethod
    def open(
        cls, connect: Callable[[], Any], *, prefixes: Sequence[str], timeout: float
    ) -> InvalidationLink:
        """Connect, turn broadcast tracking on for ``prefixes`` (all keys when empty),
        redirected to this connection, and subscribe; blocking, within ``timeout`` each."""
        connection = connect()
        connection.connect()
        link = cls(connection)
        try:
            link._sock.settimeout(timeout)
            (client_id,) = link._ask(_command("CLIENT", "ID"))
            tracking = ["CLIENT", "TRACKING", "ON", "REDIRECT", client_id, "BCAST"]
            for prefix in prefixes:
                tracking += ["PREFIX", prefix]
            (ok,) = link._ask(_command(*tracking))
            if ok != b"OK":
                raise LinkBroken(f"CLIENT TRACKING answered {ok!r}")
            (confirmed,) = link._ask(_command("SUBSCRIBE", CHANNEL))
            if not (isinstance(confirmed, list) and confirmed[:2] == [b"subscribe", CHANNEL]):
                raise LinkBroken(f"SUBSCRIBE answered {confirmed!r}")
            link._sock.setblocking(False)
        except BaseException:
            link.close()
            raise
        return link

    def _ask(self, request: bytes) -> list[Any]:
        """Send ``request`` and read one reply, blocking (only while opening)."""
        self._sock.sendall(request)
        while True:
            replies = self._take()
            if replies:
                if isinstance(replies[0], LinkBroken):
                    raise replies[0]
                return replies
            chunk = self._sock.recv(65536)
            if not chunk:
                raise LinkBroken("the server closed the connection")
            self._buffer += chunk

    def _take(self) -> list[Any]:
        """The complete replies in the buffer, removed from it."""
        replies, at, buf = [], 0, self._buffer
        while at < len(buf):
            try:
                value, at_next = _parse(buf, at)
            except _Incomplete:
                break
            replies.append(value)
            at = at_next
        self._buffer = buf[at:]
        return replies

    def poll(self) -> list[list[bytes] | None]:
        """The invalidations received since the last poll, without waiting: each a list of
        keys, or :data:`FLUSHED`. Raises :class:`LinkBroken` when the link is lost."""
        if not self._poller.poll(0) and not (self._tls and self._sock.pending()):  # type: ignore[attr-defined]
            return []
        self._read_available()
        events: list[list[bytes] | None] = []
        for reply in self._take():
            if reply == b"PONG" or (isinstance(reply, list) and reply[:1] == [b"pong"]):
                self.pongs += 1
            elif not isinstance(reply, list) or len(reply) < 2:
                raise LinkBroken(f"unexpected message {reply!r}")
            elif reply[0] == b"message" and reply[1] == CHANNEL:  # RESP2
                events.append(reply[2] if isinstance(reply[2], list) else FLUSHED)
            elif reply[0] == b"invalidate":  # RESP3
                events.append(reply[1] if isinstance(reply[1], list) else FLUSHED)
        return events

    def _read_available(self) -> None:
        """Append what the socket holds to the buffer, without waiting."""
        try:
            while True:
                chunk = self._sock.recv(65536)
                if not chunk:
                    raise LinkBroken("the server closed the connection")
                self._buffer += chunk
                if len(chunk) < 65536:
                    return
        except (BlockingIOError, ssl.SSLWantReadError):
            return
        except OSError as exc:
            raise LinkBroken(str(exc)) from exc

    def ping(self) -> None:
        """Ask for a pong (read by :meth:`poll`): the node still answers on this link."""
        try:
            self._sock.send(_command("PING"))
        except OSError as exc:
            raise LinkBroken(str(exc)) from exc
        self.pings_sent += 1

    @property
    def answering(self) -> bool:
        """Whether every ping but the last one was answered."""
        return self.pongs >= self.pings_sent - 1

    def close(self) -> None:
        self._connection.disconnect()  # redis-py ignores a socket that is gone already
