"""Distributed locks against redis-py's ``Lock`` and python-redis-lock, same Redis, same run.

4 processes x 250 acquisitions of one lock name (2 x 20 with ``--quick``),
each holding the lock for a short body: GET a counter, sleep 2 ms, SET it plus
one, through a raw redis-py client. The processes are spawned, configure
Django and connect once, before the first round; every run releases them
together on a barrier. The baseline is the same body in one process with no
lock: the throughput a lock can at best reach, since only one body runs at a
time. Per contender the table gives the time per acquisition (so the ratio is
the lockless loop's throughput over the lock's); the notes give what the
rounds' wait times were (from calling acquire to holding), the gap between
one holder's body and the next one's, and how many increments were lost.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import multiprocessing
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, ExitStack, contextmanager
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.synchronize import Barrier
from typing import Any

import redis

from benchmarks._env import BenchEnv
from benchmarks._runner import Benchmark, BenchmarkSkipped, Contender, ContenderResult, Target, rank
from benchmarks.cache import _setup_django
from benchmarks.connection import BenchmarkFactory
from benchmarks.ratelimit import _python_calls, _round_trips

SERIAL = "lockless serial loop"
OURS = "django-redis-resilience lock"
REDIS_PY = "redis-py Lock (sleep 0.1)"
PYTHON_REDIS_LOCK = "python-redis-lock"
#: The run order of the table; the baseline first.
ORDER = (SERIAL, REDIS_PY, PYTHON_REDIS_LOCK, OURS)
LOCKS = ORDER[1:]

PROCESSES = 4
PER_PROCESS = 250
QUICK_PROCESSES = 2
QUICK_PER_PROCESS = 20
QUICK_OPS = QUICK_PROCESSES * QUICK_PER_PROCESS
HOLD = 0.002  # seconds of sleep inside the body, between its GET and its SET
LEASE = 10  # seconds: far longer than any wait here, so no lease ever runs out
KEY_PREFIX = "bench-locks"
NAME = f"{KEY_PREFIX}:shared"  # the one lock every process takes
COUNTER = f"{KEY_PREFIX}:counter"
#: How long a process may take to start, or a run to finish, before the run fails.
STARTUP_TIMEOUT = 60.0
RUN_TIMEOUT = 120.0

#: Targets for ``OURS``, reported in the notes (the table's verdict covers throughput).
MIN_THROUGHPUT_SHARE = 0.85
MAX_P99_WAIT_MS = 12.0
MAX_WAIT_MS = 40.0

#: One acquisition, in ``time.perf_counter_ns()`` (one clock for every process):
#: when acquire was called, when the lock was held, when the body ended.
Span = tuple[int, int, int]
Loop = Callable[[int], list[Span]]
#: ``acquirer(name)``: a ``with`` that acquires the lock ``name``, blocking.
Acquirer = Callable[[str], AbstractContextManager[Any]]


def _caches(url: str) -> dict[str, Any]:
    return {
        "default": {
            "BACKEND": "django_redis_resilience.cache.ResilientRedisCache",
            "LOCATION": url,
            "KEY_PREFIX": KEY_PREFIX,
        }
    }


# --- in each benchmark process -------------------------------------------------------


def _body(raw: redis.Redis) -> None:
    """The guarded work: a read-modify-write that loses increments unless serialised."""
    value = int(raw.get(COUNTER) or 0)
    time.sleep(HOLD)
    raw.set(COUNTER, value + 1)


def _acquirers(client: redis.Redis) -> dict[str, Acquirer]:
    """Per lock contender: ``acquirer(name)`` is a ``with`` that acquires ``name``, blocking."""
    import redis_lock

    from django_redis_resilience.locks import lock

    return {
        OURS: lambda name: lock(name, timeout=LEASE, wait=None),
        REDIS_PY: lambda name: client.lock(name, timeout=LEASE),
        PYTHON_REDIS_LOCK: lambda name: redis_lock.Lock(client, name, expire=LEASE),
    }


def _loops(raw: redis.Redis, client: redis.Redis) -> dict[str, Loop]:
    def serial(count: int) -> list[Span]:
        for _ in range(count):
            _body(raw)
        return []

    def locked(acquirer: Acquirer) -> Loop:
        def loop(count: int) -> list[Span]:
            spans = []
            for _ in range(count):
                asked = time.perf_counter_ns()
                with acquirer(NAME):
                    holding = time.perf_counter_ns()
                    _body(raw)
                    done = time.perf_counter_ns()
                spans.append((asked, holding, done))
            return spans

        return loop

    loops: dict[str, Loop] = {SERIAL: serial}
    for name, acquirer in _acquirers(client).items():
        loops[name] = locked(acquirer)
    return loops


def _worker(url: str, pipe: Connection, start: Barrier, index: int) -> None:
    """One benchmark process: configure Django, connect, then run what the parent orders.

    An order is ``(contender, count)``; the process waits on the barrier with the
    others, does ``count`` acquisitions and sends back their spans and how many
    ``lock_lost`` signals it saw meanwhile. ``None`` (or the parent's end
    closing) stops it.
    """
    _setup_django()
    from django.test import override_settings

    from django_redis_resilience import signals

    lost_signals = [0]

    def count_lost(**kwargs: Any) -> None:
        lost_signals[0] += 1

    with ExitStack() as stack:
        stack.callback(pipe.close)
        stack.enter_context(override_settings(CACHES=_caches(url)))
        raw = redis.Redis.from_url(url)  # the body's client
        stack.callback(raw.close)
        client = redis.Redis.from_url(url)  # redis-py's and python-redis-lock's locks
        stack.callback(client.close)
        signals.lock_lost.connect(count_lost, weak=False)
        stack.callback(signals.lock_lost.disconnect, count_lost)
        loops = _loops(raw, client)
        # Connect and load every lock's script up front, on a name of this process's own.
        for acquirer in _acquirers(client).values():
            with acquirer(f"{KEY_PREFIX}:connect:{index}"):
                raw.ping()
        pipe.send("ready")
        while True:
            try:
                order = pipe.recv()
            except EOFError:
                return
            if order is None:
                return
            contender, count = order
            seen = lost_signals[0]
            start.wait(timeout=STARTUP_TIMEOUT)
            spans = loops[contender](count)
            pipe.send((spans, lost_signals[0] - seen))


# --- in the parent -------------------------------------------------------------------


class _Processes:
    """The benchmark processes: spawned and connected once, reused by every run."""

    def __init__(self, url: str, count: int) -> None:
        context = multiprocessing.get_context("spawn")
        self.start = context.Barrier(count + 1)
        self.pipes: list[Connection] = []
        self.processes: list[Any] = []
        try:
            for index in range(count):
                ours, theirs = context.Pipe()
                process = context.Process(
                    target=_worker,
                    args=(url, theirs, self.start, index),
                    name=f"bench-locks-{index}",
                    daemon=True,
                )
                self.pipes.append(ours)
                self.processes.append(process)
                process.start()
                theirs.close()
            for pipe in self.pipes:
                try:
                    ready = pipe.poll(STARTUP_TIMEOUT) and pipe.recv() == "ready"
                except EOFError:  # it died: its traceback is on stderr
                    ready = False
                if not ready:
                    raise RuntimeError("a lock benchmark process did not start")
        except BaseException:
            self.close()
            raise

    def run(self, contender: str, counts: Sequence[int]) -> tuple[list[Span], int]:
        """Every process does its ``counts[i]`` acquisitions, all released together.

        Gives every acquisition's span and the ``lock_lost`` signals sent meanwhile.
        """
        for pipe, count in zip(self.pipes, counts, strict=True):
            pipe.send((contender, count))
        self.start.wait(timeout=STARTUP_TIMEOUT)
        spans: list[Span] = []
        lost_signals = 0
        for pipe in self.pipes:
            try:
                its_spans, its_signals = pipe.recv() if pipe.poll(RUN_TIMEOUT) else (None, 0)
            except EOFError:  # it died: its traceback is on stderr
                its_spans, its_signals = None, 0
            if its_spans is None:
                raise RuntimeError(f"{contender}: a process did not finish its acquisitions")
            spans.extend(its_spans)
            lost_signals += its_signals
        return spans, lost_signals

    def close(self) -> None:
        for pipe in self.pipes:
            with contextlib.suppress(OSError):  # that process is gone already
                pipe.send(None)
        for process in self.processes:
            if process.pid is None:
                continue
            process.join(timeout=10)
            if process.is_alive():
                process.terminate()
                process.join()
            process.close()
        for pipe in self.pipes:
            pipe.close()


def _ms(ns: float) -> float:
    return ns / 1e6


@dataclass(frozen=True)
class _Run:
    """One run of one contender: every process's spans and the counter it left."""

    spans: tuple[Span, ...]
    acquisitions: int
    lost: int
    #: ``lock_lost`` signals sent during the run (this project's lock only).
    lost_signals: int

    @functools.cached_property
    def waits_ms(self) -> list[float]:
        return sorted(_ms(holding - asked) for asked, holding, _ in self.spans)

    @functools.cached_property
    def holds_ms(self) -> list[float]:
        """How long each body took while holding the lock."""
        return sorted(_ms(done - holding) for _, holding, done in self.spans)

    @functools.cached_property
    def gaps_ms(self) -> list[float]:
        """From one holder's body ending to the next one holding: release plus hand-off.

        Negative when two bodies overlapped (the lock failed).
        """
        ordered = sorted(self.spans, key=lambda span: span[1])
        return sorted(_ms(nxt[1] - prev[2]) for prev, nxt in itertools.pairwise(ordered))


