"""The benchmark's own Redis server and a description of the machine it ran on.

A benchmark run starts its own ``redis-server`` on a free loopback port (never
6379: a developer's or the system's Redis may live there and must not be
disturbed or measured), through the project's test harness, so it works
wherever the test suite works.
"""

from __future__ import annotations

import os
import platform
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import redis

from django_redis_resilience.testing import RedisServer


@dataclass(frozen=True)
class BenchEnv:
    """What a benchmark may use: the run's Redis server."""

    server: RedisServer

    @property
    def url(self) -> str:
        return self.server.url


@contextmanager
def bench_env() -> Iterator[BenchEnv]:
    """Start a private Redis for the run and stop it afterwards, even on error."""
    with RedisServer() as server:
        yield BenchEnv(server=server)


def _server_version(server: RedisServer) -> str:
    with server.client() as client:
        info = client.info("server")
    return str(info.get("redis_version", "unknown"))


def _usable_cpus() -> int | None:
    """CPUs this process may run on (a container or ``taskset`` may allow fewer)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return None


def describe(env: BenchEnv) -> dict[str, object]:
    """Versions and machine facts that decide whether two runs are comparable."""
    try:
        load: list[float] | None = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        load = None
    return {
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "redis_py": redis.__version__,
        "redis_server": _server_version(env.server),
        "cpu_count": os.cpu_count(),
        "usable_cpus": _usable_cpus(),
        "load_average": load,
        "platform": platform.platform(),
    }
