"""Redis Cluster on real cluster-mode servers: routing, redirects, per-shard breakers, failures.

Every scenario that breaks a node also builds a second manager during the
outage: that is what a process restarted at that moment (a deploy, a crashed
worker) does, and it must start although a seed is dead.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterable

import pytest
import redis
from redis.cluster import RedisCluster
from redis.crc import key_slot

from django_redis_resilience.connection import (
    BreakerState,
    ClusterRefreshConfig,
    ConnectionManager,
)
from django_redis_resilience.exceptions import RedisUnavailable
from django_redis_resilience.testing import ClusterGroup, RedisServer

from .conftest import MakeManager, wait_for

SLOTS_PER_MASTER = 5461  # the harness splits the slots evenly: 0-5460, 5461-10921, ...
BREAKER = {"failure_threshold": 3, "recovery_timeout": 0.1, "max_recovery_timeout": 0.5}
KEYS = [f"cluster:key:{i}" for i in range(60)]


def _calls(node: RedisServer, command: str) -> int:
    with node.client() as client:
        stats = client.info("commandstats").get(f"cmdstat_{command}", {})
    return int(stats.get("calls", 0)) if isinstance(stats, dict) else 0


def _keys_by_node(cluster: ClusterGroup, keys: Iterable[str]) -> dict[int, list[str]]:
    """Port of the master serving each key, computed once while the cluster is healthy."""
    ranges = {node.port: cluster.slots_of(node) for node in cluster.masters}
    out: dict[int, list[str]] = {port: [] for port in ranges}
    for key in keys:
        slot = key_slot(key.encode())
        port = next(p for p, rs in ranges.items() if any(a <= slot <= b for a, b in rs))
        out[port].append(key)
    return out


def _node(cluster: ClusterGroup, port: int) -> RedisServer:
    return next(n for n in cluster.nodes if n.port == port)


def _outcomes(manager: ConnectionManager, keys: Iterable[str]) -> dict[str, str]:
    """``ok`` or the error's class name for a GET of each key; raw redis errors show up as such."""
    seen: dict[str, str] = {}
    for key in keys:
        try:
            manager.execute(lambda c, k=key: c.get(k), key=key)
            seen[key] = "ok"
        except RedisUnavailable:
            seen[key] = "unavailable"
        except redis.RedisError as exc:
            seen[key] = f"raw {type(exc).__name__}"
    return seen


# --- a healthy cluster (shared, never broken) ---------------------------------------------


def test_nothing_connects_before_first_use_then_keys_go_to_their_shards(
    drr_cluster: ClusterGroup, make_manager: MakeManager
) -> None:
    manager = make_manager(drr_cluster.location)
    assert manager.cluster is not None
    assert manager.cluster.refresh_count == 0
    assert manager.endpoints == ()
    for key in KEYS:
        manager.execute(lambda c, k=key: c.set(k, k), key=key)
    assert manager.cluster.refresh_count == 1
    assert len(manager.endpoints) == 3
    for port, keys in _keys_by_node(drr_cluster, KEYS).items():
        with _node(drr_cluster, port).client() as client:
            assert [client.get(k) for k in keys] == [k.encode() for k in keys]

    async def read() -> list[object]:
        return [await manager.aexecute(lambda c, k=k: c.get(k), key=k) for k in KEYS[:10]]

    assert asyncio.run(read()) == [k.encode() for k in KEYS[:10]]
    assert manager.execute_command("GET", KEYS[3]) == KEYS[3].encode()
    assert manager.execute_command("INCR", "cluster:counter:{x}") >= 1


