"""Incidents of a standalone Redis, replayed end to end through the example site.

Each test starts real servers, runs the example project against them under
``runserver`` and breaks Redis the way it broke in production: refusing
connections at boot, dropping every client connection (plain and TLS), getting
slow instead of dying, and filling up under ``noeviction``. Users' requests go
over HTTP; what reached Redis is counted on the server.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import redis

from django_redis_resilience.testing import (
    FaultProxyFactory,
    RedisServer,
    RedisServerFactory,
    ReplicaGroupFactory,
    TLSMaterial,
    free_port,
)
from tests._compat import redis_servers
from tests._polling import wait_for
from tests.example_project._site import MANAGE, ROOT, Browser, Response, Runserver, project_env
from tests.incidents.conftest import (
    CACHE_PAGES,
    EXPENSIVE_KEY,
    JOB_RAN,
    JOB_UNAVAILABLE,
    PAGES,
    Traffic,
    as_shown,
    client_view,
    command_calls,
    computed_at,
    example_site,
    fresh_report,
    get,
    monitor,
    redis_state,
    stored,
    tail,
)

#: Far above anything the site needs while Redis misbehaves (a call gives up after
#: 0.25 s), far below a hang: the bound on every request during an incident.
ANSWER_BOUND = 3.0
#: Added each way by the slow network: a round trip of 0.8 s is far above the example's
#: SOCKET_TIMEOUT (0.25 s) and the recovery probe's timeout (0.5 s).
LATENCY = 0.4
#: What the pages send to Redis: none of these may reach it while the breaker is open.
PAGE_COMMANDS = ("get", "set", "evalsha", "eval", "script|load", "mget", "unlink", "del")
#: Server-side disconnects of every client, one after the other, while traffic runs.
KILLS = 3


def _api(browser: Browser) -> dict[str, Any]:
    """``/api/``'s JSON (200, or 429 over the limit: both carry the decision)."""
    answer = browser.get("/api/")
    assert answer.status in (200, 429), answer
    assert answer.headers["RateLimit-Policy"] == '"api";q=5;w=60', answer.headers
    body: dict[str, Any] = json.loads(answer.body)
    return body


def _degraded_after_misses(browser: Browser) -> bool:
    """Fresh keys make calls to Redis; then, is the breaker open?"""
    browser.get("/expensive/?stampede=1")
    return redis_state(browser) == "degraded"


def _page_commands(server: RedisServer) -> dict[str, int]:
    calls = command_calls(server)
    return {name: calls.get(name, 0) for name in PAGE_COMMANDS}


# --- 1. Redis refusing connections when the app starts ------------------------------------


@pytest.mark.chaos
def test_app_boots_and_serves_without_redis_then_reconnects_by_itself(
    tmp_path: Path, drr_redis_factory: RedisServerFactory
) -> None:
    port = free_port()  # nothing listens there yet: every connection is refused
    booted = time.monotonic()
    with example_site(tmp_path, f"redis://127.0.0.1:{port}/0") as site:
        browser = Browser(site.base)
        for path in PAGES:
            answer = browser.get(path)
            assert answer.status == 200, (path, answer.body, tail(site))
            assert answer.seconds < ANSWER_BOUND, (path, answer.seconds)
        api = _api(browser)
        assert api["degraded"] is True  # limited in this process, not refused, not a 500
        job = browser.post("/job/", {"runs": "1"})
        assert job.status == 200, tail(site)
        assert JOB_UNAVAILABLE in job.body, job.body  # on_unavailable="skip", and it says so

        assert wait_for(lambda: _degraded_after_misses(browser), timeout=10)
        status, body = monitor(site.base, "/redis/health/")
        assert status == 200  # the load balancer keeps the site in rotation
        assert body["status"] == "ok"
        assert body["redis"] == "degraded"
        assert body["caches"] == {"default": "degraded"}
        status, report = monitor(site.base, "/redis/health/redis/")
        assert status == 503, report  # monitoring: the only node is unreachable
        findings = {(f["code"], f["node"]) for c in report["caches"] for f in c["findings"]}
        assert ("H001", f"127.0.0.1:{port}") in findings, report
        (endpoint,) = client_view(report)["endpoints"]
        assert endpoint["breaker"] in ("open", "half_open"), endpoint

        # Redis comes up on that port. Nobody restarts the site; only /redis/health/,
        # which reads this process's breakers and sends nothing to Redis, is polled.
        outage = time.monotonic() - booted
        server = drr_redis_factory(port=port)
        assert server.port == port
        # The breaker opened after the site booted, so the cool-down in force (it doubles
        # after each failed probe, with 20 % jitter) is at most about twice the outage.
        recovered = wait_for(lambda: redis_state(browser) == "ok", timeout=2 * outage + 5, step=0.1)
        assert recovered, tail(site)

        # A new write lands in Redis: the page's value is the one Redis holds.
        page = browser.get("/expensive/")
        assert page.status == 200, tail(site)
        assert "<strong>computed</strong>" in page.body, page.body
        value = stored(server, EXPENSIVE_KEY)
        assert value is not None, "the value computed after recovery is not in Redis"
        assert as_shown(value["computed_at"]) == computed_at(page)
        again = browser.get("/expensive/")
        assert "from the cache" in again.body, again.body
        assert _api(browser)["degraded"] is False
        job = browser.post("/job/", {"runs": "1"})
        assert JOB_RAN in job.body, job.body


