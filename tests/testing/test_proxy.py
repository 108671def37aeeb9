"""The fault-injecting proxy, with a real redis-server behind it."""

from __future__ import annotations

import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from django_redis_resilience.testing import (
    FaultProxy,
    FaultProxyFactory,
    HarnessError,
    RedisServer,
    RedisServerFactory,
)

_PING = b"*1\r\n$4\r\nPING\r\n"  # 14 bytes; the reply "+PONG\r\n" is 7


def _key() -> str:
    return f"proxy:{uuid.uuid4().hex}"


def _client(proxy: FaultProxy, **kwargs: Any) -> redis.Redis:
    """A client through the proxy that shows every failure: no retries, short timeouts."""
    options: dict[str, Any] = {
        "socket_timeout": 1.0,
        "socket_connect_timeout": 1.0,
        "retry": Retry(NoBackoff(), 0),
    }
    options.update(kwargs)
    return redis.Redis.from_url(proxy.url(), **options)


def _wait_for(condition: Callable[[], bool], timeout: float = 3.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return condition()


def _thread_names() -> set[str]:
    return {thread.name for thread in threading.enumerate()}


def _read_to_end(sock: socket.socket) -> tuple[bytes, OSError | None]:
    """Everything received until EOF (error ``None``) or until a socket error."""
    received = b""
    try:
        while chunk := sock.recv(1024):
            received += chunk
    except OSError as exc:
        return received, exc
    return received, None


@pytest.fixture
def proxy(drr_redis_server: RedisServer, drr_proxy_factory: FaultProxyFactory) -> FaultProxy:
    return drr_proxy_factory(drr_redis_server)


@pytest.fixture
def raw(proxy: FaultProxy) -> Iterator[socket.socket]:
    """A plain socket through the proxy, once the proxy has accepted it."""
    accepted = proxy.total_connections
    with socket.create_connection((proxy.host, proxy.port), timeout=1) as sock:
        assert _wait_for(lambda: proxy.total_connections > accepted)
        yield sock


# --- pass-through ---------------------------------------------------------------------


def test_pass_through_and_connection_counters(
    proxy: FaultProxy, drr_redis_server: RedisServer
) -> None:
    assert proxy.url() == f"redis://127.0.0.1:{proxy.port}/0"
    assert proxy.port != drr_redis_server.port
    assert (proxy.connection_count, proxy.total_connections) == (0, 0)
    key = _key()
    with _client(proxy) as first, _client(proxy, single_connection_client=True) as second:
        assert first.set(key, b"through") is True
        assert second.get(key) == b"through"
        assert first.delete(key) == 1
        assert (proxy.connection_count, proxy.total_connections) == (2, 2)
    assert _wait_for(lambda: proxy.connection_count == 0)
    assert proxy.total_connections == 2


def test_url_options(proxy: FaultProxy) -> None:
    assert proxy.url(scheme="rediss", db=3, password="p:w@/") == (
        f"rediss://:p%3Aw%40%2F@127.0.0.1:{proxy.port}/3"
    )


def test_factory_takes_a_server_or_a_host_and_port(
    drr_redis_server: RedisServer, drr_proxy_factory: FaultProxyFactory
) -> None:
    proxy = drr_proxy_factory(drr_redis_server.host, drr_redis_server.port)
    assert proxy.target == (drr_redis_server.host, drr_redis_server.port)
    with _client(proxy) as client:
        assert client.ping() is True
    with pytest.raises(TypeError):
        drr_proxy_factory(drr_redis_server.host)
    with pytest.raises(TypeError):
        drr_proxy_factory(drr_redis_server, drr_redis_server.port)


def test_invalid_fault_settings_are_rejected(proxy: FaultProxy) -> None:
    with pytest.raises(ValueError):
        proxy.set_latency(-1)
    with pytest.raises(ValueError):
        proxy.set_bandwidth(0)
    with pytest.raises(ValueError):
        proxy.close_after(-1)


def test_half_close_is_passed_on(raw: socket.socket) -> None:
    """A client's FIN reaches Redis, which answers what it got and closes: the proxy passes
    that FIN back."""
    raw.sendall(_PING)
    raw.shutdown(socket.SHUT_WR)
    assert _read_to_end(raw) == (b"+PONG\r\n", None)


# --- faults -----------------------------------------------------------------------------


@pytest.mark.chaos
def test_latency_times_out_short_timeouts_and_heal_restores(proxy: FaultProxy) -> None:
    with _client(proxy, socket_timeout=0.1) as client, _client(proxy, socket_timeout=5) as patient:
        assert client.ping() is True  # an open connection, slowed down below
        assert patient.ping() is True
        proxy.set_latency(0.3)
        with pytest.raises(redis.TimeoutError):
            client.ping()
        started = time.monotonic()
        assert patient.ping() is True
        assert time.monotonic() - started >= 0.55  # 0.3 s each way: a lower bound
        proxy.heal()
        assert client.ping() is True


@pytest.mark.chaos
def test_bandwidth_limit_slows_a_large_reply(
    proxy: FaultProxy, drr_redis_server: RedisServer
) -> None:
    key, value = _key(), b"x" * 65536
    with drr_redis_server.client() as direct:
        direct.set(key, value)
    try:
        with _client(proxy, socket_timeout=20) as client:
            started = time.monotonic()
            assert client.get(key) == value
            unthrottled = time.monotonic() - started
            proxy.set_bandwidth(32 * 1024)
            started = time.monotonic()
            assert client.get(key) == value
            throttled = time.monotonic() - started
            # 64 KiB at 32 KiB/s takes 2 s whatever the machine does; only a lower bound.
            assert throttled >= 1.0
            assert throttled > unthrottled
            proxy.set_bandwidth(None)
            assert client.ping() is True
    finally:
        with drr_redis_server.client() as direct:
            direct.delete(key)


@pytest.mark.chaos
def test_blackhole_accepts_but_never_answers_and_heal_restores(proxy: FaultProxy) -> None:
    with (
        _client(proxy, socket_timeout=0.2, single_connection_client=True) as existing,
        _client(proxy, socket_timeout=0.2) as fresh,
    ):
        assert existing.ping() is True
        proxy.blackhole()
        with socket.create_connection((proxy.host, proxy.port), timeout=1) as sock:
            sock.settimeout(0.2)
            sock.sendall(_PING)
            with pytest.raises(socket.timeout):
                sock.recv(1024)
        with pytest.raises(redis.TimeoutError):
            fresh.ping()
        with pytest.raises(redis.TimeoutError):
            existing.ping()
        assert proxy.connection_count >= 2  # nothing is closed
        proxy.heal()
        assert existing.ping() is True
        assert fresh.ping() is True


@pytest.mark.chaos
def test_reset_all_resets_open_connections(proxy: FaultProxy, raw: socket.socket) -> None:
    with _client(proxy, single_connection_client=True) as client:
        assert client.ping() is True
        assert proxy.reset_all() >= 2
        assert proxy.connection_count == 0
        with pytest.raises(redis.ConnectionError):
            client.ping()
        with pytest.raises(ConnectionResetError):
            raw.recv(1024)
        assert client.ping() is True  # a new connection: the proxy still listens


@pytest.mark.chaos
def test_close_after_cuts_a_large_reply(proxy: FaultProxy, drr_redis_server: RedisServer) -> None:
    key = _key()
    with drr_redis_server.client() as direct:
        direct.set(key, b"y" * 1000)
    try:
        with _client(proxy, single_connection_client=True) as client:
            assert client.ping() is True  # connected: the handshake does not count
            proxy.close_after(200)
            assert client.ping() is True  # 21 bytes
            with pytest.raises(redis.ConnectionError):
                client.get(key)
            proxy.heal()
            assert client.get(key) == b"y" * 1000
    finally:
        with drr_redis_server.client() as direct:
            direct.delete(key)


@pytest.mark.chaos
def test_close_after_forwards_exactly_n_bytes_then_resets(
    proxy: FaultProxy, raw: socket.socket
) -> None:
    proxy.close_after(len(_PING) + 4)
    raw.sendall(_PING)
    received, error = _read_to_end(raw)
    assert received == b"+PON"  # the 4 bytes left of the budget arrive before the RST
    assert isinstance(error, ConnectionResetError)
    assert _wait_for(lambda: proxy.connection_count == 0)


@pytest.mark.chaos
def test_refuse_refuses_new_connections_only_and_heal_listens_again(proxy: FaultProxy) -> None:
    port = proxy.port
    with _client(proxy, single_connection_client=True) as existing:
        assert existing.ping() is True
        proxy.refuse()
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection((proxy.host, port), timeout=1).close()
        with _client(proxy, socket_connect_timeout=5) as fresh:
            started = time.monotonic()
            with pytest.raises(redis.ConnectionError):
                fresh.ping()
            assert time.monotonic() - started < 4  # refused, not timed out
        assert existing.ping() is True  # open connections are untouched
        proxy.heal()  # listens again on the port an open connection still uses
        assert proxy.port == port
        with _client(proxy) as fresh:
            assert fresh.ping() is True
        assert existing.ping() is True


def test_retarget_moves_new_connections_only(
    proxy: FaultProxy, drr_redis_factory: RedisServerFactory
) -> None:
    """Like a DNS name repointed: pooled connections keep the old server."""
    other = drr_redis_factory()
    with other.client() as direct:
        direct.set("where", b"other")
    with _client(proxy, single_connection_client=True) as existing:
        existing.set("where", b"first")
        proxy.retarget(other.host, other.port)
        assert proxy.target == (other.host, other.port)
        with _client(proxy) as fresh:
            assert fresh.get("where") == b"other"
        assert existing.get("where") == b"first"
        proxy.heal()  # not a fault: the target stays
        with _client(proxy) as fresh:
            assert fresh.get("where") == b"other"
    with pytest.raises(HarnessError, match="cannot resolve"):
        proxy.retarget("no-such-host.invalid", 1)
    assert proxy.target == (other.host, other.port)


@pytest.mark.chaos
def test_faults_combine_and_heal_clears_them_all(proxy: FaultProxy) -> None:
    with _client(proxy, socket_timeout=5) as client:
        proxy.set_latency(0.05)
        proxy.set_bandwidth(1024 * 1024)
        proxy.close_after(10_000)
        assert client.ping() is True
        proxy.blackhole()
        proxy.refuse()
        proxy.heal()
        assert client.ping() is True
        with _client(proxy) as other:
            assert other.ping() is True


# --- lifecycle --------------------------------------------------------------------------


def test_stop_closes_everything_and_ends_the_thread(drr_redis_server: RedisServer) -> None:
    proxy = FaultProxy(drr_redis_server.host, drr_redis_server.port).start()
    port = proxy.port
    assert f"drr-proxy-{port}" in _thread_names()
    with (
        _client(proxy, single_connection_client=True) as client,
        socket.create_connection((proxy.host, port), timeout=1) as held,
    ):
        assert client.ping() is True
        proxy.set_latency(10)  # stop() must not wait for data held back
        proxy.blackhole()
        started = time.monotonic()
        proxy.stop()
        assert time.monotonic() - started < 2
        assert f"drr-proxy-{port}" not in _thread_names()
        assert not proxy.is_running()
        assert proxy.connection_count == 0
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        with pytest.raises(redis.ConnectionError):
            client.ping()
        held.settimeout(1)
        assert held.recv(1024) == b""  # closed, not left hanging
    proxy.stop()  # idempotent


def test_context_manager_and_restart(drr_redis_server: RedisServer) -> None:
    with FaultProxy(drr_redis_server.host, drr_redis_server.port) as proxy:
        name = f"drr-proxy-{proxy.port}"
        with _client(proxy) as client:
            assert client.ping() is True
    assert name not in _thread_names()
    with proxy, _client(proxy) as client:  # a new port unless one was given
        proxy.set_latency(0.01)  # waits on the new loop, not the stopped one
        assert client.ping() is True
        assert proxy.total_connections == 1
        name = f"drr-proxy-{proxy.port}"
    assert name not in _thread_names()


def test_proxy_in_front_of_a_tls_server(
    request: pytest.FixtureRequest, drr_proxy_factory: FaultProxyFactory
) -> None:
    """Bytes are forwarded, not parsed: TLS passes through and the certificate still
    matches, because the proxy listens on the same 127.0.0.1 as the server."""
    try:
        server: RedisServer = request.getfixturevalue("drr_tls_server")
    except pytest.FixtureLookupError:
        pytest.skip("this harness has no drr_tls_server fixture")
    proxy = drr_proxy_factory(server)
    options = server.tls_options
    with redis.Redis(
        host=proxy.host, port=proxy.port, socket_timeout=1, retry=Retry(NoBackoff(), 0), **options
    ) as client:
        assert client.ping() is True
    assert proxy.total_connections == 1