def test_grouped_calls_run_once_per_shard_and_per_master_calls_reach_every_master(
    drr_cluster: ClusterGroup, make_manager: MakeManager
) -> None:
    manager = make_manager(drr_cluster.location)
    for key in KEYS:
        manager.execute(lambda c, k=key: c.set(k, "v"), key=key)
    by_node = _keys_by_node(drr_cluster, KEYS)
    before = {port: _calls(_node(drr_cluster, port), "get") for port in by_node}
    calls: list[list[str]] = []

    def pipelined(client: redis.Redis, keys: list[str]) -> list[object]:
        calls.append(keys)
        pipe = client.pipeline(transaction=False)
        for key in keys:
            pipe.get(key)
        return pipe.execute()

    results = manager.execute_grouped(KEYS, pipelined)
    assert len(calls) == 3  # one pipeline per shard
    assert sorted(k for group, _ in results for k in group) == sorted(KEYS)
    assert all(result == [b"v"] * len(group) for group, result in results)
    for port, keys in by_node.items():
        assert _calls(_node(drr_cluster, port), "get") - before[port] == len(keys)

    async def agrouped() -> list[tuple[list[str], object]]:
        async def one(client: redis.asyncio.Redis, keys: list[str]) -> list[object]:
            return [await client.get(k) for k in keys]

        return await manager.aexecute_grouped(KEYS, one)

    assert all(result == [b"v"] * len(g) for g, result in asyncio.run(agrouped()))
    ports = {e.display.rsplit(":", 1)[1] for e, _ in manager.for_each_primary(lambda c: c.ping())}
    assert ports == {str(port) for port in by_node}


def test_get_client_is_a_redis_cluster_seeded_from_the_map(
    drr_cluster: ClusterGroup, make_manager: MakeManager
) -> None:
    manager = make_manager(drr_cluster.location)
    manager.execute(lambda c: c.set("cluster:raw", "1"), key="cluster:raw")
    client = manager.get_client()
    assert isinstance(client, RedisCluster)
    assert client.get("cluster:raw") == b"1"
    assert manager.get_client() is client


def test_adaptive_refreshes_are_rate_limited_per_process(
    drr_cluster: ClusterGroup, make_manager: MakeManager, scheduler
) -> None:
    manager = make_manager(
        drr_cluster.location, cluster=ClusterRefreshConfig(interval=0, min_interval=2)
    )
    router = manager.cluster
    assert router is not None
    router.ensure_discovered()
    assert router.refresh_count == 1

    def slots_calls() -> int:
        return sum(_calls(n, "cluster|slots") or _calls(n, "cluster") for n in drr_cluster.nodes)

    before = slots_calls()
    for _ in range(500):  # e.g. a burst of MOVED replies on every thread
        router.request_refresh("MOVED")
    assert scheduler.pending() == 1
    assert wait_for(lambda: router.refresh_count == 2, timeout=10)
    # One refresh asks each node at most once, however many asked for it.
    assert slots_calls() - before <= len(drr_cluster.nodes)
    for _ in range(500):
        router.request_refresh("connection error")
    assert router.refresh_count == 2
    assert scheduler.pending() == 1


def test_periodic_refresh_runs_in_the_background(
    drr_cluster: ClusterGroup, make_manager: MakeManager
) -> None:
    manager = make_manager(
        drr_cluster.location, cluster=ClusterRefreshConfig(interval=0.1, min_interval=0.05)
    )
    router = manager.cluster
    assert router is not None
    manager.execute(lambda c: c.ping())
    assert wait_for(lambda: router.refresh_count >= 4)
    assert router.last_refresh_error is None
    manager.close()
    settled = router.refresh_count
    assert not wait_for(lambda: router.refresh_count > settled + 1, timeout=0.5)


# --- redirects ------------------------------------------------------------------------------


def test_moved_and_ask_are_followed_without_applying_a_command_twice(
    drr_cluster_factory, make_manager: MakeManager
) -> None:
    cluster = drr_cluster_factory(masters=3)
    manager = make_manager(cluster.location)
    moved_key, asked_key = "{moved}:counter", "{asked}:value"
    for key in (moved_key, asked_key):
        manager.execute(lambda c, k=key: c.exists(k), key=key)  # discover the map
    source = cluster.node_for_key(moved_key)
    target = next(n for n in cluster.masters if n is not source)
    slot = key_slot(moved_key.encode())
    # Hand the (empty) slot to another master behind the client's back.
    for node in cluster.masters:
        with node.client() as client:
            client.execute_command("CLUSTER", "SETSLOT", slot, "NODE", cluster.node_id(target))
    assert manager.execute(lambda c: c.incr(moved_key), key=moved_key, idempotent=False) == 1
    with target.client() as client:
        assert client.get(moved_key) == b"1"  # applied once, on the new owner
    assert wait_for(lambda: manager.cluster.shard_for_key(moved_key).view.master[1] == target.port)

    # ASK: the slot is migrating and the key does not exist on the source yet.
    source = cluster.node_for_key(asked_key)
    target = next(n for n in cluster.masters if n is not source)
    slot = key_slot(asked_key.encode())
    with target.client() as client:
        client.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", cluster.node_id(source))
    with source.client() as client:
        client.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", cluster.node_id(target))
    assert manager.execute(lambda c: c.set(asked_key, "sync"), key=asked_key) is True

    async def aset() -> object:
        return await manager.aexecute(lambda c: c.append(asked_key, "+async"), key=asked_key)

    assert asyncio.run(aset()) == len("sync+async")
    with target.client() as client:
        pipe = client.pipeline(transaction=False)
        pipe.execute_command("ASKING")
        pipe.get(asked_key)
        assert pipe.execute()[1] == b"sync+async"
    with source.client() as client:
        assert client.execute_command("CLUSTER", "COUNTKEYSINSLOT", slot) == 0


