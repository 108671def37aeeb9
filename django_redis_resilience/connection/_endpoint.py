"""One logical endpoint: its breaker, its sync pool and its asyncio pools per loop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import weakref
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Any

import redis
import redis.asyncio
import redis.asyncio.sentinel as asentinel
import redis.sentinel as ssentinel

from django_redis_resilience.connection._background import Scheduler
from django_redis_resilience.connection._breaker import CircuitBreaker
from django_redis_resilience.connection._connections import connection_class
from django_redis_resilience.connection._location import NodeAddress
from django_redis_resilience.connection._options import ConnectionOptions
from django_redis_resilience.connection._retry import no_retry
from django_redis_resilience.connection._sentinel import SentinelService
from django_redis_resilience.connection._tls import (
    TLS_DEFAULTS,
    is_tls_option,
    verification_disabled,
)
from django_redis_resilience.connection._tls import build_context as build_ssl_context
from django_redis_resilience.connection._tls import normalize as normalize_tls
from django_redis_resilience.exceptions import InvalidOption

logger = logging.getLogger("django_redis_resilience")

#: The longest one blocking wait (a lock waiter's ``BLPOP``) blocks for: the
#: blocking pools' sockets allow this much on top of the socket timeout, so a
#: hung server is still noticed within one slice.
MAX_BLOCK = 0.5


def pool_kwargs(
    address: NodeAddress, options: ConnectionOptions, *, asyncio: bool, sentinel: bool = False
) -> dict[str, Any]:
    """Keyword arguments for a redis-py pool; precedence: URL > OPTIONS > defaults."""
    kwargs = _configured(address, options)
    if address.is_unix:
        for tcp_only in ("socket_keepalive", "socket_keepalive_options", "socket_connect_timeout"):
            kwargs.pop(tcp_only, None)
    if sentinel:
        # Sentinel names the server: the address here only carries credentials,
        # database and TLS options.
        kwargs.pop("host", None)
        kwargs.pop("port", None)
    _secure(kwargs, address, asyncio=asyncio, sentinel=sentinel)
    kwargs["retry"] = no_retry(asyncio=asyncio)
    kwargs["connection_class"] = connection_class(
        tls=address.tls, unix=address.is_unix, asyncio=asyncio, sentinel=sentinel
    )
    if options.max_connections is not None:
        kwargs["max_connections"] = options.max_connections
    return kwargs


def _configured(address: NodeAddress, options: ConnectionOptions) -> dict[str, Any]:
    """The defaults, overridden by ``OPTIONS``, overridden by the location's URL."""
    kwargs: dict[str, Any] = {
        "socket_connect_timeout": options.socket_connect_timeout,
        "socket_timeout": options.socket_timeout,
        "health_check_interval": options.health_check_interval,
        "socket_keepalive": options.socket_keepalive,
        # RESP2, as django-redis speaks: redis-py 8 defaults to RESP3, which turns
        # on maintenance notifications and with them switches off the pool's
        # check for dead pooled connections (the mass-disconnect incident).
        "protocol": 2,
    }
    if address.tls:
        kwargs.update(TLS_DEFAULTS)
    if options.username is not None:
        kwargs["username"] = options.username
    if options.password is not None:
        kwargs["password"] = options.password
    kwargs.update(options.pool_kwargs)
    kwargs.update(address.connection_kwargs())
    return kwargs


def _secure(kwargs: dict[str, Any], address: NodeAddress, *, asyncio: bool, sentinel: bool) -> None:
    """On ``rediss://``: the TLS options in redis-py's terms, and the SSL context built
    once for the connections that take one (Sentinel's are redis-py's own). Elsewhere
    a TLS option is refused: the connection would not use it."""
    if address.tls:
        normalize_tls(kwargs, asyncio=asyncio, display=address.display)
        if not sentinel:
            kwargs["drr_ssl_context"] = build_ssl_context(kwargs)
    elif stray := sorted(name for name in kwargs if is_tls_option(name)):
        raise InvalidOption(
            f"{address.display}: TLS options {', '.join(stray)} need a rediss:// location."
        )


