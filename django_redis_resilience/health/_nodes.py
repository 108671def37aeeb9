"""Find every node of a cache directly and probe them all in parallel.

Discovery never trusts one node: the configured seeds are probed, and what
each answers (a cluster node's ``CLUSTER NODES``, a Sentinel's view of the
service, a primary's replicas) adds nodes that are probed as soon as they are
known, on the same thread pool. A dead or hung node costs its own timeout and
hides nothing.
"""

from __future__ import annotations

import concurrent.futures as cf
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import Any

import redis

from django_redis_resilience.connection import (
    ConnectionManager,
    NodeAddress,
    NodePools,
    SentinelService,
    Slot,
    TopologyKind,
)
from django_redis_resilience.health._model import NodeReport
from django_redis_resilience.health._probe import probe

#: Threads probing at once, for the whole report.
MAX_WORKERS = 32


@dataclass(frozen=True)
class Target:
    """One node to probe, and how to reach it."""

    alias: str
    host: str
    port: int
    kind: str
    connect: Callable[[], Any]
    cluster: bool = False
    sentinel_service: str | None = None

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}" if self.port else self.host


class _Pools:
    """Pools of nodes found by discovery, per cache, kept between reports (no sockets)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pools: dict[tuple[str, str, int], NodePools] = {}

    def get(
        self, manager: ConnectionManager, template: NodeAddress, host: str, port: int
    ) -> NodePools:
        key = (manager.alias, host, port)
        with self._lock:
            pools = self._pools.get(key)
            if pools is None:
                address = replace(template, host=host, port=port)
                pools = self._pools[key] = NodePools(address=address, options=manager.options)
            return pools


#: Where a connection manager keeps the pools of the nodes the health probe found.
_PROBE_POOLS: Slot[_Pools] = Slot("health probe pools")


def _pools(manager: ConnectionManager) -> _Pools:
    return manager.extensions.obtain(_PROBE_POOLS, _Pools)


def seeds(manager: ConnectionManager, timeout: float) -> list[Target]:
    """The nodes the configuration names."""
    alias = manager.alias
    topology = manager.topology
    if topology.kind is TopologyKind.CLUSTER:
        router = manager.cluster
        assert router is not None
        return [
            Target(
                alias,
                host,
                port,
                "master",
                _fresh(router.node((host, port)), timeout),
                cluster=True,
            )
            for host, port in router.seeds
        ]
    if topology.kind is TopologyKind.SENTINEL:
        service = manager.sentinel
        assert service is not None
        return [
            Target(
                alias,
                host,
                port,
                "sentinel",
                _sentinel_connection(host, port, service, timeout),
                sentinel_service=service.service_name,
            )
            for host, port in service.addresses
        ]
    targets = []
    for endpoint in manager.endpoints:
        address = endpoint.address  # type: ignore[attr-defined]
        kind = "primary" if endpoint.role == "primary" else "replica"
        host = address.path if address.is_unix else address.host
        port = 0 if address.is_unix else address.port
        targets.append(Target(alias, host, port, kind, _fresh(endpoint, timeout)))  # type: ignore[arg-type]
    return targets


def _fresh(pools: NodePools, timeout: float) -> Callable[[], Any]:
    return lambda: pools.fresh_connection(timeout)


def _sentinel_connection(
    host: str, port: int, service: SentinelService, timeout: float
) -> Callable[[], Any]:
    def connect() -> Any:
        options = service.connection_kwargs(timeout=timeout)
        pool = redis.ConnectionPool(host=host, port=port, **options)
        return pool.make_connection()

    return connect


def found_by(
    manager: ConnectionManager, report: NodeReport, target: Target, timeout: float
) -> list[Target]:
    """Nodes that ``report`` names: cluster peers, the service's nodes, announced replicas."""
    if target.cluster:
        return _cluster_peers(manager, report, timeout)
    if target.sentinel_service is not None:
        return _service_nodes(manager, report, timeout) + _sentinels(manager, report, timeout)
    if target.kind == "primary" and not manager.topology.nodes[0].is_unix:
        return _replicas(manager, report, timeout)
    return []


