"""The near cache (``OPTIONS["NEAR_CACHE"]``) against django-redis and the same cache without it.

One benchmark, ``cache_near``, on the run's Redis, every cache with its own key prefix:

- the table: ``cache.get`` of one hot key (a small dict) by django-redis (the baseline),
  by ``ResilientRedisCache`` without a near cache, served by the near cache (a *near
  hit*), and missing it (a *near miss*: ``MAX_AGE`` of a nanosecond, so every value kept
  has expired at the next read, which drops it, reads value and time to live from Redis
  and keeps it again: the whole path of a real miss, with no write in the loop);
- notes: per-call p50 and p99 of a near hit, round trips and Python calls (cProfile) per
  get, how many of the rows' gets really were near hits and misses, the *coherence* delay
  (another OS process writes a new version with this app's cache; from its ``set``
  returning to this process no longer serving the old value) and the memory an entry
  costs (tracemalloc, 10 000 entries at the default bounds).
"""

from __future__ import annotations

import contextlib
import gc
import multiprocessing
import random
import statistics
import time
import tracemalloc
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

import redis

from benchmarks._env import BenchEnv
from benchmarks._runner import Benchmark, Contender, ContenderResult, Target, rank
from benchmarks.cache import TIMEOUT, VALUE, _setup_django
from benchmarks.connection import BenchmarkFactory
from benchmarks.ratelimit import _python_calls, _round_trips

#: The near cache at its defaults, spelled out.
NEAR = {"MAX_ENTRIES": 10_000, "MAX_BYTES": 64 * 2**20, "MAX_AGE": 300, "KEY_PREFIXES": None}
#: The miss row's ``MAX_AGE``: every value kept has expired when it is next read.
MISS_AGE = 1e-9

DJANGO_REDIS = "django-redis"
OFF = "resilient, no near cache"
HIT = "resilient, near hit"
MISS = f"resilient, near miss (MAX_AGE {MISS_AGE:g} s)"
ORDER = (DJANGO_REDIS, OFF, HIT, MISS)

#: ``CACHES`` aliases; each cache has its own key prefix, so no write of one reaches
#: another's near cache.
ALIASES = {
    DJANGO_REDIS: "near-bench-django-redis",
    OFF: "near-bench-off",
    HIT: "near-bench-hit",
    MISS: "near-bench-miss",
}
COHERENCE = "near-bench-coherence"
WRITER = "near-bench-writer"  # the writer process's cache: the reader's prefix, no near cache
MEMORY = {"a 100-character str": "near-bench-mem-str", "a small dict": "near-bench-mem-dict"}
MEMORY_VALUES: dict[str, Any] = {"a 100-character str": "s" * 100, "a small dict": VALUE}
KEY = "hot"
PREFIX = "bench-near"

OPS = 5_000
QUICK_OPS = 20
#: Individually timed near hits, for the per-call percentiles.
PER_CALL = 20_000
#: Writes by the other process, and the entries filled for the memory figure.
WRITES, QUICK_WRITES = 400, 30
ENTRIES, QUICK_ENTRIES = 10_000, 500
#: The writer sleeps a random time up to this before each write, so that writes land
#: anywhere in the reader's loop.
MAX_WRITE_DELAY = 0.001
#: Bounds on waits that only a broken near cache exceeds (it would serve the old value
#: for ``MAX_AGE``, 300 s): the run fails instead.
PATIENCE = 10.0

#: Targets: a near hit at least 20x django-redis's get throughput, p50 per get at most
#: 5 µs; a miss at most 10 % slower than the cache without a near cache; the old value
#: gone from the process within 2 ms at p99 and 20 ms at worst after the write returned.
HIT_RATIO = 0.05
HIT_P50_US = 5.0
MISS_RATIO = 1.10
COHERENCE_P99_MS = 2.0
COHERENCE_MAX_MS = 20.0


