"""Prometheus metrics (optional: ``pip install django-redis-resilience[prometheus]``).

``django_redis_resilience.metrics.register()`` adds one collector to
``prometheus_client``'s registry. It reads at scrape time what this process
knows (breakers; each cache's hits, misses, and per endpoint its errors,
short-circuited calls, refused writes and fallback use; rate-limit decisions,
lock waits, topology refreshes and their durations) and, from the cached
health report (``HEALTH["CACHE_SECONDS"]``), what the servers say (node up,
slot coverage).

Multiprocess servers (gunicorn with ``PROMETHEUS_MULTIPROC_DIR``): custom
collectors are not aggregated across workers by ``prometheus_client``.
Serve this collector from each worker's own registry (each scrape then sees
one worker; the ``process`` label tells which), or scrape one worker for the
server-side gauges (node up, coverage), which every worker reports alike.

Nothing is counted for Prometheus on the hot path: the caches' counters
(those of ``cache.stats()``) and the cluster routers' are read as they are;
the counters here are plain integers (a dictionary increment, a histogram
bucket). Nothing is imported from ``prometheus_client`` until a scrape.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

# The counters live below the parts that count; their names stay importable from here.
from django_redis_resilience._process import (
    WAIT_BUCKETS,
    ProcessCounters,
    count_decisions,
    count_lock,
    process_counters,
    reset,
)
from django_redis_resilience.connection import REFRESH_BUCKETS, Durations

if TYPE_CHECKING:
    from django_redis_resilience.health import CacheSnapshot, ProcessSnapshot

__all__ = [
    "REFRESH_BUCKETS",
    "WAIT_BUCKETS",
    "Durations",
    "ProcessCounters",
    "RedisResilienceCollector",
    "count_decisions",
    "count_lock",
    "process_counters",
    "register",
    "reset",
]

_BREAKER_VALUE = {"closed": 0, "half_open": 1, "open": 2}

#: Per-endpoint counters of a cache (``CacheState.endpoint_counts`` names): metric, help.
_ENDPOINT_COUNTERS = {
    "errors": (
        "drr_cache_errors",
        "Cache calls Redis failed (unreachable, timeout, reset...), by the endpoint that failed.",
    ),
    "short_circuited": (
        "drr_cache_short_circuited",
        "Cache calls refused by an open breaker: nothing was sent to Redis.",
    ),
    "refused_writes": (
        "drr_cache_refused_writes",
        "Writes Redis answered but refused (OOM under noeviction, READONLY, MISCONF): not stored.",
    ),
}


#: The near cache's counters (``cache.stats()`` names): help text.
_NEAR_COUNTERS = {
    "near_hits": "Reads served by the near cache, without Redis (this process).",
    "near_misses": "Near-cache reads that went to Redis (this process).",
    "near_invalidations": "Near values dropped because Redis reported their key changed.",
    "near_flushes": "Times the near cache dropped a node's values for safety (link lost...).",
}


class _Scrape:
    """The metric families of one scrape, built empty (``describe``) then filled (``collect``)."""

    def __init__(self, process: str) -> None:
        from prometheus_client.core import (
            CounterMetricFamily,
            GaugeMetricFamily,
            HistogramMetricFamily,
        )

        self.process = process
        by_alias = ["alias", "process"]
        by_endpoint = ["alias", "endpoint", "process"]
        self.breaker = GaugeMetricFamily(
            "drr_breaker_state",
            "Circuit breaker: 0 closed, 1 half-open, 2 open (this process).",
            labels=by_endpoint,
        )
        self.hits = CounterMetricFamily(
            "drr_cache_hits", "Cache reads that found a value (this process).", labels=by_alias
        )
        self.misses = CounterMetricFamily(
            "drr_cache_misses", "Cache reads that found no value (this process).", labels=by_alias
        )
        self.near = {
            name: CounterMetricFamily(f"drr_cache_{name}", text, labels=by_alias)
            for name, text in _NEAR_COUNTERS.items()
        }
        self.near_entries = GaugeMetricFamily(
            "drr_cache_near_entries",
            "Values held by the near cache (this process).",
            labels=by_alias,
        )
        self.per_endpoint = {
            name: CounterMetricFamily(metric, text, labels=by_endpoint)
            for name, (metric, text) in _ENDPOINT_COUNTERS.items()
        }
        self.fallback = CounterMetricFamily(
            "drr_fallback_operations",
            "Cache operations served by the fallback store.",
            labels=["alias", "endpoint", "operation", "process"],
        )
        self.refreshes = CounterMetricFamily(
            "drr_topology_refreshes",
            "Cluster slot-map refreshes done by this process (failed ones included).",
            labels=by_alias,
        )
        self.refresh_failures = CounterMetricFamily(
            "drr_topology_refresh_failures",
            "Cluster slot-map refreshes that no node answered.",
            labels=by_alias,
        )
        self.refresh_seconds = HistogramMetricFamily(
            "drr_topology_refresh_duration_seconds",
            "How long cluster slot-map refreshes took (failed ones included).",
            labels=by_alias,
        )
        self.ratelimit = CounterMetricFamily(
            "drr_ratelimit_decisions",
            "Rate-limit decisions by outcome (this process).",
            labels=["outcome", "process"],
        )
        self.locks = CounterMetricFamily(
            "drr_lock_acquisitions",
            "Lock acquisition attempts by outcome (this process).",
            labels=["outcome", "process"],
        )
        self.waits = HistogramMetricFamily(
            "drr_lock_wait_seconds",
            "Time from asking for a lock to holding it.",
            labels=["process"],
        )
        self.node_up = GaugeMetricFamily(
            "drr_node_up",
            "1 when the node answered the last probe.",
            labels=["alias", "node", "kind"],
        )
        self.coverage = GaugeMetricFamily(
            "drr_cluster_slots_coverage_ratio",
            "Share of the 16384 slots served.",
            labels=["alias"],
        )
        self.findings = GaugeMetricFamily(
            "drr_health_findings",
            "Findings of the last probe report, by code and severity (see docs/operations.md).",
            labels=["alias", "code", "severity"],
        )

    def process_families(self) -> list[Any]:
        return [
            self.breaker,
            self.hits,
            self.misses,
            *self.near.values(),
            self.near_entries,
            *self.per_endpoint.values(),
            self.fallback,
            self.refreshes,
            self.refresh_failures,
            self.refresh_seconds,
            self.ratelimit,
            self.locks,
            self.waits,
        ]

    def server_families(self) -> list[Any]:
        return [self.node_up, self.coverage, self.findings]

    # --- filling -------------------------------------------------------------------

    def add_snapshot(self, snapshot: ProcessSnapshot) -> None:
        """This process's side: every cache's breakers and counters, rate limits, locks."""
        for cache in snapshot.caches:
            self.add_cache(cache)
        for outcome, count in sorted(snapshot.ratelimit_decisions.items()):
            self.ratelimit.add_metric([outcome, self.process], count)
        for outcome, count in sorted(snapshot.lock_acquisitions.items()):
            self.locks.add_metric([outcome, self.process], count)
        buckets, total = snapshot.lock_waits
        self.waits.add_metric([self.process], list(buckets), sum_value=total)

    def add_cache(self, cache: CacheSnapshot) -> None:
        """One resilient cache: breakers, cache counters, refreshes."""
        alias = cache.alias
        for endpoint in cache.endpoints:
            self.breaker.add_metric(
                [alias, endpoint.endpoint, self.process], _BREAKER_VALUE.get(endpoint.breaker, 2)
            )
        if cache.counters is not None:
            self._add_counters(cache)
        refreshes = cache.refreshes
        if refreshes is not None:
            self.refreshes.add_metric([alias, self.process], refreshes.count)
            self.refresh_failures.add_metric([alias, self.process], refreshes.failures)
            buckets, total = refreshes.durations
            self.refresh_seconds.add_metric([alias, self.process], list(buckets), sum_value=total)

    def _add_counters(self, cache: CacheSnapshot) -> None:
        """Hits and misses per cache; the outage counters per endpoint, at 0 for every
        endpoint known, so that ``rate()`` and alerts see a series before its first event."""
        alias, counts = cache.alias, cache.endpoint_counts
        totals = cache.counters or {}
        self.hits.add_metric([alias, self.process], totals["hits"])
        self.misses.add_metric([alias, self.process], totals["misses"])
        if "near_entries" in totals:  # a cache with a near cache
            for name, family in self.near.items():
                family.add_metric([alias, self.process], totals[name])
            self.near_entries.add_metric([alias, self.process], totals["near_entries"])
        for endpoint in cache.counted_endpoints():
            labels = [alias, endpoint, self.process]
            for name, family in self.per_endpoint.items():
                family.add_metric(labels, counts.get((name, endpoint), 0))
            for operation in ("read", "write"):
                self.fallback.add_metric(
                    [alias, endpoint, operation, self.process],
                    counts.get((f"fallback_{operation}s", endpoint), 0),
                )

    def add_report(self, report: Any) -> None:
        """What the servers say, from the cached probe report."""
        for cache in report.caches:
            for node in cache.nodes:
                self.node_up.add_metric(
                    [cache.alias, node.address, node.kind], 1 if node.reachable else 0
                )
            if "coverage_ratio" in cache.cluster:
                self.coverage.add_metric([cache.alias], cache.cluster["coverage_ratio"])
            counts = Counter((f.code, f.severity.value) for f in cache.findings)
            for (code, severity), count in sorted(counts.items()):
                self.findings.add_metric([cache.alias, code, severity], count)


class RedisResilienceCollector:
    """The ``prometheus_client`` collector (see the module's docstring)."""

    def __init__(self, *, probe: bool = True) -> None:
        #: Whether scrapes include the (cached) probe report: node up, slot coverage.
        self.probe = probe

    def describe(self) -> Iterable[Any]:
        """The families, without samples: the registry refuses a name registered twice."""
        scrape = _Scrape(process="")
        return scrape.process_families() + (scrape.server_families() if self.probe else [])

    def collect(self) -> Iterator[Any]:
        from django_redis_resilience.health import cached_report, take_snapshot

        snapshot = take_snapshot()
        scrape = _Scrape(snapshot.process)
        scrape.add_snapshot(snapshot)
        yield from scrape.process_families()
        if self.probe:
            scrape.add_report(cached_report())
            yield from scrape.server_families()


def register(registry: Any = None, *, probe: bool = True) -> RedisResilienceCollector:
    """Register the collector (with ``prometheus_client``'s default registry by default)."""
    from prometheus_client import REGISTRY

    collector = RedisResilienceCollector(probe=probe)
    (registry or REGISTRY).register(collector)
    return collector
