"""Discovery through Redis Sentinel: one logical endpoint per service and role.

The breaker of a Sentinel-backed cache belongs to the *service* ("the primary
of mymaster"), not to an address: when Sentinel promotes a replica, the same
endpoint follows it, and the recovery probe asks the Sentinels again before it
PINGs, so a failover closes the breaker as soon as the new primary answers.

With ``rediss+sentinel://`` the Sentinels are spoken to over TLS too, verified
like the data nodes (certificate and host name, unless turned off): a Sentinel
names the primary, so whoever can answer for it in plain text can redirect
every write.
"""

from __future__ import annotations

import inspect
from functools import cache
from typing import Any

import redis
import redis.asyncio
import redis.asyncio.sentinel as asentinel
import redis.sentinel as ssentinel

from django_redis_resilience.connection._location import MASK, Topology
from django_redis_resilience.connection._options import ConnectionOptions
from django_redis_resilience.connection._retry import no_retry
from django_redis_resilience.connection._tls import TLS_DEFAULTS, is_tls_option
from django_redis_resilience.connection._tls import normalize as normalize_tls


@cache
def _client_parameters(asyncio: bool) -> frozenset[str]:
    """What redis-py's ``Redis`` takes: the Sentinel manager builds one per Sentinel."""
    client = redis.asyncio.Redis if asyncio else redis.Redis
    return frozenset(inspect.signature(client.__init__).parameters)


def sentinel_display(topology: Topology) -> str:
    """``redis+sentinel://h1:p1,h2:p2/<service>/<db>`` with the password masked."""
    first = topology.nodes[0]
    auth = ""
    if first.username or first.password:
        auth = (first.username or "") + (f":{MASK}" if first.password else "") + "@"
    hosts = ",".join(f"{n.host}:{n.port}" for n in topology.nodes)
    scheme = "rediss+sentinel" if first.tls else "redis+sentinel"
    return f"{scheme}://{auth}{hosts}/{topology.service_name}/{topology.db}"


class SentinelService:
    """The Sentinels of one service, as redis-py ``Sentinel`` managers (sync and per loop)."""

    def __init__(self, *, topology: Topology, options: ConnectionOptions) -> None:
        assert topology.service_name is not None
        self.service_name = topology.service_name
        self.addresses = [(node.host, node.port) for node in topology.nodes]
        self.display = sentinel_display(topology)
        self.tls = topology.nodes[0].tls
        self._params = dict(topology.nodes[0].params)
        #: Connections to the Sentinels themselves: same short timeouts, no
        #: redis-py retries (a dead Sentinel is skipped, not waited for).
        self._options = options
        self.sentinel_kwargs = self._kwargs(asyncio=False)
        self.manager = ssentinel.Sentinel(  # type: ignore[no-untyped-call, unused-ignore]
            self.addresses, sentinel_kwargs=self.sentinel_kwargs
        )

    def async_manager(self) -> asentinel.Sentinel:
        """A new asyncio manager; the caller keeps one per event loop."""
        return asentinel.Sentinel(  # type: ignore[no-untyped-call, unused-ignore]
            self.addresses, sentinel_kwargs=self._kwargs(asyncio=True)
        )

    def _kwargs(self, *, asyncio: bool) -> dict[str, Any]:
        """Arguments of the ``Redis`` client made per Sentinel; ``SENTINEL_KWARGS`` win."""
        kwargs: dict[str, Any] = {
            "socket_timeout": self._options.socket_timeout,
            "socket_connect_timeout": self._options.socket_connect_timeout,
            "protocol": 2,
            "retry": no_retry(asyncio=asyncio),
        }
        if self.tls:
            # The same TLS options as the data nodes (OPTIONS, then the URL's query).
            tls = {**TLS_DEFAULTS}
            for source in (dict(self._options.pool_kwargs), self._params):
                tls.update({k: v for k, v in source.items() if is_tls_option(k)})
            normalize_tls(tls, asyncio=asyncio, display=self.display)
            accepted = _client_parameters(asyncio)
            kwargs.update({k: v for k, v in tls.items() if k in accepted})
            kwargs["ssl"] = True
        kwargs.update(dict(self._options.sentinel_kwargs))
        return kwargs

    def connection_kwargs(self, *, timeout: float) -> dict[str, Any]:
        """A sync connection pool's arguments for one Sentinel, with ``timeout`` (health probes)."""
        kwargs = {**self.sentinel_kwargs, "socket_timeout": timeout}
        kwargs["socket_connect_timeout"] = timeout
        kwargs.pop("retry", None)
        if kwargs.pop("ssl", False):
            kwargs["connection_class"] = redis.SSLConnection
        return kwargs

    def close(self) -> None:
        for client in self.manager.sentinels:
            client.close()
