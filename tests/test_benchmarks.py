"""Smoke test of ``python -m benchmarks``: it runs, and reports every contender.

No timing is asserted: the suite runs on shared machines where any threshold
would be flaky. This only keeps the benchmarks from rotting.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
EXPECTED = {
    "breaker",
    "get",
    "set",
    "cache_get",
    "cache_set",
    "cache_get_many",
    "cache_set_many",
    "cache_outage",
    "cache_near",
    "async_get_1",
    "async_get_10",
    "async_get_50",
    "async_stampede",
    "locks",
    "lock_replicas",
    "ratelimit_presence",
    "cluster_get",
    "cluster_startup",
    "cluster_down",
}
# -X dev shows ResourceWarnings, which are otherwise silent outside pytest.
COMMAND = ("-X", "dev", "-W", "error::ResourceWarning", "-m", "benchmarks", "--quick", "--json")


def test_quick_run_reports_every_contender() -> None:
    completed = subprocess.run(
        [sys.executable, *COMMAND],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    # A child's ResourceWarning raised in __del__ is only printed, so look for it.
    assert "ResourceWarning" not in completed.stderr, completed.stderr
    report = json.loads(completed.stdout)
    benchmarks = {b["name"]: b for b in report["benchmarks"]}
    assert set(benchmarks) >= EXPECTED
    for name, benchmark in benchmarks.items():
        assert benchmark["contenders"], name
        for contender in benchmark["contenders"]:
            assert contender["median_us"] > 0, (name, contender["name"])
            assert len(contender["samples_us"]) == report["rounds"], (name, contender["name"])
    for key in ("python", "redis_py", "redis_server", "cpu_count"):
        assert report["environment"][key], key
