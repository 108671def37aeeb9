"""Fleet-aware local limiting: four processes, Redis killed, the fleet keeps near the limit.

Each process learns the fleet's size while Redis is up (presence in the background, not
a round trip per check); during the outage each admits its share. A plain local limiter
would admit the limit in every process: 4 x 100 here.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from django_redis_resilience.testing import RedisServer

WORKER = Path(__file__).with_name("_fleet_worker.py")
ROOT = Path(__file__).resolve().parents[2]
PROCESSES = 4
LIMIT = 100


def _fleet(server: RedisServer, prefix: str, *, presence: bool) -> list[subprocess.Popen[str]]:
    expected, flag = (PROCESSES, "on") if presence else (1, "off")
    return [
        subprocess.Popen(
            [sys.executable, str(WORKER), server.url, prefix, str(expected), flag],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(PROCESSES)
    ]


def _outage(server: RedisServer, prefix: str, *, presence: bool) -> list[dict[str, int]]:
    """Each worker learns the fleet, then checks one limit 400 times after Redis died."""
    workers = _fleet(server, prefix, presence=presence)
    try:
        for worker in workers:
            assert worker.stdout is not None
            ready = worker.stdout.readline().split()
            assert ready == ["ready", str(PROCESSES if presence else 1)], ready
        with server.client() as client:
            members = client.zcard(f"{prefix}:drr:fleet")
        assert members == (PROCESSES if presence else 0)
        server.kill()
        for worker in workers:
            assert worker.stdin is not None
            worker.stdin.write("go\n")
            worker.stdin.flush()
        results = []
        for worker in workers:
            out, _ = worker.communicate(timeout=60)
            results.append(json.loads(out.strip().splitlines()[-1]))
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
    assert all(r["degraded"] == 400 for r in results), results  # all decided locally
    return results


@pytest.mark.chaos
def test_four_processes_admit_about_the_limit_while_redis_is_down(drr_redis_factory: Any) -> None:
    results = _outage(drr_redis_factory(), f"fleet{uuid.uuid4().hex[:6]}", presence=True)
    admitted = sum(r["admitted"] for r in results)
    # Each admits a quarter: the fleet about the limit (a plain local limiter: 4 x 100).
    assert LIMIT * 0.75 <= admitted <= LIMIT * 1.5, results


@pytest.mark.chaos
def test_with_presence_off_nothing_is_written_and_each_process_limits_alone(
    drr_redis_factory: Any,
) -> None:
    """``RATELIMIT["FLEET"] = False``: no presence key, and each process admits the limit."""
    results = _outage(drr_redis_factory(), f"fleet{uuid.uuid4().hex[:6]}", presence=False)
    assert [r["admitted"] for r in results] == [LIMIT] * PROCESSES, results
