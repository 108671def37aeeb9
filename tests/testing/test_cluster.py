"""The cluster harness against real cluster-mode servers: slots, routing, failures, recovery."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from redis.cluster import ClusterNode, RedisCluster
from redis.exceptions import ResponseError

from django_redis_resilience.testing import (
    ClusterGroup,
    ClusterGroupFactory,
    HarnessError,
    RedisServer,
)
from django_redis_resilience.testing._cluster import SLOTS


def _redirect_port(error: ResponseError) -> int:
    """The port a MOVED reply names: redis-py 8 parses it into ``MovedError`` on any
    client, redis-py 5 only on its cluster client (a plain ``ResponseError`` elsewhere)."""
    return int(str(error).rsplit(":", 1)[1])


def _prefix() -> str:
    return f"harness:cluster:{uuid.uuid4().hex}"


@contextlib.contextmanager
def _cluster_client(
    group: ClusterGroup, nodes: Sequence[RedisServer] | None = None
) -> Iterator[RedisCluster]:
    """redis-py's own cluster client, as an application would use it; closed afterwards."""
    seeds = [(n.host, n.port) for n in nodes] if nodes is not None else group.seeds
    client = RedisCluster(
        startup_nodes=[ClusterNode(host, port) for host, port in seeds],
        password=group.password,
        socket_timeout=1.0,
        socket_connect_timeout=1.0,
    )
    try:
        yield client
    finally:
        client.close()


def _keys_on(group: ClusterGroup, node: RedisServer, count: int = 3) -> list[str]:
    """Fresh keys whose slots ``node`` serves."""
    keys: list[str] = []
    prefix = _prefix()
    index = 0
    while len(keys) < count:
        key = f"{prefix}:{index}"
        index += 1
        if group.node_for_key(key) is node:
            keys.append(key)
    return keys


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


# --- shared cluster -----------------------------------------------------------------------


def test_slots_cover_the_whole_keyspace_exactly_once(drr_cluster: ClusterGroup) -> None:
    group = drr_cluster
    assert len(group.masters) == 3
    assert group.nodes == group.masters
    assert group.location == "redis+cluster://" + ",".join(
        f"127.0.0.1:{node.port}" for node in group.masters
    )
    ranges = sorted(r for master in group.masters for r in group.slots_of(master))
    expected_start = 0
    for start, end in ranges:
        assert start == expected_start
        assert end >= start
        expected_start = end + 1
    assert expected_start == SLOTS
    for node in group.nodes:
        info = group.cluster_info(node)
        assert (info["cluster_state"], info["cluster_known_nodes"]) == ("ok", "3")
        assert info["cluster_slots_assigned"] == str(SLOTS)
        assert group.replicas_of(node) == []
    assert len({group.node_id(node) for node in group.nodes}) == 3


def test_cluster_client_spreads_keys_over_all_masters_where_node_for_key_says(
    drr_cluster: ClusterGroup,
) -> None:
    group = drr_cluster
    keys = [f"{_prefix()}:{i}" for i in range(60)]
    with _cluster_client(group) as client:
        for key in keys:
            assert client.set(key, key.encode()) is True
        assert [client.get(key) for key in keys] == [key.encode() for key in keys]
    for master in group.masters:
        with master.client() as client:
            assert client.dbsize() > 0
    for key in keys:
        owner = group.node_for_key(key)
        with owner.client() as client:
            assert client.get(key) == key.encode()
        other = next(node for node in group.masters if node is not owner)
        with other.client() as client, pytest.raises(ResponseError) as moved:
            client.get(key)
        assert _redirect_port(moved.value) == owner.port
    with _cluster_client(group) as client:
        client.delete(*keys[:1])
        for key in keys[1:]:
            client.delete(key)


def test_node_for_key_honours_hash_tags(drr_cluster: ClusterGroup) -> None:
    group = drr_cluster
    tag = uuid.uuid4().hex
    owners = {group.node_for_key(f"{{{tag}}}:{i}") for i in range(20)}
    assert len(owners) == 1
    assert group.node_for_key(b"{" + tag.encode() + b"}") in owners


def test_invalid_arguments_are_rejected_before_anything_starts() -> None:
    with pytest.raises(ValueError, match="masters"):
        ClusterGroup(masters=0)
    with pytest.raises(ValueError, match="replicas"):
        ClusterGroup(replicas=-1)
    with pytest.raises(HarnessError, match="start"):
        _ = ClusterGroup().seeds


# --- chaos ----------------------------------------------------------------------------------


