"""Histograms kept as plain integers where the event happens, read when someone asks.

The cluster router times its refreshes with one, the lock counters their waits;
the metrics module turns them into Prometheus histograms at scrape time, so
nothing from ``prometheus_client`` is imported on the path being timed.
"""

from __future__ import annotations

import bisect
import itertools
import threading
from collections.abc import Sequence

#: Topology refresh buckets, seconds: a refresh asks the nodes in parallel, a dead one
#: costs up to its connect timeout.
REFRESH_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Durations:
    """A histogram kept as plain integers where the event happens, read at scrape time.

    Observing is a bisect and two additions under a lock; nothing from
    ``prometheus_client`` is needed until a scrape.
    """

    def __init__(self, buckets: Sequence[float]) -> None:
        self.buckets = tuple(buckets)
        self._lock = threading.Lock()
        self._counts = [0] * (len(self.buckets) + 1)
        self._sum = 0.0

    def observe(self, seconds: float) -> None:
        index = bisect.bisect_left(self.buckets, seconds)  # the first bound >= seconds
        with self._lock:
            self._counts[index] += 1
            self._sum += seconds

    def snapshot(self) -> tuple[list[tuple[str, int]], float]:
        """Cumulative ``(le, count)`` pairs, ``+Inf`` last, and the sum of what was observed."""
        with self._lock:
            counts, total = list(self._counts), self._sum
        bounds = [str(b) for b in self.buckets] + ["+Inf"]
        return list(zip(bounds, itertools.accumulate(counts), strict=True)), total

    def clear(self) -> None:
        with self._lock:
            self._counts = [0] * (len(self.buckets) + 1)
            self._sum = 0.0
