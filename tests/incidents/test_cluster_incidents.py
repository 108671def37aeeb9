"""Cluster incidents, replayed through the example site as its users run it.

A shard's master dies and no replica can take over (its datacenter failed).
With ``cluster-require-full-coverage yes`` every node answers ``CLUSTERDOWN``
and the whole cache degrades; with ``no`` only the dead shard's keys do. Either
way every page answers, the site restarts although its first seed is the dead
node, ``manage.py redis_health`` names the slots and the node that are gone,
and when the node comes back with its data no value changed during the outage
is read back with its old content. A master that crashes and comes straight
back refuses its own keys while it rejoins, which must not degrade the other
shards. Masters declared in one zone are flagged before anything fails.

The site runs as ``manage.py runserver`` in a subprocess, with ``REDIS_URL``
set to the cluster's ``redis+cluster://`` seeds, and is used over HTTP.
Whether a read reached Redis is counted on the servers (``INFO commandstats``).
Bounds on time are loose on purpose: the machine is shared and noisy.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import count, cycle
from pathlib import Path
from types import TracebackType
from typing import Any

import pytest
from django.core.cache.backends.base import default_key_func
from redis.crc import key_slot
from redis.exceptions import ClusterDownError

from django_redis_resilience.testing import (
    ClusterGroup,
    ClusterGroupFactory,
    RedisServer,
    free_port,
)
from tests._polling import wait_for
from tests.example_project._site import MANAGE, ROOT, Browser, Runserver, project_env

#: What "still answering" means while a shard is down: far below any hang.
ANSWER_BOUND = 5.0
#: The key prefix of the example site's ``/kv/<key>/`` view.
KV_PREFIX = "example:kv:"
#: Reads per key when counting the GETs that reach a master.
READS = 5
#: Pages a user opens; each must answer 200 during the outage.
PAGES = (
    "/",
    "/cached/",
    "/expensive/",
    "/expensive/?stampede=1",
    "/expensive/async/",
    "/pulse/",
    "/job/",
    "/redis/health/",
)
#: What the locked job says when it ran, or when its shard was unavailable.
JOB_RAN = "under the lock, fencing token"
JOB_SKIPPED = "Skipped: Redis is unavailable"


# --- the site ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def site_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated database for every process of the module, as a deployed site has."""
    directory = tmp_path_factory.mktemp("incident-site")
    # No Redis listens there: migrating must not need one (and never port 6379).
    result = subprocess.run(
        [sys.executable, str(MANAGE), "migrate", "--noinput"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=site_env(directory, f"redis://127.0.0.1:{free_port()}/0"),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return directory


def site_env(directory: Path, location: str, **extra: str) -> dict[str, str]:
    """The project's environment with its cache at ``location``."""
    return project_env(directory, REDIS_URL=location, **extra)


def start_site(directory: Path, location: str) -> Runserver:
    site = Runserver(directory, env=site_env(directory, location))
    try:
        site.wait_until_serving()
    except BaseException:
        site.close()
        raise
    return site


@pytest.fixture
def sites() -> Iterator[list[Runserver]]:
    """Every site process a test starts; all stopped afterwards, whatever happened."""
    started: list[Runserver] = []
    yield started
    for site in started:
        site.close()


def redis_health(
    directory: Path, location: str, *args: str, zones: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``manage.py redis_health`` as an operator runs it, with the site's settings."""
    extra = {"DRR_NODE_ZONES": json.dumps(zones)} if zones is not None else {}
    return subprocess.run(
        [sys.executable, str(MANAGE), "redis_health", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=site_env(directory, location, **extra),
    )


def read(browser: Browser, name: str) -> Any:
    answer = browser.get(f"/kv/{name}/")
    assert answer.status == 200, (name, answer.status, answer.body[:2000])
    assert answer.seconds < ANSWER_BOUND, (name, answer.seconds)
    return json.loads(answer.body)["value"]


def write(browser: Browser, name: str, value: str) -> Any:
    """POST the value; the answer is the value read back right after."""
    if not any(cookie.name == "csrftoken" for cookie in browser.cookies):
        read(browser, name)  # a GET hands out the CSRF cookie, as for a form
    answer = browser.post(f"/kv/{name}/", {"value": value})
    assert answer.status == 200, (name, answer.status, answer.body[:2000])
    assert answer.seconds < ANSWER_BOUND, (name, answer.seconds)
    return json.loads(answer.body)["value"]


def redis_state(browser: Browser) -> str:
    """``ok`` or ``degraded``: the site process's breakers, from its health endpoint."""
    answer = browser.get("/redis/health/")
    assert answer.status == 200, answer.body
    return str(json.loads(answer.body)["redis"])


def assert_pages_answer(browser: Browser, *, job: tuple[str, ...]) -> None:
    """Every page a user opens answers 200, quickly; the monitoring endpoint says critical."""
    for path in PAGES:
        answer = browser.get(path)
        assert answer.status == 200, (path, answer.status, answer.body[:2000])
        assert answer.seconds < ANSWER_BOUND, (path, answer.seconds)
    api = browser.get("/api/")  # limited to 5/m per address: a refusal is a 429, not an error
    assert api.status in (200, 429), (api.status, api.body[:2000])
    assert api.seconds < ANSWER_BOUND
    ran = browser.post("/job/", {"runs": "1"})  # "/job/" above set the CSRF cookie
    assert ran.status == 200, (ran.status, ran.body[:2000])
    assert ran.seconds < ANSWER_BOUND
    assert any(message in ran.body for message in job), ran.body
    # For monitoring, not users: 503 while slots are not served, by contract.
    monitoring = browser.get("/redis/health/redis/")
    assert monitoring.status == 503, monitoring.body
    assert json.loads(monitoring.body) == {"status": "critical"}


class Traffic:
    """A user opening pages in the background while the cluster changes under the site.

    Catches what a check after the fact cannot: an error in the moments between
    a node's death (or return) and the site noticing it.
    """

    PATHS = ("/", "/cached/", "/expensive/", "/expensive/async/", "/pulse/", "/redis/health/")

    def __init__(self, base: str) -> None:
        self._browser = Browser(base)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="traffic", daemon=True)
        #: (path, status, seconds) of every answer; errors that were not HTTP answers.
        self.answers: list[tuple[str, int, float]] = []
        self.errors: list[str] = []

    def __enter__(self) -> Traffic:
        self._thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        for path in cycle(self.PATHS):
            if self._stop.is_set():
                return
            try:
                answer = self._browser.get(path)
            except OSError as exc:  # refused, reset or timed out: the site failed the user
                self.errors.append(f"{path}: {exc!r}")
            else:
                self.answers.append((path, answer.status, answer.seconds))

    def assert_all_answered(self) -> None:
        assert not self._thread.is_alive()
        assert not self.errors, self.errors
        assert len(self.answers) >= len(self.PATHS), self.answers
        failed = [answer for answer in self.answers if answer[1] != 200]
        assert not failed, failed
        slow = [answer for answer in self.answers if answer[2] >= ANSWER_BOUND]
        assert not slow, slow


# --- the cluster -------------------------------------------------------------------------


def redis_key(name: str) -> str:
    """The key the site's cache writes for ``/kv/<name>/`` (no KEY_PREFIX, version 1)."""
    return default_key_func(KV_PREFIX + name, "", 1)


@dataclass(frozen=True)
class Shard:
    """One master, its slots, and two of the site's keys that live there."""

    node: RedisServer
    slots: str
    #: Changed through the site during the outage.
    changed: str
    #: Left alone during the outage.
    kept: str

    @property
    def address(self) -> str:
        return f"{self.node.host}:{self.node.port}"


def shards_of(cluster: ClusterGroup) -> list[Shard]:
    """The masters in creation order (the first one is the first seed), with keys on each."""
    shards = []
    for node in cluster.masters:
        [(first, last)] = cluster.slots_of(node)
        changed, unchanged = _names_on(first, last, 2)
        shards.append(Shard(node, f"{first}-{last}", changed, unchanged))
    return shards


def _names_on(first: int, last: int, how_many: int) -> list[str]:
    """Key names of the ``/kv/`` view whose slot is in ``first..last``."""
    found: list[str] = []
    for i in count():
        name = f"s{first}-{i}"
        if first <= key_slot(redis_key(name).encode()) <= last:
            found.append(name)
            if len(found) == how_many:
                break
    return found


def get_calls(node: RedisServer) -> int:
    """GETs the node was sent: executed, or refused (``CLUSTERDOWN`` counts as rejected)."""
    with node.client() as client:
        stats = client.info("commandstats").get("cmdstat_get", {})
    return int(stats.get("calls", 0)) + int(stats.get("rejected_calls", 0))


def assert_refusals_counted(node: RedisServer) -> None:
    """The measure is sound: a GET that the node refuses with ``CLUSTERDOWN`` counts too."""
    gets = get_calls(node)
    with node.client() as client, pytest.raises(ClusterDownError):
        client.get(redis_key("refused"))
    assert get_calls(node) == gets + 1


def before(name: str) -> str:
    return f"before-{name}"


def during(name: str) -> str:
    return f"during-{name}"


def kept(name: str) -> str:
    return f"kept-{name}"


# --- steps of the incident ---------------------------------------------------------------


def fill(browser: Browser, shards: list[Shard]) -> None:
    """Before the incident: values written through the site, stored on their masters."""
    for shard in shards:
        assert write(browser, shard.changed, before(shard.changed)) == before(shard.changed)
        assert write(browser, shard.kept, kept(shard.kept)) == kept(shard.kept)
        with shard.node.client() as client:
            assert client.exists(redis_key(shard.changed)) == 1, shard.address
            assert client.exists(redis_key(shard.kept)) == 1, shard.address


def lose(cluster: ClusterGroup, shards: list[Shard]) -> Shard:
    """The master the site names first as a seed dies; it has no replica to take over.

    It saves its data first, as RDB or AOF persistence would have, so that it
    comes back with the values it held before the outage.
    """
    dead = shards[0]
    first_seed = cluster.location.split("//", 1)[1].split(",", 1)[0]
    assert first_seed == dead.address
    with dead.node.client() as client:
        client.save()
    dead.node.kill()
    return dead


def assert_served_from_redis(browser: Browser, shards: list[Shard]) -> None:
    """Each shard's unchanged key reads back its value, every read a GET on its master."""
    for shard in shards:
        gets = get_calls(shard.node)
        values = [read(browser, shard.kept) for _ in range(READS)]
        if values != [kept(shard.kept)] * READS:
            with shard.node.client() as client:
                in_redis = client.get(redis_key(shard.kept))
            health = browser.get("/redis/health/").body
            raise AssertionError(
                f"{shard.address}: read {values}; in Redis {in_redis!r}; site health {health}"
            )
        assert get_calls(shard.node) - gets == READS, shard.address


def assert_health_names_the_loss(site_dir: Path, location: str, dead: Shard) -> None:
    """``redis_health``: critical (exit 2), naming the slots not served and the dead node."""
    result = redis_health(site_dir, location)
    out = result.stdout + result.stderr
    assert result.returncode == 2, out
    first, _, last = dead.slots.partition("-")
    lost = int(last) - int(first) + 1
    assert f"H010 [default] {lost} of 16384 slots are not served ({dead.slots})" in out, out
    assert f"(not served: {dead.slots})" in out, out
    assert f"H001 [default] {dead.address} " in out, out
    assert "unreachable" in out, out


def restart_site(sites: list[Runserver], site_dir: Path, location: str) -> Browser:
    """Stop the site and start it again with the same ``REDIS_URL`` (first seed: dead)."""
    sites[-1].close()
    sites.append(start_site(site_dir, location))
    return Browser(sites[-1].base)


def recover(cluster: ClusterGroup, dead: Shard, browser: Browser, shards: list[Shard]) -> None:
    """The node returns with its data: no changed key ever reads back its old value."""
    seen: dict[str, list[Any]] = {shard.changed: [] for shard in shards}

    def recovered() -> bool:
        for shard in shards:
            seen[shard.changed].append(read(browser, shard.changed))
        return redis_state(browser) == "ok"

    with Traffic(browser.base) as traffic:
        dead.node.restart(keep_data=True)
        # Recovered means the cluster itself agrees again: until every node says
        # cluster_state:ok, a node may still answer CLUSTERDOWN and a read degrade.
        cluster.wait_for_ok(timeout=60)
        assert wait_for(recovered, timeout=60, step=0.1), seen
    traffic.assert_all_answered()
    for _ in range(3):
        for shard in shards:
            seen[shard.changed].append(read(browser, shard.changed))
    for shard in shards:
        values = seen[shard.changed]
        assert before(shard.changed) not in values, (shard.address, values)
        # What was written during the outage, or nothing (invalidated): never older.
        assert set(values) <= {during(shard.changed), None}, (shard.address, values)
    # Keys nobody changed are read from Redis again, the returned node's too: it has its data.
    assert wait_for(lambda: redis_state(browser) == "ok", timeout=30, step=0.1)
    assert_served_from_redis(browser, shards)
    for shard in shards:
        after = f"after-{shard.changed}"
        assert write(browser, shard.changed, after) == after
        with shard.node.client() as client:
            assert client.exists(redis_key(shard.changed)) == 1, shard.address
    cluster.wait_for_ok(timeout=30)


def assert_health_recovered(site_dir: Path, location: str) -> None:
    result = redis_health(site_dir, location)
    out = result.stdout + result.stderr
    assert result.returncode in (0, 1), out
    assert "slots served: 16384/16384" in out, out
    assert "H010" not in out, out
    assert "H001" not in out, out


# --- incident: a shard lost ------------------------------------------------------------------


@pytest.mark.chaos
def test_shard_lost_with_full_coverage_required(
    drr_cluster_factory: ClusterGroupFactory, site_dir: Path, sites: list[Runserver]
) -> None:
    """Every node answers CLUSTERDOWN: the whole cache degrades, and no page fails."""
    cluster = drr_cluster_factory(masters=3, replicas=0, require_full_coverage=True)
    shards = shards_of(cluster)
    location = cluster.location
    sites.append(start_site(site_dir, location))
    browser = Browser(sites[-1].base)
    fill(browser, shards)

    survivors = shards[1:]
    # Every shard degrades, the surviving ones too: reads stop reaching Redis at all.
    batches: list[tuple[list[Any], dict[str, int]]] = []

    def degraded() -> bool:
        gets = {shard.address: get_calls(shard.node) for shard in survivors}
        values = [read(browser, shard.kept) for shard in shards for _ in range(2)]
        sent = {shard.address: get_calls(shard.node) - gets[shard.address] for shard in survivors}
        batches.append((values, sent))
        return not any(sent.values()) and values == [None] * len(values)

    with Traffic(browser.base) as traffic:
        dead = lose(cluster, shards)
        cluster.wait_for_state("fail", nodes=[shard.node for shard in survivors])
        assert wait_for(degraded, timeout=15, step=0.1), batches[-3:]
    traffic.assert_all_answered()
    assert_refusals_counted(survivors[0].node)  # so "no GET sent" above means what it says
    assert redis_state(browser) == "degraded"
    assert_pages_answer(browser, job=(JOB_SKIPPED,))
    assert_health_names_the_loss(site_dir, location, dead)

    # A restart during the outage boots although the first seed is dead, and serves.
    browser = restart_site(sites, site_dir, location)
    assert_pages_answer(browser, job=(JOB_SKIPPED,))
    for shard in shards:
        assert write(browser, shard.changed, during(shard.changed)) == during(shard.changed)

    recover(cluster, dead, browser, shards)
    assert_health_recovered(site_dir, location)


@pytest.mark.chaos
def test_shard_lost_without_full_coverage(
    drr_cluster_factory: ClusterGroupFactory, site_dir: Path, sites: list[Runserver]
) -> None:
    """Only the dead shard's keys degrade; the others are still read from Redis."""
    cluster = drr_cluster_factory(masters=3, replicas=0, require_full_coverage=False)
    shards = shards_of(cluster)
    location = cluster.location
    sites.append(start_site(site_dir, location))
    browser = Browser(sites[-1].base)
    fill(browser, shards)

    survivors = shards[1:]
    with Traffic(browser.base) as traffic:
        dead = lose(cluster, shards)
        cluster.wait_for_flag(dead.node)  # the others agree it failed, and keep serving
        assert wait_for(
            lambda: read(browser, dead.kept) is None and redis_state(browser) == "degraded"
        )
    traffic.assert_all_answered()
    assert_served_from_redis(browser, survivors)
    assert_pages_answer(browser, job=(JOB_RAN, JOB_SKIPPED))
    assert_health_names_the_loss(site_dir, location, dead)

    # A restart during the outage boots although the first seed is dead, and serves.
    browser = restart_site(sites, site_dir, location)
    assert read(browser, dead.kept) is None
    assert_served_from_redis(browser, survivors)
    assert_pages_answer(browser, job=(JOB_RAN, JOB_SKIPPED))
    for shard in shards:
        assert write(browser, shard.changed, during(shard.changed)) == during(shard.changed)

    recover(cluster, dead, browser, shards)
    assert_health_recovered(site_dir, location)


@pytest.mark.chaos
def test_returning_master_degrades_only_its_own_shard(
    drr_cluster_factory: ClusterGroupFactory, site_dir: Path, sites: list[Runserver]
) -> None:
    """A master that crashed and restarted says "the cluster is down" until it has rejoined.

    That is its own view, for a couple of seconds: the other masters serve
    all along, so their keys must keep coming from Redis.
    """
    cluster = drr_cluster_factory(masters=3, replicas=0, require_full_coverage=False)
    shards = shards_of(cluster)
    sites.append(start_site(site_dir, cluster.location))
    browser = Browser(sites[-1].base)
    fill(browser, shards)
    returning, others = shards[0], shards[1:]
    returning.node.restart(keep_data=True)  # a crash, back before the others noticed

    # Rejoining: it refuses its keys with CLUSTERDOWN for a moment, the others do not.
    assert cluster.cluster_info(returning.node)["cluster_state"] == "fail"
    assert all(cluster.cluster_info(s.node)["cluster_state"] == "ok" for s in others)
    value = read(browser, returning.kept)
    assert cluster.cluster_info(returning.node)["cluster_state"] == "fail"  # so it was refused
    assert value is None  # its own keys degrade meanwhile: fine
    assert_served_from_redis(browser, others)


# --- incident: masters placed in one zone ------------------------------------------------


def test_masters_in_one_zone_warn_before_anything_fails(
    drr_cluster: ClusterGroup, site_dir: Path
) -> None:
    """Every master's host declared in one zone: a warning (H018) while all is still well."""
    zones = {node.host: "zone-a" for node in drr_cluster.masters}
    assert len(zones) == 1, zones  # the masters share their one host, hence their zone
    location = drr_cluster.location

    plain = redis_health(site_dir, location, "--json")
    zoned = redis_health(site_dir, location, "--json", zones=zones)
    codes: dict[str, set[str]] = {}
    for name, result in (("plain", plain), ("zoned", zoned)):
        report = json.loads(result.stdout)
        assert result.returncode == report["exit_code"], result.stderr
        [cache] = report["caches"]
        # Nothing has failed: every node answers and every slot is served.
        assert [node["reachable"] for node in cache["nodes"]] == [True] * 3, cache["nodes"]
        assert cache["cluster"]["slots_covered"] == 16384
        findings = cache["findings"]
        assert not [f for f in findings if f["severity"] == "critical"], findings
        # A slow PING (H021) is the noisy machine's, not the cluster's: left out.
        codes[name] = {f["code"] for f in findings if f["severity"] == "warning"} - {"H021"}
        if name == "zoned":
            [h018] = [f for f in findings if f["code"] == "H018"]
            assert h018["severity"] == "warning"
            assert "3 of 3 masters are in zone zone-a" in h018["message"]
    assert codes == {"plain": set(), "zoned": {"H018"}}
    assert zoned.returncode == 1

    text = redis_health(site_dir, location, zones=zones)
    assert text.returncode == 1, text.stdout + text.stderr
    assert "H018 [default] 3 of 3 masters are in zone zone-a" in text.stdout, text.stdout
