"""The process-wide registry: one manager per alias across threads, loops, forks and settings."""

from __future__ import annotations

import asyncio
import os
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.test import override_settings

from django_redis_resilience import signals
from django_redis_resilience.clients import get_manager
from django_redis_resilience.connection import BreakerState, get_registry, reset_registry
from django_redis_resilience.exceptions import RedisUnavailable
from django_redis_resilience.testing import RedisServer

from .conftest import wait_for

BACKEND = "django_redis_resilience.cache.ResilientRedisCache"


def _caches(url: str, **options: Any) -> dict[str, Any]:
    return {"default": {"BACKEND": BACKEND, "LOCATION": url, "OPTIONS": options}}


@pytest.fixture
def client_name() -> str:
    return f"drr-test-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def resilient(drr_redis_server: RedisServer, client_name: str) -> Iterator[RedisServer]:
    """The shared server as the ``default`` cache, its connections named for counting."""
    url = f"{drr_redis_server.url}?client_name={client_name}"
    with override_settings(CACHES=_caches(url)):
        yield drr_redis_server
    reset_registry()


def _connections_named(server: RedisServer, name: str) -> int:
    with server.client() as client:
        return sum(1 for c in client.client_list() if c.get("name") == name)


def test_one_manager_per_alias_shared_by_threads(resilient: RedisServer) -> None:
    managers: list[object] = []

    def work() -> None:
        manager = get_manager()
        manager.execute(lambda c: c.ping())
        managers.append(manager)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(managers) == 8
    assert all(m is managers[0] for m in managers)
    assert get_manager() is managers[0]


def test_pools_survive_between_requests(resilient: RedisServer, client_name: str) -> None:
    for _ in range(50):
        get_manager().execute(lambda c: c.ping())
    assert _connections_named(resilient, client_name) == 1


def test_asyncio_pool_per_event_loop_closed_with_the_loop(
    resilient: RedisServer, client_name: str
) -> None:
    manager = get_manager()

    async def use() -> int:
        await asyncio.gather(*(manager.aexecute(lambda c: c.ping()) for _ in range(3)))
        return id(manager.primary.async_client())

    first = asyncio.run(use())
    second = asyncio.run(use())
    assert first != second  # a client per loop: no cross-loop futures
    assert wait_for(lambda: _connections_named(resilient, client_name) == 0)
    assert manager.primary.loop_count() == 0