# --- 2. Server-side mass disconnect while traffic runs ------------------------------------


@pytest.mark.chaos
@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
def test_mass_disconnect_and_restart_under_traffic(
    tls: bool,
    tmp_path: Path,
    drr_redis_factory: RedisServerFactory,
    drr_tls_material: TLSMaterial,
) -> None:
    # Skips, saying why, only when this redis-server was built without TLS.
    server = drr_redis_factory(tls=drr_tls_material if tls else None)
    url = server.url
    if tls:
        url += f"?ssl_ca_certs={quote(str(drr_tls_material.ca_file))}"
    with example_site(tmp_path, url) as site:
        browser = Browser(site.base)
        for path in CACHE_PAGES:
            assert browser.get(path).status == 200, (path, tail(site))
        assert redis_state(browser) == "ok"

        with Traffic(site.base, [get(path) for path in CACHE_PAGES]) as traffic:
            traffic.wait_for_more(len(CACHE_PAGES))
            for _ in range(KILLS):
                killed = server.kill_clients()
                assert killed >= 1  # the site's pooled connections were there to kill
                # The next request is served by Redis on a new connection, not degraded.
                assert _api(browser)["degraded"] is False, tail(site)
                traffic.wait_for_more(2 * len(CACHE_PAGES))
            kills_done = time.time()
            traffic.wait_for_more(len(CACHE_PAGES))

            # No dead pooled connection was ever handed to a command that then failed:
            # nothing went to the fallback and the breaker never opened.
            report = fresh_report(site.base, newer_than=kills_done)
            view = client_view(report)
            (endpoint,) = view["endpoints"]
            assert endpoint["breaker"] == "closed", endpoint
            assert endpoint["opened_at"] is None, endpoint
            counters = view["counters"]
            for name in ("fallback_reads", "fallback_writes", "short_circuited", "errors"):
                assert counters[name] == 0, counters
            assert counters["hits"] > 0, counters  # the traffic was served by Redis
            health = traffic.of("/redis/health/")
            assert health, "no health answers recorded"
            assert {json.loads(o.body)["redis"] for o in health} == {"ok"}

            # Then the whole server goes away and comes back on the same port, empty.
            server.restart()
            restarted = time.time()
            assert wait_for(lambda: redis_state(browser) == "ok", timeout=15, step=0.1), tail(site)
            traffic.wait_for_more(2 * len(CACHE_PAGES))

        failures = traffic.failures()
        assert not failures, (failures[:5], tail(site))
        assert len(traffic.outcomes) >= (2 * KILLS + 4) * len(CACHE_PAGES)
        slow = [o for o in traffic.outcomes if o.seconds >= ANSWER_BOUND]
        assert not slow, slow[:5]
        # Writes after the restart land in the new, empty server (the value may have been
        # computed, by its 0.3 s loader, just before the restart).
        assert wait_for(lambda: stored(server, EXPENSIVE_KEY) is not None, timeout=15)
        value = stored(server, EXPENSIVE_KEY)
        assert isinstance(value["computed_at"], datetime)
        assert value["computed_at"].timestamp() >= restarted - 1.0


# --- 5b. The endpoint moves to a new primary (a managed failover) ------------------------


