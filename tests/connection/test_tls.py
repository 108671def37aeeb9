"""TLS and ACL users against real servers: verification, clear errors, stale TLS pools."""

from __future__ import annotations

import asyncio
import logging
import threading
import time

import pytest
import redis

from django_redis_resilience.connection import BreakerState, ErrorKind
from django_redis_resilience.exceptions import (
    RedisAuthenticationError,
    RedisTLSError,
    RedisUnavailable,
)
from django_redis_resilience.testing import RedisServer, TLSMaterial, acl_user
from tests._compat import checkout, fill_pool

from .conftest import MakeManager, wait_for


def _ca(material: TLSMaterial, *, other: bool = False) -> tuple[tuple[str, str], ...]:
    return (("ssl_ca_certs", str(material.other_ca_file if other else material.ca_file)),)


def test_tls_happy_path_sync_and_async(
    drr_tls_server: RedisServer, drr_tls_material: TLSMaterial, make_manager: MakeManager
) -> None:
    manager = make_manager(drr_tls_server.url, pool_kwargs=_ca(drr_tls_material))
    assert manager.execute(lambda c: c.set("tls:k", "v")) is True

    async def read() -> object:
        return await manager.aexecute(lambda c: c.get("tls:k"))

    assert asyncio.run(read()) == b"v"
    with drr_tls_server.client() as client:
        assert client.get("tls:k") == b"v"


def test_untrusted_certificate_is_a_clear_tls_error(
    drr_tls_server: RedisServer,
    drr_tls_material: TLSMaterial,
    make_manager: MakeManager,
    caplog: pytest.LogCaptureFixture,
) -> None:
    manager = make_manager(drr_tls_server.url, pool_kwargs=_ca(drr_tls_material, other=True))
    caplog.set_level(logging.WARNING, logger="django_redis_resilience")
    with pytest.raises(RedisTLSError) as info:
        manager.execute(lambda c: c.ping())
    assert info.value.kind is ErrorKind.TLS
    assert "certificate verify failed" in str(info.value).lower()
    assert manager.primary.breaker.state is BreakerState.OPEN
    assert any(r.levelno == logging.ERROR for r in caplog.records)


def test_host_name_mismatch_is_a_clear_tls_error(
    drr_redis_factory, drr_tls_material: TLSMaterial, make_manager: MakeManager
) -> None:
    material = drr_tls_material
    server = drr_redis_factory(
        tls=material, tls_cert=(material.wrong_host_cert, material.wrong_host_key)
    )
    # The certificate chains to the CA we trust; only its host name is wrong.
    manager = make_manager(server.url, pool_kwargs=_ca(material, other=True))
    with pytest.raises(RedisTLSError) as info:
        manager.execute(lambda c: c.ping())
    text = str(info.value).lower()
    assert "hostname" in text or "ip address mismatch" in text or "doesn't match" in text


def test_plain_client_cannot_talk_to_a_tls_port(
    drr_tls_server: RedisServer, make_manager: MakeManager
) -> None:
    manager = make_manager(drr_tls_server.url.replace("rediss://", "redis://"))
    with pytest.raises(RedisUnavailable):
        manager.execute(lambda c: c.ping())


def test_mutual_tls(
    drr_redis_factory, drr_tls_material: TLSMaterial, make_manager: MakeManager
) -> None:
    material = drr_tls_material
    server = drr_redis_factory(tls=material, tls_auth_clients=True)
    without = make_manager(server.url, pool_kwargs=_ca(material))
    with pytest.raises(RedisUnavailable):
        without.execute(lambda c: c.ping())
    client_cert = (
        ("ssl_certfile", str(material.client_cert)),
        ("ssl_keyfile", str(material.client_key)),
    )
    with_cert = make_manager(server.url, pool_kwargs=_ca(material) + client_cert)
    assert with_cert.execute(lambda c: c.ping()) is True


