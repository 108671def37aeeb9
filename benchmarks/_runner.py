"""A tiny benchmark runner: interleaved rounds, medians, ratios to a baseline.

The machines these numbers come from are shared and noisy (CI runners, laptops
with a browser open). A contender timed in one long block can land entirely in
a noisy second while its rival lands in a quiet one, so contenders are
interleaved round by round, in a rotating order, and each is summarised by the
median of its rounds, which one preempted round cannot move.
"""

from __future__ import annotations

import dataclasses
import gc
import math
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

#: Does ``n`` operations; the runner divides its wall time by ``n`` (or, when it
#: returns a :class:`SelfTimed`, the time it reports).
Operation = Callable[[int], object]


@dataclass(frozen=True)
class SelfTimed:
    """What a run returns when only part of it is the operations: it timed them itself.

    For runs that must first set up, untimed, what cannot outlive them (an
    event loop and the connections bound to it), then do the ``n`` operations.
    """

    ns: int


def rank(ordered: Sequence[float], q: float) -> float:
    """The nearest-rank ``q`` quantile of sorted values (p99 of 1000 is the 990th)."""
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


class BenchmarkSkipped(Exception):
    """This machine cannot run the benchmark (e.g. a redis-server without TLS)."""


@dataclass(frozen=True)
class Contender:
    """One way of doing the benchmark's operation."""

    name: str
    run: Operation
    description: str = ""


@dataclass(frozen=True)
class Target:
    """A goal the project states about one benchmark; reported, never asserted.

    ``kind="us"`` compares the worst median µs/op of ``contenders`` with
    ``limit``; ``kind="ratio"`` compares their worst ratio to the baseline.
    """

    label: str
    contenders: tuple[str, ...]
    kind: Literal["us", "ratio"]
    limit: float


@dataclass(frozen=True)
class Benchmark:
    """Named contenders doing the same operation; the first one is the baseline."""

    name: str
    description: str
    contenders: tuple[Contender, ...]
    ops: int
    quick_ops: int
    targets: tuple[Target, ...] = ()
    #: Figures measured outside the per-operation rounds (counts, percentiles,
    #: recovery times), one sentence each, printed under the table.
    notes: tuple[str, ...] = ()
    #: Notes that can only be written once the rounds are over, from figures the
    #: contenders gathered while they ran (wait times, counts): called once after
    #: the last round with the contenders' results, printed after ``notes``.
    late_notes: Callable[[tuple[ContenderResult, ...]], tuple[str, ...]] | None = None

    def __post_init__(self) -> None:
        if not self.contenders:
            raise ValueError(f"benchmark {self.name!r} has no contenders")
        names = [c.name for c in self.contenders]
        if len(set(names)) != len(names):
            raise ValueError(f"benchmark {self.name!r} has duplicate contender names")

    @property
    def baseline(self) -> Contender:
        return self.contenders[0]


@dataclass(frozen=True)
class ContenderResult:
    """Per-operation times of one contender, in microseconds, one sample per round."""

    name: str
    description: str
    samples_us: tuple[float, ...]
    baseline_median_us: float

    @property
    def median_us(self) -> float:
        return statistics.median(self.samples_us)

    @property
    def min_us(self) -> float:
        return min(self.samples_us)

    @property
    def max_us(self) -> float:
        return max(self.samples_us)

    @property
    def diff_us(self) -> float:
        """What this contender costs on top of the baseline, per operation."""
        return self.median_us - self.baseline_median_us

    @property
    def ratio(self) -> float:
        return self.median_us / self.baseline_median_us


@dataclass(frozen=True)
class Verdict:
    target: Target
    value: float

    @property
    def ok(self) -> bool:
        return self.value <= self.target.limit


@dataclass(frozen=True)
class BenchmarkResult:
    benchmark: Benchmark
    ops: int
    rounds: int
    contenders: tuple[ContenderResult, ...]
    verdicts: tuple[Verdict, ...] = field(default=())


def _timed(run: Operation, ops: int) -> int:
    """Wall time of one run in ns, with the collector off so it cannot land inside."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        start = time.perf_counter_ns()
        outcome = run(ops)
        elapsed = time.perf_counter_ns() - start
        return outcome.ns if isinstance(outcome, SelfTimed) else elapsed
    finally:
        if was_enabled:
            gc.enable()


def rotated(items: Sequence[Contender], shift: int) -> list[Contender]:
    """``items`` rotated left by ``shift``, so each contender takes every slot in turn.

    Running first or last in a round is not neutral (caches, CPU frequency,
    the previous contender's garbage), so no contender may keep one slot.
    """
    if not items:
        return []
    k = shift % len(items)
    return [*items[k:], *items[:k]]


def run_benchmark(benchmark: Benchmark, *, rounds: int, ops: int) -> BenchmarkResult:
    """Warm every contender up once, then time ``rounds`` interleaved rounds."""
    if rounds < 1 or ops < 1:
        raise ValueError("rounds and ops must be at least 1")
    for contender in benchmark.contenders:
        contender.run(ops)  # connections, caches and lazy imports happen here, untimed
    samples: dict[str, list[float]] = {c.name: [] for c in benchmark.contenders}
    for round_index in range(rounds):
        gc.collect()
        for contender in rotated(benchmark.contenders, round_index):
            elapsed_ns = _timed(contender.run, ops)
            samples[contender.name].append(elapsed_ns / ops / 1000.0)
    baseline_median = statistics.median(samples[benchmark.baseline.name])
    results = tuple(
        ContenderResult(
            name=c.name,
            description=c.description,
            samples_us=tuple(samples[c.name]),
            baseline_median_us=baseline_median,
        )
        for c in benchmark.contenders
    )
    verdicts = tuple(_verdict(t, results) for t in benchmark.targets)
    if benchmark.late_notes is not None:
        notes = (*benchmark.notes, *benchmark.late_notes(results))
        benchmark = dataclasses.replace(benchmark, notes=notes)
    return BenchmarkResult(benchmark, ops, rounds, results, verdicts)


def _verdict(target: Target, results: Sequence[ContenderResult]) -> Verdict:
    """Judge a target on its worst contender: a goal met only by the best is not met."""
    by_name = {r.name: r for r in results}
    missing = [name for name in target.contenders if name not in by_name]
    if missing:
        raise ValueError(f"target {target.label!r} names unknown contenders {missing}")
    chosen = [by_name[name] for name in target.contenders]
    if target.kind == "us":
        return Verdict(target, max(r.median_us for r in chosen))
    return Verdict(target, max(r.ratio for r in chosen))
