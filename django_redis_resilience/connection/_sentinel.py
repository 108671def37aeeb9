"""Discovery through Redis Sentinel: one logical endpoint per service and role.

The breaker of a Sentinel-backed cache belongs to the *service* ("the primary
of mymaster"), not to an address: when Sentinel promotes a replica, the same
endpoint follows it, and the recovery probe asks the Sentinels again before it
PINGs, so a failover closes the breaker as soon as the new primary answers.
"""

from __future__ import annotations

from typing import Any

import redis.asyncio.sentinel as asentinel
import redis.sentinel as ssentinel

from django_redis_resilience.connection._location import MASK, Topology
from django_redis_resilience.connection._options import ConnectionOptions
from django_redis_resilience.connection._retry import no_retry


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
        return {
            "socket_timeout": self._options.socket_timeout,
            "socket_connect_timeout": self._options.socket_connect_timeout,
            "protocol": 2,
            "retry": no_retry(asyncio=asyncio),
            **dict(self._options.sentinel_kwargs),
        }

    def close(self) -> None:
        for client in self.manager.sentinels:
            client.close()
