"""The Sentinel harness against real Sentinels: discovery, replication, failovers, cleanup."""

from __future__ import annotations

import contextlib
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from redis.sentinel import Sentinel

from django_redis_resilience.testing import (
    HarnessError,
    RedisServer,
    SentinelGroup,
    SentinelGroupFactory,
)


def _key() -> str:
    return f"harness:sentinel:{uuid.uuid4().hex}"


@contextlib.contextmanager
def _sentinel(group: SentinelGroup) -> Iterator[Sentinel]:
    """redis-py's own Sentinel client, as an application would use it; closed afterwards."""
    manager = Sentinel(
        group.sentinel_addresses,
        socket_timeout=1.0,
        password=group.password,  # for the data nodes; the Sentinels have none
        # redis-py's default retries back off for seconds on a dead Sentinel.
        sentinel_kwargs={"socket_timeout": 1.0, "retry": Retry(NoBackoff(), 0)},
    )
    try:
        yield manager
    finally:
        for client in manager.sentinels:
            client.close()


@contextlib.contextmanager
def _role(
    manager: Sentinel, group: SentinelGroup, *, replica: bool = False
) -> Iterator[redis.Redis]:
    client = (manager.slave_for if replica else manager.master_for)(group.service_name)
    try:
        yield client
    finally:
        client.connection_pool.disconnect()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return True
    return state not in ("Z", "X")


# --- shared group ---------------------------------------------------------------------


def test_every_sentinel_sees_the_whole_group(drr_sentinel_group: SentinelGroup) -> None:
    group = drr_sentinel_group
    ports = [port for _, port in group.sentinel_addresses]
    assert group.location == (
        f"redis+sentinel://{','.join(f'127.0.0.1:{p}' for p in ports)}/mymaster/0"
    )
    assert len(group.sentinels) == 3
    assert group.current_primary() is group.primary is group.data_nodes[0]
    assert group.replicas == group.data_nodes[1:]
    for sentinel in group.sentinels:
        assert "sentinel myid" in sentinel.config_path.read_text()  # rewritten by Sentinel
        with sentinel.client(decode_responses=True) as client:
            master = client.sentinel_master("mymaster")
        assert (master["port"], master["num-slaves"], master["num-other-sentinels"]) == (
            group.primary.port,
            1,
            2,
        )


def test_master_for_writes_and_slave_for_reads_replicated_data(
    drr_sentinel_group: SentinelGroup,
) -> None:
    group = drr_sentinel_group
    key = _key()
    with _sentinel(group) as manager:
        assert manager.discover_master("mymaster") == ("127.0.0.1", group.primary.port)
        with _role(manager, group) as primary:
            assert primary.set(key, b"v") is True
            assert primary.get(key) == b"v"
            assert primary.wait(1, 2000) == 1
        with _role(manager, group, replica=True) as replica:
            assert replica.get(key) == b"v"
            assert replica.info("replication")["role"] == "slave"
            with pytest.raises(redis.ReadOnlyError):
                replica.set(key, b"no")
    with group.primary.client() as client:
        client.delete(key)


def test_invalid_arguments_are_rejected_before_anything_starts() -> None:
    with pytest.raises(ValueError, match="quorum"):
        SentinelGroup(sentinels=1, quorum=2)
    with pytest.raises(ValueError, match="replica"):
        SentinelGroup(replicas=0)
    with pytest.raises(ValueError, match="service_name"):
        SentinelGroup(service_name="my master")
    with pytest.raises(HarnessError, match="start"):
        _ = SentinelGroup().primary


# --- chaos ------------------------------------------------------------------------------


@pytest.mark.chaos
def test_killed_primary_is_replaced_even_with_one_sentinel_down(
    drr_sentinel_factory: SentinelGroupFactory,
) -> None:
    group = drr_sentinel_factory()
    old, (replica,) = group.primary, group.replicas
    with old.client() as client:
        client.set("before", b"1")
        assert client.wait(1, 2000) == 1
    group.sentinels[0].kill()  # two of three still make a quorum and a majority

    old.kill()
    started = time.monotonic()
    new = group.wait_for_failover(old, timeout=20)
    assert time.monotonic() - started < 15  # down-after 1 s, failover-timeout 3 s

    assert new is replica
    assert group.primary is new
    assert group.replicas == [old]
    with _sentinel(group) as manager, _role(manager, group) as primary:
        assert primary.get("before") == b"1"
        assert primary.set("after", b"2") is True
        assert int(primary.info("server")["tcp_port"]) == new.port


@pytest.mark.chaos
def test_failover_with_password_promotes_a_replica_and_stop_leaves_nothing(
    drr_sentinel_factory: SentinelGroupFactory,
) -> None:
    group = drr_sentinel_factory(password="s3cr:t@/x", replicas=2, service_name="cache")
    assert group.location.startswith("redis+sentinel://:s3cr%3At%40%2Fx@127.0.0.1:")
    assert group.location.endswith("/cache/0")
    old = group.primary
    with group.sentinels[0].client(decode_responses=True) as client:
        assert client.sentinel_master("cache")["num-slaves"] == 2

    new = group.failover()

    assert new is not old
    assert new in group.data_nodes
    assert group.current_primary() is new
    (other,) = [n for n in group.data_nodes if n not in (old, new)]
    with other.client() as client:
        assert client.info("replication")["master_port"] == new.port  # already re-pointed
    with _sentinel(group) as manager, _role(manager, group) as primary:
        assert primary.set("k", b"v") is True
    with new.client(password=None) as client, pytest.raises(redis.AuthenticationError):
        client.ping()

    servers: list[RedisServer] = [*group.data_nodes, *group.sentinels]
    pids = [server.pid for server in servers]
    directories = [server.directory for server in servers]
    group.stop()
    assert all(pid is not None and not _alive(pid) for pid in pids)
    assert not any(directory.exists() for directory in directories)
    assert not any(server.is_running() for server in servers)
