"""``python -m benchmarks``: pick benchmarks, run them against a private Redis, report."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from benchmarks import (
    async_cache,
    cache,
    cluster,
    connection,
    lock_replicas,
    locks,
    near_cache,
    ratelimit,
)
from benchmarks._env import BenchEnv, bench_env, describe
from benchmarks._report import json_report, text_report
from benchmarks._runner import BenchmarkResult, BenchmarkSkipped, run_benchmark
from benchmarks.connection import BenchmarkFactory

DEFAULT_ROUNDS = 7
QUICK_ROUNDS = 3

#: Every benchmark, in the order they run and print; each module declares its own.
BENCHMARKS: dict[str, BenchmarkFactory] = {
    **connection.BENCHMARKS,
    **cache.BENCHMARKS,
    **near_cache.BENCHMARKS,
    **async_cache.BENCHMARKS,
    **ratelimit.BENCHMARKS,
    **locks.BENCHMARKS,
    **lock_replicas.BENCHMARKS,
    **cluster.BENCHMARKS,
}


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Compare django-redis-resilience with raw redis-py on a private Redis.",
    )
    parser.add_argument(
        "--rounds",
        type=_positive_int,
        default=None,
        help=f"interleaved rounds per benchmark (default {DEFAULT_ROUNDS}, "
        f"{QUICK_ROUNDS} with --quick)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: few rounds and few operations; the numbers mean little",
    )
    parser.add_argument(
        "--only",
        action="append",
        choices=sorted(BENCHMARKS),
        metavar="NAME",
        help=f"run only this benchmark (repeatable): {', '.join(BENCHMARKS)}",
    )
    parser.add_argument(
        "--json", action="store_true", help="print machine-readable results instead of a table"
    )
    return parser


def _selected(only: Sequence[str] | None) -> list[tuple[str, BenchmarkFactory]]:
    """The chosen benchmarks in their declared order, whatever order ``--only`` used."""
    wanted = set(only) if only else set(BENCHMARKS)
    return [(name, factory) for name, factory in BENCHMARKS.items() if name in wanted]


def _run_one(
    name: str, factory: BenchmarkFactory, env: BenchEnv, *, rounds: int, quick: bool
) -> BenchmarkResult | None:
    # Progress goes to stderr so that --json output on stdout stays parseable.
    print(f"running {name} ...", file=sys.stderr, flush=True)
    try:
        with factory(env) as benchmark:
            ops = benchmark.quick_ops if quick else benchmark.ops
            return run_benchmark(benchmark, rounds=rounds, ops=ops)
    except BenchmarkSkipped as exc:
        print(f"skipped {name}: {exc}", file=sys.stderr, flush=True)
        return None


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    rounds = args.rounds or (QUICK_ROUNDS if args.quick else DEFAULT_ROUNDS)
    with bench_env() as env:
        info = describe(env)
        outcomes = [
            _run_one(name, factory, env, rounds=rounds, quick=args.quick)
            for name, factory in _selected(args.only)
        ]
        results = [result for result in outcomes if result is not None]
    if args.json:
        print(json_report(info, results, rounds=rounds, quick=args.quick))
    else:
        print(text_report(info, results, rounds=rounds))
    return 0
