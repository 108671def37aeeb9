"""Rate-limit checks against django-ratelimit, limits and DRF's throttle, same Redis, same run.

Per check with every call admitted (a very high limit), round trips per check
(counted on the client: every request written to a redis-py socket), and
admission under 8 processes hitting one key with a limit of 100: exact
limiters admit exactly 100.
"""

from __future__ import annotations

import cProfile
import multiprocessing
import os
import pstats
import warnings
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

import redis.connection

from benchmarks._env import BenchEnv
from benchmarks._runner import Benchmark, BenchmarkSkipped, Contender, Target
from benchmarks.cache import _setup_django
from benchmarks.connection import BenchmarkFactory

HIGH = "1000000/m"
OURS_GCRA = "django-redis-resilience gcra"
OURS_FIXED = "django-redis-resilience fixed_window"
DJANGO_RATELIMIT = "django-ratelimit"
DRF = "DRF AnonRateThrottle"
LIMITS_FIXED = "limits fixed window"
LIMITS_MOVING = "limits moving window"
LIMITS_COUNTER = "limits sliding window counter"

Check = Callable[[str], bool]


def _caches(url: str) -> dict[str, Any]:
    return {
        "default": {
            "BACKEND": "django_redis_resilience.cache.ResilientRedisCache",
            "LOCATION": url,
            "KEY_PREFIX": "bench-rl",
        },
        "django-redis": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": url,
            "KEY_PREFIX": "bench-rl-dr",
        },
    }


def _checks(url: str, rate: str) -> dict[str, Check]:
    """One function per contender: ``check(identity) -> admitted``."""
    try:
        import limits
        import limits.storage
        import limits.strategies
        from django.core.cache import caches
        from django.test import RequestFactory
        from django_ratelimit.core import is_ratelimited
        from rest_framework.throttling import AnonRateThrottle
    except ImportError as exc:  # pragma: no cover - the bench extra is missing
        raise BenchmarkSkipped(f"needs the bench extra: {exc}") from exc

    from django_redis_resilience.ratelimiting import hit

    storage = limits.storage.RedisStorage(url)
    item = limits.parse(rate.replace("/m", "/minute").replace("/h", "/hour"))
    strategies = {
        LIMITS_FIXED: limits.strategies.FixedWindowRateLimiter(storage),
        LIMITS_MOVING: limits.strategies.MovingWindowRateLimiter(storage),
        LIMITS_COUNTER: limits.strategies.SlidingWindowCounterRateLimiter(storage),
    }
    factory = RequestFactory()

    class Throttle(AnonRateThrottle):
        cache = caches["django-redis"]
        THROTTLE_RATES = {"anon": rate.replace("/m", "/min").replace("/h", "/hour")}

    from django.contrib.auth.models import AnonymousUser

    def drf(identity: str) -> bool:
        request = factory.get("/", REMOTE_ADDR=identity)
        request.user = AnonymousUser()
        return bool(Throttle().allow_request(request, None))

    def django_ratelimit(identity: str) -> bool:
        request = factory.get("/", REMOTE_ADDR=identity)
        return not is_ratelimited(request, group="bench", key="ip", rate=rate, increment=True)

    checks: dict[str, Check] = {
        DJANGO_RATELIMIT: django_ratelimit,
        DRF: drf,
        OURS_GCRA: lambda identity: hit(identity, rate).allowed,
        OURS_FIXED: lambda identity: hit(identity, rate, algorithm="fixed_window").allowed,
    }
    for name, strategy in strategies.items():
        # Each strategy keeps its own data type: its name in the key keeps them apart.
        checks[name] = lambda identity, s=strategy, n=name: bool(s.hit(item, n, identity))
    return checks


