"""``build_report`` against real servers: what each topology's nodes say, and what it means.

Healthy reports use the shared servers; every test that kills, hangs
or reconfigures a server starts its own from a factory. Findings are checked by
their stable codes and severities, node fields by the names ``INFO`` uses.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from django.core.cache import caches
from django.test import override_settings

from django_redis_resilience.cache import ResilientRedisCache
from django_redis_resilience.health import (
    CacheReport,
    Finding,
    NodeReport,
    Report,
    Severity,
    build_report,
    process_label,
)
from django_redis_resilience.health._findings import placement_findings
from django_redis_resilience.health._probe import parse_cluster_nodes
from django_redis_resilience.testing import ClusterGroup, RedisServer, acl_user
from tests._polling import wait_for
from tests.cache.conftest import BACKEND, FAST_BREAKER, resilient_caches

#: Per-node probe timeout for reports on broken servers: short, so bounds stay short.
TIMEOUT = 0.5
#: A hung node costs its own timeout; the whole report must finish well before three of them.
BOUND = 3 * TIMEOUT


# --- helpers ---------------------------------------------------------------------------------


@contextmanager
def _configured(location: Any, **options: Any) -> Iterator[None]:
    with override_settings(CACHES=resilient_caches(location, **options)):
        yield


def _report(location: Any, *, timeout: float = TIMEOUT, **options: Any) -> Report:
    with _configured(location, **options):
        return build_report(timeout=timeout)


def _cache(report: Report) -> CacheReport:
    assert len(report.caches) == 1
    return report.caches[0]


def _node(cache: CacheReport, address: str) -> NodeReport:
    matches = [n for n in cache.nodes if n.address == address]
    assert len(matches) == 1, f"{address} in {[n.address for n in cache.nodes]}"
    return matches[0]


def _address(server: RedisServer) -> str:
    return f"{server.host}:{server.port}"


def _codes(report: Report) -> set[str]:
    return {f.code for f in report.findings}


def _only(report: Report, code: str, node: str | None = None) -> Finding:
    found = [f for f in report.findings if f.code == code and (node is None or f.node == node)]
    assert len(found) == 1, [f.as_dict() for f in report.findings]
    return found[0]


def _wall_clock(text: Any) -> dt.datetime:
    """An ISO 8601 moment in UTC near now: not a monotonic reading (seconds since boot)."""
    assert isinstance(text, str), text
    moment = dt.datetime.fromisoformat(text)
    assert moment.utcoffset() == dt.timedelta(0), text
    assert abs(dt.datetime.now(dt.timezone.utc) - moment) < dt.timedelta(minutes=10), text
    return moment


def _as_json(report: Report) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(json.dumps(report.as_dict()))
    return data


# --- standalone ------------------------------------------------------------------------------


def test_healthy_server_reports_its_node_and_no_findings(drr_redis_server) -> None:
    before = time.time()
    report = _report(drr_redis_server.url, timeout=1.0)
    cache = _cache(report)
    assert (report.status, report.exit_code, report.error) == ("ok", 0, None)
    assert report.findings == []
    assert before <= report.generated_at <= time.time()
    assert (cache.alias, cache.topology, cache.status) == ("default", "standalone", "ok")
    [node] = cache.nodes
    assert node.address == _address(drr_redis_server)
    assert (node.kind, node.reachable, node.error) == ("primary", True, None)
    assert node.redis_version
    assert node.redis_version[0].isdigit()
    assert isinstance(node.uptime_in_seconds, int)
    assert isinstance(node.memory["used_memory"], int)
    assert node.memory["used_memory"] > 0
    assert node.memory["maxmemory_policy"]
    assert node.clients["connected_clients"] >= 1
    assert "maxclients" in node.clients
    assert node.ping_ms is not None
    assert node.ping_ms >= 0
    assert node.connect_ms is not None
    assert node.connect_ms >= 0
    assert node.replication["role"] == "master"
    assert node.replication["replicas"] == []
    assert isinstance(node.slowlog_len, int)
    assert node.persistence["rdb_last_bgsave_status"] == "ok"
    assert node.not_available == []
    assert node.cluster == {}
    assert node.sentinel == {}
    # This process's side: one closed breaker, named by this process.
    assert cache.client["process"] == process_label()
    [endpoint] = cache.client["endpoints"]
    assert (endpoint["role"], endpoint["breaker"], endpoint["fallback_in_use"]) == (
        "primary",
        "closed",
        False,
    )


def test_report_is_plain_json(drr_redis_server) -> None:
    data = _as_json(_report(drr_redis_server.url, timeout=1.0))
    assert (data["status"], data["exit_code"], data["error"]) == ("ok", 0, None)
    _wall_clock(data["generated_at"])
    assert data["duration_ms"] >= 0
    [cache] = data["caches"]
    assert set(cache) == {
        "alias",
        "topology",
        "location",
        "status",
        "duration_ms",
        "nodes",
        "client",
        "cluster",
        "findings",
    }
    node = cache["nodes"][0]
    assert node["address"] == _address(drr_redis_server)
    assert node["memory"]["used_memory"] > 0
    assert node["clients"]["connected_clients"] >= 1
    assert node["replication"]["role"] == "master"
    assert node["ping_ms"] >= 0


@pytest.mark.chaos
def test_killed_server_is_critical_h001(drr_redis_factory) -> None:
    server = drr_redis_factory()
    server.kill()
    report = _report(server.url)
    node = _node(_cache(report), _address(server))
    assert (node.reachable, node.error) == (False, "refused")
    assert node.redis_version is None
    assert node.memory == {}
    finding = _only(report, "H001")
    assert finding.severity is Severity.CRITICAL
    assert (finding.alias, finding.node) == ("default", _address(server))
    assert _codes(report) == {"H001"}
    assert (report.status, report.exit_code) == ("critical", 2)
    assert _as_json(report)["caches"][0]["findings"][0]["severity"] == "critical"


@pytest.mark.chaos
def test_breaker_and_outage_times_are_wall_clock_utc(drr_redis_factory) -> None:
    """The breaker keeps a monotonic clock (the wall clock may jump); the report shows the
    moment it opened in ISO 8601, UTC, as it shows the outage counters."""
    server = drr_redis_factory()
    with _configured(server.url, BREAKER=FAST_BREAKER, SOCKET_TIMEOUT=0.2):
        backend = caches["default"]
        server.kill()
        for _ in range(5):
            backend.get("k")
        report = build_report(timeout=TIMEOUT)
    client = _as_json(report)["caches"][0]["client"]
    [endpoint] = client["endpoints"]
    assert endpoint["breaker"] != "closed"
    _wall_clock(endpoint["opened_at"])
    _wall_clock(client["counters"]["last_outage_start"])


@pytest.mark.chaos
def test_hung_server_times_out_within_its_own_timeout(drr_redis_factory) -> None:
    server = drr_redis_factory()
    server.hang()
    started = time.monotonic()
    report = _report(server.url)
    elapsed = time.monotonic() - started
    node = _node(_cache(report), _address(server))
    assert (node.reachable, node.error) == (False, "timeout")
    assert _only(report, "H001").severity is Severity.CRITICAL
    assert report.exit_code == 2
    assert elapsed < BOUND
    assert report.duration_ms < BOUND * 1000
    server.resume()
    assert _report(server.url).exit_code == 0


def test_refused_credentials_are_critical_h002(drr_redis_factory) -> None:
    server = drr_redis_factory(password="right-password-h002")
    plain = f"redis://{server.host}:{server.port}/0"
    wrong = f"redis://:wrong-password-h002@{server.host}:{server.port}/0"
    for location in (plain, wrong):
        report = _report(location)
        node = _node(_cache(report), _address(server))
        assert (node.reachable, node.error) == (False, "auth")
        finding = _only(report, "H002")
        assert (finding.severity, finding.node) == (Severity.CRITICAL, _address(server))
        assert _codes(report) == {"H002"}  # not also "unreachable"
        assert report.exit_code == 2
    assert _report(server.url).exit_code == 0


def test_failed_tls_is_critical_h003(drr_tls_server, drr_tls_material) -> None:
    untrusted = f"{drr_tls_server.url}?ssl_ca_certs={drr_tls_material.other_ca_file}"
    report = _report(untrusted)
    node = _node(_cache(report), _address(drr_tls_server))
    assert (node.reachable, node.error) == (False, "tls")
    assert _only(report, "H003").severity is Severity.CRITICAL
    assert _codes(report) == {"H003"}
    trusted = f"{drr_tls_server.url}?ssl_ca_certs={drr_tls_material.ca_file}"
    report = _report(trusted, timeout=2.0)
    assert _node(_cache(report), _address(drr_tls_server)).reachable
    assert report.exit_code == 0


def test_renamed_commands_are_not_available_not_errors(drr_redis_factory) -> None:
    # What a managed service does: CONFIG and SLOWLOG are gone.
    server = drr_redis_factory(
        extra_args=["--rename-command", "CONFIG", "", "--rename-command", "SLOWLOG", ""]
    )
    report = _report(server.url)
    node = _node(_cache(report), _address(server))
    assert (node.reachable, node.error) == (True, None)
    assert "SLOWLOG" in node.not_available
    # CONFIG is only asked for maxclients when INFO lacks it (before Redis 7).
    assert set(node.not_available) <= {"SLOWLOG", "CONFIG GET maxclients"}
    assert node.slowlog_len is None
    assert node.replication["role"] == "master"
    assert node.memory["used_memory"] > 0
    assert report.findings == []
    assert report.exit_code == 0


def test_commands_denied_by_acl_are_not_available(drr_redis_factory) -> None:
    server = drr_redis_factory(
        users=[acl_user("monitor", "monitor-pw", commands="+@all -slowlog -config")]
    )
    report = _report(f"redis://monitor:monitor-pw@{server.host}:{server.port}/0")
    node = _node(_cache(report), _address(server))
    assert "SLOWLOG" in node.not_available, node.error_detail
    assert (node.reachable, node.error) == (True, None)
    assert node.replication["role"] == "master"
    assert report.exit_code == 0


def test_health_settings_are_read_from_redis_resilience(drr_redis_server) -> None:
    # Every loopback PING takes more than a microsecond: a slow-round-trip warning.
    with override_settings(REDIS_RESILIENCE={"HEALTH": {"SLOW_MS": 0.001}}):
        report = _report(drr_redis_server.url)
    finding = _only(report, "H021")
    assert (finding.severity, finding.node) == (Severity.WARNING, _address(drr_redis_server))
    assert (report.status, report.exit_code) == ("warning", 1)
    # The settings argument wins over REDIS_RESILIENCE.
    with _configured(drr_redis_server.url):
        assert _codes(build_report(timeout=1.0, settings={"SLOW_MS": 0.001})) == {"H021"}
        assert build_report(timeout=1.0, settings={"SLOW_MS": 10_000}).findings == []


@pytest.mark.chaos
def test_timeout_setting_bounds_a_hung_node(drr_redis_factory) -> None:
    server = drr_redis_factory()
    server.hang()
    with (
        override_settings(REDIS_RESILIENCE={"HEALTH": {"TIMEOUT": TIMEOUT}}),
        _configured(server.url),
    ):
        started = time.monotonic()
        report = build_report()
        elapsed = time.monotonic() - started
    assert _node(_cache(report), _address(server)).error == "timeout"
    assert elapsed < BOUND


def test_memory_full_without_eviction_is_h019(drr_redis_factory) -> None:
    server = drr_redis_factory()
    with server.client() as client:
        used = int(client.info("memory")["used_memory"])
        client.config_set("maxmemory", used)
    report = _report(server.url)
    finding = _only(report, "H019")
    assert (finding.severity, finding.node) == (Severity.CRITICAL, _address(server))
    with server.client() as client:
        client.config_set("maxmemory-policy", "allkeys-lru")
    assert "H019" not in _codes(_report(server.url))


@pytest.mark.chaos
def test_each_cache_has_its_own_report(drr_redis_server, drr_redis_factory) -> None:
    dead = drr_redis_factory()
    dead.kill()
    configured = {
        "healthy": resilient_caches(drr_redis_server.url)["default"],
        "broken": {"BACKEND": BACKEND, "LOCATION": dead.url},
        "local": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
    }
    with override_settings(CACHES=configured):
        report = build_report(timeout=TIMEOUT)
        only_healthy = build_report(["healthy"], timeout=TIMEOUT)
    by_alias = {c.alias: c for c in report.caches}
    assert set(by_alias) == {"healthy", "broken"}  # only resilient caches
    assert (by_alias["healthy"].status, by_alias["broken"].status) == ("ok", "critical")
    assert [f.alias for f in report.findings] == ["broken"]
    assert report.exit_code == 2
    assert [c.alias for c in only_healthy.caches] == ["healthy"]
    assert only_healthy.exit_code == 0


# --- primary and replicas --------------------------------------------------------------------


def test_replica_announced_by_the_primary_is_probed(drr_replica_group) -> None:
    group = drr_replica_group
    primary, replica = _address(group.primary), _address(group.replicas[0])
    for location in (group.primary.url, group.location):
        report = _report(location, timeout=1.0)
        cache = _cache(report)
        assert [n.address for n in cache.nodes] == [primary, replica]
        p, r = _node(cache, primary), _node(cache, replica)
        assert (p.kind, p.replication["role"], p.replication["connected_slaves"]) == (
            "primary",
            "master",
            1,
        )
        assert [int(x["port"]) for x in p.replication["replicas"]] == [group.replicas[0].port]
        assert (r.kind, r.reachable, r.replication["role"]) == ("replica", True, "slave")
        assert r.replication["master_link_status"] == "up"
        assert int(r.replication["master_port"]) == group.primary.port
        assert report.findings == []
        assert report.exit_code == 0


@pytest.mark.chaos
def test_replica_that_lost_its_primary_is_h015(
    drr_replica_group_factory, drr_redis_factory
) -> None:
    group = drr_replica_group_factory()
    gone = drr_redis_factory()
    gone.kill()
    replica = group.replicas[0]
    with replica.client() as client:
        client.replicaof(gone.host, gone.port)
        assert wait_for(lambda: client.info("replication")["master_link_status"] == "down")
    report = _report(group.location)
    finding = _only(report, "H015")
    assert (finding.severity, finding.node) == (Severity.WARNING, _address(replica))
    assert _only(report, "H014").severity is Severity.WARNING
    node = _node(_cache(report), _address(replica))
    assert node.reachable
    assert node.replication["master_link_status"] == "down"
    assert (report.status, report.exit_code) == ("warning", 1)


@pytest.mark.chaos
def test_configured_replica_down_is_h014(drr_replica_group_factory) -> None:
    group = drr_replica_group_factory()
    replica = group.replicas[0]
    replica.kill()
    report = _report(group.location)
    unreachable = _only(report, "H001", node=_address(replica))
    assert unreachable.severity is Severity.WARNING  # a replica: not critical
    h014 = _only(report, "H014")
    assert h014.severity is Severity.WARNING
    assert _address(group.primary) in h014.message
    assert _node(_cache(report), _address(group.primary)).reachable
    assert report.exit_code == 1


@pytest.mark.chaos
def test_hung_replica_found_through_the_primary_costs_its_timeout(
    drr_replica_group_factory,
) -> None:
    group = drr_replica_group_factory()
    replica = group.replicas[0]
    replica.hang()
    started = time.monotonic()
    report = _report(group.primary.url)
    elapsed = time.monotonic() - started
    node = _node(_cache(report), _address(replica))
    assert (node.kind, node.error) == ("replica", "timeout")
    assert _only(report, "H001", node=_address(replica)).severity is Severity.WARNING
    assert report.exit_code == 1
    assert elapsed < BOUND


# --- Sentinel ---------------------------------------------------------------------------------


def test_sentinels_and_the_nodes_they_name_are_probed(drr_sentinel_group) -> None:
    group = drr_sentinel_group
    report = _report(group.location, timeout=1.0)
    cache = _cache(report)
    assert cache.topology == "sentinel"
    sentinels = [n for n in cache.nodes if n.kind == "sentinel"]
    assert sorted(n.address for n in sentinels) == sorted(_address(s) for s in group.sentinels)
    primary = group.current_primary()
    for sentinel in sentinels:
        assert sentinel.reachable
        assert sentinel.replication == {"role": "sentinel"}
        assert int(sentinel.sentinel["master"]["port"]) == primary.port
        assert len(sentinel.sentinel["replicas"]) == 1
        assert len(sentinel.sentinel["sentinels"]) == 2
    p = _node(cache, _address(primary))
    assert (p.kind, p.reachable, p.replication["role"]) == ("primary", True, "master")
    r = _node(cache, _address(group.replicas[0]))
    assert (r.kind, r.reachable, r.replication["role"]) == ("replica", True, "slave")
    assert len(cache.nodes) == 5
    assert report.findings == []
    assert report.exit_code == 0


@pytest.mark.chaos
def test_sentinel_primary_killed_then_failed_over(drr_sentinel_factory) -> None:
    group = drr_sentinel_factory()
    old = group.current_primary()
    old.kill()
    report = _report(group.location)
    node = _node(_cache(report), _address(old))
    assert (node.kind, node.reachable) == ("primary", False)
    assert _only(report, "H001", node=_address(old)).severity is Severity.CRITICAL
    assert report.exit_code == 2

    new = group.wait_for_failover(old)
    report = _report(group.location)
    cache = _cache(report)
    promoted = _node(cache, _address(new))
    assert (promoted.kind, promoted.reachable) == ("primary", True)
    assert promoted.replication["role"] == "master"
    assert _node(cache, _address(old)).kind == "replica"
    assert _only(report, "H001", node=_address(old)).severity is Severity.WARNING
    assert report.status == "warning"  # the service is served again


# --- Cluster ----------------------------------------------------------------------------------


def test_healthy_cluster_has_only_loopback_information(drr_cluster) -> None:
    seed = drr_cluster.nodes[0]
    report = _report(f"redis+cluster://{seed.host}:{seed.port}", timeout=1.0)
    cache = _cache(report)
    assert cache.topology == "cluster"
    # One seed is enough: its CLUSTER NODES names the others.
    assert sorted(n.address for n in cache.nodes) == sorted(_address(n) for n in drr_cluster.nodes)
    for node in cache.nodes:
        assert (node.kind, node.reachable) == ("master", True)
        assert node.cluster["cluster_state"] == "ok"
        assert node.cluster["cluster_slots_assigned"] == 16384
        assert len(node.cluster["nodes"]) == 3
    assert cache.cluster["slots_covered"] == cache.cluster["slots_total"] == 16384
    assert cache.cluster["coverage_ratio"] == 1.0
    assert cache.cluster["uncovered"] == ""
    assert sorted(cache.cluster["masters"]) == sorted(_address(n) for n in drr_cluster.nodes)
    assert _codes(report) == {"H014", "H017", "H025"}  # H025: full coverage required, explained
    assert {f.severity for f in report.findings} == {Severity.INFO}
    assert (report.status, report.exit_code) == ("ok", 0)


def test_last_topology_refresh_is_wall_clock_utc(drr_cluster) -> None:
    with _configured(drr_cluster.location):
        caches["default"].set("k", 1)  # discovers the slot map: one refresh
        data = _as_json(build_report(timeout=1.0))
    client = data["caches"][0]["client"]
    assert client["topology_refreshes"] >= 1
    _wall_clock(client["last_topology_refresh_at"])


def _degrade_some_shard(cache: ResilientRedisCache) -> None:
    def opened() -> bool:
        for i in range(20):
            cache.get(f"probe:{i}")
        return any(not e.breaker.closed for e in cache.manager.endpoints)

    assert wait_for(opened, timeout=10)


@pytest.mark.chaos
def test_cluster_master_down_leaves_slots_uncovered(drr_cluster_factory) -> None:
    cluster: ClusterGroup = drr_cluster_factory()
    dead, alive, unnamed = cluster.nodes
    [(first, last)] = cluster.slots_of(dead)
    dead.kill()
    # The dead node is a seed; the node no seed names is still found.
    location = f"redis+cluster://{dead.host}:{dead.port},{alive.host}:{alive.port}"
    with _configured(location, BREAKER=FAST_BREAKER):
        report = build_report(timeout=TIMEOUT)
        cache = _cache(report)
        assert sorted(n.address for n in cache.nodes) == sorted(
            _address(n) for n in (dead, alive, unnamed)
        )
        assert _node(cache, _address(dead)).error == "refused"
        assert _only(report, "H001", node=_address(dead)).severity is Severity.CRITICAL
        h010 = _only(report, "H010")
        count = last - first + 1
        assert h010.severity is Severity.CRITICAL
        assert f"{count} of 16384 slots" in h010.message
        assert f"{first}-{last}" in h010.message
        assert cache.cluster["slots_covered"] == 16384 - count
        assert cache.cluster["uncovered"] == f"{first}-{last}"
        assert (report.status, report.exit_code) == ("critical", 2)
        assert "H030" not in _codes(report)

        # This process's breaker for the dead shard opens: H030.
        backend = caches["default"]
        assert isinstance(backend, ResilientRedisCache)
        _degrade_some_shard(backend)
        report = build_report(timeout=TIMEOUT)
        h030 = _only(report, "H030")
        assert h030.severity is Severity.WARNING
        assert _address(dead) in h030.message
        opened = [e for e in _cache(report).client["endpoints"] if e["breaker"] != "closed"]
        assert len(opened) == 1
        assert opened[0]["fallback_in_use"]

        # Once the others agree it failed, it is flagged too.
        cluster.wait_for_flag(dead)
        report = build_report(timeout=TIMEOUT)
        assert _only(report, "H011", node=_address(dead)).severity is Severity.WARNING
        assert {"H001", "H010"} <= _codes(report)


@pytest.mark.chaos
def test_hung_cluster_node_costs_only_its_timeout(drr_cluster_factory) -> None:
    cluster: ClusterGroup = drr_cluster_factory()
    hung = cluster.nodes[2]
    hung.hang()
    started = time.monotonic()
    report = _report(cluster.location)
    elapsed = time.monotonic() - started
    cache = _cache(report)
    assert len(cache.nodes) == 3
    assert _node(cache, _address(hung)).error == "timeout"
    assert _only(report, "H001", node=_address(hung)).severity is Severity.CRITICAL
    assert "H010" in _codes(report)
    assert elapsed < BOUND


def test_masters_in_one_zone_are_h018(drr_cluster) -> None:
    zones = {"NODE_ZONES": {"127.0.0.1": "zone-a"}}
    with override_settings(REDIS_RESILIENCE={"HEALTH": zones}):
        report = _report(drr_cluster.location, timeout=1.0)
    h018 = _only(report, "H018")
    assert "3 of 3 masters are in zone zone-a" in h018.message
    # Sharing a host on loopback is information; a majority in one declared zone is a warning.
    assert _only(report, "H017").severity is Severity.INFO
    assert h018.severity is Severity.WARNING
    assert report.exit_code == 1
    # Not a majority: nothing to say.
    with _configured(drr_cluster.location):
        split = {"NODE_ZONES": {"10.0.0.1": "zone-a"}}
        assert "H018" not in _codes(build_report(timeout=1.0, settings=split))


def _zones(placed: dict[str, list[RedisServer]]) -> dict[str, str]:
    """``NODE_ZONES`` by ``host:port``: every node here shares 127.0.0.1."""
    return {_address(node): zone for zone, nodes in placed.items() for node in nodes}


def test_four_masters_split_two_and_two_are_h018(drr_cluster_factory) -> None:
    """The incident's layout: 2 + 2 over two zones. Either zone's loss leaves 2 of 4 masters,
    not a majority: no failover. Half the masters in one zone is a finding."""
    cluster: ClusterGroup = drr_cluster_factory(masters=4)
    a, b, c, d = cluster.masters
    with _configured(cluster.location):
        halves = build_report(
            timeout=1.0, settings={"NODE_ZONES": _zones({"zone-a": [a, b], "zone-b": [c, d]})}
        )
        h018 = _only(halves, "H018")
        assert "2 of 4 masters are in zone zone-a" in h018.message
        assert "2 of 4 masters are in zone zone-b" in h018.message
        assert "not a majority" in h018.message
        assert h018.severity is Severity.WARNING
        assert halves.exit_code == 1
        # 2 + 1 + 1: the pair's zone still holds half of them.
        pair = build_report(
            timeout=1.0, settings={"NODE_ZONES": _zones({"z1": [a, b], "z2": [c], "z3": [d]})}
        )
        assert "2 of 4 masters are in zone z1" in _only(pair, "H018").message
        # One per zone: losing any one leaves 3 of 4.
        spread = build_report(
            timeout=1.0,
            settings={"NODE_ZONES": _zones({"z1": [a], "z2": [b], "z3": [c], "z4": [d]})},
        )
    assert "H018" not in _codes(spread)
    assert spread.exit_code == 0


def test_a_master_and_all_its_replicas_in_one_zone_are_h023(drr_cluster_factory) -> None:
    """Three masters in three zones, but one master's replica in its own zone: losing that
    zone leaves its slots with no copy."""
    cluster: ClusterGroup = drr_cluster_factory(replicas=1)
    first, second, third = cluster.masters
    r1, r2, r3 = [cluster.replicas_of(m)[0] for m in (first, second, third)]
    zones = _zones({"zone-a": [first, r1, r3], "zone-b": [second], "zone-c": [third, r2]})
    with _configured(cluster.location):
        plain = build_report(timeout=1.0)
        zoned = build_report(timeout=1.0, settings={"NODE_ZONES": zones})
    # On loopback every node shares its host: information, never a warning.
    assert _codes(plain) == {"H017", "H024", "H025"}
    assert {f.severity for f in plain.findings} == {Severity.INFO}
    assert "3 of 3 masters share their host with all their replicas" in _only(plain, "H024").message
    assert (plain.status, plain.exit_code) == ("ok", 0)
    # Masters spread one per zone: no H018; the first master's only copy is in its zone.
    assert "H018" not in _codes(zoned)
    h023 = _only(zoned, "H023")
    assert h023.node == _address(first)
    assert h023.severity is Severity.WARNING
    assert f"Master {_address(first)} and its 1 replica are all in zone zone-a" in h023.message
    assert zoned.exit_code == 1


def test_a_master_sharing_its_host_with_its_replicas_is_h024_off_loopback() -> None:
    """Real hosts (a ``CLUSTER NODES`` reply as a production cluster gives it): the master on
    10.0.0.1 has its only replica there too; the other's replica is elsewhere."""
    text = (
        "m1 10.0.0.1:7000@17000 master - 0 0 1 connected 0-8191\n"
        "m2 10.0.0.2:7000@17000 myself,master - 0 0 2 connected 8192-16383\n"
        "r1 10.0.0.1:7001@17001 slave m1 0 0 1 connected\n"
        "r2 10.0.0.3:7001@17001 slave m2 0 0 2 connected\n"
    )
    view = parse_cluster_nodes(text)
    masters = [n for n in view if "master" in n["flags"]]
    [h024] = placement_findings("default", masters, {}, view)
    assert (h024.code, h024.severity, h024.node) == ("H024", Severity.WARNING, "10.0.0.1:7000")
    assert "and all its replicas are on host 10.0.0.1" in h024.message