def _writes_turned_away(server: RedisServer) -> dict[str, int]:
    """Writes ``server`` answered with an error, from ``INFO commandstats``: a SET is
    rejected (``READONLY``), a script fails at its first write (``READONLY``, or
    ``NOSCRIPT`` before it runs, which is counted apart)."""
    with server.client() as client:
        stats = client.info("commandstats")
        errors = client.info("errorstats")

    def turned(name: str) -> int:
        entry = stats.get(f"cmdstat_{name}", {})
        return int(entry.get("rejected_calls", 0)) + int(entry.get("failed_calls", 0))

    noscript = int(errors.get("errorstat_NOSCRIPT", {}).get("count", 0))
    return {"set": turned("set"), "script": turned("evalsha") + turned("eval") - noscript}


def _synced(replica: RedisServer) -> bool:
    with replica.client() as client:
        info = client.info("replication")
    return bool(info.get("master_link_status") == "up" and not info.get("master_sync_in_progress"))


def _write_kv(browser: Browser, value: str) -> Response:
    answer = browser.post("/kv/moved/", {"value": value})
    assert answer.status == 200, answer
    return answer


@pytest.mark.chaos
@pytest.mark.parametrize("binary", redis_servers())
@pytest.mark.parametrize("first", ["cache", "api", "job"])
def test_endpoint_moved_to_a_new_primary_readonly_never_reaches_users(
    first: str,
    binary: str,
    tmp_path: Path,
    drr_replica_group_factory: ReplicaGroupFactory,
    drr_proxy_factory: FaultProxyFactory,
) -> None:
    """Managed Redis fails over by promoting a replica and repointing the primary endpoint
    (a DNS name, a load balancer). Connections opened before keep talking to the old
    primary, now a replica, which turns every write away with ``READONLY``: the site
    must retry on a new connection, which reaches the new primary, and nobody notices.

    ``first`` is the write that meets the demoted primary first (after it the pool is
    renewed): a cache SET, the API's rate-limit script, the job's lock script.
    """
    group = drr_replica_group_factory(binary=binary)
    old, (new,) = group.primary, group.replicas
    endpoint = drr_proxy_factory(old)  # what the site knows: a name, not a server
    with example_site(tmp_path, endpoint.url()) as site:
        browser = Browser(site.base)
        browser.get("/kv/moved/")  # the CSRF cookie for the writes
        browser.get("/job/")
        _write_kv(browser, "before")
        assert _api(browser)["degraded"] is False
        assert JOB_RAN in browser.post("/job/", {"runs": "1"}).body
        assert endpoint.connection_count >= 1  # pooled, to the primary
        group.wait_for_replicas()

        # The failover, as a managed service does it: nobody's connections are closed.
        with new.client() as client:
            client.execute_command("REPLICAOF", "NO", "ONE")
        with old.client() as client:
            client.execute_command("REPLICAOF", new.host, str(new.port))
        endpoint.retarget(new.host, new.port)
        # Once it has synced from the new primary (while it loads, it answers LOADING:
        # another incident), the old primary serves reads and turns writes away.
        assert wait_for(lambda: _synced(old), timeout=10), "the old primary did not sync"
        moved = time.time()
        before = _writes_turned_away(old)

        answers: list[Response] = []
        steps = {
            "cache": lambda: answers.append(_write_kv(browser, "after")),
            "api": lambda: answers.append(browser.get("/api/")),
            "job": lambda: answers.append(browser.post("/job/", {"runs": "1"})),
        }
        order = [first, *(name for name in steps if name != first)]
        for name in order * 2:
            steps[name]()

        # The demoted primary really turned a write of the first kind away.
        after = _writes_turned_away(old)
        turned = {kind: after[kind] - before[kind] for kind in after}
        assert turned["set" if first == "cache" else "script"] >= 1, turned

        for answer in answers:
            assert answer.status in (200, 429), (answer.status, answer.body, tail(site))
            assert "READONLY" not in answer.body
            assert "read only" not in answer.body
        for answer in answers:
            if answer.headers.get("RateLimit-Policy"):
                assert json.loads(answer.body)["degraded"] is False, answer.body
            elif "/job/" in answer.url:
                assert JOB_RAN in answer.body, answer.body
            else:
                assert json.loads(answer.body)["value"] == "after"
        # The writes landed on the new primary, and nothing went to the fallback.
        assert stored(new, ":1:example:kv:moved") == "after"
        view = client_view(fresh_report(site.base, newer_than=moved))
        (node,) = view["endpoints"]
        assert node["breaker"] == "closed", node
        counters = view["counters"]
        for name in ("fallback_reads", "fallback_writes", "short_circuited", "errors"):
            assert counters[name] == 0, counters


