"""One snapshot of what this process knows: breakers, fallback use, journals and counters.

The health report, the Prometheus metrics, the health views and the admin panel
all show this process's side of things. They read it from one frozen snapshot,
built by :func:`take_snapshot`, so that they cannot disagree about a breaker
or a counter, and so that what each shows is read in one place. Taking one
costs memory reads only (no network): it is fine on every request.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from django_redis_resilience._process import process_counters, process_label
from django_redis_resilience.cache import CACHE_STATE, CacheState
from django_redis_resilience.clients import get_manager
from django_redis_resilience.conf import conf
from django_redis_resilience.connection import ConnectionManager, LogicalEndpoint, mask_url
from django_redis_resilience.health._model import iso_utc, iso_utc_from_monotonic

#: A histogram as read: cumulative ``(le, count)`` pairs, ``+Inf`` last, and the sum.
Histogram = tuple[tuple[tuple[str, int], ...], float]


@dataclass(frozen=True)
class EndpointSnapshot:
    """One logical endpoint (server, Sentinel role, cluster shard) as this process sees it."""

    endpoint: str
    role: str
    #: ``closed``, ``half_open`` or ``open``.
    breaker: str
    #: Whether any call went through the breaker yet (a closed, unused breaker proves nothing).
    used: bool
    journal_size: int
    #: ``time.monotonic()`` when the breaker last opened.
    opened_at: float | None
    last_outage_seconds: float | None
    #: ``Type: message``, with any password in a URL masked.
    last_error: str | None

    @property
    def fallback_in_use(self) -> bool:
        return self.breaker != "closed"

    def as_dict(self) -> dict[str, Any]:
        """As the health report writes it."""
        return {
            "endpoint": self.endpoint,
            "role": self.role,
            "breaker": self.breaker,
            "fallback_in_use": self.fallback_in_use,
            "journal_size": self.journal_size,
            "opened_at": iso_utc_from_monotonic(self.opened_at),
            "last_outage_seconds": self.last_outage_seconds,
            "last_error": self.last_error,
        }


@dataclass(frozen=True)
class RefreshSnapshot:
    """A cluster router's slot-map refreshes in this process."""

    count: int
    failures: int
    #: ``time.monotonic()`` of the last one.
    last_at: float | None
    durations: Histogram


@dataclass(frozen=True)
class CacheSnapshot:
    """One resilient cache in this process."""

    alias: str
    is_cluster: bool
    endpoints: tuple[EndpointSnapshot, ...]
    #: ``cache.stats()``'s counters; ``None`` while the cache has not been used here.
    counters: Mapping[str, Any] | None
    #: ``{(counter, endpoint): count}``: errors, short-circuited calls, refused writes,
    #: fallback reads and writes, per endpoint.
    endpoint_counts: Mapping[tuple[str, str], int]
    #: ``None`` unless a cluster.
    refreshes: RefreshSnapshot | None
    #: The master this process routes each cluster shard to, by the shard's first slot.
    routed_masters: Mapping[int, str] | None

    def counted_endpoints(self) -> list[str]:
        """Every endpoint known now, then any other that has counts (a shard's old master)."""
        names = list(dict.fromkeys(e.endpoint for e in self.endpoints))
        counted = {endpoint for _, endpoint in self.endpoint_counts}
        return names + sorted(counted - set(names))

    def client_view(self, process: str) -> dict[str, Any]:
        """This process's side of the health report (``CacheReport.client``)."""
        client: dict[str, Any] = {
            "process": process,
            "endpoints": [e.as_dict() for e in self.endpoints],
        }
        if self.counters is not None:
            client["counters"] = _iso_moments(self.counters)
        if self.refreshes is not None:
            client["topology_refreshes"] = self.refreshes.count
            client["last_topology_refresh_at"] = iso_utc_from_monotonic(self.refreshes.last_at)
        return client