def _cluster_peers(manager: ConnectionManager, report: NodeReport, timeout: float) -> list[Target]:
    """Every node a cluster node knows, through the router's own node pools."""
    router = manager.cluster
    assert router is not None
    found = []
    for node in report.cluster.get("nodes", []):
        if node["host"] and node["port"] and "noaddr" not in node["flags"]:
            address = (node["host"], node["port"])
            kind = "master" if "master" in node["flags"] else "replica"
            connect = _fresh(router.node(address), timeout)
            found.append(Target(manager.alias, *address, kind, connect, cluster=True))
    return found


def _service_nodes(manager: ConnectionManager, report: NodeReport, timeout: float) -> list[Target]:
    """The primary and the replicas a Sentinel names for the service."""
    master = report.sentinel.get("master") or {}
    named = [(master.get("ip"), master.get("port"), "primary")]
    named += [(r.get("ip"), r.get("port"), "replica") for r in report.sentinel.get("replicas", [])]
    template = replace(manager.topology.nodes[0], host="", port=0)
    pools = _pools(manager)
    found = []
    for host, port, kind in named:
        if host and port:
            node = pools.get(manager, template, host, int(port))
            found.append(Target(manager.alias, host, int(port), kind, _fresh(node, timeout)))
    return found


def _sentinels(manager: ConnectionManager, report: NodeReport, timeout: float) -> list[Target]:
    """The other Sentinels a Sentinel knows for the service."""
    service = manager.sentinel
    found = []
    for sentinel in report.sentinel.get("sentinels", []):
        if service is not None and sentinel.get("ip") and sentinel.get("port"):
            host, port = sentinel["ip"], int(sentinel["port"])
            connect = _sentinel_connection(host, port, service, timeout)
            found.append(
                Target(
                    manager.alias,
                    host,
                    port,
                    "sentinel",
                    connect,
                    sentinel_service=service.service_name,
                )
            )
    return found


def _replicas(manager: ConnectionManager, report: NodeReport, timeout: float) -> list[Target]:
    """The replicas a primary announces (``INFO replication``)."""
    template = manager.topology.nodes[0]
    pools = _pools(manager)
    found = []
    for replica in report.replication.get("replicas", []):
        if replica.get("ip") and replica.get("port"):
            host, port = str(replica["ip"]), int(replica["port"])
            node = pools.get(manager, template, host, port)
            found.append(Target(manager.alias, host, port, "replica", _fresh(node, timeout)))
    return found


def probe_all(managers: Iterable[ConnectionManager], timeout: float) -> dict[str, list[NodeReport]]:
    """Every node of every manager, probed in parallel; per alias, in discovery order."""
    managers = list(managers)
    results: dict[str, list[NodeReport]] = {m.alias: [] for m in managers}
    seen: set[tuple[str, str, int]] = set()
    by_alias = {m.alias: m for m in managers}
    with cf.ThreadPoolExecutor(max_workers=MAX_WORKERS, thread_name_prefix="drr-health") as pool:
        pending: dict[cf.Future[NodeReport], Target] = {}

        def submit(target: Target) -> None:
            key = (target.alias, target.host, target.port)
            if key in seen:
                return
            seen.add(key)
            report = NodeReport(address=target.address, kind=target.kind)
            results[target.alias].append(report)
            future = pool.submit(
                probe,
                report,
                target.connect,
                cluster=target.cluster,
                sentinel_service=target.sentinel_service,
            )
            pending[future] = target

        for manager in managers:
            try:
                for target in seeds(manager, timeout):
                    submit(target)
            except Exception as exc:  # a cluster never discovered has no router state yet
                results[manager.alias].append(
                    NodeReport(address="?", kind="seed", error="error", error_detail=str(exc))
                )
        while pending:
            done, _ = cf.wait(pending, return_when=cf.FIRST_COMPLETED)
            for future in done:
                target = pending.pop(future)
                report = future.result()
                if report.reachable:
                    manager = by_alias[target.alias]
                    for found in found_by(manager, report, target, timeout):
                        submit(found)
    return results
