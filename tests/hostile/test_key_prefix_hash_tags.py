"""A ``KEY_PREFIX`` with braces in it, on a real cluster: locks and rate limits still work.

Redis hashes the text between the first ``{`` and the next ``}``, unless that is
empty, in which case it hashes the whole key. A prefix built from an empty
variable (``f"{{{tenant}}}"`` gives ``"{}"``) thus starts every key with an empty
hash tag, so the app's own tag later in the key no longer counts. A lock's keys,
and one identity's rate-limit keys, are used together in one script: they must
still share a slot, or the cluster refuses the script (CROSSSLOT).
"""

from __future__ import annotations

import pytest
from django.test import override_settings

from django_redis_resilience import lock
from django_redis_resilience.clients import key_prefix as key_prefix_of
from django_redis_resilience.connection import slot_of
from django_redis_resilience.locks._protocol import LockKeys
from django_redis_resilience.ratelimiting import Limit, check_many
from django_redis_resilience.ratelimiting._core import policy_for, redis_key
from django_redis_resilience.testing import ClusterGroup
from tests.cache.conftest import resilient_caches

PREFIXES = ["{}", "app{}", "{}{tenant}"]


@pytest.mark.parametrize("key_prefix", PREFIXES)
def test_a_lock_works_on_a_cluster_whatever_the_key_prefix(
    drr_cluster: ClusterGroup, key_prefix: str
) -> None:
    caches = resilient_caches(drr_cluster.location, KEY_PREFIX=key_prefix)
    with override_settings(CACHES=caches), lock("nightly-report", timeout=5, wait=0) as held:
        assert held.acquired
        assert isinstance(held.token, int)


def _app_prefix(key_prefix: str) -> str:
    """The prefix locks and rate limits put their keys under, for this ``KEY_PREFIX``."""
    with override_settings(CACHES=resilient_caches("redis://127.0.0.1:1/0", KEY_PREFIX=key_prefix)):
        prefix = key_prefix_of("default")
    assert prefix is not None
    return prefix


@pytest.mark.parametrize("key_prefix", PREFIXES)
def test_a_lock_s_keys_share_a_slot_whatever_the_key_prefix(key_prefix: str) -> None:
    keys = LockKeys.build(_app_prefix(key_prefix), "nightly-report")
    assert len({slot_of(key) for key in keys.all}) == 1, keys


@pytest.mark.parametrize("key_prefix", PREFIXES)
def test_several_limits_of_one_identity_work_on_a_cluster_whatever_the_key_prefix(
    drr_cluster: ClusterGroup, key_prefix: str
) -> None:
    """The README: all limits of one identity share a cluster slot (one EVALSHA per slot)."""
    caches = resilient_caches(drr_cluster.location, KEY_PREFIX=key_prefix)
    limits = [Limit("alice", "5/m", group="api"), Limit("alice", "100/h", group="login")]
    with override_settings(CACHES=caches):
        decisions = check_many(limits)
    assert [d.allowed for d in decisions] == [True, True]
    assert not any(d.degraded for d in decisions)


@pytest.mark.parametrize("key_prefix", PREFIXES)
def test_one_identity_s_rate_limit_keys_share_a_slot_whatever_the_key_prefix(
    key_prefix: str,
) -> None:
    """Whether the cluster refuses the script above depends on where the keys happen to
    hash; all or nothing needs them in one slot in every case."""
    prefix = _app_prefix(key_prefix)
    keys = {
        redis_key(prefix, limit, policy_for(limit.rate, limit.algorithm))
        for limit in (
            Limit("alice", "5/m", group="api"),
            Limit("alice", "100/h", group="login"),
            Limit("alice", "10/s", algorithm="fixed_window", group="search"),
        )
    }
    assert len({slot_of(key) for key in keys}) == 1, keys
