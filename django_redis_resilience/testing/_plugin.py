"""pytest fixtures over the harness, enabled per project with::

    pytest_plugins = ["django_redis_resilience.testing"]

Shared (session) servers are for tests that only read and write unique keys;
anything that kills, hangs, restarts or reconfigures a server takes a fresh one
from a factory, so a broken server never leaks into the next test.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, TypeVar

import pytest

from django_redis_resilience.testing._cluster import ClusterGroup, ClusterGroupFactory
from django_redis_resilience.testing._proxy import FaultProxy, FaultProxyFactory, _Addressable
from django_redis_resilience.testing._sentinel import SentinelGroup, SentinelGroupFactory
from django_redis_resilience.testing._servers import (
    RedisServer,
    RedisServerFactory,
    ReplicaGroup,
    ReplicaGroupFactory,
    stop_all,
)
from django_redis_resilience.testing._tls import TLSMaterial, TLSUnsupportedError

__all__ = [
    "drr_cluster",
    "drr_cluster_factory",
    "drr_proxy_factory",
    "drr_redis_factory",
    "drr_redis_server",
    "drr_replica_group",
    "drr_replica_group_factory",
    "drr_sentinel_factory",
    "drr_sentinel_group",
    "drr_tls_material",
    "drr_tls_server",
    "pytest_sessionfinish",
]


def _stop_each(
    items: Sequence[RedisServer | ReplicaGroup | FaultProxy | SentinelGroup | ClusterGroup],
) -> None:
    """Stop everything, newest first, even if stopping one of them fails."""
    errors: list[Exception] = []
    for item in reversed(items):
        try:
            item.stop()
        except Exception as exc:
            errors.append(exc)
    if errors:
        raise errors[0]


@pytest.fixture(scope="session")
def drr_redis_server() -> Iterator[RedisServer]:
    """One standalone server for the session; not flushed, so use unique keys."""
    with RedisServer() as server:
        yield server


@pytest.fixture
def drr_redis_factory() -> Iterator[RedisServerFactory]:
    """Start fresh servers (``factory(**RedisServer kwargs)``); all stopped after the test.

    Asking for ``tls=`` from a ``redis-server`` built without TLS skips the test.
    """
    started: list[RedisServer] = []

    def factory(**kwargs: Any) -> RedisServer:
        server = RedisServer(**kwargs)
        started.append(server)
        return _start_or_skip(server)

    yield factory
    _stop_each(started)


@pytest.fixture(scope="session")
def drr_replica_group() -> Iterator[ReplicaGroup]:
    """One primary with one replica for the session; tests must not break it."""
    with ReplicaGroup() as group:
        yield group


@pytest.fixture
def drr_replica_group_factory() -> Iterator[ReplicaGroupFactory]:
    """Start fresh replica groups (``factory(**ReplicaGroup kwargs)``); stopped after the test."""
    started: list[ReplicaGroup] = []

    def factory(**kwargs: Any) -> ReplicaGroup:
        group = ReplicaGroup(**kwargs)
        started.append(group)
        return _start_or_skip(group)

    yield factory
    _stop_each(started)


@pytest.fixture(scope="session")
def drr_tls_material() -> Iterator[TLSMaterial]:
    """A throwaway CA with server, client and wrong-host certificates for the session."""
    with TLSMaterial.create() as material:
        yield material


@pytest.fixture(scope="session")
def drr_tls_server(drr_tls_material: TLSMaterial) -> Iterator[RedisServer]:
    """One TLS-only server for the session (``client()`` speaks TLS); do not break it.

    Skips when the ``redis-server`` has no TLS support.
    """
    with _start_or_skip(RedisServer(tls=drr_tls_material)) as server:
        yield server


_Startable = TypeVar("_Startable", RedisServer, ReplicaGroup, SentinelGroup, ClusterGroup)


def _start_or_skip(item: _Startable) -> _Startable:
    try:
        item.start()
    except TLSUnsupportedError as exc:
        pytest.skip(str(exc))
    return item


@pytest.fixture
def drr_proxy_factory() -> Iterator[FaultProxyFactory]:
    """Start fault-injecting proxies, ``factory(server)`` or ``factory(host, port)``; all
    stopped after the test. Point the client at ``proxy.url()`` and break the network.
    """
    started: list[FaultProxy] = []

    def factory(server_or_host: _Addressable | str, port: int | None = None) -> FaultProxy:
        if isinstance(server_or_host, str):
            if port is None:
                raise TypeError("drr_proxy_factory(host, port) needs the port")
            host = server_or_host
        else:
            if port is not None:
                raise TypeError("pass a server or a host and a port, not a server and a port")
            host, port = server_or_host.host, server_or_host.port
        proxy = FaultProxy(host, port)
        started.append(proxy)
        return proxy.start()

    yield factory
    _stop_each(started)


@pytest.fixture(scope="session")
def drr_sentinel_group() -> Iterator[SentinelGroup]:
    """A primary, one replica and three Sentinels (``mymaster``) for the session.

    Tests must not break it: no kills, no ``failover()``; use unique keys.
    """
    with SentinelGroup() as group:
        yield group


@pytest.fixture
def drr_sentinel_factory() -> Iterator[SentinelGroupFactory]:
    """Start fresh Sentinel groups (``factory(**SentinelGroup kwargs)``); stopped after the test."""
    started: list[SentinelGroup] = []

    def factory(**kwargs: Any) -> SentinelGroup:
        group = SentinelGroup(**kwargs)
        started.append(group)
        return _start_or_skip(group)

    yield factory
    _stop_each(started)


@pytest.fixture(scope="session")
def drr_cluster() -> Iterator[ClusterGroup]:
    """A three-master cluster without replicas for the session; do not break it."""
    with ClusterGroup() as cluster:
        yield cluster


@pytest.fixture
def drr_cluster_factory() -> Iterator[ClusterGroupFactory]:
    """Start fresh clusters (``factory(replicas=1, require_full_coverage=False, ...)``);
    stopped after the test.
    """
    started: list[ClusterGroup] = []

    def factory(**kwargs: Any) -> ClusterGroup:
        cluster = ClusterGroup(**kwargs)
        started.append(cluster)
        return _start_or_skip(cluster)

    yield factory
    _stop_each(started)


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int | pytest.ExitCode) -> None:
    """Backstop after fixture teardown: no server outlives the session, whatever failed."""
    stop_all()
