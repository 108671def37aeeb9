"""Node health: probe every node of every Redis-backed cache, and say what it means.

``build_report()`` discovers nodes directly (seeds, Sentinel's view, every
cluster node's view), probes them in parallel with their own timeouts, adds
this process's view (breakers, fallback, journal) and the findings.
"""

from django_redis_resilience.health._model import (
    CacheReport,
    Finding,
    NodeReport,
    Report,
    Severity,
)
from django_redis_resilience.health._report import build_report, process_label

__all__ = [
    "CacheReport",
    "Finding",
    "NodeReport",
    "Report",
    "Severity",
    "build_report",
    "process_label",
]
