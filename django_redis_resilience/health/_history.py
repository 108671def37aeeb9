"""Latency history per node, kept by this process for the admin panel's sparklines.

Each report adds one sample per node (its ``PING`` time, or ``None`` when it
did not answer). The history is per process and bounded: it costs nothing to
keep and needs no storage, and the panel labels it as this process's view.
"""

from __future__ import annotations

import threading
import time
from collections import deque

from django_redis_resilience.health._model import Report

#: Samples kept per node (a report every few seconds: minutes of history).
SAMPLES = 60


class LatencyHistory:
    """``(alias, address)`` -> the last ``limit`` samples of ``(unix time, ping ms or None)``."""

    def __init__(self, *, limit: int = SAMPLES) -> None:
        self.limit = limit
        self._lock = threading.Lock()
        self._series: dict[tuple[str, str], deque[tuple[float, float | None]]] = {}

    def add(self, report: Report) -> None:
        at = report.generated_at or time.time()
        with self._lock:
            for cache in report.caches:
                for node in cache.nodes:
                    series = self._series.setdefault(
                        (cache.alias, node.address), deque(maxlen=self.limit)
                    )
                    series.append((at, node.ping_ms if node.reachable else None))

    def series(self, alias: str, address: str) -> list[tuple[float, float | None]]:
        with self._lock:
            return list(self._series.get((alias, address), ()))

    def clear(self) -> None:
        with self._lock:
            self._series.clear()


#: This process's history, fed by every report it builds.
history = LatencyHistory()
