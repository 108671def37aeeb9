"""Choosing loopback ports for throwaway servers.

Ports come from the kernel (bind to port 0) rather than from a counter so that
parallel test sessions on one machine do not collide. The ``+10000`` twin is
checked too because a server may later be turned into a cluster node, whose
bus listens there.
"""

from __future__ import annotations

import socket
from collections.abc import Collection

from django_redis_resilience.testing._errors import HarnessError

__all__ = ["CLUSTER_BUS_OFFSET", "free_port"]

CLUSTER_BUS_OFFSET = 10000
_LOOPBACK = "127.0.0.1"
_NEVER = frozenset({6379, 6379 + CLUSTER_BUS_OFFSET})  # the developer's own Redis
_MAX_PORT = 65535
_ATTEMPTS = 200


def _kernel_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((_LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


def _is_free(port: int) -> bool:
    # No SO_REUSEADDR: a port lingering in TIME_WAIT counts as taken, which only
    # makes the choice more conservative.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((_LOOPBACK, port))
        except OSError:
            return False
        return True


def free_port(*, avoid: Collection[int] = ()) -> int:
    """A loopback port that is free now and whose cluster-bus twin is free too.

    ``avoid`` lets the caller keep ports that are momentarily unbound (a killed
    server waiting to be restarted) from being handed to someone else. The port
    can still be taken before the caller binds it; servers retry on that.
    """
    for _ in range(_ATTEMPTS):
        port = _kernel_port()
        twin = port + CLUSTER_BUS_OFFSET
        if twin > _MAX_PORT or port in _NEVER or twin in _NEVER or port in avoid:
            continue
        if twin in avoid:
            continue
        if _is_free(twin):
            return port
    raise HarnessError(f"no free loopback port with a free +{CLUSTER_BUS_OFFSET} twin found")