@dataclass(frozen=True)
class ProcessSnapshot:
    """Every resilient cache of this process, and its rate-limit and lock counters."""

    process: str
    caches: tuple[CacheSnapshot, ...]
    ratelimit_decisions: Mapping[str, int]
    lock_acquisitions: Mapping[str, int]
    lock_waits: Histogram

    def cache(self, alias: str) -> CacheSnapshot:
        for cache in self.caches:
            if cache.alias == alias:
                return cache
        raise KeyError(alias)

    def breaker_states(self) -> tuple[tuple[str, str, str], ...]:
        """``(alias, endpoint, state)`` of every breaker: what a cached report must match."""
        return tuple(
            (cache.alias, endpoint.endpoint, endpoint.breaker)
            for cache in self.caches
            for endpoint in cache.endpoints
        )

    def client_views(self) -> dict[str, dict[str, Any]]:
        """``{alias: client view}``: this process's side of each cache's report."""
        return {cache.alias: cache.client_view(self.process) for cache in self.caches}


def take_snapshot(aliases: Iterable[str] | None = None) -> ProcessSnapshot:
    """This process's state now, for ``aliases`` (every resilient cache by default)."""
    chosen = conf.resilient_aliases() if aliases is None else aliases
    return snapshot_of([get_manager(alias) for alias in dict.fromkeys(chosen)])


def snapshot_of(managers: Iterable[ConnectionManager]) -> ProcessSnapshot:
    """This process's state now, for the caches of ``managers``."""
    counters = process_counters()
    return ProcessSnapshot(
        process=process_label(),
        caches=tuple(cache_snapshot(manager) for manager in managers),
        ratelimit_decisions=counters.decisions(),
        lock_acquisitions=counters.acquisitions(),
        lock_waits=counters.waits(),
    )


def cache_snapshot(manager: ConnectionManager) -> CacheSnapshot:
    """One cache's part of the snapshot, read from its connection manager."""
    state = manager.extensions.get(CACHE_STATE)
    router = manager.cluster
    refreshes = None
    if router is not None:
        buckets, total = router.refresh_durations.snapshot()
        refreshes = RefreshSnapshot(
            count=router.refresh_count,
            failures=router.refresh_failures,
            last_at=router.last_refresh_at,
            durations=(tuple(buckets), total),
        )
    return CacheSnapshot(
        alias=manager.alias,
        is_cluster=router is not None,
        endpoints=tuple(_endpoint(endpoint, state) for endpoint in manager.endpoints),
        counters=_counters(state),
        endpoint_counts=_endpoint_counts(state),
        refreshes=refreshes,
        routed_masters=_routed_masters(manager),
    )


def _endpoint(endpoint: LogicalEndpoint, state: CacheState | None) -> EndpointSnapshot:
    breaker = endpoint.breaker
    journal = state.journal(endpoint) if state is not None else None
    error = breaker.last_error
    return EndpointSnapshot(
        endpoint=endpoint.display,
        role=endpoint.role,
        breaker=breaker.state.value,
        used=breaker.used,
        journal_size=len(journal) if journal is not None else 0,
        opened_at=breaker.opened_at,
        last_outage_seconds=breaker.last_outage_seconds,
        last_error=f"{type(error).__name__}: {mask_url(str(error))}" if error else None,
    )


def _endpoint_counts(state: CacheState | None) -> dict[tuple[str, str], int]:
    if state is None:
        return {}
    return {(name, endpoint): n for (name, endpoint), n in state.endpoint_counts().items()}


def _routed_masters(manager: ConnectionManager) -> dict[int, str] | None:
    """The master this process routes each shard to (by the shard's first slot)."""
    router = manager.cluster
    if router is None:
        return None
    masters: dict[int, str] = {}
    for shard in router.shards():
        if shard.view.master is not None and not shard.view.orphaned:
            host, port = shard.view.master
            masters[shard.view.id] = f"{host}:{port}"
    return masters


def _counters(state: CacheState | None) -> dict[str, Any] | None:
    """``cache.stats()``'s counters, with the near cache's sizes when it has one."""
    if state is None:
        return None
    near = state.near
    return {**state.counters.snapshot(), **(near.stats() if near is not None else {})}


def _iso_moments(counters: Mapping[str, Any]) -> dict[str, Any]:
    """``cache.stats()``'s counters, its ``last_*`` moments (Unix times) in ISO 8601, UTC."""
    return {
        name: iso_utc(value) if name.startswith("last_") and isinstance(value, float) else value
        for name, value in counters.items()
    }