def _round_trips(checks: dict[str, Check]) -> dict[str, float]:
    """Requests written to a socket per check, counted at redis-py's lowest write call."""
    count = [0]
    original = redis.connection.AbstractConnection.send_packed_command

    def counting(self: Any, *args: Any, **kwargs: Any) -> Any:
        count[0] += 1
        return original(self, *args, **kwargs)

    redis.connection.AbstractConnection.send_packed_command = counting  # type: ignore[method-assign]
    try:
        trips = {}
        for name, check in checks.items():
            check("10.9.0.1")  # connections, script loads
            count[0] = 0
            for _ in range(50):
                check("10.9.0.1")
            trips[name] = count[0] / 50
    finally:
        redis.connection.AbstractConnection.send_packed_command = original  # type: ignore[method-assign]
    return trips


def _python_calls(checks: dict[str, Check]) -> dict[str, float]:
    """Python function calls per check (cProfile): what a check costs besides its round trip,
    counted exactly where timings on a shared machine wander."""
    calls = {}
    for name, check in checks.items():
        check("10.9.0.2")  # connections, script loads, remembered keys
        profile = cProfile.Profile()
        profile.enable()
        for _ in range(50):
            check("10.9.0.2")
        profile.disable()
        calls[name] = pstats.Stats(profile).total_calls / 50  # type: ignore[attr-defined]
    return calls


def _admitted_by_8_processes(url: str, name: str) -> int:
    """8 forked processes x 100 checks of one identity against a limit of 100/h."""
    context = multiprocessing.get_context("fork")
    total: Any = context.Value("i", 0)
    start = context.Barrier(8)

    def child() -> None:
        try:
            check = _checks(url, "100/h")[name]
            start.wait(timeout=30)
            admitted = sum(check(f"10.8.{os.getppid() % 250}.1") for _ in range(100))
            with total.get_lock():
                total.value += admitted
        finally:
            os._exit(0)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # fork() with threads, 3.12+
        processes = [context.Process(target=child) for _ in range(8)]
        for process in processes:
            process.start()
    for process in processes:
        process.join(timeout=60)
    return int(total.value)


@contextmanager
def ratelimit_benchmark(env: BenchEnv) -> Iterator[Benchmark]:
    """One admitted check per call, every library on the run's Redis."""
    _setup_django()
    from django.test import override_settings

    with ExitStack() as stack:
        stack.enter_context(override_settings(CACHES=_caches(env.url)))
        with env.server.client() as client:
            client.flushdb()
        checks = _checks(env.url, HIGH)
        trips = _round_trips(checks)
        calls = _python_calls(checks)
        admitted = {name: _admitted_by_8_processes(env.url, name) for name in checks}
        counter = iter(range(10**9))

        def contender(name: str, check: Check) -> Contender:
            def run(n: int) -> None:
                for _ in range(n):
                    check(f"10.{next(counter) % 200}.0.1")

            return Contender(name, run, f"{trips[name]:g} round trip(s) per check")

        order = [LIMITS_FIXED, DJANGO_RATELIMIT, DRF, LIMITS_MOVING, LIMITS_COUNTER]
        order += [OURS_GCRA, OURS_FIXED]
        yield Benchmark(
            name="ratelimit",
            description="one admitted rate-limit check, per check",
            contenders=tuple(contender(name, checks[name]) for name in order),
            ops=1_000,
            quick_ops=20,
            targets=(
                Target(
                    label="rate-limit check vs limits' fixed window (at most its time)",
                    contenders=(OURS_GCRA, OURS_FIXED),
                    kind="ratio",
                    limit=1.0,
                ),
            ),
            notes=(
                "round trips per check: " + ", ".join(f"{name} {trips[name]:g}" for name in order),
                "Python function calls per check (cProfile): "
                + ", ".join(f"{name} {calls[name]:g}" for name in order),
                "admitted by 8 processes x 100 checks of one key, limit 100/h: "
                + ", ".join(f"{name} {admitted[name]}" for name in order),
            ),
        )


BENCHMARKS: dict[str, BenchmarkFactory] = {"ratelimit": ratelimit_benchmark}
