"""Servers that are up but turn writes away: the replies the app must not take for outages."""

from __future__ import annotations

from django_redis_resilience.testing import RedisServer, free_port


def fill_memory(server: RedisServer) -> None:
    """Memory over ``maxmemory`` with ``noeviction``: every write that needs memory is
    refused with ``OOM``, whatever is freed (the limit is 1 byte)."""
    with server.client() as client:
        client.config_set("maxmemory-policy", "noeviction")
        client.config_set("maxmemory", 1)


def make_read_only(server: RedisServer) -> None:
    """A replica of nothing (a free port): reads work, writes get ``READONLY``, as on a
    demoted primary."""
    with server.client() as client:
        client.replicaof("127.0.0.1", free_port())
