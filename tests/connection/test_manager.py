"""ConnectionManager against real servers: retries, stale pools, breakers, replicas."""

from __future__ import annotations

import asyncio
import inspect
import logging
import threading
import time

import pytest
import redis

from django_redis_resilience.connection import BreakerState, ErrorKind
from django_redis_resilience.exceptions import (
    BreakerOpen,
    RedisAuthenticationError,
    RedisUnavailable,
)
from django_redis_resilience.testing import RedisServer
from tests._compat import fill_pool

from .conftest import MakeManager, wait_for

#: Connection kwargs that skip redis-py's CLIENT SETINFO handshake (name varies by version).
NO_HANDSHAKE = (
    (("driver_info", None),)
    if "driver_info" in inspect.signature(redis.connection.AbstractConnection.__init__).parameters
    else (("lib_name", None), ("lib_version", None))
)
FAST_BREAKER = {"failure_threshold": 2, "recovery_timeout": 0.1, "max_recovery_timeout": 0.3}


def _commandstat(server: RedisServer, command: str) -> int:
    with server.client() as client:
        stats = client.info("commandstats").get(f"cmdstat_{command}", {})
    return int(stats.get("calls", 0)) if isinstance(stats, dict) else 0


# --- commands and errors ------------------------------------------------------


def test_commands_round_trip(drr_redis_server: RedisServer, make_manager: MakeManager) -> None:
    manager = make_manager(drr_redis_server.url)
    assert manager.execute(lambda c: c.set("mgr:rt", b"v")) is True
    assert manager.execute(lambda c: c.get("mgr:rt"), write=False) == b"v"
    assert manager.execute_command("GET", "mgr:rt") == b"v"


def test_server_errors_are_raised_unchanged_and_do_not_trip(
    drr_redis_server: RedisServer, make_manager: MakeManager
) -> None:
    manager = make_manager(drr_redis_server.url, breaker={"failure_threshold": 1})
    manager.execute(lambda c: c.set("mgr:str", "x"))
    for _ in range(3):
        with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
            manager.execute(lambda c: c.lpush("mgr:str", "y"))
    with pytest.raises(redis.ResponseError):
        manager.execute_command("NOSUCHCOMMAND")
    assert manager.primary.breaker.state is BreakerState.CLOSED


# --- stale pooled connections -------------------------------------------------


@pytest.mark.chaos
def test_client_kill_of_every_pooled_connection_never_fails_next_commands(
    drr_redis_factory, make_manager: MakeManager
) -> None:
    server = drr_redis_factory()
    manager = make_manager(server.url, retry={"attempts": 2})
    manager.execute(lambda c: c.set("k", 0))
    fill_pool(manager.primary.client, 20)
    assert server.kill_clients() >= 20
    for _ in range(25):
        assert manager.execute(lambda c: c.incr("k"), idempotent=False) is not None
    assert manager.execute(lambda c: c.get("k")) == b"25"
    assert manager.primary.breaker.state is BreakerState.CLOSED


@pytest.mark.chaos
def test_server_restart_never_fails_the_next_command(
    drr_redis_factory, make_manager: MakeManager
) -> None:
    server = drr_redis_factory()
    manager = make_manager(server.url, retry={"attempts": 2})
    fill_pool(manager.primary.client, 10)
    manager.execute(lambda c: c.set("k", "before"))
    server.restart(keep_data=False)
    assert manager.execute(lambda c: c.set("k", "after")) is True
    assert manager.execute(lambda c: c.get("k")) == b"after"


@pytest.mark.chaos
def test_async_client_kill_never_fails_next_commands(
    drr_redis_factory, make_manager: MakeManager
) -> None:
    server = drr_redis_factory()
    manager = make_manager(server.url, retry={"attempts": 2})

    async def scenario() -> list[object]:
        await asyncio.gather(*(manager.aexecute(lambda c: c.ping()) for _ in range(10)))
        server.kill_clients()
        return [await manager.aexecute(lambda c: c.incr("ak"), idempotent=False) for _ in range(5)]

    assert asyncio.run(scenario()) == [1, 2, 3, 4, 5]


# --- never apply twice ---------------------------------------------------------