def test_two_running_loops_in_two_threads(resilient: RedisServer) -> None:
    manager = get_manager()
    results: list[object] = []
    barrier = threading.Barrier(2)

    async def use(n: int) -> None:
        barrier.wait()
        for i in range(20):
            await manager.aexecute(lambda c, i=i: c.set(f"loops:{n}:{i}", i))
        results.append(await manager.aexecute(lambda c: c.get(f"loops:{n}:19")))

    threads = [threading.Thread(target=asyncio.run, args=(use(n),)) for n in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [b"19", b"19"]


def test_async_views_under_wsgi_do_not_leak(resilient: RedisServer, client_name: str) -> None:
    """async_to_sync gives every call its own loop, as Django does for async views under WSGI."""
    manager = get_manager()

    async def view() -> object:
        return await manager.aexecute(lambda c: c.incr("wsgi:hits"), idempotent=False)

    for _ in range(30):
        async_to_sync(view)()
    assert manager.primary.loop_count() == 0
    assert wait_for(lambda: _connections_named(resilient, client_name) == 0)


def test_override_settings_builds_new_clients(
    drr_redis_factory: Any, resilient: RedisServer
) -> None:
    first = get_manager()
    first.execute(lambda c: c.set("which", "first"))
    other = drr_redis_factory()
    with override_settings(CACHES=_caches(other.url)):
        second = get_manager()
        assert second is not first
        assert second.execute(lambda c: c.get("which")) is None
    third = get_manager()
    assert third is not second
    assert third.execute(lambda c: c.get("which")) == b"first"


def test_background_thread_starts_lazily_and_once(drr_redis_factory: Any) -> None:
    server = drr_redis_factory()
    registry = reset_registry()
    options = {"BREAKER": {"FAILURE_THRESHOLD": 1, "RECOVERY_TIMEOUT": 0.05}}
    with override_settings(CACHES=_caches(server.url, **options)):
        registry = get_registry()
        get_manager().execute(lambda c: c.ping())
        assert registry.scheduler.thread is None
        server.kill()
        for _ in range(3):
            with pytest.raises(Exception):
                get_manager().execute(lambda c: c.ping())
        assert registry.scheduler.thread is not None
        assert registry.scheduler.thread.daemon
        names = [t.name for t in threading.enumerate() if t.name == "drr-background"]
        assert names == ["drr-background"]


def test_signals_on_outage_and_recovery(drr_redis_factory: Any) -> None:
    server = drr_redis_factory()
    received: list[tuple[str, dict[str, Any]]] = []

    def recorder(name: str) -> Any:
        def receive(sender: object, **kwargs: Any) -> None:
            received.append((name, kwargs))

        return receive

    handlers = {
        "degraded": recorder("degraded"),
        "recovered": recorder("recovered"),
        "changed": recorder("changed"),
    }
    signals.redis_degraded.connect(handlers["degraded"])
    signals.redis_recovered.connect(handlers["recovered"])
    signals.breaker_state_changed.connect(handlers["changed"])
    options = {"BREAKER": {"FAILURE_THRESHOLD": 2, "RECOVERY_TIMEOUT": 0.05}}
    try:
        with override_settings(CACHES=_caches(server.url, **options)):
            manager = get_manager()
            server.kill()
            for _ in range(2):
                with pytest.raises(Exception):
                    manager.execute(lambda c: c.ping())
            server.restart()
            assert wait_for(lambda: manager.primary.breaker.state is BreakerState.CLOSED)
    finally:
        signals.redis_degraded.disconnect(handlers["degraded"])
        signals.redis_recovered.disconnect(handlers["recovered"])
        signals.breaker_state_changed.disconnect(handlers["changed"])
    degraded = [kw for name, kw in received if name == "degraded"]
    recovered = [kw for name, kw in received if name == "recovered"]
    changes = [(kw["old"], kw["new"]) for name, kw in received if name == "changed"]
    assert len(degraded) == 1
    assert degraded[0]["alias"] == "default"
    assert degraded[0]["endpoint"] == server.url.split("?")[0]
    assert len(recovered) == 1
    assert recovered[0]["outage_seconds"] > 0
    assert changes[0] == ("closed", "open")
    assert changes[-1] == ("half_open", "closed")


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # fork() with threads, 3.12+
def test_fork_gives_the_child_its_own_registry(resilient: RedisServer) -> None:
    parent_manager = get_manager()
    parent_manager.execute(lambda c: c.set("fork:k", "parent"))
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: must never return into pytest
        code = 1
        try:
            child_manager = get_manager()
            ok = child_manager is not parent_manager
            ok = ok and child_manager.execute(lambda c: c.get("fork:k")) == b"parent"
            child_manager.execute(lambda c: c.set("fork:child", "yes"))
            code = 0 if ok else 2
        finally:
            os.write(write_fd, str(code).encode())
            os._exit(code)
    os.close(write_fd)
    with os.fdopen(read_fd) as reader:
        child_code = reader.read()
    _, status = os.waitpid(pid, 0)
    assert child_code == "0"
    assert os.waitstatus_to_exitcode(status) == 0
    # The child closed nothing of ours: the parent's pooled connection still works.
    assert parent_manager.execute(lambda c: c.get("fork:child")) == b"yes"
    assert get_manager() is parent_manager


@pytest.mark.chaos
def test_cluster_shard_signals_name_the_shard_and_follow_its_master(
    drr_cluster_factory: Any,
) -> None:
    cluster = drr_cluster_factory(masters=3, require_full_coverage=False)
    received: list[tuple[str, dict[str, Any]]] = []

    def degraded(sender: object, **kwargs: Any) -> None:
        received.append(("degraded", kwargs))

    def recovered(sender: object, **kwargs: Any) -> None:
        received.append(("recovered", kwargs))

    signals.redis_degraded.connect(degraded)
    signals.redis_recovered.connect(recovered)
    options = {"BREAKER": {"FAILURE_THRESHOLD": 2, "RECOVERY_TIMEOUT": 0.05}}
    try:
        with override_settings(CACHES=_caches(cluster.location, **options)):
            manager = get_manager()
            victim = cluster.node_for_key("signal:key")
            manager.execute(lambda c: c.set("signal:key", 1), key="signal:key")
            victim.kill()
            for _ in range(2):
                with pytest.raises(RedisUnavailable):
                    manager.execute(lambda c: c.get("signal:key"), key="signal:key")
            shard = manager.cluster.shard_for_key("signal:key")
            victim.restart(keep_data=True)
            assert wait_for(lambda: shard.breaker.state is BreakerState.CLOSED, timeout=15)
    finally:
        signals.redis_degraded.disconnect(degraded)
        signals.redis_recovered.disconnect(recovered)
    assert [name for name, _ in received] == ["degraded", "recovered"]
    for _, kwargs in received:
        assert kwargs["alias"] == "default"
        assert kwargs["endpoint"].startswith(cluster.location)
        assert f"@ 127.0.0.1:{victim.port}" in kwargs["endpoint"]
