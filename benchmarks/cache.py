"""Benchmarks of the cache backend against django-redis, Django's RedisCache and raw redis-py.

Every contender is a real Django cache (or a raw redis-py client) on the same
server in the same run. Healthy-path benchmarks ask what resilience costs;
the outage benchmark asks what a hung server costs each call once it is known
to be hung (django-redis waits its socket timeout every time).
"""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from typing import Any

import redis

from benchmarks._env import BenchEnv
from benchmarks._runner import Benchmark, Contender, Target
from benchmarks.connection import BenchmarkFactory

OURS = "django-redis-resilience"
DJANGO_REDIS = "django-redis"
DJANGO = "Django RedisCache"
RAW = "redis-py"
TIMEOUT = 0.25  # every contender gets the same sub-second socket timeouts
VALUE = {"id": 42, "name": "a cached row", "tags": ["a", "b", "c"]}


def _setup_django() -> None:
    """Configure Django once for the run (the benchmarks are not a Django project)."""
    from django.conf import settings

    if not settings.configured:
        import django

        settings.configure(
            SECRET_KEY="benchmarks-only-not-secret",
            INSTALLED_APPS=[
                "django.contrib.auth",
                "django.contrib.contenttypes",
                "django_redis_resilience",
            ],
            CACHES={"default": {"BACKEND": "django.core.cache.backends.dummy.DummyCache"}},
            USE_TZ=True,
        )
        django.setup()


def _caches_setting(url: str, prefix: str, **ours: Any) -> dict[str, Any]:
    timeouts = {"SOCKET_TIMEOUT": TIMEOUT, "SOCKET_CONNECT_TIMEOUT": TIMEOUT}
    return {
        "default": {"BACKEND": "django.core.cache.backends.dummy.DummyCache"},
        OURS: {
            "BACKEND": "django_redis_resilience.cache.ResilientRedisCache",
            "LOCATION": url,
            "KEY_PREFIX": prefix,
            "OPTIONS": ours,
        },
        DJANGO_REDIS: {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": url,
            "KEY_PREFIX": prefix,
            "OPTIONS": {**timeouts, "IGNORE_EXCEPTIONS": True},
        },
        DJANGO: {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": url,
            "KEY_PREFIX": prefix,
            "OPTIONS": {"socket_timeout": TIMEOUT, "socket_connect_timeout": TIMEOUT},
        },
    }


@contextmanager
def _caches(url: str, prefix: str, **ours: Any) -> Iterator[Mapping[str, Any]]:
    """The three Django caches on ``url``, under ``override_settings``; closed afterwards."""
    _setup_django()
    from django.core.cache import caches
    from django.test import override_settings

    with override_settings(CACHES=_caches_setting(url, prefix, **ours)):
        chosen = {name: caches[name] for name in (OURS, DJANGO_REDIS, DJANGO)}
        try:
            yield chosen
        finally:
            _disconnect(chosen)


def _disconnect(chosen: Mapping[str, Any]) -> None:
    """Close the other libraries' pools (neither does it on ``close()`` by default), so no
    socket is left for the garbage collector to warn about."""
    for client in getattr(chosen[DJANGO_REDIS].client, "_clients", None) or []:
        if client is not None:
            client.connection_pool.disconnect()
    for pool in getattr(chosen[DJANGO]._cache, "_pools", {}).values():
        pool.disconnect()


def _contenders(
    caches: Mapping[str, Any], raw: redis.Redis, op: str, key: str, keys: list[str]
) -> tuple[Contender, ...]:
    mapping = dict.fromkeys(keys, VALUE)

    def cache_op(cache: Any) -> Any:
        if op == "get":
            return lambda n: [cache.get(key) for _ in range(n)]
        if op == "set":
            return lambda n: [cache.set(key, VALUE, 300) for _ in range(n)]
        if op == "get_many":
            return lambda n: [cache.get_many(keys) for _ in range(n)]
        return lambda n: [cache.set_many(mapping, 300) for _ in range(n)]

    made = [caches[OURS].make_key(k) for k in keys]
    raw_ops = {
        "get": lambda n: [raw.get(caches[OURS].make_key(key)) for _ in range(n)],
        "set": lambda n: [raw.set(caches[OURS].make_key(key), b"x" * 64, ex=300) for _ in range(n)],
        "get_many": lambda n: [raw.mget(made) for _ in range(n)],
        "set_many": lambda n: [_raw_set_many(raw, made) for _ in range(n)],
    }
    return (
        Contender(DJANGO_REDIS, cache_op(caches[DJANGO_REDIS]), "django_redis.cache.RedisCache"),
        Contender(DJANGO, cache_op(caches[DJANGO]), "django.core.cache.backends.redis"),
        Contender(OURS, cache_op(caches[OURS]), "ResilientRedisCache"),
        Contender(RAW, raw_ops[op], "raw commands, no serialization (a floor)"),
    )


