"""Node health: probe every node of every Redis-backed cache, and say what it means.

``build_report()`` discovers nodes directly (seeds, Sentinel's view, every
cluster node's view), probes them in parallel with their own timeouts, adds
this process's view (breakers, fallback, journal: ``take_snapshot()``) and the
findings. ``cached_report()`` is the report every page and scrape reads.
"""

from django_redis_resilience._process import process_label
from django_redis_resilience.health import _settings  # noqa: F401 - registers its settings
from django_redis_resilience.health._cached import (
    ReportCache,
    cached_report,
    forget_cached_report,
    report_cache,
)
from django_redis_resilience.health._model import (
    CacheReport,
    Finding,
    NodeReport,
    Report,
    Severity,
)
from django_redis_resilience.health._panel import CacheCard, cache_cards
from django_redis_resilience.health._report import build_report
from django_redis_resilience.health._snapshot import (
    CacheSnapshot,
    EndpointSnapshot,
    ProcessSnapshot,
    RefreshSnapshot,
    take_snapshot,
)

__all__ = [
    "CacheCard",
    "CacheReport",
    "CacheSnapshot",
    "EndpointSnapshot",
    "Finding",
    "NodeReport",
    "ProcessSnapshot",
    "RefreshSnapshot",
    "Report",
    "ReportCache",
    "Severity",
    "build_report",
    "cache_cards",
    "cached_report",
    "forget_cached_report",
    "process_label",
    "report_cache",
    "take_snapshot",
]