# --- 6. Redis slow rather than dead -------------------------------------------------------


def _burst(browser: Browser, site: Runserver) -> list[float]:
    """Every page that talks to Redis, once; returns how long each took."""
    seconds = []
    for path in (*PAGES, "/expensive/?stampede=1", "/expensive/async/?stampede=1"):
        answer = browser.get(path)
        assert answer.status == 200, (path, answer.body, tail(site))
        seconds.append(answer.seconds)
    api = browser.get("/api/")
    assert api.status in (200, 429), (api.body, tail(site))
    seconds.append(api.seconds)
    job = browser.post("/job/", {"runs": "1"})
    assert job.status == 200, tail(site)
    seconds.append(job.seconds)
    return seconds


@pytest.mark.chaos
def test_slow_redis_opens_the_breaker_and_pages_stop_waiting(
    tmp_path: Path, drr_redis_factory: RedisServerFactory, drr_proxy_factory: FaultProxyFactory
) -> None:
    server = drr_redis_factory()
    proxy = drr_proxy_factory(server)
    with example_site(tmp_path, proxy.url()) as site:
        browser = Browser(site.base)
        # Healthy: the same burst reaches Redis (so the counting below can see commands).
        before = _page_commands(server)
        _burst(browser, site)
        healthy = _page_commands(server)
        assert healthy["get"] > before["get"]
        assert healthy["evalsha"] > before["evalsha"]
        assert redis_state(browser) == "ok"

        proxy.set_latency(LATENCY)
        took: list[float] = []

        def opened() -> bool:
            for path in ("/pulse/", "/expensive/?stampede=1"):
                answer = browser.get(path)
                assert answer.status == 200, (path, answer.body, tail(site))
                took.append(answer.seconds)
            return redis_state(browser) == "degraded"

        assert wait_for(opened, timeout=20, step=0), tail(site)
        assert max(took) < ANSWER_BOUND, took
        status, report = monitor(site.base, "/redis/health/")
        assert (status, report["caches"]) == (200, {"default": "degraded"})

        # Commands sent before the breaker opened may still be crossing the slow link.
        time.sleep(2 * LATENCY + 0.2)
        quiet = _page_commands(server)
        seconds = _burst(browser, site)
        after = _page_commands(server)
        assert after == quiet, {k: after[k] - quiet[k] for k in after if after[k] != quiet[k]}
        assert max(seconds) < ANSWER_BOUND, seconds
        assert JOB_UNAVAILABLE in browser.post("/job/", {"runs": "1"}).body
        assert _api(browser)["degraded"] is True

        # The link is fast again: the background probe closes the breaker by itself.
        proxy.heal()
        assert wait_for(lambda: redis_state(browser) == "ok", timeout=20, step=0.1), tail(site)
        assert _api(browser)["degraded"] is False


# --- 7. Redis at maxmemory with noeviction ------------------------------------------------

#: The server's memory limit; the site's data and the filler go in first.
MAXMEMORY = 4 * 1024 * 1024
_ASYNC_KEY = ":1:example:expensive-async"


def _fill(server: RedisServer) -> None:
    """Write until Redis refuses (OOM), then keep every write refused.

    Right at the limit a server still takes a small write now and then, as client
    buffers of tens of kilobytes come and go; a limit a little under what the data
    uses (as when the data outgrew it) makes the refusal certain.
    """
    with server.client() as client:
        for number in range(2 * MAXMEMORY // 65536):
            try:
                client.set(f"filler:{number}", b"x" * 65536)
            except redis.exceptions.OutOfMemoryError:
                break
        else:
            raise AssertionError("Redis never refused a write")
        used = int(client.info("memory")["used_memory"])
        client.config_set("maxmemory", used - 256 * 1024)
    with server.client() as client, pytest.raises(redis.exceptions.OutOfMemoryError):
        client.set("filler:probe", b"x")


@dataclass
class FullRedis:
    server: RedisServer
    site: Runserver
    #: Where the site keeps its database; other commands of the project use it too.
    tmp_path: Path
    #: ``/expensive/`` as computed, and stored in Redis, before the server filled up.
    before: Response


@pytest.fixture(scope="module")
def full_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FullRedis]:
    """One site on one server that fills up under ``noeviction`` after a first write."""
    tmp_path = tmp_path_factory.mktemp("full-redis")
    args = ["--maxmemory", str(MAXMEMORY), "--maxmemory-policy", "noeviction"]
    server = RedisServer(extra_args=args)
    try:
        server.start()
        with example_site(tmp_path, server.url) as site:
            before = Browser(site.base).get("/expensive/")
            assert "<strong>computed</strong>" in before.body, before.body
            assert stored(server, EXPENSIVE_KEY) is not None
            _fill(server)
            yield FullRedis(server, site, tmp_path, before)
    finally:
        server.stop()


