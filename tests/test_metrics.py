"""The Prometheus collector: what it reports after real traffic, outages and probes."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from typing import Any

import pytest
from django.core.cache import caches
from django.test import override_settings
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from django_redis_resilience import lock, metrics, views
from django_redis_resilience.exceptions import RedisUnavailable
from django_redis_resilience.ratelimiting import hit
from django_redis_resilience.testing import free_port
from tests._refusing import fill_memory
from tests.cache.conftest import FAST_BREAKER, resilient_cache, resilient_caches


@pytest.fixture(autouse=True)
def _fresh() -> Iterator[None]:
    metrics.reset()
    views.forget_cached_report()
    yield
    views.forget_cached_report()


def _scrape(probe: bool = True) -> dict[str, float]:
    registry = CollectorRegistry()
    metrics.register(registry, probe=probe)
    samples: dict[str, float] = {}
    for line in generate_latest(registry).decode().splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            samples[name] = float(value)
    return samples


def _value(samples: dict[str, float], prefix: str, *labels: str) -> float:
    found = [v for k, v in samples.items() if k.startswith(prefix) and all(x in k for x in labels)]
    assert len(found) == 1, (prefix, labels, sorted(samples))
    return found[0]


def test_decisions_locks_and_nodes(drr_redis_server: Any) -> None:
    with override_settings(CACHES=resilient_caches(drr_redis_server.url)):
        for _ in range(3):
            hit("who", "2/m")  # 2 allowed, 1 denied
        with lock("metrics-lock", wait=0):
            pass
        samples = _scrape()
    assert _value(samples, "drr_ratelimit_decisions_total", 'outcome="allowed"') == 2
    assert _value(samples, "drr_ratelimit_decisions_total", 'outcome="denied"') == 1
    assert _value(samples, "drr_lock_acquisitions_total", 'outcome="acquired"') == 1
    assert _value(samples, "drr_lock_wait_seconds_count") == 1
    node = f'node="127.0.0.1:{drr_redis_server.port}"'
    assert _value(samples, "drr_node_up", node) == 1
    assert _value(samples, "drr_breaker_state", 'alias="default"') == 0


@pytest.mark.chaos
def test_an_outage_shows_as_an_open_breaker_fallback_use_and_a_node_down(
    drr_redis_factory: Any,
) -> None:
    server = drr_redis_factory(password="metrics-secret-pw")
    options = {"BREAKER": FAST_BREAKER, "SOCKET_TIMEOUT": 0.2, "SOCKET_CONNECT_TIMEOUT": 0.2}
    with override_settings(
        CACHES=resilient_caches(server.url, **options),
        REDIS_RESILIENCE={"HEALTH": {"TIMEOUT": 0.3}},
    ):
        cache = caches["default"]
        server.kill()
        for _ in range(4):
            cache.set("k", "v")
            cache.get("k")
        with pytest.raises(RedisUnavailable), lock("metrics-down", wait=0):
            pass
        samples = _scrape()
    assert _value(samples, "drr_breaker_state", 'alias="default"') == 2
    assert _value(samples, "drr_fallback_operations_total", 'operation="read"') >= 1
    assert _value(samples, "drr_fallback_operations_total", 'operation="write"') >= 1
    assert _value(samples, "drr_lock_acquisitions_total", 'outcome="unavailable"') == 1
    assert _value(samples, "drr_node_up") == 0
    assert not any("metrics-secret-pw" in k for k in samples)


def test_a_cluster_reports_its_coverage_and_refreshes(drr_cluster: Any) -> None:
    with override_settings(CACHES=resilient_caches(drr_cluster.location)):
        caches["default"].set("k", "v")  # discovers the slot map
        samples = _scrape()
    assert _value(samples, "drr_cluster_slots_coverage_ratio") == 1.0
    assert _value(samples, "drr_topology_refreshes_total") >= 1
    assert _value(samples, "drr_topology_refresh_duration_seconds_count") >= 1
    assert len([k for k in samples if k.startswith("drr_node_up")]) == 3
    # The report's findings, counted by code: full coverage required (H025), explained.
    assert _value(samples, "drr_health_findings", 'code="H025"', 'severity="info"') == 1


def test_without_probing_a_scrape_touches_no_server(drr_redis_factory: Any) -> None:
    server = drr_redis_factory()
    with override_settings(CACHES=resilient_caches(server.url)):
        server.kill()
        samples = _scrape(probe=False)
    assert not any(k.startswith("drr_node_up") for k in samples)
    assert _value(samples, "drr_breaker_state") == 0


# --- what operators alert on: exact counts by label -----------------------------------------


def _families(probe: bool = False, registry: Any = None) -> dict[str, Any]:
    """The scrape parsed back, ``{family name: family}`` (``_total`` left out of counters)."""
    if registry is None:
        registry = CollectorRegistry()
        metrics.register(registry, probe=probe)
    text = generate_latest(registry).decode()
    return {family.name: family for family in text_string_to_metric_families(text)}


def _sample(families: dict[str, Any], name: str, **labels: str) -> float:
    """The one sample ``name`` whose labels include ``labels``."""
    found = [
        s.value
        for family in families.values()
        for s in family.samples
        if s.name == name and labels.items() <= s.labels.items()
    ]
    assert len(found) == 1, (name, labels, found)
    return float(found[0])


def test_hits_misses_and_refused_writes_by_alias_and_endpoint(
    drr_redis_factory: Any,
) -> None:
    server = drr_redis_factory()
    with resilient_cache(server.url) as cache:
        endpoint = cache.manager.endpoints[0].display
        cache.set("a", 1)
        assert cache.get("a") == 1
        assert cache.get("missing") is None
        assert cache.get_many(["a", "other"]) == {"a": 1}
        assert asyncio.run(cache.aget("a")) == 1
        fill_memory(server)  # OOM under noeviction: the server refuses every write
        for key in ("r1", "r2", "r3"):
            assert cache.set(key, "v") is False
        families = _families()
    alias = {"alias": "default"}
    at = {"alias": "default", "endpoint": endpoint}
    assert _sample(families, "drr_cache_hits_total", **alias) == 3
    assert _sample(families, "drr_cache_misses_total", **alias) == 2
    assert _sample(families, "drr_cache_refused_writes_total", **at) == 3
    # Every endpoint's counters exist from the first scrape, at 0: rate() and alerts see them.
    assert _sample(families, "drr_cache_errors_total", **at) == 0
    assert _sample(families, "drr_cache_short_circuited_total", **at) == 0
    assert _sample(families, "drr_fallback_operations_total", operation="read", **at) == 0
    assert _sample(families, "drr_fallback_operations_total", operation="write", **at) == 0


@pytest.mark.chaos
def test_an_outage_counts_errors_short_circuits_and_fallback_use_by_endpoint(
    drr_redis_factory: Any,
) -> None:
    server = drr_redis_factory(password="metrics-secret-pw")
    options = {
        "BREAKER": FAST_BREAKER,
        "SOCKET_TIMEOUT": 0.2,
        "SOCKET_CONNECT_TIMEOUT": 0.2,
    }
    with resilient_cache(server.url, **options) as cache:
        endpoint = cache.manager.endpoints[0].display
        server.kill()
        cache.set("w1", "v")  # refused: an error, written to the fallback
        cache.set("w2", "v")  # the second error opens the breaker (FAILURE_THRESHOLD 2)
        assert not cache.manager.endpoints[0].breaker.closed
        assert cache.get("r1") is None  # nothing sent: short-circuited, read from the fallback
        cache.set("w3", "v")  # short-circuited, written to the fallback
        assert cache.get("w3") == "v"  # journaled: read from the fallback, Redis not asked
        assert cache.get_many(["r2", "r3"]) == {}  # short-circuited once, two fallback reads
        stats = cache.stats()
        families = _families()
    at = {"alias": "default", "endpoint": endpoint}
    assert _sample(families, "drr_cache_errors_total", **at) == 2 == stats["errors"]
    assert _sample(families, "drr_cache_short_circuited_total", **at) == 3
    assert stats["short_circuited"] == 3
    assert _sample(families, "drr_fallback_operations_total", operation="write", **at) == 3
    assert _sample(families, "drr_fallback_operations_total", operation="read", **at) == 4
    assert stats["fallback_writes"] == 3
    assert stats["fallback_reads"] == 4
    assert _sample(families, "drr_cache_misses_total", alias="default") == 3
    assert _sample(families, "drr_cache_hits_total", alias="default") == 1
    assert _sample(families, "drr_breaker_state", **at) == 2
    assert "metrics-secret-pw" not in repr(families)


def test_topology_refreshes_their_durations_and_failures(drr_cluster: Any) -> None:
    no_periodic = {"CLUSTER": {"REFRESH_INTERVAL": 0}}
    dead = f"redis+cluster://127.0.0.1:{free_port()}"  # nothing listens: refreshes fail
    down = resilient_caches(dead, BREAKER={"RECOVERY_TIMEOUT": 30}, **no_periodic)["default"]
    caches_setting = {**resilient_caches(drr_cluster.location, **no_periodic), "down": down}
    with override_settings(CACHES=caches_setting):
        caches["default"].set("k", "v")  # first use: the slot map is read (1)
        router = caches["default"].manager.cluster
        assert router.refresh(reason="test")  # and once more (2)
        caches["down"].set("k", "v")  # first use: no node answers, the refresh fails
        families = _families()
    up, failing = {"alias": "default"}, {"alias": "down"}
    assert _sample(families, "drr_topology_refreshes_total", **up) == 2
    assert _sample(families, "drr_topology_refresh_failures_total", **up) == 0
    assert _sample(families, "drr_topology_refreshes_total", **failing) == 1
    assert _sample(families, "drr_topology_refresh_failures_total", **failing) == 1
    # Every attempt is in the histogram, failed ones too.
    assert _sample(families, "drr_topology_refresh_duration_seconds_count", **up) == 2
    assert _sample(families, "drr_topology_refresh_duration_seconds_count", **failing) == 1
    assert _sample(families, "drr_topology_refresh_duration_seconds_sum", **up) > 0
    inf = _sample(families, "drr_topology_refresh_duration_seconds_bucket", le="+Inf", **up)
    assert inf == 2
    buckets = [
        s.value
        for s in families["drr_topology_refresh_duration_seconds"].samples
        if s.name.endswith("_bucket") and s.labels["alias"] == "default"
    ]
    assert buckets == sorted(buckets)  # cumulative
    assert len(buckets) == len(metrics.REFRESH_BUCKETS) + 1


def test_in_multiprocess_mode_the_collector_serves_beside_the_merged_metrics(
    drr_redis_server: Any, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """prometheus_client's multiprocess set-up (a registry per scrape with a
    MultiProcessCollector) takes this collector too: no name clashes, this
    worker's series labelled by ``process``."""
    from prometheus_client import multiprocess

    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    with resilient_cache(drr_redis_server.url) as cache:
        cache.get("missing")
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=str(tmp_path))
        metrics.register(registry, probe=False)
        families = _families(registry=registry)
    assert _sample(families, "drr_cache_misses_total", alias="default") == 1
    assert _sample(families, "drr_cache_hits_total", alias="default") == 0


