"""The Django side of the health report: which caches, which settings, this process's state."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from django_redis_resilience._process import process_counters
from django_redis_resilience.clients import get_manager
from django_redis_resilience.conf import conf
from django_redis_resilience.connection import ConnectionManager, Slot
from django_redis_resilience.health._findings import (
    client_findings,
    cluster_findings,
    node_findings,
)
from django_redis_resilience.health._history import history
from django_redis_resilience.health._model import CacheReport, NodeReport, Report
from django_redis_resilience.health._nodes import probe_all
from django_redis_resilience.health._snapshot import CacheSnapshot, snapshot_of


def _masters(cache: CacheReport) -> frozenset[str]:
    """Who serves writes: the cluster's masters, Sentinel's primary, or the reachable primary."""
    if cache.cluster.get("masters"):
        return frozenset(cache.cluster["masters"])
    for node in cache.nodes:
        master = node.sentinel.get("master") or {}
        if master.get("ip") and master.get("port"):
            return frozenset({f"{master['ip']}:{master['port']}"})
    return frozenset(n.address for n in cache.nodes if n.kind == "primary" and n.reachable)


@dataclass(frozen=True)
class _Seen:
    """What one report found: the nodes that answered, those that did not, the masters."""

    up: frozenset[str]
    down: frozenset[str]
    masters: frozenset[str]


class _LastSeen:
    """What this process's previous report of one cache found (``None``: no report yet)."""

    def __init__(self) -> None:
        self.seen: _Seen | None = None


#: Where a connection manager keeps what its previous health report found.
_LAST_SEEN: Slot[_LastSeen] = Slot("health last seen")


def _compare_with_last(manager: ConnectionManager, cache: CacheReport) -> None:
    """Degradation events seen by comparing with this process's previous report:
    nodes lost and recovered, a failover (Sentinel), a changed set of masters (cluster)."""
    from django_redis_resilience import events

    up = frozenset(n.address for n in cache.nodes if n.reachable)
    down = frozenset(n.address for n in cache.nodes if not n.reachable)
    masters = _masters(cache)
    holder = manager.extensions.obtain(_LAST_SEEN, _LastSeen)
    last, holder.seen = holder.seen, _Seen(up=up, down=down, masters=masters)
    if last is None:
        return
    alias = manager.alias
    for address in sorted(down & last.up):
        events.record("node_lost", alias=alias, endpoint=address, message="no longer answers")
    for address in sorted(up & last.down):
        events.record("node_recovered", alias=alias, endpoint=address, message="answers again")
    if masters and last.masters and masters != last.masters:
        kind = "topology_changed" if manager.cluster is not None else "failover"
        were, now = ", ".join(sorted(last.masters)), ", ".join(sorted(masters))
        message = f"masters were {were}; now {now}"
        events.record(kind, alias=alias, endpoint=manager.topology.display, message=message)


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
    snapshot = snapshot_of(managers)
    caches: list[CacheReport] = []
    for manager, mine in zip(managers, snapshot.caches, strict=True):
        cache = _cache_report(manager, nodes[manager.alias], mine, snapshot.process, health)
        cache.duration_ms = (time.perf_counter() - started) * 1000
        caches.append(cache)
        _compare_with_last(manager, cache)
    report = Report(
        caches=caches,
        generated_at=time.time(),
        duration_ms=(time.perf_counter() - started) * 1000,
    )
    history.add(report)
    return report


def _cache_report(
    manager: ConnectionManager,
    nodes: list[NodeReport],
    mine: CacheSnapshot,
    process: str,
    health: Mapping[str, Any],
) -> CacheReport:
    """One cache: what its nodes said, this process's view, and the findings of both."""
    cache = CacheReport(
        alias=manager.alias,
        topology=manager.topology.kind.value,
        location=manager.topology.display,
        nodes=nodes,
        client=mine.client_view(process),
    )
    cache.findings += node_findings(
        cache, slow_ms=float(health["SLOW_MS"]), shortest_lease=process_counters().shortest_lease()
    )
    if mine.is_cluster:
        cache.findings += cluster_findings(
            cache, zones=health["NODE_ZONES"], client_masters=mine.routed_masters
        )
    cache.findings += client_findings(cache)
    return cache
