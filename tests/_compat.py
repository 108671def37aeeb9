"""Small shims over redis-py API differences between the versions the suite runs on."""

from __future__ import annotations

from typing import Any


def checkout(pool: Any) -> Any:
    """Take a connection out of a sync pool (redis-py 5 needs a command name, 5.3+ warns on it)."""
    try:
        return pool.get_connection()
    except TypeError:
        return pool.get_connection("PING")


def fill_pool(client: Any, size: int) -> None:
    """Open ``size`` pooled connections and return them idle, ready to be killed server-side."""
    pool = client.connection_pool
    held = [checkout(pool) for _ in range(size)]
    for conn in held:
        pool.release(conn)
