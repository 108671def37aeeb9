"""The health report cached per process, so that probes cannot be used to hammer Redis.

The health endpoints, the Prometheus collector and the admin panel all ask for
the report here. It is made again when older than ``CACHE_SECONDS``, or when a
breaker of this process changed state since it was made: the cached report
would be wrong about this process (its client view and the findings drawn from
it), and breakers change state rarely. One report is made at a time.

The cache belongs to the process's connection registry: it starts empty after
``fork()`` and when the caches' settings change.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from django_redis_resilience.conf import conf
from django_redis_resilience.connection import Slot, get_registry
from django_redis_resilience.health._model import Report
from django_redis_resilience.health._report import build_report
from django_redis_resilience.health._snapshot import take_snapshot

#: Seconds between two log lines about reports that could not be made.
FAILURE_LOG_INTERVAL = 60.0

#: ``(alias, endpoint, breaker state)`` of every breaker of the process.
BreakerStates = tuple[tuple[str, str, str], ...]


@dataclass(frozen=True)
class _Entry:
    made_at: float
    breakers: BreakerStates
    report: Report


class ReportCache:
    """The last report, when it was made and with which breaker states."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entry: _Entry | None = None
        self._failure_logged_at: float | None = None

    def get(self, *, ttl: float, breakers: BreakerStates) -> Report:
        """The cached report if younger than ``ttl`` and made with these ``breakers``,
        else a new one (made under the lock: concurrent callers wait for it)."""
        with self._lock:
            entry = self._entry
            fresh = entry is not None and time.monotonic() - entry.made_at < ttl
            if entry is not None and fresh and entry.breakers == breakers:
                return entry.report
            report = build_report()
            self._entry = _Entry(made_at=time.monotonic(), breakers=breakers, report=report)
            return report

    def forget(self) -> None:
        with self._lock:
            self._entry = None

    def failure_to_log(self) -> bool:
        """Whether a report that could not be made is worth a log line now: once a minute,
        not once per probe of a load balancer."""
        now = time.monotonic()
        last = self._failure_logged_at
        if last is not None and now - last <= FAILURE_LOG_INTERVAL:
            return False
        self._failure_logged_at = now  # a race logs twice at worst; a report is not waited for
        return True


_REPORT_CACHE: Slot[ReportCache] = Slot("cached health report")


def report_cache() -> ReportCache:
    """This process's report cache."""
    return get_registry().extensions.obtain(_REPORT_CACHE, ReportCache)


def cached_report() -> Report:
    """The last report if younger than ``CACHE_SECONDS`` and made while this process's
    breakers were as they are now, else a new one (one at a time)."""
    ttl = float(conf.HEALTH["CACHE_SECONDS"])
    return report_cache().get(ttl=ttl, breakers=take_snapshot().breaker_states())


def forget_cached_report() -> None:
    """The next :func:`cached_report` makes a new report (after an action, between tests)."""
    report_cache().forget()