def _caches(url: str) -> dict[str, Any]:
    def ours(prefix: str, options: dict[str, Any]) -> dict[str, Any]:
        return {
            "BACKEND": "django_redis_resilience.cache.ResilientRedisCache",
            "LOCATION": url,
            "KEY_PREFIX": f"{PREFIX}-{prefix}",
            "OPTIONS": options,
        }

    return {
        "default": {"BACKEND": "django.core.cache.backends.dummy.DummyCache"},
        ALIASES[DJANGO_REDIS]: {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": url,
            "KEY_PREFIX": f"{PREFIX}-dr",
            "OPTIONS": {
                "SOCKET_TIMEOUT": TIMEOUT,
                "SOCKET_CONNECT_TIMEOUT": TIMEOUT,
                "IGNORE_EXCEPTIONS": True,
            },
        },
        ALIASES[OFF]: ours("off", {}),
        ALIASES[HIT]: ours("hit", {"NEAR_CACHE": NEAR}),
        ALIASES[MISS]: ours("miss", {"NEAR_CACHE": {**NEAR, "MAX_AGE": MISS_AGE}}),
        COHERENCE: ours("coherence", {"NEAR_CACHE": NEAR}),
        **{
            alias: ours(alias.removeprefix("near-bench-"), {"NEAR_CACHE": NEAR})
            for alias in MEMORY.values()
        },
    }


def _writer_caches(url: str) -> dict[str, Any]:
    setting = _caches(url)[COHERENCE]
    return {
        "default": {"BACKEND": "django.core.cache.backends.dummy.DummyCache"},
        WRITER: {**setting, "OPTIONS": {}},
    }


# --- the near cache's state ------------------------------------------------------------------


def _near_stat(cache: Any, name: str) -> int:
    return int(cache.stats()[name])


def _wait_verified(cache: Any) -> None:
    """Until every invalidation link of ``cache`` is verified (a read asks for them)."""
    deadline = time.monotonic() + PATIENCE
    while True:
        cache.get("link-probe")
        stats = cache.stats()
        if stats["near_links"] > 0 and stats["near_links_verified"] == stats["near_links"]:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"{cache!r}: near cache links not verified in {PATIENCE:g} s")
        time.sleep(0.005)


def _hold_near(cache: Any, key: str, value: Any) -> None:
    """Until ``key`` is served near with ``value`` (the read that kept it may race an
    invalidation of an earlier write, which drops it again: read until a near hit)."""
    deadline = time.monotonic() + PATIENCE
    while True:
        hits = _near_stat(cache, "near_hits")
        got = cache.get(key)
        if got == value and _near_stat(cache, "near_hits") > hits:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"{key!r} not served near with {value!r} in {PATIENCE:g} s")


def _found(cache: Any) -> Callable[[str], bool]:
    """``check(_) -> bool`` as the round-trip and call counters take it: one get of the key."""
    get = cache.get
    return lambda _: get(KEY) is not None


def _close_near(cache: Any) -> None:
    """Close the near cache's links now (the settings' reset only stops their thread)."""
    near = getattr(cache.state, "near", None)
    if near is not None:
        near.close()


def _disconnect_django_redis(cache: Any) -> None:
    for client in getattr(cache.client, "_clients", None) or []:
        if client is not None:
            client.connection_pool.disconnect()


# --- figures measured outside the rounds ------------------------------------------------------


def _per_call_us(get: Callable[[str], Any], count: int) -> tuple[float, float, float]:
    """p50 and p99 of ``count`` individually timed ``get(KEY)``, and the timer pair's own
    p50 (included in both), in µs; the collector off, as in the rounds."""
    clock = time.perf_counter_ns
    calls: list[int] = []
    empty: list[int] = []
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        for _ in range(count):
            start = clock()
            get(KEY)
            calls.append(clock() - start)
        for _ in range(count):
            start = clock()
            empty.append(clock() - start)
    finally:
        if was_enabled:
            gc.enable()
    calls.sort()
    return rank(calls, 0.50) / 1000, rank(calls, 0.99) / 1000, statistics.median(empty) / 1000


def _memory_per_entry(cache: Any, url: str, value: Any, count: int) -> tuple[float, float, int]:
    """Fill ``count`` near entries of ``value`` (a read of each key, from Redis; the keys
    were written by :func:`_write_memory_keys`): the traced memory the process grew by
    per entry, the near cache's own count of bytes per entry, and the value's size in
    Redis."""
    keys = [f"m{i}" for i in range(count)]
    with redis.Redis.from_url(url) as raw:
        raw_size = len(raw.get(cache.make_key(keys[0])))
    tracemalloc.start()
    try:
        gc.collect()
        before = tracemalloc.get_traced_memory()[0]
        # An invalidation of the keys' writes still in flight would drop an entry just
        # kept: read again what is not near yet.
        for _ in range(20):
            for key in keys:
                cache.get(key)
            if _near_stat(cache, "near_entries") >= count:
                break
            time.sleep(0.05)
        gc.collect()
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    entries = _near_stat(cache, "near_entries")
    if entries != count:
        raise RuntimeError(f"{entries} near entries of {count} after filling")
    return grown / count, _near_stat(cache, "near_bytes") / count, raw_size