# --- startup with dead and hung seeds ----------------------------------------------------------


@pytest.mark.chaos
def test_startup_skips_a_dead_and_a_hung_seed(
    drr_cluster_factory, make_manager: MakeManager
) -> None:
    cluster = drr_cluster_factory(masters=3, replicas=1)
    masters = cluster.masters
    dead, hung = cluster.replicas_of(masters[0])[0], cluster.replicas_of(masters[1])[0]
    live = masters[2]
    location = "redis+cluster://" + ",".join(f"127.0.0.1:{n.port}" for n in (dead, hung, live))
    dead.kill()
    hung.hang()
    try:
        # A long timeout for the hung seed: the map must not wait for it.
        manager = make_manager(location, socket_timeout=5.0, socket_connect_timeout=5.0)
        manager.execute(lambda c: c.set("seeded", "1"), key="seeded")
        router = manager.cluster
        assert router is not None
        assert set(router.dead_seeds) == {("127.0.0.1", dead.port), ("127.0.0.1", hung.port)}
        # The question to the hung seed is still pending: the answer came without it.
        assert any(t.name == "drr-discovery" and t.is_alive() for t in threading.enumerate())
        assert router.slot_map is not None
        assert router.slot_map.covered == 16384
        assert {s.view.master[1] for s in router.shards()} == {n.port for n in masters}
    finally:
        hung.resume()
    # Dead seeds are asked again on every refresh and re-admitted once they answer.
    dead.restart(keep_data=True)
    cluster.wait_for_ok()
    assert router.refresh(reason="test")
    assert router.dead_seeds == ()


@pytest.mark.chaos
def test_whole_cluster_down_at_startup_boots_degraded_then_recovers(
    drr_cluster_factory, make_manager: MakeManager
) -> None:
    cluster = drr_cluster_factory(masters=3)
    for node in cluster.nodes:
        node.kill()
    manager = make_manager(cluster.location, breaker=BREAKER)
    assert set(_outcomes(manager, KEYS[:20]).values()) == {"unavailable"}
    assert [s.breaker.state for s in manager.endpoints] == [BreakerState.OPEN]
    for node in cluster.nodes:
        node.restart()
    cluster.wait_for_ok()
    assert wait_for(lambda: set(_outcomes(manager, KEYS).values()) == {"ok"}, timeout=15)
    assert len(manager.endpoints) == 3


# --- a master lost -----------------------------------------------------------------------------