def _median_of(runs: Sequence[_Run], figure: Callable[[_Run], float]) -> float:
    return statistics.median(figure(run) for run in runs)


class _Workload:
    """What the contenders run, and what their runs left for the notes."""

    def __init__(self, url: str, raw: redis.Redis) -> None:
        self.url = url
        self.raw = raw
        self.processes: _Processes | None = None
        self.runs: dict[str, list[_Run]] = {name: [] for name in ORDER}

    def run(self, contender: str, n: int) -> None:
        """``n`` acquisitions by every process together, or by one without a lock."""
        if self.processes is None:
            # The first run is the runner's untimed warm-up: the mode is known from n.
            self.processes = _Processes(self.url, QUICK_PROCESSES if n <= QUICK_OPS else PROCESSES)
        count = len(self.processes.pipes)
        if contender == SERIAL:
            counts = [n] + [0] * (count - 1)
        else:
            counts = [n // count + (1 if i < n % count else 0) for i in range(count)]
        self.raw.set(COUNTER, 0)
        spans, lost_signals = self.processes.run(contender, counts)
        lost = n - int(self.raw.get(COUNTER) or 0)
        self.runs[contender].append(_Run(tuple(spans), n, lost, lost_signals))

    def close(self) -> None:
        if self.processes is not None:
            self.processes.close()

    def notes(self, results: tuple[ContenderResult, ...]) -> tuple[str, ...]:
        """The timed rounds' figures (the warm-up run before them is left out)."""
        by_name = {r.name: r for r in results}
        baseline = by_name[SERIAL]
        rounds = len(baseline.samples_us)
        processes = len(self.processes.pipes) if self.processes is not None else 0
        ops = self.runs[SERIAL][-1].acquisitions if self.runs[SERIAL] else 0
        lines = [
            f"{processes} processes x {ops // max(processes, 1)} acquisitions, "
            f"{HOLD * 1000:g} ms sleep between the body's GET and SET; wait = acquire "
            f"called to held, gap = one body's end to the next holder's start (release and "
            f"hand-off); per-round p50/p99/max, median of the {rounds} rounds",
        ]
        serial = self.runs[SERIAL][-rounds:]
        lines.append(
            f"{SERIAL}: {1e6 / baseline.median_us:,.0f} acquisitions/s, "
            f"{baseline.median_us / 1000:.3f} ms per iteration, lost updates "
            f"{sum(r.lost for r in serial)} of {sum(r.acquisitions for r in serial)}"
        )
        figures: dict[str, dict[str, float]] = {}
        for name in LOCKS:
            runs = self.runs[name][-rounds:]
            result = by_name[name]
            share = baseline.median_us / result.median_us
            f = {
                "share": share,
                "p50": _median_of(runs, lambda r: rank(r.waits_ms, 0.50)),
                "p99": _median_of(runs, lambda r: rank(r.waits_ms, 0.99)),
                "max": _median_of(runs, lambda r: r.waits_ms[-1]),
                "worst": max(r.waits_ms[-1] for r in runs),
                "gap50": _median_of(runs, lambda r: rank(r.gaps_ms, 0.50)),
                "gap99": _median_of(runs, lambda r: rank(r.gaps_ms, 0.99)),
                "body": _median_of(runs, lambda r: rank(r.holds_ms, 0.50)),
            }
            figures[name] = f
            lost = sum(r.lost for r in runs)
            overlaps = sum(1 for r in runs for gap in r.gaps_ms if gap < 0)
            signals = sum(r.lost_signals for r in runs)
            lines.append(
                f"{name}: {1e6 / result.median_us:,.0f} acquisitions/s ({share * 100:.1f} % of "
                f"lockless, ratio {result.ratio:.3f}x); wait p50 {f['p50']:.2f} / p99 "
                f"{f['p99']:.2f} / max {f['max']:.2f} ms (worst round's max "
                f"{f['worst']:.2f} ms); body p50 {f['body']:.3f} ms; gap p50 {f['gap50']:.3f} / "
                f"p99 {f['gap99']:.3f} ms; lost updates {lost} of "
                f"{sum(r.acquisitions for r in runs)}, overlapping holds {overlaps}"
                + (f", lock_lost signals {signals}" if name == OURS else "")
            )
        ours = figures[OURS]
        checks = (
            (
                f"throughput >= {MIN_THROUGHPUT_SHARE * 100:g} % of lockless",
                f"{ours['share'] * 100:.1f} %",
                ours["share"] >= MIN_THROUGHPUT_SHARE,
            ),
            (
                f"p99 wait <= {MAX_P99_WAIT_MS:g} ms",
                f"{ours['p99']:.2f} ms",
                ours["p99"] <= MAX_P99_WAIT_MS,
            ),
            (
                f"max wait <= {MAX_WAIT_MS:g} ms",
                f"{ours['max']:.2f} ms (worst round {ours['worst']:.2f} ms)",
                ours["max"] <= MAX_WAIT_MS,
            ),
        )
        lines += [
            f"{OURS} target {label}: {value}: {'ok' if ok else 'over'}"
            for label, value, ok in checks
        ]
        return tuple(lines)


def cycles(acquirers: dict[str, Acquirer], lock_name: str) -> dict[str, Callable[[str], bool]]:
    """Per contender, one uncontended acquire+release of ``lock_name`` as a check function
    (what the round-trip and call counters take)."""

    def cycle(acquirer: Acquirer) -> Callable[[str], bool]:
        def check(_: str) -> bool:
            with acquirer(lock_name):
                return True

        return check

    return {name: cycle(acquirer) for name, acquirer in acquirers.items()}


def _lock_round_trips(client: redis.Redis) -> dict[str, float]:
    """Requests written to a socket per uncontended acquire+release, on a quiet name."""
    return _round_trips(cycles(_acquirers(client), f"{KEY_PREFIX}:round-trips"))


def _lock_python_calls(client: redis.Redis) -> dict[str, float]:
    """Python function calls per uncontended acquire+release (cProfile), on a quiet name."""
    return _python_calls(cycles(_acquirers(client), f"{KEY_PREFIX}:python-calls"))


@contextmanager
def locks_benchmark(env: BenchEnv) -> Iterator[Benchmark]:
    """One lock, contended by every process, against a lockless loop of the same body."""
    try:
        import redis_lock  # noqa: F401  (the processes import it; fail early here)
    except ImportError as exc:  # pragma: no cover - the bench extra is missing
        raise BenchmarkSkipped(f"needs the bench extra: {exc}") from exc
    _setup_django()
    from django.test import override_settings

    with ExitStack() as stack:
        stack.enter_context(override_settings(CACHES=_caches(env.url)))
        raw = redis.Redis.from_url(env.url)
        stack.callback(raw.close)
        raw.flushdb()
        trips = _lock_round_trips(raw)
        calls = _lock_python_calls(raw)
        workload = _Workload(env.url, raw)
        stack.callback(workload.close)
        descriptions = {
            SERIAL: "the same body in one process, no lock: the most a lock allows",
            REDIS_PY: f"client.lock(name, timeout={LEASE}): SET NX, polled every 0.1 s",
            PYTHON_REDIS_LOCK: f"redis_lock.Lock(client, name, expire={LEASE}): SET NX, "
            "then BLPOP a signal list",
            OURS: f"lock(name, timeout={LEASE}, wait=None): FIFO hand-off, BLPOP wake-up",
        }
        yield Benchmark(
            name="locks",
            description="acquire, 2 ms body, release; every process on one lock; per acquisition",
            contenders=tuple(
                Contender(name, functools.partial(workload.run, name), descriptions[name])
                for name in ORDER
            ),
            ops=PROCESSES * PER_PROCESS,
            quick_ops=QUICK_OPS,
            targets=(
                Target(
                    label=f"lock throughput vs the lockless serial loop "
                    f"(>= {MIN_THROUGHPUT_SHARE}x)",
                    contenders=(OURS,),
                    kind="ratio",
                    limit=1 / MIN_THROUGHPUT_SHARE,
                ),
            ),
            notes=(
                "round trips per uncontended acquire+release: "
                + ", ".join(f"{name} {trips[name]:g}" for name in LOCKS)
                + " (target for ours: 2)",
                "Python function calls per uncontended acquire+release (cProfile): "
                + ", ".join(f"{name} {calls[name]:g}" for name in LOCKS),
            ),
            late_notes=workload.notes,
        )


BENCHMARKS: dict[str, BenchmarkFactory] = {"locks": locks_benchmark}