def _write_memory_keys(cache: Any, value: Any) -> None:
    """Write the memory figure's keys well before they are read, so that their writes'
    invalidations have long arrived (and been applied by the links' heartbeat)."""
    _wait_verified(cache)
    cache.set_many({f"m{i}": value for i in range(ENTRIES)}, 300)


# --- the writer process ---------------------------------------------------------------------


def _writer(url: str, pipe: Connection) -> None:
    """Another process of the app: on each order ``(version, delay)``, sleep ``delay``,
    ``cache.set(KEY, version)`` and send back ``time.monotonic_ns()`` taken as it was
    called and as it returned. ``None`` (or the parent's end closing) stops it."""
    _setup_django()
    from django.core.cache import caches
    from django.test import override_settings

    with ExitStack() as stack:
        stack.callback(pipe.close)
        stack.enter_context(override_settings(CACHES=_writer_caches(url)))
        cache = caches[WRITER]
        cache.get(KEY)  # connect
        pipe.send("ready")
        while True:
            try:
                order = pipe.recv()
            except EOFError:
                return
            if order is None:
                return
            version, delay = order
            time.sleep(delay)
            called = time.monotonic_ns()
            cache.set(KEY, version, 300)
            pipe.send((called, time.monotonic_ns()))


@contextmanager
def _writer_process(url: str) -> Iterator[Connection]:
    context = multiprocessing.get_context("spawn")
    ours, theirs = context.Pipe()
    process = context.Process(
        target=_writer, args=(url, theirs), name="bench-near-writer", daemon=True
    )
    process.start()
    theirs.close()
    try:
        try:
            ready = ours.poll(60) and ours.recv() == "ready"
        except EOFError:  # it died: its traceback is on stderr
            ready = False
        if not ready:
            raise RuntimeError("the near cache's writer process did not start")
        yield ours
    finally:
        with contextlib.suppress(OSError):
            ours.send(None)
        process.join(timeout=10)
        if process.is_alive():
            process.terminate()
            process.join()
        process.close()
        ours.close()


@dataclass(frozen=True)
class _Coherence:
    """Per write by the other process, in ms, each list sorted."""

    #: From the writer's ``set`` returning to the start of this process's first ``get``
    #: that no longer returned the old value (the old one was served until then).
    stopped: list[float]
    #: From the writer's ``set`` returning to that ``get`` returning the new value.
    fetched: list[float]
    #: From the writer calling ``set`` to the first ``get`` that did not return the old one.
    since_called: list[float]
    #: The writer's ``set`` itself, called to returned.
    set_ms: list[float]
    #: Reads that returned neither the old version nor the new one (none should).
    others: int


def _coherence(cache: Any, url: str, writes: int) -> _Coherence:
    """Before each write this process serves the old version from its near cache; then
    it reads in a tight loop until the new one comes back."""
    get = cache.get
    clock = time.monotonic_ns
    delays = random.Random(7).choices(range(int(MAX_WRITE_DELAY * 1e6)), k=writes)
    stopped, fetched, since_called, set_ms = [], [], [], []
    others = 0
    cache.set(KEY, 0, 300)
    with _writer_process(url) as pipe:
        for version in range(1, writes + 1):
            _hold_near(cache, KEY, version - 1)
            pipe.send((version, delays[version - 1] / 1e6))
            limit = clock() + int(PATIENCE * 1e9)
            while True:
                start = clock()
                got = get(KEY)
                if got == version:
                    break
                if got != version - 1:
                    others += 1
                if start > limit:
                    raise RuntimeError(f"version {version} not read in {PATIENCE:g} s")
            seen = clock()
            if not pipe.poll(PATIENCE):
                raise RuntimeError("the writer process did not report its write")
            called, returned = pipe.recv()
            stopped.append((start - returned) / 1e6)
            fetched.append((seen - returned) / 1e6)
            since_called.append((start - called) / 1e6)
            set_ms.append((returned - called) / 1e6)
    return _Coherence(
        sorted(stopped), sorted(fetched), sorted(since_called), sorted(set_ms), others
    )


