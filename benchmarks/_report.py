"""Turning results into an aligned text table, verdict lines, or JSON.

Plain text on purpose: it must read the same in a terminal, a CI log and a
pull-request comment, with no dependency beyond the standard library.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

from benchmarks._runner import BenchmarkResult, Verdict

_HEADERS = (
    "benchmark",
    "contender",
    "ops",
    "median µs/op",
    "diff µs/op",
    "ratio",
    "min µs/op",
    "max µs/op",
)
_RIGHT_ALIGNED = frozenset(range(2, len(_HEADERS)))


def describe_environment(env: Mapping[str, object]) -> list[str]:
    """The lines printed above the table: what must match for two runs to compare."""
    usable = env.get("usable_cpus")
    cpus = f"{env['cpu_count']}" + (f" (usable {usable})" if usable is not None else "")
    load = env.get("load_average")
    load_text = " ".join(f"{x:.2f}" for x in load) if isinstance(load, list) else "n/a"
    return [
        f"Python {env['python']} | redis-py {env['redis_py']} | "
        f"Redis server {env['redis_server']} | CPUs {cpus} | load {load_text}",
        f"platform {env['platform']}",
    ]


def _rows(result: BenchmarkResult) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = []
    baseline = result.benchmark.baseline.name
    for c in result.contenders:
        name = f"{c.name} (baseline)" if c.name == baseline else c.name
        rows.append(
            (
                result.benchmark.name,
                name,
                str(result.ops),
                f"{c.median_us:.3f}",
                f"{c.diff_us:+.3f}",
                f"{c.ratio:.3f}x",
                f"{c.min_us:.3f}",
                f"{c.max_us:.3f}",
            )
        )
    return rows


def _align(rows: Sequence[tuple[str, ...]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for row in rows:
        cells = [
            cell.rjust(widths[i]) if i in _RIGHT_ALIGNED else cell.ljust(widths[i])
            for i, cell in enumerate(row)
        ]
        lines.append("  ".join(cells).rstrip())
    return lines


def table(results: Sequence[BenchmarkResult]) -> list[str]:
    """One row per contender; a blank line between benchmarks keeps groups readable."""
    rows: list[tuple[str, ...]] = [_HEADERS]
    group_ends: set[int] = set()
    for result in results:
        rows.extend(_rows(result))
        group_ends.add(len(rows) - 1)
    lines = _align(rows)
    out = [lines[0], "-" * len(lines[0])]
    for index, line in enumerate(lines[1:], start=1):
        out.append(line)
        if index in group_ends and index != len(lines) - 1:
            out.append("")
    return out


def verdict_line(verdict: Verdict) -> str:
    """``label: value (target ...): ok`` or ``...: over``; informative, never a failure."""
    target = verdict.target
    status = "ok" if verdict.ok else "over"
    if target.kind == "us":
        measured = f"{verdict.value:.3f} µs/call (target <= {target.limit:g} µs)"
    else:
        percent = (verdict.value - 1.0) * 100.0
        limit = (target.limit - 1.0) * 100.0
        bound = f"<= {limit:+.1f} %" if target.limit < 1.0 else f"within {limit:g} %"
        measured = f"{percent:+.1f} % (ratio {verdict.value:.3f}, target {bound})"
    return f"{target.label}: {measured}: {status}"


def text_report(
    env: Mapping[str, object], results: Sequence[BenchmarkResult], *, rounds: int
) -> str:
    lines = describe_environment(env)
    lines.append(
        f"{rounds} interleaved rounds per benchmark (rotating order), medians of per-round times"
    )
    lines.append("")
    lines += table(results)
    verdicts = [v for r in results for v in r.verdicts]
    if verdicts:
        lines.append("")
        lines += [verdict_line(v) for v in verdicts]
    notes = [f"{r.benchmark.name}: {note}" for r in results for note in r.benchmark.notes]
    if notes:
        lines.append("")
        lines += notes
    return "\n".join(lines)


def _result_json(result: BenchmarkResult) -> dict[str, object]:
    return {
        "name": result.benchmark.name,
        "description": result.benchmark.description,
        "ops": result.ops,
        "rounds": result.rounds,
        "baseline": result.benchmark.baseline.name,
        "notes": list(result.benchmark.notes),
        "contenders": [
            {
                "name": c.name,
                "description": c.description,
                "median_us": c.median_us,
                "diff_us": c.diff_us,
                "ratio": c.ratio,
                "min_us": c.min_us,
                "max_us": c.max_us,
                "samples_us": list(c.samples_us),
            }
            for c in result.contenders
        ],
        "verdicts": [
            {
                "target": v.target.label,
                "kind": v.target.kind,
                "contenders": list(v.target.contenders),
                "value": v.value,
                "limit": v.target.limit,
                "ok": v.ok,
                "line": verdict_line(v),
            }
            for v in result.verdicts
        ],
    }


def json_report(
    env: Mapping[str, object], results: Sequence[BenchmarkResult], *, rounds: int, quick: bool
) -> str:
    document = {
        "environment": dict(env),
        "rounds": rounds,
        "quick": quick,
        "benchmarks": [_result_json(r) for r in results],
    }
    return json.dumps(document, indent=2, ensure_ascii=False)