@pytest.mark.chaos
@pytest.mark.parametrize("fault", ["kill", "hang"])
def test_without_full_coverage_only_the_dead_shards_keys_degrade(
    drr_cluster_factory, make_manager: MakeManager, fault: str
) -> None:
    cluster = drr_cluster_factory(masters=3, require_full_coverage=False)
    manager = make_manager(cluster.location, breaker=BREAKER)
    for key in KEYS:
        manager.execute(lambda c, k=key: c.set(k, "v"), key=key)
    by_node = _keys_by_node(cluster, KEYS)
    victim_port = next(iter(by_node))
    victim = _node(cluster, victim_port)
    getattr(victim, fault)()
    try:
        survivors = [p for p in by_node if p != victim_port]
        before = {p: _calls(_node(cluster, p), "get") for p in survivors}
        for _ in range(2):
            seen = _outcomes(manager, KEYS)
            assert {seen[k] for k in by_node[victim_port]} == {"unavailable"}
            assert {seen[k] for p in survivors for k in by_node[p]} == {"ok"}
        for port in survivors:  # served by Redis, not by chance: the servers counted them
            assert _calls(_node(cluster, port), "get") - before[port] == 2 * len(by_node[port])
        states = {s.view.master[1]: s.breaker.state for s in manager.endpoints}
        assert states[victim_port] is BreakerState.OPEN

        async def aoutcomes() -> set[str]:
            seen: set[str] = set()
            for key in KEYS:
                try:
                    await manager.aexecute(lambda c, k=key: c.get(k), key=key)
                    seen.add("ok" if key not in by_node[victim_port] else "wrongly ok")
                except RedisUnavailable:
                    seen.add("unavailable" if key in by_node[victim_port] else "wrongly down")
            return seen

        assert asyncio.run(aoutcomes()) == {"ok", "unavailable"}
        assert all(states[p] is BreakerState.CLOSED for p in survivors)

        # A process started now (seed list still names the dead node) does the same.
        cluster.wait_for_flag(victim, observers=[_node(cluster, p) for p in survivors])
        restarted = make_manager(cluster.location, breaker=BREAKER)
        for _ in range(2):
            seen = _outcomes(restarted, KEYS)
        assert {seen[k] for k in by_node[victim_port]} == {"unavailable"}
        assert {seen[k] for p in survivors for k in by_node[p]} == {"ok"}
    finally:
        if fault == "hang":
            victim.resume()
        else:
            victim.restart(keep_data=True)
    cluster.wait_for_ok()
    for each in (manager, restarted):
        assert wait_for(lambda m=each: set(_outcomes(m, KEYS).values()) == {"ok"}, timeout=15)


@pytest.mark.chaos
def test_with_full_coverage_the_whole_cache_degrades_fast_and_recovers(
    drr_cluster_factory, make_manager: MakeManager
) -> None:
    cluster = drr_cluster_factory(masters=3, require_full_coverage=True)
    manager = make_manager(cluster.location, breaker=BREAKER)
    assert set(_outcomes(manager, KEYS).values()) == {"ok"}
    by_node = _keys_by_node(cluster, KEYS)
    victim = _node(cluster, next(iter(by_node)))
    survivors = [n for n in cluster.nodes if n is not victim]
    victim.kill()
    cluster.wait_for_state("fail", nodes=survivors)
    # One CLUSTERDOWN reply opens every shard; the keys of the dead shard fail on their own.
    assert wait_for(lambda: set(_outcomes(manager, KEYS).values()) == {"unavailable"})
    assert all(s.breaker.state is not BreakerState.CLOSED for s in manager.endpoints)
    before = sum(_calls(n, "get") for n in survivors)
    for _ in range(5):
        assert set(_outcomes(manager, KEYS).values()) == {"unavailable"}
    # While open nothing touched the network (no per-call timeouts to wait out).
    assert sum(_calls(n, "get") for n in survivors) == before

    restarted = make_manager(cluster.location, breaker=BREAKER)
    assert set(_outcomes(restarted, KEYS).values()) == {"unavailable"}

    victim.restart(keep_data=True)
    cluster.wait_for_ok()
    for each in (manager, restarted):
        assert wait_for(lambda m=each: set(_outcomes(m, KEYS).values()) == {"ok"}, timeout=15)


@pytest.mark.chaos
def test_replica_promotion_is_followed_by_the_same_shard(
    drr_cluster_factory, make_manager: MakeManager
) -> None:
    cluster = drr_cluster_factory(masters=3, replicas=1)
    manager = make_manager(cluster.location, breaker=BREAKER)
    for key in KEYS:
        manager.execute(lambda c, k=key: c.set(k, "before"), key=key)
    by_node = _keys_by_node(cluster, KEYS)
    victim = _node(cluster, next(iter(by_node)))
    keys = by_node[victim.port]
    shard = manager.cluster.shard_for_key(keys[0])
    victim.kill()
    during = make_manager(cluster.location, breaker=BREAKER)  # a restart mid-failover
    assert "raw" not in " ".join(_outcomes(during, KEYS).values())
    promoted = cluster.wait_for_promotion(victim)

    def written() -> bool:
        try:
            for key in keys:
                manager.execute(lambda c, k=key: c.set(k, "after"), key=key)
        except RedisUnavailable:
            return False
        return True

    assert wait_for(written, timeout=15)
    assert manager.cluster.shard_for_key(keys[0]) is shard  # same breaker, new master
    assert shard.view.master == ("127.0.0.1", promoted.port)
    assert shard.breaker.state is BreakerState.CLOSED
    with promoted.client() as client:
        assert [client.get(k) for k in keys] == [b"after"] * len(keys)

    restarted = make_manager(cluster.location, breaker=BREAKER)  # its first seed is dead
    assert set(_outcomes(restarted, KEYS).values()) == {"ok"}
    assert wait_for(lambda: set(_outcomes(during, KEYS).values()) == {"ok"}, timeout=15)


