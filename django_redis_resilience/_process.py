"""This process's own counters and name, kept by its connection registry.

Rate limits and locks count their decisions here; the health snapshot and the
Prometheus metrics read them. They live below all three so that counting needs
no import of the parts that read the counts (and no import statement per count).
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Iterable, Sequence
from typing import Any

from django_redis_resilience.connection import Durations, Slot, get_registry

#: Lock wait buckets, seconds.
WAIT_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0)


def process_label() -> str:
    """``pid@host``: whose view the client-side part of a report is."""
    return f"{os.getpid()}@{socket.gethostname()}"


class ProcessCounters:
    """Rate-limit decisions and lock acquisitions of this process, as plain integers.

    Owned by the process's connection registry: they start from zero after
    ``fork()`` (a child counts under its own ``process`` label) and when the
    caches' settings change, like the caches' own counters.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._decisions: dict[str, int] = {}
        self._acquisitions: dict[str, int] = {}
        self._waits = Durations(WAIT_BUCKETS)
        self._shortest: float | None = None

    def count_decisions(self, outcomes: Iterable[str]) -> None:
        with self._lock:
            for outcome in outcomes:
                self._decisions[outcome] = self._decisions.get(outcome, 0) + 1

    def count_lock(self, outcome: str, waited: float, lease: float | None = None) -> None:
        with self._lock:
            self._acquisitions[outcome] = self._acquisitions.get(outcome, 0) + 1
            if lease is not None and (self._shortest is None or lease < self._shortest):
                self._shortest = lease
        if outcome == "acquired":
            self._waits.observe(waited)

    def shortest_lease(self) -> float | None:
        """The shortest lock lease (seconds) this process acquired with, if any: replicas
        lagging longer than it would hand a lock out twice on failover."""
        return self._shortest

    def decisions(self) -> dict[str, int]:
        with self._lock:
            return dict(self._decisions)

    def acquisitions(self) -> dict[str, int]:
        with self._lock:
            return dict(self._acquisitions)

    def waits(self) -> tuple[tuple[tuple[str, int], ...], float]:
        buckets, total = self._waits.snapshot()
        return tuple(buckets), total

    def clear(self) -> None:
        with self._lock:
            self._decisions.clear()
            self._acquisitions.clear()
            self._shortest = None
        self._waits.clear()


#: Where the counters live in the registry: one slot per process, emptied after fork.
_COUNTERS: Slot[ProcessCounters] = Slot("process counters")


def process_counters() -> ProcessCounters:
    """This process's counters, kept by its connection registry."""
    return get_registry().extensions.obtain(_COUNTERS, ProcessCounters)


def count_decisions(decisions: Sequence[Any]) -> None:
    """Rate-limit decisions: ``allowed``, ``denied``, and ``degraded`` when Redis was not asked."""
    process_counters().count_decisions(
        "degraded" if decision.degraded else ("allowed" if decision.allowed else "denied")
        for decision in decisions
    )


def count_lock(outcome: str, waited: float, lease: float | None = None) -> None:
    """One acquisition attempt: ``acquired``, ``busy``, ``unavailable``; how long it waited;
    ``lease``: the lease it was granted with."""
    process_counters().count_lock(outcome, waited, lease)


def reset() -> None:
    process_counters().clear()