async def _close_with_loop(pools: list[Any]) -> AsyncGenerator[None, None]:
    """Disconnect ``pool`` when its event loop shuts down.

    ``asyncio.run`` (and asgiref's ``async_to_sync``, which gives every async
    view under WSGI its own loop) finalizes pending async generators before
    closing the loop; this one's ``finally`` runs inside the loop, the only
    place where asyncio sockets can still be closed cleanly.
    """
    try:
        yield
    finally:
        for pool in pools:
            with contextlib.suppress(Exception):
                await pool.disconnect()


async def _disconnect_all(pools: list[Any]) -> None:
    for pool in pools:
        await pool.disconnect()


@dataclass
class _LoopEntry:
    loop: weakref.ref[asyncio.AbstractEventLoop]
    client: redis.asyncio.Redis
    pool: redis.asyncio.ConnectionPool
    #: Every pool of this loop (with Sentinel: the Sentinels' pools too).
    pools: list[Any]
    finalizer: AsyncGenerator[None, None]
    #: The Sentinel manager of this loop (``None`` off Sentinel).
    sentinel_manager: Any = None
    #: The blocking client of this loop, made on first use.
    blocking: redis.asyncio.Redis | None = None


class NodePools:
    """The sync pool and the asyncio pools (one per event loop) of one server.

    No breaker here: a standalone or Sentinel endpoint adds one
    (:class:`Endpoint`), while a cluster shard owns its breaker and borrows
    the pools of whichever node is its master now.
    """

    def __init__(
        self,
        *,
        address: NodeAddress,
        options: ConnectionOptions,
        sentinel: SentinelService | None = None,
        is_master: bool = True,
    ) -> None:
        self.address = address
        self.options = options
        self.sentinel = sentinel
        self.is_master = is_master
        #: Safe to show: the password is masked.
        self.display = address.display if sentinel is None else sentinel.display
        managed = sentinel is not None
        self._sync_kwargs = pool_kwargs(address, options, asyncio=False, sentinel=managed)
        if address.tls and (reason := verification_disabled(self._sync_kwargs)):
            logger.warning("TLS to %s is not verified: %s", self.display, reason)
        self._async_kwargs = pool_kwargs(address, options, asyncio=True, sentinel=managed)
        self.pool = self._sync_pool(self._sync_kwargs)
        #: Building a client opens nothing; connections are made on first use.
        self.client = redis.Redis(connection_pool=self.pool)
        self._lock = threading.Lock()
        self._loops: dict[int, _LoopEntry] = {}
        self._blocking: redis.Redis | None = None

    def _sync_pool(self, kwargs: dict[str, Any]) -> redis.ConnectionPool:
        if self.sentinel is None:
            return redis.ConnectionPool(**kwargs)
        return ssentinel.SentinelConnectionPool(  # type: ignore[no-untyped-call]
            self.sentinel.service_name, self.sentinel.manager, is_master=self.is_master, **kwargs
        )

    def _async_pool(self, kwargs: dict[str, Any], sentinel_manager: Any) -> Any:
        if self.sentinel is None:
            return redis.asyncio.ConnectionPool(**kwargs)
        return asentinel.SentinelConnectionPool(  # type: ignore[no-untyped-call]
            self.sentinel.service_name, sentinel_manager, is_master=self.is_master, **kwargs
        )

    @staticmethod
    def _blocking_kwargs(kwargs: dict[str, Any]) -> dict[str, Any]:
        kwargs = dict(kwargs)
        if kwargs.get("socket_timeout") is not None:
            kwargs["socket_timeout"] += MAX_BLOCK
        # One waiter per connection: a pool cap sized for quick commands must
        # not make waiters queue for a socket (they would poll, not wait).
        kwargs.pop("max_connections", None)
        return kwargs

    # --- blocking waits -------------------------------------------------------

    def blocking_client(self) -> redis.Redis:
        """A client on a pool of its own for commands that block up to :data:`MAX_BLOCK`.

        A lock waiter's ``BLPOP`` holds its socket while it waits: on the
        shared pool it would starve quick commands, and its long socket
        timeout would make a hung server look slow instead of down. Failures
        here are not the breaker's business: the caller re-checks through
        :meth:`ConnectionManager.execute`, which is.
        """
        client = self._blocking
        if client is None:
            with self._lock:
                if self._blocking is None:
                    pool = self._sync_pool(self._blocking_kwargs(self._sync_kwargs))
                    self._blocking = redis.Redis(connection_pool=pool)
                client = self._blocking
        return client

    def async_blocking_client(self) -> redis.asyncio.Redis:
        """The asyncio twin of :meth:`blocking_client`, for the running event loop."""
        self.async_client()
        entry = self._loops[id(asyncio.get_running_loop())]
        if entry.blocking is None:
            pool = self._async_pool(
                self._blocking_kwargs(self._async_kwargs), entry.sentinel_manager
            )
            entry.pools.append(pool)  # closed with the loop, like the others
            entry.blocking = redis.asyncio.Redis(connection_pool=pool)
        return entry.blocking

    def __repr__(self) -> str:
        return f"<NodePools {self.display}>"

    # --- asyncio ------------------------------------------------------------

    def async_client(self) -> redis.asyncio.Redis:
        """The asyncio client of the running event loop (one pool per loop)."""
        loop = asyncio.get_running_loop()
        entry = self._loops.get(id(loop))
        if entry is not None and entry.loop() is loop:
            return entry.client
        return self._new_loop_entry(loop)

    def _loop_pool(self) -> redis.asyncio.ConnectionPool:
        """The running event loop's asyncio pool."""
        self.async_client()
        return self._loops[id(asyncio.get_running_loop())].pool

    def _new_loop_entry(self, loop: asyncio.AbstractEventLoop) -> redis.asyncio.Redis:
        with self._lock:
            for key, old in list(self._loops.items()):
                old_loop = old.loop()
                if old_loop is None or old_loop.is_closed() or old_loop is loop:
                    del self._loops[key]
            pools: list[Any] = []
            manager = None
            if self.sentinel is not None:
                manager = self.sentinel.async_manager()
                pools += [s.connection_pool for s in manager.sentinels]
            pool = self._async_pool(self._async_kwargs, manager)
            pools.insert(0, pool)
            client = redis.asyncio.Redis(connection_pool=pool)
            finalizer = _close_with_loop(pools)
            # Start the generator up to its ``yield`` now, inside this loop, so
            # the loop registers it for finalization at shutdown.
            step = finalizer.__anext__()
            with contextlib.suppress(StopIteration):
                step.send(None)
            self._loops[id(loop)] = _LoopEntry(
                weakref.ref(loop), client, pool, pools, finalizer, manager
            )
            return client

    def loop_count(self) -> int:
        """How many event loops currently hold a pool (closed ones are pruned lazily)."""
        return sum(
            1 for e in self._loops.values() if (lp := e.loop()) is not None and not lp.is_closed()
        )

    # --- health -------------------------------------------------------------

    def fresh_connection(self, timeout: float | None = None) -> Any:
        """A new, unpooled connection to this server; the caller disconnects it.

        Probes and topology discovery use one, never a pooled socket: the
        point is to learn whether a new client could talk to the server now.
        """
        cls = self.pool.connection_class
        # The pool's own connection arguments (with Sentinel: the pool to ask
        # for the current primary, which also drops sockets to a former one).
        kwargs = dict(self.pool.connection_kwargs)
        timeout = self.options.probe_timeout if timeout is None else timeout
        kwargs["socket_timeout"] = timeout
        kwargs["socket_connect_timeout"] = timeout
        kwargs["health_check_interval"] = 0
        return cls(**kwargs)

    def probe(self) -> None:
        """PING on a fresh connection with the probe timeout; raises on failure."""
        connection = self.fresh_connection()
        try:
            connection.send_command("PING")
            if connection.read_response() not in (b"PONG", "PONG", True):
                raise redis.ConnectionError("unexpected reply to PING")
        finally:
            connection.disconnect()

    def drop_idle_connections(self) -> None:
        """Close idle pooled sockets: after a reset they are most likely dead too."""
        self.pool.disconnect(inuse_connections=False)

    async def adrop_idle_connections(self) -> None:
        loop = asyncio.get_running_loop()
        entry = self._loops.get(id(loop))
        if entry is not None and entry.loop() is loop:
            await entry.pool.disconnect(inuse_connections=False)

    # --- lifecycle ----------------------------------------------------------

    def close(self) -> None:
        """Close every pool this endpoint owns (settings changed, registry reset)."""
        self.pool.disconnect()
        if self._blocking is not None:
            self._blocking.connection_pool.disconnect()
        with self._lock:
            entries = list(self._loops.values())
            self._loops.clear()
        for entry in entries:
            loop = entry.loop()
            if loop is None or loop.is_closed():
                continue
            try:
                running = asyncio.get_running_loop()
            except RuntimeError:
                running = None
            try:
                closing = _disconnect_all(entry.pools)
                if loop is running:
                    loop.create_task(closing)
                elif loop.is_running():
                    asyncio.run_coroutine_threadsafe(closing, loop)
                else:
                    loop.run_until_complete(closing)
            except RuntimeError:
                logger.debug("Could not close an asyncio pool of %s", self.display, exc_info=True)

    def forget(self) -> None:
        """Drop every reference without touching sockets (in a child after ``fork``).

        Shutting a socket down in the child would shut it for the parent too.
        """
        with self._lock:
            self._loops.clear()
            self._blocking = None


