"""The example project with no Redis at all: it passes its checks and every page answers.

``REDIS_URL`` points at a loopback port nothing listens on, so each connection
is refused for real; the cache serves from its fallback and the rate limit
counts in the process.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from django_redis_resilience.testing import free_port
from tests._polling import wait_for
from tests.example_project._site import MANAGE, ROOT, Browser, Runserver, project_env


@pytest.fixture(scope="module")
def nowhere() -> str:
    return f"redis://127.0.0.1:{free_port()}/0"


def test_check_passes_without_redis(tmp_path: Path, nowhere: str) -> None:
    result = subprocess.run(
        [sys.executable, str(MANAGE), "check", "--fail-level", "WARNING"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=project_env(tmp_path, REDIS_URL=nowhere),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory, nowhere: str) -> Iterator[Runserver]:
    tmp_path = tmp_path_factory.mktemp("no-redis")
    process = Runserver(tmp_path, env=project_env(tmp_path, REDIS_URL=nowhere))
    try:
        process.wait_until_serving()
        yield process
    finally:
        process.close()


def test_pages_answer_without_redis(site: Runserver) -> None:
    browser = Browser(site.base)
    for path in ("/", "/cached/", "/expensive/", "/expensive/async/", "/pulse/", "/job/"):
        answer = browser.get(path)
        assert answer.status == 200, (path, answer.body)
    api = browser.get("/api/")
    assert api.status == 200, api.body
    assert json.loads(api.body)["degraded"] is True  # counted in this process
    assert "RateLimit" in api.headers

    def degraded() -> bool:
        browser.get("/expensive/?stampede=1")
        return bool(json.loads(browser.get("/redis/health/").body)["redis"] == "degraded")

    assert wait_for(degraded)
    assert browser.get("/redis/health/redis/").status == 503  # the node is unreachable


def test_job_is_skipped_without_redis(site: Runserver) -> None:
    browser = Browser(site.base)
    browser.get("/job/")
    answer = browser.post("/job/", {"runs": "1"})
    assert answer.status == 200, answer.body
    assert "Skipped: Redis is unavailable, so the lock could not be taken." in answer.body


def test_no_chaos_page_without_the_demo(site: Runserver) -> None:
    assert Browser(site.base).get("/chaos/").status == 404