def _raw_set_many(raw: redis.Redis, keys: list[str]) -> None:
    pipe = raw.pipeline(transaction=False)
    for k in keys:
        pipe.set(k, b"x" * 64, ex=300)
    pipe.execute()


def _healthy(op: str, count: int, limit: float) -> BenchmarkFactory:
    @contextmanager
    def factory(env: BenchEnv) -> Iterator[Benchmark]:
        with ExitStack() as stack:
            caches = stack.enter_context(_caches(env.url, f"bench-{op}"))
            raw = redis.Redis.from_url(env.url)
            stack.callback(raw.close)
            keys = [f"k{i}" for i in range(count)]
            for cache in caches.values():
                cache.set_many(dict.fromkeys(keys, VALUE), 300)
            yield Benchmark(
                name=f"cache_{op}",
                description=f"cache.{op}({count if count > 1 else ''}) per call",
                contenders=_contenders(caches, raw, op, keys[0], keys),
                ops=400 if count > 1 else 2_000,
                quick_ops=20,
                targets=(
                    Target(
                        label=f"cache.{op} vs django-redis",
                        contenders=(OURS,),
                        kind="ratio",
                        limit=limit,
                    ),
                ),
            )

    return factory


@contextmanager
def cache_outage_benchmark(env: BenchEnv) -> Iterator[Benchmark]:
    """GET while the server is hung (SIGSTOP): per call, and what it took to get there."""
    del env
    from django_redis_resilience.testing import RedisServer

    with ExitStack() as stack:
        server = stack.enter_context(RedisServer())
        caches = stack.enter_context(_caches(server.url, "bench-outage"))
        ours, theirs = caches[OURS], caches[DJANGO_REDIS]
        for cache in (ours, theirs):
            cache.set("k", VALUE, 300)
            cache.get("k")
        breaker = ours.manager.primary.breaker
        threshold = breaker.config.failure_threshold
        server.hang()
        stack.callback(server.resume)

        # 1. Calls that paid a timeout before the breaker opened, 8 threads in flight.
        latencies: list[float] = []
        lock = threading.Lock()

        def worker() -> None:
            for _ in range(5):
                start = time.perf_counter()
                ours.get("k")
                with lock:
                    latencies.append(time.perf_counter() - start)

        threads = [threading.Thread(target=worker) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        paid = sum(1 for s in latencies if s >= TIMEOUT * 0.8)

        # 2. p99 per call once open.
        samples = []
        for _ in range(2000):
            start = time.perf_counter_ns()
            ours.get("k")
            samples.append((time.perf_counter_ns() - start) / 1000)
        p99 = statistics.quantiles(samples, n=100)[98]

        # 3. From resume to traffic back on Redis.
        server.resume()
        resumed = time.monotonic()
        while not breaker.closed and time.monotonic() - resumed < 60:
            time.sleep(0.002)
        back = time.monotonic() - resumed
        cap = breaker.config.max_recovery_timeout
        server.hang()
        for _ in range(threshold + 2):
            ours.get("k")  # open again for the per-call rounds below

        yield Benchmark(
            name="cache_outage",
            description="cache.get while the server is hung (SIGSTOP), per call",
            contenders=(
                Contender(
                    DJANGO_REDIS,
                    lambda n: [theirs.get("k") for _ in range(n)],
                    "waits its socket timeout on every call (baseline)",
                ),
                Contender(
                    OURS,
                    lambda n: [ours.get("k") for _ in range(n)],
                    "breaker open: served by the fallback",
                ),
            ),
            ops=4,
            quick_ops=1,
            targets=(
                Target(label="outage get, breaker open", contenders=(OURS,), kind="us", limit=100),
            ),
            notes=(
                f"{paid} of {len(latencies)} calls from 8 threads paid the {TIMEOUT} s timeout "
                f"before the breaker opened (target: at most 8 in flight + threshold "
                f"{threshold} = {8 + threshold})",
                f"p99 per get once open: {p99:.1f} µs over {len(samples)} calls (target <= 100 µs)",
                f"from resume to the breaker closed (traffic back on Redis): {back:.2f} s "
                f"(cool-down capped at {cap:g} s)",
            ),
        )


BENCHMARKS: dict[str, BenchmarkFactory] = {
    "cache_get": _healthy("get", 1, 1.03),
    "cache_set": _healthy("set", 1, 1.10),
    "cache_get_many": _healthy("get_many", 100, 1.00),
    "cache_set_many": _healthy("set_many", 100, 1.10),
    "cache_outage": cache_outage_benchmark,
}