class Endpoint(NodePools):
    """A server the app talks to, seen through one circuit breaker."""

    def __init__(
        self,
        *,
        alias: str,
        role: str,
        address: NodeAddress,
        options: ConnectionOptions,
        scheduler: Scheduler,
        sentinel: SentinelService | None = None,
    ) -> None:
        super().__init__(
            address=address, options=options, sentinel=sentinel, is_master=role == "primary"
        )
        self.alias = alias
        self.role = role
        self.breaker = CircuitBreaker(
            name=f"{alias}/{role} {self.display}",
            config=options.breaker,
            probe=self.probe,
            scheduler=scheduler,
        )
        self.breaker.add_before_close(self._drop_idle_for_recovery)

    def __repr__(self) -> str:
        return f"<Endpoint {self.alias}/{self.role} {self.display} {self.breaker.state.value}>"

    def _drop_idle_for_recovery(self) -> int:
        self.drop_idle_connections()
        return 0

    def close(self) -> None:
        self.breaker.stop()
        super().close()

    def forget(self) -> None:
        self.breaker.stop()
        super().forget()


class _AskingPool:
    """A view of a pool whose connections send ``ASKING`` when handed out.

    A cluster's ``ASK`` redirect is valid for the one command that follows
    ``ASKING`` on the same connection; wrapping the pool (rather than the
    command) keeps the caller's function unaware of the redirect.
    """

    def __init__(self, pool: Any) -> None:
        self._pool = pool

    def __getattr__(self, name: str) -> Any:
        return getattr(self._pool, name)

    def get_connection(self, *args: Any, **kwargs: Any) -> Any:
        connection = self._pool.get_connection(*args, **kwargs)
        try:
            connection.send_command("ASKING")
            connection.read_response()
        except BaseException:
            self._pool.release(connection)
            raise
        return connection


class _AsyncAskingPool(_AskingPool):
    async def get_connection(self, *args: Any, **kwargs: Any) -> Any:
        connection = await self._pool.get_connection(*args, **kwargs)
        try:
            await connection.send_command("ASKING")
            await connection.read_response()
        except BaseException:
            await self._pool.release(connection)
            raise
        return connection


def asking_client(node: NodePools) -> redis.Redis:
    """A client of ``node`` whose next command is preceded by ``ASKING``."""
    return redis.Redis(connection_pool=_AskingPool(node.pool))  # type: ignore[arg-type]


def async_asking_client(node: NodePools) -> redis.asyncio.Redis:
    """The asyncio twin of :func:`asking_client`, on the running loop's pool."""
    pool = node._loop_pool()
    return redis.asyncio.Redis(connection_pool=_AsyncAskingPool(pool))  # type: ignore[arg-type]
