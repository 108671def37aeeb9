"""Prometheus metrics (optional: ``pip install django-redis-resilience[prometheus]``).

``django_redis_resilience.metrics.register()`` adds one collector to
``prometheus_client``'s registry. It reads at scrape time what this process
knows (breakers, fallback use, rate-limit decisions, lock waits, topology
refreshes) and, from the cached health report (``HEALTH["CACHE_SECONDS"]``),
what the servers say (node up, slot coverage).

Multiprocess servers (gunicorn with ``PROMETHEUS_MULTIPROC_DIR``): custom
collectors are not aggregated across workers by ``prometheus_client``.
Serve this collector from each worker's own registry (each scrape then sees
one worker; the ``process`` label tells which), or scrape one worker for the
server-side gauges (node up, coverage), which every worker reports alike.

The counters here are plain integers updated on the hot path (a dictionary
increment); nothing is imported from ``prometheus_client`` until ``register``.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

#: Lock wait buckets, seconds.
WAIT_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0)

_lock = threading.Lock()
_decisions: dict[str, int] = {}
_acquisitions: dict[str, int] = {}
_wait_buckets = [0] * (len(WAIT_BUCKETS) + 1)
_wait_sum = 0.0


def count_decisions(decisions: Sequence[Any]) -> None:
    """Rate-limit decisions: ``allowed``, ``denied``, and ``degraded`` when Redis was not asked."""
    with _lock:
        for decision in decisions:
            outcome = (
                "degraded" if decision.degraded else ("allowed" if decision.allowed else "denied")
            )
            _decisions[outcome] = _decisions.get(outcome, 0) + 1


def count_lock(outcome: str, waited: float) -> None:
    """One acquisition attempt: ``acquired``, ``busy``, ``unavailable``; how long it waited."""
    global _wait_sum
    with _lock:
        _acquisitions[outcome] = _acquisitions.get(outcome, 0) + 1
        if outcome == "acquired":
            index = next((i for i, b in enumerate(WAIT_BUCKETS) if waited <= b), len(WAIT_BUCKETS))
            _wait_buckets[index] += 1
            _wait_sum += waited


def reset() -> None:
    global _wait_sum
    with _lock:
        _decisions.clear()
        _acquisitions.clear()
        _wait_buckets[:] = [0] * (len(WAIT_BUCKETS) + 1)
        _wait_sum = 0.0


_BREAKER_VALUE = {"closed": 0, "half_open": 1, "open": 2}


class RedisResilienceCollector:
    """The ``prometheus_client`` collector (see the module's docstring)."""

    def __init__(self, *, probe: bool = True) -> None:
        #: Whether scrapes include the (cached) probe report: node up, slot coverage.
        self.probe = probe

    def describe(self) -> Iterable[Any]:
        return []  # no fixed set of series: found at scrape time

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import (
            CounterMetricFamily,
            GaugeMetricFamily,
            HistogramMetricFamily,
        )

        from django_redis_resilience.clients import get_manager
        from django_redis_resilience.conf import conf
        from django_redis_resilience.health import process_label

        process = process_label()
        breaker = GaugeMetricFamily(
            "drr_breaker_state",
            "Circuit breaker: 0 closed, 1 half-open, 2 open (this process).",
            labels=["alias", "endpoint", "process"],
        )
        fallback = CounterMetricFamily(
            "drr_fallback_operations",
            "Cache operations served by the fallback store.",
            labels=["alias", "operation", "process"],
        )
        refreshes = CounterMetricFamily(
            "drr_topology_refreshes",
            "Cluster slot-map refreshes done by this process.",
            labels=["alias", "process"],
        )
        refresh_seconds = GaugeMetricFamily(
            "drr_topology_refresh_duration_seconds",
            "How long the last slot-map refresh took.",
            labels=["alias", "process"],
        )
        for alias in conf.resilient_aliases():
            manager = get_manager(alias)
            for endpoint in manager.endpoints:
                state = endpoint.breaker.state.value
                breaker.add_metric([alias, endpoint.display, process], _BREAKER_VALUE.get(state, 2))
            cache = manager.extensions.get("cache")
            if cache is not None:
                counters = cache.counters.snapshot()
                fallback.add_metric([alias, "read", process], counters.get("fallback_reads", 0))
                fallback.add_metric([alias, "write", process], counters.get("fallback_writes", 0))
            router = manager.cluster
            if router is not None:
                refreshes.add_metric([alias, process], router.refresh_count)
                if router.last_refresh_duration is not None:
                    refresh_seconds.add_metric([alias, process], router.last_refresh_duration)
        yield from (breaker, fallback, refreshes, refresh_seconds)
        with _lock:
            decisions = dict(_decisions)
            acquisitions = dict(_acquisitions)
            buckets = list(_wait_buckets)
            wait_sum = _wait_sum
        ratelimit = CounterMetricFamily(
            "drr_ratelimit_decisions",
            "Rate-limit decisions by outcome (this process).",
            labels=["outcome", "process"],
        )
        for outcome, count in sorted(decisions.items()):
            ratelimit.add_metric([outcome, process], count)
        yield ratelimit
        locks = CounterMetricFamily(
            "drr_lock_acquisitions",
            "Lock acquisition attempts by outcome (this process).",
            labels=["outcome", "process"],
        )
        for outcome, count in sorted(acquisitions.items()):
            locks.add_metric([outcome, process], count)
        yield locks
        cumulative, running = [], 0
        for bound, count in zip((*WAIT_BUCKETS, float("inf")), buckets, strict=True):
            running += count
            cumulative.append(("+Inf" if bound == float("inf") else str(bound), running))
        waits = HistogramMetricFamily(
            "drr_lock_wait_seconds",
            "Time from asking for a lock to holding it.",
            labels=["process"],
        )
        waits.add_metric([process], cumulative, sum_value=wait_sum)
        yield waits
        if self.probe:
            yield from self._server_side()

    def _server_side(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        from django_redis_resilience.views import cached_report

        report = cached_report()
        up = GaugeMetricFamily(
            "drr_node_up",
            "1 when the node answered the last probe.",
            labels=["alias", "node", "kind"],
        )
        coverage = GaugeMetricFamily(
            "drr_cluster_slots_coverage_ratio",
            "Share of the 16384 slots served.",
            labels=["alias"],
        )
        for cache in report.caches:
            for node in cache.nodes:
                up.add_metric([cache.alias, node.address, node.kind], 1 if node.reachable else 0)
            if "coverage_ratio" in cache.cluster:
                coverage.add_metric([cache.alias], cache.cluster["coverage_ratio"])
        yield from (up, coverage)


def register(registry: Any = None, *, probe: bool = True) -> RedisResilienceCollector:
    """Register the collector (with ``prometheus_client``'s default registry by default)."""
    from prometheus_client import REGISTRY

    collector = RedisResilienceCollector(probe=probe)
    (registry or REGISTRY).register(collector)
    return collector