@pytest.mark.chaos
def test_tls_client_kill_with_more_dead_connections_than_retries(
    drr_redis_factory, drr_tls_material: TLSMaterial, make_manager: MakeManager
) -> None:
    server = drr_redis_factory(tls=drr_tls_material)
    manager = make_manager(server.url, pool_kwargs=_ca(drr_tls_material), retry={"attempts": 2})
    manager.execute(lambda c: c.set("n", 0))
    fill_pool(manager.primary.client, 20)
    assert server.kill_clients() >= 20
    for _ in range(25):
        manager.execute(lambda c: c.incr("n"), idempotent=False)
    assert manager.execute(lambda c: c.get("n")) == b"25"

    async def scenario() -> list[object]:
        await asyncio.gather(*(manager.aexecute(lambda c: c.ping()) for _ in range(20)))
        server.kill_clients()
        return [await manager.aexecute(lambda c: c.incr("n"), idempotent=False) for _ in range(3)]

    assert asyncio.run(scenario()) == [26, 27, 28]


@pytest.mark.chaos
def test_tls_server_restart_mid_traffic(
    drr_redis_factory, drr_tls_material: TLSMaterial, make_manager: MakeManager
) -> None:
    server = drr_redis_factory(tls=drr_tls_material)
    manager = make_manager(
        server.url,
        pool_kwargs=_ca(drr_tls_material),
        retry={"attempts": 2},
        breaker={"failure_threshold": 3, "recovery_timeout": 0.05, "max_recovery_timeout": 0.2},
    )
    fill_pool(manager.primary.client, 10)
    stop = threading.Event()
    outcomes: list[tuple[float, str]] = []  # (when the call started, how it ended)

    def traffic() -> None:
        while not stop.is_set():
            started = time.monotonic()
            try:
                manager.execute(lambda c: c.set("t", "v"))
                outcomes.append((started, "ok"))
            except RedisUnavailable as exc:
                outcomes.append((started, exc.kind.label if exc.kind else "?"))

    worker = threading.Thread(target=traffic)
    worker.start()
    try:
        assert wait_for(lambda: len(outcomes) > 20)
        server.restart()
        assert wait_for(lambda: manager.primary.breaker.closed, timeout=5)
        back = time.monotonic()  # the server is up and the breaker closed
        assert wait_for(lambda: sum(1 for t, _ in outcomes if t > back) > 50)
    finally:
        stop.set()
        worker.join()
    # While the server was down callers were refused; a call that started once it was
    # back never failed because the pool held dead TLS connections.
    assert {o for t, o in outcomes if t <= back} <= {"ok", "refused", "breaker_open", "reset"}
    assert {o for t, o in outcomes if t > back} == {"ok"}


def test_acl_user_with_limited_permissions(drr_redis_factory, make_manager: MakeManager) -> None:
    rule = acl_user("app", "app-secret", commands="+get +set +ping", keys="~app:*")
    server = drr_redis_factory(users=[rule])
    manager = make_manager(f"redis://app:app-secret@127.0.0.1:{server.port}/0")
    assert manager.execute(lambda c: c.set("app:x", "1")) is True
    assert manager.execute(lambda c: c.get("app:x")) == b"1"
    with pytest.raises(redis.exceptions.NoPermissionError):
        manager.execute(lambda c: c.set("other:x", "1"))
    with pytest.raises(redis.exceptions.NoPermissionError):
        manager.execute(lambda c: c.flushall())
    assert manager.primary.breaker.state is BreakerState.CLOSED


def test_acl_user_with_wrong_password(
    drr_redis_factory, make_manager: MakeManager, caplog: pytest.LogCaptureFixture
) -> None:
    server = drr_redis_factory(users=[acl_user("app", "app-secret")])
    manager = make_manager(
        f"redis://127.0.0.1:{server.port}/0", username="app", password="not-the-secret"
    )
    caplog.set_level(logging.INFO, logger="django_redis_resilience")
    with pytest.raises(RedisAuthenticationError):
        manager.execute(lambda c: c.ping())
    assert "not-the-secret" not in caplog.text
    assert any(r.levelno == logging.ERROR for r in caplog.records)