def _spread(ordered: Sequence[float]) -> str:
    """``p50 / p99 / max`` of sorted ms."""
    return (
        f"p50 {rank(ordered, 0.5):.3f} / p99 {rank(ordered, 0.99):.3f} / max {ordered[-1]:.3f} ms"
    )


def _check(label: str, value: str, ok: bool) -> str:
    return f"target {label}: {value}: {'ok' if ok else 'over'}"


# --- the benchmark ----------------------------------------------------------------------------


class _Workload:
    """The rows' gets, and what the notes measure once the rounds are over."""

    def __init__(self, url: str, caches: dict[str, Any], extra: dict[str, Any]) -> None:
        self.url = url
        self.caches = caches
        self.extra = extra
        self.done: dict[str, int] = dict.fromkeys(ORDER, 0)
        self.ops = 0
        self.before: dict[str, dict[str, int]] = {}

    def contender(self, name: str, description: str) -> Contender:
        get = self.caches[name].get

        def run(n: int) -> None:
            self.done[name] += n
            self.ops = n
            for _ in range(n):
                get(KEY)

        return Contender(name, run, description)

    def snapshot(self) -> None:
        """The near counters as the rounds (and their warm-up) start."""
        for name in (HIT, MISS):
            self.before[name] = self.caches[name].stats()

    def notes(self, results: tuple[ContenderResult, ...]) -> tuple[str, ...]:
        by_name = {r.name: r for r in results}
        lines = []
        # 1. Every get of the hit row was a near hit, every get of the miss row a miss.
        served = {}
        for name in (HIT, MISS):
            now = self.caches[name].stats()
            served[name] = {k: now[k] - self.before[name][k] for k in ("near_hits", "near_misses")}
        lines.append(
            f"gets served near during the rounds (warm-up included): {HIT} "
            f"{served[HIT]['near_hits']} of {self.done[HIT]} "
            f"(near misses {served[HIT]['near_misses']}); {MISS} "
            f"{served[MISS]['near_hits']} of {self.done[MISS]} "
            f"(near misses {served[MISS]['near_misses']})"
        )
        hit, miss, off = by_name[HIT], by_name[MISS], by_name[OFF]
        lines.append(
            f"{HIT}: {1e6 / hit.median_us:,.0f} gets/s, {1 / hit.ratio:.1f}x django-redis's "
            f"{1e6 / by_name[DJANGO_REDIS].median_us:,.0f} gets/s and "
            f"{off.median_us / hit.median_us:.1f}x the cache without a near cache"
        )
        miss_ratio = miss.median_us / off.median_us
        lines.append(
            _check(
                f"near miss vs the same cache without a near cache <= {MISS_RATIO:.2f}x",
                f"{miss_ratio:.3f}x ({miss.median_us:.2f} vs {off.median_us:.2f} µs/get, "
                f"{miss.median_us - off.median_us:+.2f} µs; spreads {miss.min_us:.2f}-"
                f"{miss.max_us:.2f} and {off.min_us:.2f}-{off.max_us:.2f} µs)",
                miss_ratio <= MISS_RATIO,
            )
        )
        quick = self.ops <= QUICK_OPS
        lines += self._coherence(QUICK_WRITES if quick else WRITES)
        lines += self._memory(QUICK_ENTRIES if quick else ENTRIES)
        return tuple(lines)

    def _coherence(self, writes: int) -> list[str]:
        c = _coherence(self.extra[COHERENCE], self.url, writes)
        p99, worst = rank(c.stopped, 0.99), c.stopped[-1]
        return [
            f"coherence: {writes} writes of a new version by another process (this app's "
            f"cache, no near cache there; each after a random 0-{MAX_WRITE_DELAY * 1000:g} "
            f"ms pause) while this process served the old one near, reading it in a tight "
            f"loop; times from time.monotonic (one clock for both processes, same machine, "
            f"loopback)",
            f"coherence: from the writer's set returning to this process no longer serving "
            f"the old value (the start of its first get that did not): {_spread(c.stopped)} "
            f"(min {c.stopped[0]:+.3f} ms; below 0: the old value was gone before the "
            f"writer's set returned); to that get returning the new value (read from "
            f"Redis): {_spread(c.fetched)}; from the writer calling set to no longer "
            f"serving the old value: {_spread(c.since_called)}; the writer's set itself: "
            f"{_spread(c.set_ms)}; reads of neither version: {c.others}",
            _check(
                f"coherence p99 <= {COHERENCE_P99_MS:g} ms",
                f"{p99:.3f} ms",
                p99 <= COHERENCE_P99_MS,
            ),
            _check(
                f"coherence max <= {COHERENCE_MAX_MS:g} ms",
                f"{worst:.3f} ms",
                worst <= COHERENCE_MAX_MS,
            ),
        ]

    def _memory(self, entries: int) -> list[str]:
        figures = []
        for kind, alias in MEMORY.items():
            grown, counted, raw = _memory_per_entry(
                self.extra[alias], self.url, MEMORY_VALUES[kind], entries
            )
            figures.append(
                f"{kind} ({raw} bytes in Redis): {grown:,.0f} bytes/entry, "
                f"{grown * entries / 2**20:.2f} MiB in all (near_bytes counts {counted:,.0f})"
            )
        return [
            f"memory, {entries:,} entries filled by reading each key (from Redis), at the default "
            f"bounds (MAX_ENTRIES {NEAR['MAX_ENTRIES']:,}, MAX_BYTES {NEAR['MAX_BYTES']:,}); "
            f"the process's traced growth (tracemalloc, after gc.collect()) per entry: "
            + "; ".join(figures)
        ]


