"""``manage.py demo``: the example site on embedded Redis, used over HTTP as a person would.

One demo process (standalone Redis) serves the module's tests; the last one
stops it with SIGTERM and checks that every redis-server it ran is gone.
Bounds on time are loose on purpose: the machine is shared and noisy.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import signal
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests._polling import wait_for
from tests.example_project._site import Browser, Demo, Response, redis_processes

#: What "still answering" means while Redis is frozen: far below any hang.
ANSWER_BOUND = 5.0
ADMIN_HEALTH = "/admin/django_redis_resilience/redishealth/"


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    process = Demo(tmp_path_factory.mktemp("demo"))
    try:
        process.wait_until_serving()
        yield process
    finally:
        process.close()


def staff(demo: Demo) -> Browser:
    """A browser logged in with the credentials the demo printed, on the chaos page."""
    browser = Browser(demo.base)
    page = browser.login("admin", demo.password, next_path="/chaos/")
    assert page.status == 200, page.body
    assert page.url.endswith("/chaos/"), page.url
    assert "Chaos: break the embedded Redis" in page.body
    return browser


def act(browser: Browser, node: str, action: str) -> Response:
    page = browser.post("/chaos/", {"node": node, "action": action})
    assert page.status == 200, page.body
    assert page.url.endswith("/chaos/"), page.url
    return page


def health(browser: Browser) -> str:
    page = browser.get("/redis/health/")
    assert page.status == 200, page.body
    return str(json.loads(page.body)["redis"])


def test_prints_credentials_urls_and_its_servers(demo: Demo) -> None:
    out = demo.output
    assert "Username: admin" in out
    assert len(demo.password) >= 12
    for path in ("/chaos/", ADMIN_HEALTH, "/redis/health/"):
        assert f"{demo.base}{path}" in out
    assert list(demo.nodes) == ["redis"]
    # The pids it printed are its own children, and the only redis-servers it runs.
    assert {pid for _, pid in demo.nodes.values()} == demo.redis_children()


def test_pages_answer(demo: Demo) -> None:
    browser = Browser(demo.base)
    home = browser.get("/")
    assert home.status == 200
    assert "standalone" in home.body
    assert re.search(r'<strong class="ok">ok</strong>', home.body), home.body

    first = browser.get("/cached/")
    again = browser.get("/cached/")
    assert first.status == again.status == 200
    rendered = re.compile(r"Rendered at <strong>([\d:]+)</strong>")
    assert rendered.findall(first.body) == rendered.findall(again.body)  # from the cache
    # ...and, once the near cache's link is verified, from the process's memory.
    near_hits = re.compile(r"near cache: (\d+) hits")

    def served_near() -> bool:
        browser.get("/cached/")
        return int(near_hits.findall(browser.get("/pulse/").body)[0]) > 0

    assert wait_for(served_near, timeout=10), browser.get("/pulse/").body

    for path in ("/expensive/", "/expensive/async/"):
        computed = browser.get(path)
        assert computed.status == 200, computed.body
        cached = browser.get(path)
        assert "from the cache" in cached.body, cached.body
    for path in ("/expensive/?stampede=1", "/expensive/async/?stampede=1"):
        stampede = browser.get(path)
        assert stampede.status == 200, stampede.body
        assert "the loader ran\n  <strong>1</strong> time," in stampede.body, stampede.body

    assert browser.get("/pulse/").status == 200
    assert browser.get("/job/").status == 200
    assert browser.get("/redis/health/redis/").status == 200


def test_times_labelled_utc_are_utc(demo: Demo) -> None:
    """The pages say "(UTC)": the time they show is the UTC wall clock, not Django's default
    America/Chicago (5 or 6 hours off)."""
    page = Browser(demo.base).get("/pulse/")
    assert page.status == 200, page.body
    shown = re.search(r"Served at <strong>(\d\d):(\d\d):(\d\d)</strong> \(UTC", page.body)
    assert shown, page.body
    now = dt.datetime.now(dt.timezone.utc)
    seconds = int(shown[1]) * 3600 + int(shown[2]) * 60 + int(shown[3])
    off = abs(seconds - (now.hour * 3600 + now.minute * 60 + now.second))
    assert min(off, 86400 - off) < 600, (shown.group(0), now.isoformat())


def test_api_is_rate_limited(demo: Demo) -> None:
    browser = Browser(demo.base)
    for remaining in (4, 3, 2, 1, 0):
        answer = browser.get("/api/")
        assert answer.status == 200, answer.body
        assert json.loads(answer.body)["remaining"] == remaining
        assert answer.headers["RateLimit"] == f'"api";r={remaining};t={_reset(answer)}'
    refused = browser.get("/api/")
    assert refused.status == 429, refused.body
    assert int(refused.headers["Retry-After"]) >= 1
    assert refused.headers["RateLimit"].startswith('"api";r=0;')
    assert refused.headers["RateLimit-Policy"] == '"api";q=5;w=60'
    assert json.loads(refused.body)["error"] == "too many requests"


def _reset(answer: Response) -> str:
    match = re.search(r";t=(\d+)$", answer.headers["RateLimit"])
    assert match, answer.headers
    return match.group(1)


def test_job_runs_under_the_lock(demo: Demo) -> None:
    browser = staff(demo)  # any user may run it; the staff browser just has its cookies
    browser.get("/job/")
    once = browser.post("/job/", {"runs": "1"})
    assert once.status == 200
    assert "under the lock, fencing token" in once.body, once.body
    twice = browser.post("/job/", {"runs": "2"})
    assert "under the lock, fencing token" in twice.body, twice.body
    assert "Skipped: another run holds the lock." in twice.body, twice.body


def test_chaos_page_is_for_staff_only(demo: Demo) -> None:
    anonymous = Browser(demo.base, follow_redirects=False)
    page = anonymous.get("/chaos/")
    assert page.status == 302
    assert page.headers["Location"] == "/admin/login/?next=/chaos/"
    assert anonymous.post("/chaos/", {"node": "redis", "action": "kill"}, csrf=False).status == 403

    browser = staff(demo)
    forged = browser.post("/chaos/", {"node": "redis", "action": "kill"}, csrf=False)
    assert forged.status == 403
    assert "running" in browser.get("/chaos/").body


@pytest.mark.chaos
def test_site_answers_while_redis_hangs(demo: Demo) -> None:
    browser = staff(demo)
    page = act(browser, "redis", "hang")
    assert "hang: redis (127.0.0.1:" in page.body
    assert '<td class="hung">hung</td>' in page.body
    try:
        for path in ("/", "/cached/", "/expensive/", "/expensive/async/", "/pulse/", "/job/"):
            answer = browser.get(path)
            assert answer.status == 200, (path, answer.body)
            assert answer.seconds < ANSWER_BOUND, (path, answer.seconds)
        panel = browser.get(ADMIN_HEALTH)  # the page the demo links to for watching the damage
        assert panel.status == 200, panel.body
        assert panel.seconds < ANSWER_BOUND
        api = browser.get("/api/")
        assert api.status in (200, 429)
        assert api.seconds < ANSWER_BOUND
        skipped = browser.post("/job/", {"runs": "1"})
        assert skipped.status == 200
        assert skipped.seconds < ANSWER_BOUND
        assert "Skipped: Redis is unavailable" in skipped.body, skipped.body
        # The breaker opens: this process serves from its fallback and says so.
        assert wait_for(lambda: _degraded_after_a_miss(browser))
    finally:
        page = act(browser, "redis", "resume")
    assert "resume: redis (127.0.0.1:" in page.body
    assert '<td class="running">running</td>' in page.body
    assert wait_for(lambda: health(browser) == "ok", timeout=15)
    assert browser.get("/expensive/").status == 200


def _degraded_after_a_miss(browser: Browser) -> bool:
    browser.get("/expensive/?stampede=1")  # new keys: calls to Redis that fail
    return health(browser) == "degraded"


@pytest.mark.chaos
def test_sigterm_stops_the_site_and_every_redis_server(demo: Demo) -> None:
    """Last: it ends the module's demo, with its server frozen to make stopping harder."""
    browser = staff(demo)
    act(browser, "redis", "hang")
    started = demo.redis_children()
    assert started
    assert demo.stop(signal.SIGTERM) == 0, demo.output
    assert "Stopped the embedded Redis servers." in demo.output
    assert wait_for(lambda: not started & redis_processes()), started & redis_processes()
    with socket.socket() as sock:  # nothing listens on the HTTP port any more
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT is fine
        sock.bind(("127.0.0.1", demo.port))


@pytest.mark.parametrize("topology", ["--cluster", "--sentinel"])
def test_other_topologies(topology: str, tmp_path: Path) -> None:
    demo = Demo(tmp_path, topology)
    try:
        demo.wait_until_serving()
        started = demo.redis_children()
        assert {pid for _, pid in demo.nodes.values()} == started
        assert len(started) == (3 if topology == "--cluster" else 5)
        browser = Browser(demo.base)
        assert topology.strip("-") in browser.get("/").body
        first = browser.get("/expensive/")
        assert first.status == 200, first.body
        assert "from the cache" in browser.get("/expensive/").body
        assert demo.stop(signal.SIGTERM) == 0, demo.output
        assert wait_for(lambda: not started & redis_processes()), started & redis_processes()
    finally:
        demo.close()


def test_refuses_a_port_in_use_before_starting_redis(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        demo = Demo(tmp_path, port=port)
        try:
            assert demo.process.wait(timeout=60) != 0
        finally:
            demo.close()
    assert f"cannot listen on 127.0.0.1:{port}" in demo.output
    assert "Starting embedded Redis" not in demo.output