def test_tls_connections_share_one_context(
    drr_tls_server: RedisServer, drr_tls_material: TLSMaterial, make_manager: MakeManager
) -> None:
    """A context per connection reloads the CA bundle on every connect (tens of ms of CPU)."""
    manager = make_manager(drr_tls_server.url, pool_kwargs=_ca(drr_tls_material))
    pool = manager.primary.client.connection_pool
    held = [checkout(pool) for _ in range(5)]
    try:
        contexts = {id(conn._sock.context) for conn in held}
    finally:
        for conn in held:
            pool.release(conn)
    assert len(contexts) == 1

    async def async_contexts() -> set[int]:
        await asyncio.gather(*(manager.aexecute(lambda c: c.ping()) for _ in range(5)))
        apool = manager.primary.async_client().connection_pool
        return {id(c.ssl_context.get()) for c in apool._available_connections}

    assert len(asyncio.run(async_contexts())) == 1


@pytest.mark.chaos
def test_tls_through_proxy_reset_uses_fresh_connections(
    drr_tls_server: RedisServer,
    drr_tls_material: TLSMaterial,
    drr_proxy_factory,
    make_manager: MakeManager,
) -> None:
    proxy = drr_proxy_factory(drr_tls_server)
    manager = make_manager(
        proxy.url(scheme="rediss"), pool_kwargs=_ca(drr_tls_material), retry={"attempts": 2}
    )
    fill_pool(manager.primary.client, 20)
    before = proxy.total_connections
    assert proxy.reset_all() >= 20
    for _ in range(25):
        manager.execute(lambda c: c.incr("tls:proxy"), idempotent=False)
    assert proxy.total_connections > before
    assert manager.primary.breaker.state is BreakerState.CLOSED


# --- Sentinel over TLS -----------------------------------------------------------------------


def test_tls_sentinels_are_spoken_to_over_tls_and_verified(
    drr_sentinel_factory, drr_tls_material: TLSMaterial, make_manager: MakeManager
) -> None:
    """``rediss+sentinel://``: the Sentinels listen only with TLS, so a manager that asked
    them in plain text would find no primary; with the wrong CA nothing is trusted."""
    group = drr_sentinel_factory(tls=drr_tls_material)
    assert group.location.startswith("rediss+sentinel://")
    manager = make_manager(group.location, pool_kwargs=_ca(drr_tls_material))
    assert manager.execute(lambda c: c.set("tls-sentinel:k", "v")) is True

    async def read() -> object:
        return await manager.aexecute(lambda c: c.get("tls-sentinel:k"))

    assert asyncio.run(read()) == b"v"
    with group.current_primary().client() as client:
        assert client.get("tls-sentinel:k") == b"v"

    untrusting = make_manager(
        group.location, pool_kwargs=_ca(drr_tls_material, other=True), alias="untrusting"
    )
    with pytest.raises(RedisUnavailable) as info:
        untrusting.execute(lambda c: c.ping())
    # The Sentinels' certificates are not trusted, so no Sentinel names a primary.
    assert "master_not_found" in str(info.value)


def test_the_health_report_probes_tls_sentinels_over_tls(
    drr_sentinel_factory, drr_tls_material: TLSMaterial
) -> None:
    from django.test import override_settings

    from django_redis_resilience.health import build_report
    from tests.cache.conftest import resilient_caches

    group = drr_sentinel_factory(tls=drr_tls_material)
    caches = resilient_caches(
        group.location, CONNECTION_POOL_KWARGS={"ssl_ca_certs": str(drr_tls_material.ca_file)}
    )
    with override_settings(CACHES=caches):
        report = build_report(timeout=2.0)
    [cache] = report.caches
    sentinels = [n for n in cache.nodes if n.kind == "sentinel"]
    assert len(sentinels) == 3
    assert all(n.reachable for n in sentinels), [(n.address, n.error) for n in sentinels]
    assert all(n.reachable for n in cache.nodes)