@pytest.mark.chaos
def test_killed_master_is_replaced_by_its_replica_and_rejoins_as_replica(
    drr_cluster_factory: ClusterGroupFactory,
) -> None:
    group = drr_cluster_factory(replicas=1)
    assert len(group.nodes) == 6
    master = group.masters[0]
    (replica,) = group.replicas_of(master)
    slots = group.slots_of(master)
    keys = _keys_on(group, master)
    with master.client() as client:
        for key in keys:
            client.set(key, b"v")
        assert client.wait(1, 2000) == 1

    master.kill()
    promoted = group.wait_for_promotion(master, timeout=20)

    assert promoted is replica
    assert group.slots_of(replica) == slots
    assert master not in group.masters
    with _cluster_client(group, [replica]) as client:
        assert [client.get(key) for key in keys] == [b"v"] * len(keys)
        assert client.set(keys[0], b"new") is True

    master.restart()  # nodes.conf is kept: it rejoins, learns it lost, follows the winner
    group.wait_for_ok(timeout=20)
    assert group.replicas_of(replica) == [master]
    assert group.cluster_info(master)["cluster_state"] == "ok"


@pytest.mark.chaos
def test_manual_failover_swaps_roles_without_losing_writes_and_stop_leaves_nothing(
    drr_cluster_factory: ClusterGroupFactory,
) -> None:
    group = drr_cluster_factory(replicas=1, masters=2, password="pw")
    assert group.location.startswith("redis+cluster://:pw@127.0.0.1:")
    master = group.masters[1]
    (replica,) = group.replicas_of(master)
    keys = _keys_on(group, master)
    with _cluster_client(group) as client:
        for key in keys:
            client.set(key, b"kept")

    group.failover(replica)

    assert group.replicas_of(replica) == [master]
    assert all(group.node_for_key(key) is replica for key in keys)
    with replica.client() as client:
        assert [client.get(key) for key in keys] == [b"kept"] * len(keys)
    with master.client() as client, pytest.raises(ResponseError) as moved:
        client.set(keys[0], b"x")
    assert _redirect_port(moved.value) == replica.port

    pids = [node.pid for node in group.nodes]
    directories = [node.directory for node in group.nodes]
    group.stop()
    assert all(pid is not None and not _alive(pid) for pid in pids)
    assert not any(directory.exists() for directory in directories)


@pytest.mark.chaos
def test_forced_failover_away_from_a_hung_master(
    drr_cluster_factory: ClusterGroupFactory,
) -> None:
    group = drr_cluster_factory(replicas=1)
    master = group.masters[2]
    (replica,) = group.replicas_of(master)
    master.hang()
    try:
        group.failover(replica, force=True)  # hung nodes are left out of the waits
        assert replica in group.masters
        assert master not in group.masters
    finally:
        master.resume()
    group.wait_for_ok(timeout=20)  # the stale master learns it lost its slots
    assert group.replicas_of(replica) == [master]


@pytest.mark.chaos
def test_without_full_coverage_the_rest_of_the_cluster_keeps_serving(
    drr_cluster_factory: ClusterGroupFactory,
) -> None:
    group = drr_cluster_factory(require_full_coverage=False)
    victim, *survivors = group.masters
    survivor_keys = {node: _keys_on(group, node, 2) for node in survivors}

    victim.kill()
    group.wait_for_flag(victim, "fail", timeout=20)

    for node in survivors:
        assert group.cluster_info(node)["cluster_state"] == "ok"
        with node.client() as client:
            for key in survivor_keys[node]:
                assert client.set(key, b"v") is True
    with _cluster_client(group, survivors) as client:
        for keys in survivor_keys.values():
            assert [client.get(key) for key in keys] == [b"v"] * len(keys)


@pytest.mark.chaos
def test_with_full_coverage_a_lost_master_takes_the_cluster_down_until_it_returns(
    drr_cluster_factory: ClusterGroupFactory,
) -> None:
    group = drr_cluster_factory()
    assert group.require_full_coverage
    victim, survivor, _ = group.masters
    (key,) = _keys_on(group, survivor, 1)

    victim.kill()
    group.wait_for_state("fail", timeout=20)

    assert group.cluster_info(survivor)["cluster_state"] == "fail"
    with survivor.client() as client, pytest.raises(ResponseError, match="The cluster is down"):
        client.set(key, b"v")

    victim.restart()
    group.wait_for_ok(timeout=20)
    with _cluster_client(group) as client:
        assert client.set(key, b"v") is True
        (victim_key,) = _keys_on(group, victim, 1)
        assert client.set(victim_key, b"w") is True
