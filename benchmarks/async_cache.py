"""Benchmarks of the cache's asyncio methods against Django's RedisCache and django-redis.

``ResilientRedisCache.aget`` and friends run on redis.asyncio in the caller's
event loop. Django's ``RedisCache`` and django-redis inherit ``BaseCache``'s
``aget``: ``sync_to_async(self.get, thread_sensitive=True)``, a hop to a
thread and back for every call. Two questions:

- ``async_get_<n>``: how many ``aget`` calls per second ``n`` concurrent asyncio
  tasks get through each cache (1, 10 and 50 tasks);
- ``async_stampede``: how many times an async loader runs when every request
  of a burst misses the same cold key at once through ``aget_or_set`` (the
  others' ``BaseCache.aget_or_set`` is measured too, after the rounds).

Outside an ASGI request every thread-sensitive ``sync_to_async`` call of the
process runs on one shared thread; Django's ``ASGIHandler`` gives each request
its own (``ThreadSensitiveContext``). The ``(per-request thread)`` rows (with
10 tasks) run each task in its own context, as requests run under ASGI.

Every measurement is one ``asyncio.run``: a new event loop, an untimed warm-up
in it (redis.asyncio pools belong to one loop, so this cache connects anew),
then the timed part, which the run times itself. The loop runs without asyncio's
debug mode even under ``python -X dev``: that mode costs far more than the calls.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import statistics
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from typing import Any, TypeVar

from asgiref.sync import ThreadSensitiveContext

from benchmarks._env import BenchEnv
from benchmarks._runner import Benchmark, Contender, ContenderResult, SelfTimed, Target
from benchmarks.cache import (
    DJANGO,
    DJANGO_REDIS,
    OURS,
    VALUE,
    _caches_setting,
    _disconnect,
    _setup_django,
)
from benchmarks.connection import BenchmarkFactory

T = TypeVar("T")

#: Suffix of the rows whose tasks each get their own ``sync_to_async`` thread.
PER_REQUEST = " (per-request thread)"
#: The task count measured with those rows too (threads are slow to start and stop,
#: and with 50 of them per run the quick run would spend most of its time there).
PER_REQUEST_TASKS = 10
KEYS = [f"k{i}" for i in range(100)]
#: ``aget`` throughput the project aims at, as a multiple of the others' (and a stretch goal).
TARGET, STRETCH = 1.5, 2.0
LOAD_SECONDS = 0.020


def _run(main: Coroutine[Any, Any, T]) -> T:
    """One measurement: a new event loop, closed (with this cache's pools) at the end."""
    return asyncio.run(main, debug=False)


@contextmanager
def _async_caches(url: str) -> Iterator[Mapping[str, Any]]:
    """The three caches as ``django.core.cache.caches`` serves them, one key prefix each
    (so none reads what another serialized); their pools closed afterwards."""
    _setup_django()
    from django.core.cache import caches
    from django.test import override_settings

    setting = _caches_setting(url, "bench-async")
    for alias, slug in ((OURS, "ours"), (DJANGO_REDIS, "django-redis"), (DJANGO, "django")):
        setting[alias]["KEY_PREFIX"] = f"bench-async-{slug}"
    with override_settings(CACHES=setting):
        chosen = {alias: caches[alias] for alias in (OURS, DJANGO_REDIS, DJANGO)}
        try:
            yield chosen
        finally:
            _disconnect(chosen)


def _request(per_request: bool) -> contextlib.AbstractAsyncContextManager[Any]:
    """What ``ASGIHandler`` wraps every request in, or nothing."""
    return ThreadSensitiveContext() if per_request else contextlib.nullcontext()


class _Health:
    """Runs of this cache that ended with its breaker open or read a missing key: their
    numbers are the fallback's, not Redis's, so the notes say so."""

    def __init__(self) -> None:
        self.problems: list[str] = []

    def check(self, alias: str, what: str) -> None:
        from django.core.cache import caches

        ours: Any = caches[OURS]
        if alias == OURS and not ours.manager.primary.breaker.closed:
            self.problems.append(f"{what}: the breaker of {OURS} opened")

    def notes(self) -> tuple[str, ...]:
        if not self.problems:
            return ()
        shown = "; ".join(sorted(set(self.problems))[:3])
        return (f"WARNING, {len(self.problems)} runs are not Redis's numbers: {shown}",)


# --- aget throughput ---------------------------------------------------------------------


async def _timed_agets(alias: str, tasks: int, n: int, per_request: bool, health: _Health) -> int:
    """``n`` agets by ``tasks`` concurrent tasks, in ns. Each task first does one
    untimed aget (this loop's connections, the request's thread), then all start
    together; the clock stops when the last finishes, before any thread is stopped."""
    from django.core.cache import caches

    counts = [n // tasks + (1 if i < n % tasks else 0) for i in range(tasks)]
    ready, go = asyncio.Event(), asyncio.Event()
    progress = {"ready": 0, "done": 0, "end": 0}

    async def task(index: int, count: int) -> None:
        async with _request(per_request):
            cache = caches[alias]
            try:
                if await cache.aget(KEYS[index % len(KEYS)]) != VALUE:
                    health.problems.append(f"{alias} with {tasks} tasks: a key was missing")
            finally:  # a failed warm-up must not leave the others waiting
                progress["ready"] += 1
                if progress["ready"] == tasks:
                    ready.set()
            await go.wait()
            for j in range(count):
                await cache.aget(KEYS[(index + j) % len(KEYS)])
            progress["done"] += 1
            if progress["done"] == tasks:
                progress["end"] = time.perf_counter_ns()

    running = [asyncio.create_task(task(i, count)) for i, count in enumerate(counts)]
    await ready.wait()
    start = time.perf_counter_ns()
    go.set()
    await asyncio.gather(*running)
    return progress["end"] - start


def _aget_run(
    alias: str, tasks: int, per_request: bool, health: _Health
) -> Callable[[int], SelfTimed]:
    def run(n: int) -> SelfTimed:
        elapsed = _run(_timed_agets(alias, tasks, n, per_request, health))
        health.check(alias, f"aget with {tasks} tasks")
        return SelfTimed(elapsed)

    return run


def _per_second(result: ContenderResult) -> float:
    return 1e6 / result.median_us


def _throughput_notes(
    tasks: int, health: _Health
) -> Callable[[tuple[ContenderResult, ...]], tuple[str, ...]]:
    def notes(results: tuple[ContenderResult, ...]) -> tuple[str, ...]:
        by_name = {r.name: r for r in results}
        ours = _per_second(by_name[OURS])
        rates = ", ".join(f"{r.name} {_per_second(r):,.0f}" for r in results)
        ratios = {r.name: ours / _per_second(r) for r in results if r.name != OURS}
        line = "ours/theirs aget/s: " + ", ".join(f"{x:.2f}x {n}" for n, x in ratios.items())
        if tasks > 1:
            worst = min(ratios[DJANGO_REDIS], ratios[DJANGO])
            status = "ok, stretch met" if worst >= STRETCH else "ok" if worst >= TARGET else "under"
            line += (
                f"; worst of the shared-thread rows {worst:.2f}x (target >= {TARGET:g}x, "
                f"stretch {STRETCH:g}x): {status}"
            )
        return (f"aget/s, medians: {rates}", line, *health.notes())

    return notes


def _throughput(tasks: int) -> BenchmarkFactory:
    @contextmanager
    def factory(env: BenchEnv) -> Iterator[Benchmark]:
        with ExitStack() as stack:
            caches = stack.enter_context(_async_caches(env.url))
            for cache in caches.values():
                cache.set_many(dict.fromkeys(KEYS, VALUE), 600)
            health = _Health()
            variants = [("", False)]
            if tasks == PER_REQUEST_TASKS:
                variants.append((PER_REQUEST, True))
            contenders = [
                Contender(
                    alias + suffix,
                    _aget_run(alias, tasks, per_request, health),
                    f"{path}: sync_to_async(get)"
                    + (
                        ", a ThreadSensitiveContext per task, as ASGIHandler" if per_request else ""
                    ),
                )
                for alias, path in (
                    (DJANGO_REDIS, "django_redis.cache.RedisCache"),
                    (DJANGO, "django.core.cache.backends.redis.RedisCache"),
                )
                for suffix, per_request in variants
            ]
            contenders.append(
                Contender(
                    OURS,
                    _aget_run(OURS, tasks, False, health),
                    "ResilientRedisCache: redis.asyncio",
                )
            )
            targets: tuple[Target, ...] = ()
            if tasks > 1:
                targets = (
                    Target(
                        label=f"aget, {tasks} tasks, at least {TARGET:g}x django-redis's aget/s",
                        contenders=(OURS,),
                        kind="ratio",
                        limit=1 / TARGET,
                    ),
                )
            yield Benchmark(
                name=f"async_get_{tasks}",
                description=f"await caches[alias].aget(key) from {tasks} concurrent tasks; "
                "per call: wall time / calls",
                contenders=tuple(contenders),
                ops=2_000,
                quick_ops=50,
                targets=targets,
                late_notes=_throughput_notes(tasks, health),
            )

    return factory


# --- stampede ----------------------------------------------------------------------------


class _Loader:
    """An async loader: counts its calls (coroutines made) and its runs (awaited)."""

    def __init__(self) -> None:
        self.calls = 0
        self.runs = 0
        self._made: list[Coroutine[Any, Any, Any]] = []

    def __call__(self) -> Coroutine[Any, Any, Any]:
        self.calls += 1
        coroutine = self._load()
        self._made.append(coroutine)
        return coroutine

    async def _load(self) -> Any:
        self.runs += 1
        await asyncio.sleep(LOAD_SECONDS)
        return VALUE

    def close_unawaited(self) -> None:
        """Close the coroutines nobody awaited, so no "never awaited" warning is printed."""
        for coroutine in self._made:
            if inspect.getcoroutinestate(coroutine) == inspect.CORO_CREATED:
                coroutine.close()


class _SyncLoader:
    """A sync loader for ``BaseCache.aget_or_set``; it does not sleep: it would block the loop."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self) -> Any:
        self.calls += 1
        return VALUE


async def _get_or_set(cache: Any, key: str, loader: Callable[[], Any]) -> Any:
    return await cache.aget_or_set(key, loader, 600)


async def _cache_aside(cache: Any, key: str, loader: Callable[[], Any]) -> Any:
    """What is left to write for an async loader when ``aget_or_set`` cannot await it."""
    value = await cache.aget(key)
    if value is None:
        value = await loader()
        await cache.aset(key, value, 600)
    return value


Request = Callable[[Any, str, Callable[[], Any]], Awaitable[Any]]


class _Burst:
    """``n`` concurrent requests for one cold key: what they got, and what the loader did."""

    def __init__(self, alias: str, request: Request, loader: Any, *, warm: bool) -> None:
        self.alias, self.request, self.loader, self.warm = alias, request, loader, warm
        self.ns = 0
        self.errors: list[BaseException] = []
        self.wrong = 0

    async def run(self, key: str, n: int) -> _Burst:
        from django.core.cache import caches

        cache = caches[self.alias]
        if self.warm:  # the connections a running server would have; untimed
            await asyncio.gather(*(cache.aget(KEYS[0]) for _ in range(n)))
        start = time.perf_counter_ns()
        outcomes = await asyncio.gather(
            *(self.request(cache, key, self.loader) for _ in range(n)), return_exceptions=True
        )
        self.ns = time.perf_counter_ns() - start
        if isinstance(self.loader, _Loader):
            self.loader.close_unawaited()
        self.errors = [o for o in outcomes if isinstance(o, BaseException)]
        self.wrong = sum(1 for o in outcomes if not isinstance(o, BaseException) and o != VALUE)
        return self

    def describe(self, n: int) -> str:
        text = f"loader called {self.loader.calls} times for {n} requests"
        if isinstance(self.loader, _Loader) and self.loader.runs != self.loader.calls:
            text += f", its coroutine awaited {self.loader.runs} times"
        if self.errors:
            kinds = "; ".join(sorted({f"{type(e).__name__}: {e}" for e in self.errors}))
            text += f"; {len(self.errors)} requests raised {kinds}"
        if self.wrong:
            text += f"; {self.wrong} got a wrong value"
        return text


class _Stampede:
    """Bursts on fresh keys; keeps every run's burst, by contender."""

    def __init__(self) -> None:
        self._keys = 0
        self.health = _Health()
        self.bursts: dict[str, list[_Burst]] = {}
        self.requests = 0

    def burst(self, alias: str, request: Request, loader: Any, n: int, *, warm: bool) -> _Burst:
        self._keys += 1
        return _run(_Burst(alias, request, loader, warm=warm).run(f"cold-{self._keys}", n))

    def contender(
        self, name: str, alias: str, request: Request, description: str, *, warm: bool = True
    ) -> Contender:
        def run(n: int) -> SelfTimed:
            done = self.burst(alias, request, _Loader(), n, warm=warm)
            self.health.check(alias, "stampede")
            if done.errors or done.wrong:
                self.health.problems.append(f"stampede: {name}: {done.describe(n)}")
            self.bursts.setdefault(name, []).append(done)
            self.requests = n
            return SelfTimed(done.ns)

        return Contender(name, run, description)

    def late_notes(self, results: tuple[ContenderResult, ...]) -> tuple[str, ...]:
        n = self.requests
        lines = []
        for result in results:
            timed = self.bursts[result.name][1:]  # the first run is the runner's warm-up
            calls = sorted(b.loader.calls for b in timed)
            lines.append(
                f"{result.name}: loader calls per burst of {n}: median "
                f"{statistics.median(calls):g} (min {calls[0]}, max {calls[-1]}, "
                f"{len(timed)} bursts)"
            )
        # BaseCache.aget_or_set, which both others use, once each after the rounds.
        for alias in (DJANGO, DJANGO_REDIS):
            done = self.burst(alias, _get_or_set, _Loader(), n, warm=False)
            lines.append(f"{alias} aget_or_set(key, async loader): {done.describe(n)}")
        done = self.burst(DJANGO, _get_or_set, _SyncLoader(), n, warm=False)
        lines.append(
            f"{DJANGO} aget_or_set(key, sync loader that does not sleep): {done.describe(n)}"
        )
        return (*lines, *self.health.notes())


@contextmanager
def async_stampede_benchmark(env: BenchEnv) -> Iterator[Benchmark]:
    """Concurrent ``aget_or_set`` on one cold key, a fresh key per burst: loader calls,
    and the time until every request has its value."""
    with ExitStack() as stack:
        caches = stack.enter_context(_async_caches(env.url))
        for cache in caches.values():
            cache.set(KEYS[0], VALUE, 600)  # what the warm-up reads
        stampede = _Stampede()
        yield Benchmark(
            name="async_stampede",
            description=f"n concurrent requests (ops) for one cold key, async loader sleeping "
            f"{LOAD_SECONDS * 1000:g} ms; per request: burst wall time / n",
            contenders=(
                stampede.contender(
                    f"{DJANGO} aget+aset",
                    DJANGO,
                    _cache_aside,
                    "aget; on a miss await loader() and aset (its aget_or_set cannot await it)",
                ),
                stampede.contender(
                    f"{DJANGO_REDIS} aget+aset",
                    DJANGO_REDIS,
                    _cache_aside,
                    "the same, django-redis",
                ),
                stampede.contender(
                    f"{OURS} aget_or_set",
                    OURS,
                    _get_or_set,
                    "single flight per key and process; pool connected by an untimed warm-up",
                ),
                stampede.contender(
                    f"{OURS} aget_or_set, fresh loop",
                    OURS,
                    _get_or_set,
                    "the same, no warm-up: the burst opens the new loop's connections",
                    warm=False,
                ),
            ),
            ops=200,
            quick_ops=20,
            late_notes=stampede.late_notes,
        )


BENCHMARKS: dict[str, BenchmarkFactory] = {
    "async_get_1": _throughput(1),
    "async_get_10": _throughput(10),
    "async_get_50": _throughput(50),
    "async_stampede": async_stampede_benchmark,
}