def test_the_documented_metrics_are_the_collected_ones_and_the_alert_rules_use_them() -> None:
    import yaml

    from tests.docs._markdown import doc, first_name, marked_tables

    text = doc("health.md")
    table = marked_tables(text, "metrics")[""]
    documented = {first_name(row[0]): row[1] for row in table}
    collected = {}
    for family in metrics.RedisResilienceCollector(probe=True).describe():
        suffix = "_total" if family.type == "counter" else ""
        collected[family.name + suffix] = family.type
    assert documented == collected
    rules = yaml.safe_load(text.split("```yaml\n", 1)[1].split("```", 1)[0])
    exprs = [rule["expr"] for group in rules["groups"] for rule in group["rules"]]
    assert exprs
    series = set(documented) | {n + s for n in documented for s in ("_bucket", "_sum", "_count")}
    for expr in exprs:
        names = set(re.findall(r"\bdrr_\w+", expr))
        assert names, expr
        assert names <= series, expr


def test_registering_twice_in_one_registry_is_refused() -> None:
    """The collector describes its families, so the registry sees a second copy (which
    would serve every series twice) and refuses it."""
    registry = CollectorRegistry()
    metrics.register(registry, probe=False)
    with pytest.raises(ValueError, match="Duplicated timeseries"):
        metrics.register(registry, probe=False)