@pytest.mark.chaos
@pytest.mark.parametrize(("idempotent", "expected"), [(False, b"1"), (True, b"3")])
def test_retry_after_lost_reply_only_for_idempotent_commands(
    drr_redis_factory, make_manager: MakeManager, idempotent: bool, expected: bytes
) -> None:
    """A timed-out INCR may have run: it is not sent again unless declared idempotent.

    The ``True`` case shows the test can fail: declaring INCR idempotent lets
    the retries apply it three times once the server resumes.
    """
    server = drr_redis_factory()
    manager = make_manager(
        server.url,
        socket_timeout=0.2,
        retry={"attempts": 3, "retry_on_timeout": True},
        breaker={"failure_threshold": 100},
        # No handshake on connect, so every retry's fresh connection really sends
        # the INCR into the stopped server's socket buffer.
        pool_kwargs=NO_HANDSHAKE,
    )
    manager.execute(lambda c: c.set("counter", 0))
    server.hang()
    try:
        with pytest.raises(RedisUnavailable) as info:
            manager.execute(lambda c: c.incr("counter"), idempotent=idempotent)
        assert info.value.kind is ErrorKind.TIMEOUT
    finally:
        server.resume()
    with server.client() as client:
        assert wait_for(lambda: client.get("counter") == expected, timeout=2)
        time.sleep(0.2)
        assert client.get("counter") == expected


@pytest.mark.chaos
def test_non_idempotent_command_is_retried_when_it_never_left(
    drr_redis_factory, make_manager: MakeManager
) -> None:
    server = drr_redis_factory()
    manager = make_manager(server.url, retry={"attempts": 3})
    manager.execute(lambda c: c.set("n", 0))
    fill_pool(manager.primary.client, 3)
    server.kill_clients()
    assert manager.execute(lambda c: c.incr("n"), idempotent=False) == 1
    with server.client() as client:
        assert client.get("n") == b"1"


# --- breaker ---------------------------------------------------------------------


@pytest.mark.chaos
def test_breaker_opens_fails_fast_and_recovers_in_background(
    drr_redis_factory, make_manager: MakeManager
) -> None:
    server = drr_redis_factory()
    manager = make_manager(server.url, breaker=FAST_BREAKER)
    breaker = manager.primary.breaker
    transitions: list[tuple[str, str, str]] = []
    breaker.add_listener(
        lambda b, old, new, err: transitions.append(
            (old.value, new.value, threading.current_thread().name)
        )
    )
    manager.execute(lambda c: c.set("k", "v"))
    server.kill()
    for _ in range(2):
        with pytest.raises(RedisUnavailable) as info:
            manager.execute(lambda c: c.get("k"))
        assert info.value.kind is ErrorKind.REFUSED
    assert breaker.state is BreakerState.OPEN
    with pytest.raises(BreakerOpen):
        manager.execute(lambda c: c.get("k"))

    # Probes fail in the background while the server is down; callers never wait.
    assert wait_for(lambda: any(new == "half_open" for _, new, _ in transitions))
    assert breaker.state in {BreakerState.OPEN, BreakerState.HALF_OPEN}

    server.restart(keep_data=False)
    assert wait_for(lambda: breaker.state is BreakerState.CLOSED, timeout=5)
    assert manager.execute(lambda c: c.set("k", "again")) is True
    assert transitions[0][:2] == ("closed", "open")
    assert transitions[-1][1] == "closed"
    probe_threads = {thread for old, _, thread in transitions if old != "closed"}
    assert probe_threads == {"drr-background"}
    assert breaker.last_outage_seconds is not None
    assert breaker.last_outage_seconds > 0


@pytest.mark.chaos
def test_hung_server_opens_breaker_after_bounded_timeouts(
    drr_redis_factory, make_manager: MakeManager
) -> None:
    server = drr_redis_factory()
    manager = make_manager(server.url, socket_timeout=0.1, breaker=FAST_BREAKER)
    manager.execute(lambda c: c.ping())
    server.hang()
    try:
        kinds = []
        for _ in range(5):
            with pytest.raises(RedisUnavailable) as info:
                manager.execute(lambda c: c.get("k"))
            kinds.append(info.value.kind)
        # Two timeouts (threshold), then refusals without any network I/O.
        assert kinds == [ErrorKind.TIMEOUT] * 2 + [ErrorKind.BREAKER_OPEN] * 3
    finally:
        server.resume()
    assert wait_for(lambda: manager.primary.breaker.closed, timeout=5)


@pytest.mark.chaos
def test_before_close_hook_runs_before_closing_and_can_keep_it_open(
    drr_redis_factory, make_manager: MakeManager
) -> None:
    server = drr_redis_factory()
    manager = make_manager(server.url, breaker=FAST_BREAKER)
    breaker = manager.primary.breaker
    calls: list[BreakerState] = []
    failures = [1]

    def hook() -> int:
        calls.append(breaker.state)
        # Still refusing callers while the hook runs: nothing reads around it.
        assert not breaker.allow()
        if failures[0]:
            failures[0] -= 1
            raise RuntimeError("journal drain failed")
        return 7

    breaker.add_before_close(hook)
    server.kill()
    for _ in range(2):
        with pytest.raises(RedisUnavailable):
            manager.execute(lambda c: c.ping())
    server.restart()
    assert wait_for(lambda: breaker.closed, timeout=5)
    assert len(calls) == 2  # first attempt raised and kept it open
    assert all(state is BreakerState.HALF_OPEN for state in calls)
    assert breaker.last_recovered_count == 7


