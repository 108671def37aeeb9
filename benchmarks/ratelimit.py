"""Rate-limit checks against django-ratelimit, limits and DRF's throttle, same Redis, same run.

Per check with every call admitted (a very high limit), round trips per check
(counted on the client: every request written to a redis-py socket), and
admission under 8 processes hitting one key with a limit of 100: exact
limiters admit exactly 100. ``ratelimit_presence`` prices the fleet presence of
local limiting: the same check with it on and off.
"""

from __future__ import annotations

import cProfile
import multiprocessing
import os
import pstats
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

import redis.connection

from benchmarks._env import BenchEnv
from benchmarks._runner import Benchmark, BenchmarkSkipped, Contender, SelfTimed, Target
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


def _round_trips(checks: dict[str, Check], *, this_thread: bool = False) -> dict[str, float]:
    """Requests written to a socket per check, counted at redis-py's lowest write call.

    ``this_thread``: only the checking thread's (not a background thread's) requests.
    """
    count = [0]
    original = redis.connection.AbstractConnection.send_packed_command
    checking = threading.get_ident()

    def counting(self: Any, *args: Any, **kwargs: Any) -> Any:
        if not this_thread or threading.get_ident() == checking:
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


PRESENCE_ON = "django-redis-resilience gcra, fleet presence on"
PRESENCE_OFF = "django-redis-resilience gcra, fleet presence off"


def _presence(on: bool) -> dict[str, Any]:
    return {"RATELIMIT": {"FLEET": on}}


def _presence_run(on: bool) -> Callable[[int], SelfTimed]:
    """``n`` admitted checks with presence on or off (each run builds its clients anew:
    the setting is read when a cache's clients are built), timed after a first check
    and the presence's first write (then one every 5 s: none in a run)."""
    from django.test import override_settings

    from django_redis_resilience.ratelimiting import hit

    def run(n: int) -> SelfTimed:
        with override_settings(REDIS_RESILIENCE=_presence(on)):
            hit("10.7.0.1", HIGH)  # connect, load the script, start the presence: untimed
            time.sleep(0.05)  # the presence's first write, at once, is done: steady state
            start = time.perf_counter_ns()
            for i in range(n):
                hit(f"10.7.{i % 200}.1", HIGH)
            return SelfTimed(time.perf_counter_ns() - start)

    return run


def _presence_counts(on: bool) -> tuple[float, float]:
    """Round trips (on the checking thread) and Python calls per check."""
    from django.test import override_settings

    from django_redis_resilience.ratelimiting import hit

    def check(identity: str) -> bool:
        return hit(identity, HIGH).allowed

    with override_settings(REDIS_RESILIENCE=_presence(on)):
        trips = _round_trips({"check": check}, this_thread=True)["check"]
        calls = _python_calls({"check": check})["check"]
    return trips, calls


def _zadds(env: BenchEnv) -> int:
    with env.server.client() as client:
        return int(client.info("commandstats").get("cmdstat_zadd", {}).get("calls", 0))


@contextmanager
def ratelimit_presence_benchmark(env: BenchEnv) -> Iterator[Benchmark]:
    """One admitted check, with the fleet presence of local limiting on and off."""
    _setup_django()
    from django.test import override_settings

    from django_redis_resilience.ratelimiting import _fleet

    with ExitStack() as stack:
        stack.enter_context(override_settings(CACHES=_caches(env.url)))
        with env.server.client() as client:
            client.flushdb()
        counts = {PRESENCE_ON: _presence_counts(True), PRESENCE_OFF: _presence_counts(False)}
        zadds_before, started = _zadds(env), time.monotonic()

        def late_notes(results: tuple[Any, ...]) -> tuple[str, ...]:
            # GCRA checks write no sorted set: every ZADD on the server is a presence write.
            return (
                f"presence writes seen on the server while the rounds ran: "
                f"{_zadds(env) - zadds_before} in {time.monotonic() - started:.1f} s (one per "
                f"{_fleet.INTERVAL:g} s per process, and one at once from each run of the on "
                "contender, which builds a new process-wide client)",
            )

        yield Benchmark(
            name="ratelimit_presence",
            description="one admitted GCRA check, fleet presence on and off, per check",
            contenders=(
                Contender(PRESENCE_OFF, _presence_run(False), 'RATELIMIT["FLEET"] = False'),
                Contender(PRESENCE_ON, _presence_run(True), "the default"),
            ),
            ops=1_000,
            quick_ops=20,
            notes=(
                "round trips per check on the checking thread: "
                + ", ".join(f"{name} {counts[name][0]:g}" for name in counts)
                + " (target: 1 for both)",
                "Python function calls per check (cProfile): "
                + ", ".join(f"{name} {counts[name][1]:g}" for name in counts),
            ),
            late_notes=late_notes,
        )


BENCHMARKS: dict[str, BenchmarkFactory] = {
    "ratelimit": ratelimit_benchmark,
    "ratelimit_presence": ratelimit_presence_benchmark,
}
