"""The Django side of the health report: which caches, which settings, this process's state."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterable, Mapping
from typing import Any

from django_redis_resilience.clients import get_manager
from django_redis_resilience.conf import conf
from django_redis_resilience.connection import ConnectionManager
from django_redis_resilience.connection._location import mask_url
from django_redis_resilience.health._findings import (
    client_findings,
    cluster_findings,
    node_findings,
)
from django_redis_resilience.health._model import CacheReport, Report
from django_redis_resilience.health._nodes import probe_all


def process_label() -> str:
    """``pid@host``: whose view the client-side part of a report is."""
    return f"{os.getpid()}@{socket.gethostname()}"


def client_state(manager: ConnectionManager) -> dict[str, Any]:
    """This process's breakers, fallback use, journal and counters for one cache."""
    state = manager.extensions.get("cache")
    endpoints = []
    for endpoint in manager.endpoints:
        breaker = endpoint.breaker
        journal = state.journal(endpoint) if state is not None else None
        error = breaker.last_error
        endpoints.append(
            {
                "endpoint": endpoint.display,
                "role": endpoint.role,
                "breaker": breaker.state.value,
                "fallback_in_use": breaker.state.value != "closed",
                "journal_size": len(journal) if journal is not None else 0,
                "opened_at": breaker.opened_at,
                "last_outage_seconds": breaker.last_outage_seconds,
                "last_error": f"{type(error).__name__}: {mask_url(str(error))}" if error else None,
            }
        )
    client: dict[str, Any] = {"process": process_label(), "endpoints": endpoints}
    if state is not None:
        client["counters"] = state.counters.snapshot()
    router = manager.cluster
    if router is not None:
        client["topology_refreshes"] = router.refresh_count
        client["last_topology_refresh_at"] = router.last_refresh_at
    return client


def _client_masters(manager: ConnectionManager) -> dict[int, str] | None:
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


def build_report(
    aliases: Iterable[str] | None = None,
    *,
    timeout: float | None = None,
    settings: Mapping[str, Any] | None = None,
) -> Report:
    """Probe every node of the resilient caches ``aliases`` (all of them by default)."""
    started = time.perf_counter()
    health = {**conf.HEALTH, **(settings or {})}
    timeout = float(health["TIMEOUT"] if timeout is None else timeout)
    chosen = list(dict.fromkeys(conf.resilient_aliases() if aliases is None else aliases))
    managers = [get_manager(alias) for alias in chosen]
    nodes = probe_all(managers, timeout)
    caches: list[CacheReport] = []
    for manager in managers:
        cache = CacheReport(
            alias=manager.alias,
            topology=manager.topology.kind.value,
            location=manager.topology.display,
            nodes=nodes[manager.alias],
            client=client_state(manager),
        )
        cache.findings += node_findings(cache, slow_ms=float(health["SLOW_MS"]))
        if manager.cluster is not None:
            cache.findings += cluster_findings(
                cache, zones=health["NODE_ZONES"], client_masters=_client_masters(manager)
            )
        cache.findings += client_findings(cache)
        cache.duration_ms = (time.perf_counter() - started) * 1000
        caches.append(cache)
    return Report(
        caches=caches,
        generated_at=time.time(),
        duration_ms=(time.perf_counter() - started) * 1000,
    )
