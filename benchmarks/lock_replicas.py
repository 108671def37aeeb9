"""What a grant that survives a failover costs: ``wait_replicas=1`` against a plain lock.

On a primary with one replica (started for the benchmark, beside the run's own
server), one process acquires and releases a quiet lock name, again and again:
no contention, so the figures are the price of the replica acknowledgement alone.
Contenders: this project's lock without and with ``wait_replicas=1``, redis-py's
``Lock``, and redis-py's ``Lock`` followed by a hand-written ``WAIT 1`` (what a user
would write without the option; unlike ours it neither proves that the grant itself
replicated, when the pool hands ``WAIT`` another connection, nor gives the grant
back when no replica answers). The notes give round trips (requests written to a
redis-py socket) and server commands (the primary's ``INFO commandstats``) per
acquire+release, and the p50/p99 of single acquire+release cycles.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

import redis

from benchmarks._env import BenchEnv
from benchmarks._runner import Benchmark, Contender, ContenderResult, rank
from benchmarks.cache import _setup_django
from benchmarks.connection import BenchmarkFactory
from benchmarks.locks import Acquirer, cycles
from benchmarks.ratelimit import _round_trips
from django_redis_resilience.testing import ReplicaGroup

PLAIN = "django-redis-resilience lock"
REPLICATED = "django-redis-resilience lock, wait_replicas=1"
REDIS_PY = "redis-py Lock"
REDIS_PY_WAIT = "redis-py Lock + WAIT 1 by hand"
ORDER = (PLAIN, REPLICATED, REDIS_PY, REDIS_PY_WAIT)
KEY_PREFIX = "bench-lock-replicas"
LEASE = 10  # seconds; every cycle releases long before
WAIT_MS = 1000  # the hand-written WAIT's bound, as the option's default bound
#: Commands the primary counts that are not the locks' own: this benchmark's probes,
#: the replica's acknowledgements, connection set-up and health checks.
NOT_COUNTED = frozenset({"info", "ping", "replconf", "client|setinfo", "client|setname", "hello"})


def _caches(url: str) -> dict[str, Any]:
    return {
        "default": {
            "BACKEND": "django_redis_resilience.cache.ResilientRedisCache",
            "LOCATION": url,
            "KEY_PREFIX": KEY_PREFIX,
        }
    }


class _ByHand:
    """redis-py's ``Lock`` and then ``WAIT 1``: the do-it-yourself replicated grant."""

    def __init__(self, client: redis.Redis, name: str) -> None:
        self._lock = client.lock(name, timeout=LEASE)
        self._client = client

    def __enter__(self) -> _ByHand:
        self._lock.acquire()
        if int(self._client.wait(1, WAIT_MS)) < 1:
            self._lock.release()
            raise RuntimeError("the replica did not acknowledge the grant")
        return self

    def __exit__(self, *exc: object) -> None:
        self._lock.release()


def _acquirers(client: redis.Redis) -> dict[str, Acquirer]:
    from django_redis_resilience.locks import lock

    return {
        PLAIN: lambda name: lock(name, timeout=LEASE, wait=0),
        REPLICATED: lambda name: lock(name, timeout=LEASE, wait=0, wait_replicas=1),
        REDIS_PY: lambda name: client.lock(name, timeout=LEASE),
        REDIS_PY_WAIT: lambda name: _ByHand(client, name),
    }


def _commands(client: redis.Redis) -> int:
    """The primary's command count so far, leaving out :data:`NOT_COUNTED`."""
    stats = client.info("commandstats")
    return sum(
        int(value["calls"])
        for name, value in stats.items()
        if name.removeprefix("cmdstat_") not in NOT_COUNTED
    )


def _commands_per_cycle(client: redis.Redis, acquirers: dict[str, Acquirer]) -> dict[str, float]:
    counts = {}
    for name, acquirer in acquirers.items():
        with acquirer(f"{KEY_PREFIX}:commands"):  # connections, script loads
            pass
        before = _commands(client)
        for _ in range(50):
            with acquirer(f"{KEY_PREFIX}:commands"):
                pass
        counts[name] = (_commands(client) - before) / 50
    return counts


class _Cycles:
    """Each contender's loop, keeping every cycle's duration for the percentiles."""

    def __init__(self, acquirers: dict[str, Acquirer]) -> None:
        self.acquirers = acquirers
        #: Per contender, one list of cycle durations (ns) per run; the first is the warm-up.
        self.runs: dict[str, list[list[int]]] = {name: [] for name in acquirers}

    def run(self, name: str, n: int) -> None:
        acquirer = self.acquirers[name]
        lock_name = f"{KEY_PREFIX}:{name}"
        durations = []
        clock = time.perf_counter_ns
        for _ in range(n):
            start = clock()
            with acquirer(lock_name):
                pass
            durations.append(clock() - start)
        self.runs[name].append(durations)

    def notes(self, results: tuple[ContenderResult, ...]) -> tuple[str, ...]:
        figures = []
        for name in ORDER:
            timed = sorted(d / 1e6 for run in self.runs[name][1:] for d in run)
            figures.append(f"{name} p50 {rank(timed, 0.5):.3f} / p99 {rank(timed, 0.99):.3f} ms")
        return ("single acquire+release cycles, every timed round: " + ", ".join(figures),)


@contextmanager
def lock_replicas_benchmark(env: BenchEnv) -> Iterator[Benchmark]:
    """Uncontended acquire+release on a primary with one replica, with and without WAIT."""
    _setup_django()
    from django.test import override_settings

    with ExitStack() as stack:
        group = stack.enter_context(ReplicaGroup(replicas=1))
        url = group.primary.url
        stack.enter_context(override_settings(CACHES=_caches(url)))
        client = redis.Redis.from_url(url)
        stack.callback(client.close)
        acquirers = _acquirers(client)
        commands = _commands_per_cycle(client, acquirers)
        trips = _round_trips(cycles(acquirers, f"{KEY_PREFIX}:round-trips"))
        timed = _Cycles(acquirers)
        descriptions = {
            PLAIN: f"lock(name, timeout={LEASE}, wait=0)",
            REPLICATED: "the same with wait_replicas=1: the grant and WAIT 1 in one pipeline",
            REDIS_PY: f"client.lock(name, timeout={LEASE}): SET NX, release script",
            REDIS_PY_WAIT: f"the same, then client.wait(1, {WAIT_MS})",
        }
        yield Benchmark(
            name="lock_replicas",
            description="uncontended acquire+release on a primary with one replica, per cycle",
            contenders=tuple(
                Contender(name, functools.partial(timed.run, name), descriptions[name])
                for name in ORDER
            ),
            ops=500,
            quick_ops=20,
            notes=(
                "round trips per acquire+release: "
                + ", ".join(f"{name} {trips[name]:g}" for name in ORDER),
                "server commands per acquire+release (primary's INFO commandstats): "
                + ", ".join(f"{name} {commands[name]:g}" for name in ORDER),
            ),
            late_notes=timed.notes,
        )


BENCHMARKS: dict[str, BenchmarkFactory] = {"lock_replicas": lock_replicas_benchmark}