@pytest.mark.chaos
def test_breaker_is_shared_by_sync_and_async_callers(
    drr_redis_factory, make_manager: MakeManager
) -> None:
    server = drr_redis_factory()
    manager = make_manager(server.url, breaker={**FAST_BREAKER, "recovery_timeout": 30})
    server.kill()

    async def fail_twice() -> None:
        for _ in range(2):
            with pytest.raises(RedisUnavailable):
                await manager.aexecute(lambda c: c.ping())

    asyncio.run(fail_twice())
    with pytest.raises(BreakerOpen):
        manager.execute(lambda c: c.ping())


# --- replicas ------------------------------------------------------------------------


def test_reads_go_to_replica_and_writes_to_primary(
    drr_replica_group, make_manager: MakeManager
) -> None:
    group = drr_replica_group
    manager = make_manager(group.location)
    manager.execute(lambda c: c.set("rep:k", "v"))
    with group.replicas[0].client() as replica_client:
        assert wait_for(lambda: replica_client.get("rep:k") == b"v")
    before_primary = _commandstat(group.primary, "get")
    before_replica = _commandstat(group.replicas[0], "get")
    for _ in range(10):
        assert manager.execute(lambda c: c.get("rep:k"), write=False) == b"v"
    assert _commandstat(group.replicas[0], "get") - before_replica == 10
    assert _commandstat(group.primary, "get") - before_primary == 0


@pytest.mark.chaos
def test_dead_replica_sends_reads_to_primary(
    drr_replica_group_factory, make_manager: MakeManager
) -> None:
    group = drr_replica_group_factory()
    manager = make_manager(group.location, breaker=FAST_BREAKER)
    manager.execute(lambda c: c.set("k", "v"))
    group.replicas[0].kill()
    before = _commandstat(group.primary, "get")
    for _ in range(6):
        assert manager.execute(lambda c: c.get("k"), write=False) == b"v"
    assert _commandstat(group.primary, "get") - before == 6
    assert manager.replicas[0].breaker.state is not BreakerState.CLOSED
    assert manager.primary.breaker.state is BreakerState.CLOSED


# --- secrets -------------------------------------------------------------------------


@pytest.mark.chaos
def test_wrong_password_is_an_auth_error_logged_at_error_and_masked(
    drr_redis_factory, make_manager: MakeManager, caplog: pytest.LogCaptureFixture
) -> None:
    server = drr_redis_factory(password="right-secret")
    url = f"redis://:wrong-secret@127.0.0.1:{server.port}/0"
    manager = make_manager(url, breaker={"failure_threshold": 5, "recovery_timeout": 30})
    caplog.set_level(logging.INFO, logger="django_redis_resilience")
    with pytest.raises(RedisAuthenticationError) as info:
        manager.execute(lambda c: c.ping())
    assert info.value.kind is ErrorKind.AUTH
    # One wrong password is enough: it opens the breaker and says so at ERROR.
    assert manager.primary.breaker.state is BreakerState.OPEN
    shown = " ".join([str(info.value), repr(manager), repr(manager.primary), caplog.text])
    assert "wrong-secret" not in shown
    assert "***" in repr(manager.primary)
    assert any(r.levelno == logging.ERROR for r in caplog.records)


# --- unix sockets ----------------------------------------------------------------------


def test_unix_socket_sync_and_async(drr_redis_factory, make_manager: MakeManager) -> None:
    server = drr_redis_factory(unix_socket=True)
    manager = make_manager(f"unix://{server.unix_socket}?db=2")
    assert manager.execute(lambda c: c.set("unix:k", "v")) is True
    with server.client() as client:
        assert client.execute_command("SELECT", 2) in (b"OK", "OK", True)
        assert client.get("unix:k") == b"v"

    async def read() -> object:
        return await manager.aexecute(lambda c: c.get("unix:k"))

    assert asyncio.run(read()) == b"v"


@pytest.mark.chaos
def test_unix_socket_restart_never_fails_the_next_command(
    drr_redis_factory, make_manager: MakeManager
) -> None:
    server = drr_redis_factory(unix_socket=True)
    manager = make_manager(f"unix://{server.unix_socket}")
    fill_pool(manager.primary.client, 5)
    server.restart()
    assert manager.execute(lambda c: c.incr("u"), idempotent=False) == 1