def test_zones_by_announced_hostname(drr_cluster_factory) -> None:
    cluster: ClusterGroup = drr_cluster_factory()
    with cluster.nodes[0].client() as client:
        version = str(client.info("server")["redis_version"])
    if int(version.split(".")[0]) < 7:
        pytest.skip(f"cluster-announce-hostname is new in Redis 7; this server is {version}")
    names = ["node-a", "node-b", "node-c"]
    for node, name in zip(cluster.nodes, names, strict=True):
        with node.client() as client:
            client.config_set("cluster-announce-hostname", name)

    def announced() -> bool:
        for node in cluster.nodes:
            with node.client(decode_responses=True) as client:
                text = str(client.execute_command("CLUSTER", "NODES"))
            if not all(f",{name} " in text for name in names):
                return False
        return True

    assert wait_for(announced, timeout=10)
    settings = {"NODE_ZONES": {"node-a": "zone-1", "node-b": "zone-1", "node-c": "zone-2"}}
    with _configured(cluster.location):
        report = build_report(timeout=1.0, settings=settings)
    # Distinct hostnames: no shared host; a majority in one declared zone is a warning.
    assert "H017" not in _codes(report)
    h018 = _only(report, "H018")
    assert "2 of 3 masters are in zone zone-1" in h018.message
    assert h018.severity is Severity.WARNING
    assert report.exit_code == 1