@pytest.mark.chaos
def test_full_redis_still_serves_what_it_holds(full_redis: FullRedis) -> None:
    """First in the module: ``/expensive/`` keeps its value for 10 s."""
    browser = Browser(full_redis.site.base)
    hit = browser.get("/expensive/")
    assert hit.status == 200, tail(full_redis.site)
    assert "from the cache" in hit.body, hit.body
    assert computed_at(hit) == computed_at(full_redis.before)
    value = stored(full_redis.server, EXPENSIVE_KEY)
    assert value is not None
    assert as_shown(value["computed_at"]) == computed_at(hit)  # Redis's value, not a copy


@pytest.mark.chaos
def test_full_redis_pages_that_write_neither_fail_nor_pretend(full_redis: FullRedis) -> None:
    browser = Browser(full_redis.site.base)
    statuses = {}
    for path in ("/expensive/async/", "/cached/?full=1", "/pulse/", "/expensive/?stampede=1"):
        statuses[path] = browser.get(path).status
    assert set(statuses.values()) == {200}, (statuses, tail(full_redis.site))
    # Nothing the site computed while Redis was full is in Redis, and nothing claims it
    # is: the next request computes the value again instead of reporting a hit.
    assert stored(full_redis.server, _ASYNC_KEY) is None
    again = browser.get("/expensive/async/")
    assert again.status == 200, tail(full_redis.site)
    assert "<strong>computed</strong>" in again.body, again.body
    assert stored(full_redis.server, _ASYNC_KEY) is None
    # Redis answers reads: a full server is not an outage.
    assert redis_state(browser) == "ok"


@pytest.mark.chaos
def test_full_redis_api_and_job_keep_their_policies(full_redis: FullRedis) -> None:
    browser = Browser(full_redis.site.base)
    api = _api(browser)
    assert api["degraded"] is True  # Redis refused the script: limited in the process
    assert browser.get("/job/").status == 200  # the form's CSRF cookie
    job = browser.post("/job/", {"runs": "1"})
    assert job.status == 200, tail(full_redis.site)
    assert JOB_RAN in job.body or JOB_UNAVAILABLE in job.body, job.body


def _shell(full_redis: FullRedis, code: str) -> subprocess.CompletedProcess[str]:
    """``manage.py shell -c <code>`` in the site's environment, as an operator runs it."""
    env = {**project_env(full_redis.tmp_path), "REDIS_URL": full_redis.server.url}
    return subprocess.run(
        [sys.executable, str(MANAGE), "shell", "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
    )


@pytest.mark.chaos
def test_full_redis_cache_set_says_it_stored_nothing(full_redis: FullRedis) -> None:
    """``set`` "returns whether the value was stored" (the cache's documentation)."""
    code = (
        "from django.core.cache import cache\n"
        "print('stored:', cache.set('incident:oom', 'value', 60))\n"
        "print('read back:', cache.get('incident:oom'))"
    )
    result = _shell(full_redis, code)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "stored: False" in result.stdout, result.stdout
    assert "read back: None" in result.stdout, result.stdout
    assert stored(full_redis.server, ":1:incident:oom") is None


@pytest.mark.chaos
def test_full_redis_is_reported_by_redis_health(full_redis: FullRedis) -> None:
    """``manage.py redis_health --json`` names the problem: memory full under noeviction."""
    env = {**project_env(full_redis.tmp_path), "REDIS_URL": full_redis.server.url}
    result = subprocess.run(
        [sys.executable, str(MANAGE), "redis_health", "--json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
    )
    report = json.loads(result.stdout)
    findings = [f for cache in report["caches"] for f in cache["findings"]]
    memory = [f for f in findings if f["code"] == "H019"]
    assert memory, findings
    assert memory[0]["severity"] == "critical", memory
    assert memory[0]["node"] == f"127.0.0.1:{full_redis.server.port}"
    assert result.returncode == 2, (result.returncode, report)
