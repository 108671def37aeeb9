"""Benchmarks of Redis Cluster support against redis-py's ``RedisCluster``, same clusters, same run.

Three questions: what a GET costs on a healthy cluster; what a new process
pays to serve its first GET when its first seed is hung and its second dead
(the cluster incident's restart); and what each GET costs while the cluster
refuses commands (``CLUSTERDOWN`` after losing a master with full coverage
required). Both clients get the same sub-second timeouts.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress

import redis
from redis.cluster import ClusterNode, RedisCluster

from benchmarks._env import BenchEnv
from benchmarks._runner import Benchmark, Contender, Target
from benchmarks.connection import BenchmarkFactory
from django_redis_resilience.connection import (
    ConnectionManager,
    ConnectionOptions,
    Scheduler,
    parse_location,
)
from django_redis_resilience.exceptions import RedisUnavailable
from django_redis_resilience.testing import ClusterGroup

TIMEOUT = 0.25
KEY = "drr-bench:cluster"
OURS = "django-redis-resilience"
RAW = "redis-py RedisCluster"


def _raw(seeds: list[tuple[str, int]]) -> RedisCluster:
    return RedisCluster(
        startup_nodes=[ClusterNode(h, p) for h, p in seeds],
        socket_timeout=TIMEOUT,
        socket_connect_timeout=TIMEOUT,
        require_full_coverage=False,
    )


def _manager(location: str, scheduler: Scheduler) -> ConnectionManager:
    return ConnectionManager(
        alias="bench",
        topology=parse_location(location),
        options=ConnectionOptions(socket_timeout=TIMEOUT, socket_connect_timeout=TIMEOUT),
        scheduler=scheduler,
    )


def _location(seeds: list[tuple[str, int]]) -> str:
    return "redis+cluster://" + ",".join(f"{h}:{p}" for h, p in seeds)


@contextmanager
def cluster_get_benchmark(env: BenchEnv) -> Iterator[Benchmark]:
    """GET of a small existing key on a healthy three-master cluster."""
    del env
    with ExitStack() as stack:
        cluster = stack.enter_context(ClusterGroup(masters=3))
        scheduler = Scheduler()
        stack.callback(scheduler.stop)
        raw = _raw(cluster.seeds)
        stack.callback(raw.close)
        manager = _manager(cluster.location, scheduler)
        stack.callback(manager.close)
        raw.set(KEY, b"v" * 32)

        def raw_get(n: int) -> None:
            for _ in range(n):
                raw.get(KEY)

        def our_get(n: int) -> None:
            for _ in range(n):
                manager.execute(lambda c: c.get(KEY), key=KEY, write=False)

        yield Benchmark(
            name="cluster_get",
            description="GET on a healthy cluster, per command",
            contenders=(
                Contender(RAW, raw_get, "RedisCluster(...).get(key) (baseline)"),
                Contender(OURS, our_get, "manager.execute(lambda c: c.get(key), key=key)"),
            ),
            ops=2_000,
            quick_ops=50,
            targets=(
                Target(
                    label="cluster GET vs RedisCluster",
                    contenders=(OURS,),
                    kind="ratio",
                    limit=1.05,
                ),
            ),
        )


@contextmanager
def cluster_startup_benchmark(env: BenchEnv) -> Iterator[Benchmark]:
    """A new client's first GET when the first seed is hung and the second dead."""
    del env
    with ExitStack() as stack:
        cluster = stack.enter_context(ClusterGroup(masters=3, replicas=1))
        masters = cluster.masters
        hung = cluster.replicas_of(masters[0])[0]
        dead = cluster.replicas_of(masters[1])[0]
        seeds = [(hung.host, hung.port), (dead.host, dead.port), cluster.seeds[2]]
        dead.kill()
        hung.hang()
        stack.callback(hung.resume)

        def raw_start(n: int) -> None:
            for _ in range(n):
                client = _raw(seeds)
                try:
                    client.get(KEY)
                finally:
                    client.close()

        def our_start(n: int) -> None:
            for _ in range(n):
                scheduler = Scheduler()
                manager = _manager(_location(seeds), scheduler)
                try:
                    manager.execute(lambda c: c.get(KEY), key=KEY, write=False)
                finally:
                    manager.close()
                    scheduler.stop()

        yield Benchmark(
            name="cluster_startup",
            description="new client + first GET, first seed hung, second dead, per start",
            contenders=(
                Contender(RAW, raw_start, "seeds asked one after the other (baseline)"),
                Contender(OURS, our_start, "seeds asked in parallel"),
            ),
            ops=4,
            quick_ops=1,
        )


@contextmanager
def cluster_down_benchmark(env: BenchEnv) -> Iterator[Benchmark]:
    """GET while the cluster answers CLUSTERDOWN (a master lost, full coverage required)."""
    del env
    with ExitStack() as stack:
        cluster = stack.enter_context(ClusterGroup(masters=3, require_full_coverage=True))
        scheduler = Scheduler()
        stack.callback(scheduler.stop)
        raw = _raw(cluster.seeds)
        stack.callback(raw.close)
        manager = _manager(cluster.location, scheduler)
        stack.callback(manager.close)
        victim = cluster.node_for_key("{a}")
        survivors = [n for n in cluster.nodes if n is not victim]
        # Keys served by the survivors: what CLUSTERDOWN is about (the victim's keys just fail).
        keys = [f"{{{i}}}" for i in range(200)]
        keys = [k for k in keys if cluster.node_for_key(k) is not victim][:20]
        manager.execute(lambda c: c.get(keys[0]), key=keys[0])
        victim.kill()
        cluster.wait_for_state("fail", nodes=survivors)

        def raw_get(n: int) -> None:
            for i in range(n):
                with suppress(redis.RedisError):
                    raw.get(keys[i % len(keys)])

        def our_get(n: int) -> None:
            for i in range(n):
                key = keys[i % len(keys)]
                with suppress(RedisUnavailable):
                    manager.execute(lambda c, k=key: c.get(k), key=key, write=False)

        yield Benchmark(
            name="cluster_down",
            description="GET answered CLUSTERDOWN (the cache serves its fallback), per call",
            contenders=(
                Contender(RAW, raw_get, "sleeps and re-reads the topology on each call (baseline)"),
                Contender(OURS, our_get, "every shard's breaker opened by the first reply"),
            ),
            ops=8,
            quick_ops=2,
        )


BENCHMARKS: dict[str, BenchmarkFactory] = {
    "cluster_get": cluster_get_benchmark,
    "cluster_startup": cluster_startup_benchmark,
    "cluster_down": cluster_down_benchmark,
}
