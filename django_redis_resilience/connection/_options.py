"""Connection options after validation: plain, frozen, framework-free values."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from django_redis_resilience.connection._breaker import BreakerConfig
from django_redis_resilience.connection._location import Topology
from django_redis_resilience.connection._retry import RetryPolicy


@dataclass(frozen=True)
class ClusterRefreshConfig:
    """When a cluster's slot map is read again."""

    #: Seconds between periodic refreshes; ``0`` turns them off.
    interval: float = 30.0
    #: At most one refresh per this many seconds per process (adaptive ones included).
    min_interval: float = 1.0


@dataclass(frozen=True)
class ConnectionOptions:
    """How to talk to the nodes of one cache.

    The defaults are sub-second on purpose: redis-py waits forever by default,
    and a cache that blocks a request for seconds is worse than no cache.
    """

    socket_connect_timeout: float = 0.25
    socket_timeout: float = 0.25
    health_check_interval: float = 30.0
    socket_keepalive: bool = True
    max_connections: int | None = None
    #: ``None``: the topology's default (a list of URLs reads from its replicas,
    #: as Django's RedisCache does; Sentinel reads from the primary unless asked).
    read_from_replicas: bool | None = None
    probe_timeout: float = 0.5
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    #: Extra keyword arguments for every connection (django-redis's
    #: ``CONNECTION_POOL_KWARGS``), as sorted pairs so the options stay hashable.
    pool_kwargs: tuple[tuple[str, Any], ...] = ()
    #: Keyword arguments for connections to Sentinels (django-redis's ``SENTINEL_KWARGS``).
    sentinel_kwargs: tuple[tuple[str, Any], ...] = field(default=(), repr=False)
    breaker: BreakerConfig = field(default_factory=BreakerConfig)
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    cluster: ClusterRefreshConfig = field(default_factory=ClusterRefreshConfig)


def fingerprint(topology: Topology, options: ConnectionOptions) -> str:
    """A stable digest of everything that shapes the clients, secrets included.

    Secrets are part of it (a changed password must build new pools) but only
    as a digest, so the fingerprint itself is safe to show.
    """
    parts = [repr(topology), repr(options)]
    parts += [f"{n.username}:{n.password}" for n in topology.nodes]
    parts.append(f"{options.username}:{options.password}")
    parts.append(repr(sorted(options.sentinel_kwargs)))
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()[:16]