# --- what a stale map, a closed manager and resharding must not do ------------------------


def _move_slot(cluster: ClusterGroup, slot: int, target: RedisServer) -> None:
    """Hand an empty slot to ``target`` behind every client's back."""
    for node in cluster.masters:
        with node.client() as client:
            client.execute_command("CLUSTER", "SETSLOT", slot, "NODE", cluster.node_id(target))


def test_a_pipeline_answered_moved_is_not_sent_again(
    drr_cluster_factory, make_manager: MakeManager
) -> None:
    cluster = drr_cluster_factory(masters=3)
    manager = make_manager(cluster.location)
    keys = [f"pipe:{i}" for i in range(40)]
    source = cluster.masters[0]
    mine = [k for k in keys if cluster.node_for_key(k) is source][:2]
    moved, stays = mine
    assert key_slot(moved.encode()) != key_slot(stays.encode())
    manager.execute(lambda c: c.exists(moved), key=moved)
    target = cluster.masters[1]
    _move_slot(cluster, key_slot(moved.encode()), target)

    def incr_all(client: redis.Redis, group: list[str]) -> list[object]:
        pipe = client.pipeline(transaction=False)
        for key in group:
            pipe.incr(key)
        return pipe.execute()

    [(_group, result)] = manager.execute_grouped([moved, stays], incr_all, idempotent=False)
    assert isinstance(result, RedisUnavailable)  # the caller falls back for these keys
    with source.client() as client:
        assert client.get(stays) == b"1"  # ran once, where it was sent
    with target.client() as client:
        assert client.get(moved) is None  # MOVED: it never ran
    router = manager.cluster
    assert wait_for(lambda: router.shard_for_key(moved).view.master[1] == target.port)
    results = manager.execute_grouped([moved, stays], incr_all, idempotent=False)
    assert sorted(r[0] for _, r in results) == [1, 2]


def test_moving_slot_zero_keeps_each_breaker_with_its_master(
    drr_cluster_factory, make_manager: MakeManager
) -> None:
    cluster = drr_cluster_factory(masters=3)
    manager = make_manager(cluster.location)
    router = manager.cluster
    router.ensure_discovered()
    first, second = router.shard_for_slot(0), router.shard_for_slot(SLOTS_PER_MASTER)
    new_owner = _node(cluster, second.view.master[1])
    _move_slot(cluster, 0, new_owner)
    assert router.refresh(reason="test")
    assert router.shard_for_slot(0) is second  # slot 0 follows its new master's breaker
    assert router.shard_for_slot(1) is first
    assert first.view.id == 1
    assert {s.role for s in router.shards()} == {"shard@0", "shard@1", f"shard@{2 * 5461}"}


@pytest.mark.chaos
def test_a_closed_manager_stops_probing_and_failed_refreshes_are_rate_limited(
    drr_cluster_factory, make_manager: MakeManager, scheduler
) -> None:
    cluster = drr_cluster_factory(masters=3)
    for node in cluster.nodes:
        node.kill()
    manager = make_manager(
        cluster.location,
        breaker={"recovery_timeout": 0.02, "max_recovery_timeout": 0.05, "jitter": 0},
        cluster=ClusterRefreshConfig(interval=0.05, min_interval=1.0),
    )
    with pytest.raises(RedisUnavailable):
        manager.execute(lambda c: c.get("k"), key="k")
    with pytest.raises(RedisUnavailable):
        manager.get_client()  # no raw RedisClusterException, no wait
    router = manager.cluster
    # Probes every 50 ms and a periodic refresh every 50 ms: still one discovery per second.
    assert not wait_for(lambda: router.refresh_count > 2, timeout=0.8)
    manager.close()
    assert wait_for(lambda: scheduler.pending() == 0, timeout=2)
    settled = router.refresh_count
    assert not wait_for(lambda: router.refresh_count > settled, timeout=1.5)
