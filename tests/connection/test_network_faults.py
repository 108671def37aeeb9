"""Network faults through the fault-injecting proxy: slow, black-holed and reset links."""

from __future__ import annotations

import asyncio

import pytest

from django_redis_resilience.connection import BreakerState, ErrorKind
from django_redis_resilience.exceptions import RedisUnavailable
from tests._compat import checkout

from .conftest import UNBROKEN, MakeManager, wait_for

pytestmark = pytest.mark.chaos

BREAKER = {"failure_threshold": 2, "recovery_timeout": 0.1, "max_recovery_timeout": 0.3}


def _kinds(manager, calls: int) -> list[ErrorKind | None]:
    kinds: list[ErrorKind | None] = []
    for _ in range(calls):
        try:
            manager.execute(lambda c: c.get("k"))
        except RedisUnavailable as exc:
            kinds.append(exc.kind)
        else:
            kinds.append(None)
    return kinds


def test_latency_above_socket_timeout_opens_the_breaker(
    drr_redis_server, drr_proxy_factory, make_manager: MakeManager
) -> None:
    proxy = drr_proxy_factory(drr_redis_server)
    manager = make_manager(proxy.url(), socket_timeout=0.1, breaker=BREAKER)
    assert manager.execute(lambda c: c.ping()) is True
    proxy.set_latency(0.4)
    # Each caller waits at most one socket timeout, and only until the breaker
    # opens; after that nothing goes to the network at all.
    assert _kinds(manager, 6) == [ErrorKind.TIMEOUT] * 2 + [ErrorKind.BREAKER_OPEN] * 4
    proxy.heal()
    assert wait_for(lambda: manager.primary.breaker.state is BreakerState.CLOSED, timeout=5)
    assert manager.execute(lambda c: c.ping()) is True


def test_blackhole_opens_the_breaker_and_recovers(
    drr_redis_server, drr_proxy_factory, make_manager: MakeManager
) -> None:
    proxy = drr_proxy_factory(drr_redis_server)
    manager = make_manager(proxy.url(), socket_timeout=0.1, breaker=BREAKER)
    assert manager.execute(lambda c: c.ping()) is True
    proxy.blackhole()
    assert _kinds(manager, 5) == [ErrorKind.TIMEOUT] * 2 + [ErrorKind.BREAKER_OPEN] * 3
    # While black-holed, background probes fail too: the breaker stays open.
    assert not wait_for(lambda: manager.primary.breaker.closed, timeout=0.6)
    proxy.heal()
    assert wait_for(lambda: manager.primary.breaker.closed, timeout=5)


def test_reset_connections_are_replaced_by_fresh_ones(
    drr_redis_server, drr_proxy_factory, make_manager: MakeManager
) -> None:
    proxy = drr_proxy_factory(drr_redis_server)
    # Resets, not stalls: generous timeouts keep a loaded machine's slow handshake through
    # the proxy from reading as a failure.
    manager = make_manager(proxy.url(), retry={"attempts": 2}, **UNBROKEN)
    pool = manager.primary.client.connection_pool
    held = [checkout(pool) for _ in range(20)]
    for conn in held:
        pool.release(conn)
    before = proxy.total_connections
    assert proxy.reset_all() >= 20
    for _ in range(30):
        assert manager.execute(lambda c: c.incr("proxy:reset"), idempotent=False) is not None
    assert proxy.total_connections > before
    assert manager.primary.breaker.state is BreakerState.CLOSED


def test_async_reset_connections_are_replaced(
    drr_redis_server, drr_proxy_factory, make_manager: MakeManager
) -> None:
    proxy = drr_proxy_factory(drr_redis_server)
    manager = make_manager(proxy.url(), retry={"attempts": 2}, **UNBROKEN)

    async def scenario() -> None:
        await asyncio.gather(*(manager.aexecute(lambda c: c.ping()) for _ in range(10)))
        assert proxy.reset_all() >= 1
        for _ in range(10):
            await manager.aexecute(lambda c: c.incr("proxy:areset"), idempotent=False)

    asyncio.run(scenario())


def test_refused_connections_fail_fast_and_recover(
    drr_redis_server, drr_proxy_factory, make_manager: MakeManager
) -> None:
    proxy = drr_proxy_factory(drr_redis_server)
    manager = make_manager(proxy.url(), breaker=BREAKER)
    assert manager.execute(lambda c: c.ping()) is True
    proxy.refuse()
    proxy.reset_all()
    assert _kinds(manager, 4) == [ErrorKind.REFUSED] * 2 + [ErrorKind.BREAKER_OPEN] * 2
    proxy.heal()
    assert wait_for(lambda: manager.primary.breaker.closed, timeout=5)