@contextmanager
def near_cache_benchmark(env: BenchEnv) -> Iterator[Benchmark]:
    """A hot key's get served near, missed, and without a near cache; coherence; memory."""
    _setup_django()
    from django.core.cache import caches as django_caches
    from django.test import override_settings

    with ExitStack() as stack:
        stack.enter_context(override_settings(CACHES=_caches(env.url)))
        with env.server.client() as client:
            client.flushdb()
        caches = {name: django_caches[alias] for name, alias in ALIASES.items()}
        extra = {alias: django_caches[alias] for alias in (COHERENCE, *MEMORY.values())}
        stack.callback(_disconnect_django_redis, caches[DJANGO_REDIS])
        for cache in (*caches.values(), *extra.values()):
            if cache is not caches[DJANGO_REDIS]:
                stack.callback(_close_near, cache)
        for cache in (caches[HIT], caches[MISS], extra[COHERENCE]):
            _wait_verified(cache)
        for cache in caches.values():
            cache.set(KEY, VALUE, 300)
        _hold_near(caches[HIT], KEY, VALUE)
        for kind, alias in MEMORY.items():
            _write_memory_keys(extra[alias], MEMORY_VALUES[kind])
        gets = {name: _found(caches[name]) for name in ORDER}
        trips = _round_trips(gets)
        calls = _python_calls(gets)
        p50, p99, timer = _per_call_us(caches[HIT].get, PER_CALL)
        if _near_stat(caches[MISS], "near_hits"):
            raise RuntimeError(f"{MISS} served a near hit")
        workload = _Workload(env.url, caches, extra)
        workload.snapshot()
        descriptions = {
            DJANGO_REDIS: "django_redis.cache.RedisCache: one GET",
            OFF: "ResilientRedisCache without NEAR_CACHE: one GET",
            HIT: "NEAR_CACHE at its defaults: served from the process",
            MISS: "NEAR_CACHE, every value expired at the next read: the value and its "
            "TTL read from Redis (one script call), then kept",
        }
        yield Benchmark(
            name="cache_near",
            description="cache.get of a hot key (a small dict), per call",
            contenders=tuple(workload.contender(name, descriptions[name]) for name in ORDER),
            ops=OPS,
            quick_ops=QUICK_OPS,
            targets=(
                Target(
                    label="near hit vs django-redis get (>= 20x throughput)",
                    contenders=(HIT,),
                    kind="ratio",
                    limit=HIT_RATIO,
                ),
            ),
            notes=(
                "round trips per get: " + ", ".join(f"{n} {trips[n]:g}" for n in ORDER),
                "Python function calls per get (cProfile): "
                + ", ".join(f"{n} {calls[n]:g}" for n in ORDER),
                f"{HIT}, {PER_CALL:,} gets timed one by one: p50 {p50:.3f} µs, p99 {p99:.3f} "
                f"µs (the timer pair alone: {timer:.3f} µs, included)",
                _check(
                    f"near hit p50 <= {HIT_P50_US:g} µs per get", f"{p50:.3f} µs", p50 <= HIT_P50_US
                ),
            ),
            late_notes=workload.notes,
        )


BENCHMARKS: dict[str, BenchmarkFactory] = {"cache_near": near_cache_benchmark}
