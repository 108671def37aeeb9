"""``wait_replicas``: a grant counts only once replicas acknowledged it (``WAIT``).

On a primary with one replica, from the harness: a healthy replica acknowledges and the
lock is held (one ``WAIT`` sent, in the acquisition's own pipeline); a paused replica
does not, and the grant is given back and reported unavailable, so a failover right
then could not hand the lock to a second holder through a replica that never saw it.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from django.test import override_settings

from django_redis_resilience import lock
from django_redis_resilience.exceptions import InvalidLock, RedisUnavailable
from tests.cache.conftest import resilient_caches

from .conftest import unique


@pytest.fixture
def primary_and_replica(drr_replica_group_factory: Any) -> Iterator[Any]:
    group = drr_replica_group_factory()
    with override_settings(CACHES=resilient_caches(group.location)):
        yield group


def _waits(server: Any) -> int:
    with server.client() as client:
        stats = client.info("commandstats")
    return int(stats.get("cmdstat_wait", {}).get("calls", 0))


def test_a_grant_acknowledged_by_the_replica_is_held(primary_and_replica: Any) -> None:
    group = primary_and_replica
    before = _waits(group.primary)
    name = unique("replicated")
    with lock(name, wait_replicas=1, wait=0) as held:
        assert held.acquired
        with group.replicas[0].client() as replica:  # the replica has the grant already
            assert replica.exists(held.keys.lock) == 1
    assert _waits(group.primary) == before + 1


def test_without_wait_replicas_no_wait_is_sent(primary_and_replica: Any) -> None:
    group = primary_and_replica
    before = _waits(group.primary)
    with lock(unique("plain"), wait=0) as held:
        assert held.acquired
    assert _waits(group.primary) == before


@pytest.mark.chaos
def test_a_paused_replica_means_no_grant(primary_and_replica: Any) -> None:
    group = primary_and_replica
    name = unique("unreplicated")
    replica = group.replicas[0]
    replica.hang()
    try:
        with pytest.raises(RedisUnavailable, match="0 of the 1 replicas"):
            lock(name, wait_replicas=1, wait=0).acquire()
        with lock(name, wait_replicas=1, wait=0, on_unavailable="skip") as skipped:
            assert not skipped  # the body runs, told that the lock was not granted
    finally:
        replica.resume()
    # Given back at once: the lock is free, not held for the rest of a lease.
    with lock(name, wait=0) as again:
        assert again.acquired


def test_more_replicas_than_there_are_is_never_granted(primary_and_replica: Any) -> None:
    name = unique("too-many")
    with pytest.raises(RedisUnavailable, match="1 of the 2 replicas"):
        lock(name, wait_replicas=2, wait=0).acquire()
    with lock(name, wait=0) as again:
        assert again.acquired


@pytest.mark.parametrize("value", [-1, 1.5, True, "1"])
def test_wait_replicas_must_be_a_count(value: Any) -> None:
    with pytest.raises(InvalidLock, match="wait_replicas"):
        lock("x", wait_replicas=value)


def test_the_default_comes_from_redis_resilience(primary_and_replica: Any) -> None:
    name = unique("default-replicas")
    with override_settings(REDIS_RESILIENCE={"WAIT_REPLICAS": 2}):
        with pytest.raises(RedisUnavailable, match="1 of the 2 replicas"):
            lock(name, wait=0).acquire()
        with lock(name, wait=0, wait_replicas=0) as held:  # the lock's own word wins
            assert held.acquired


@pytest.mark.chaos
def test_after_a_failover_right_after_a_grant_there_is_no_second_holder(
    drr_sentinel_factory: Any,
) -> None:
    """The primary is killed the moment the grant returns (before anything else runs):
    the promoted replica acknowledged the grant, so the lock is still held there."""
    group = drr_sentinel_factory()
    name = unique("failover")
    caches = resilient_caches(group.location, SOCKET_TIMEOUT=1.0, SOCKET_CONNECT_TIMEOUT=1.0)
    with override_settings(CACHES=caches):
        held = lock(name, timeout=60, wait=0, wait_replicas=1, renew=False).acquire()
        assert held.acquired
        old = group.primary
        old.kill()
        new = group.wait_for_failover(old)
        assert new is not old
        with new.client() as client:
            assert client.exists(held.keys.lock) == 1  # the grant survived the failover

        def second_holder() -> bool:
            try:
                with lock(name, wait=0, on_busy="skip") as other:
                    return bool(other)
            except RedisUnavailable:
                return False  # the cache has not followed the failover yet: ask again

        with ThreadPoolExecutor(1) as elsewhere:
            for _ in range(20):
                assert not elsewhere.submit(second_holder).result(), "a second holder got in"
