"""What ``clear()`` deletes: every key the cache makes, whatever its version and its
``KEY_FUNCTION``, on every topology (every master of a cluster), and nothing else: not
the app's lock and rate-limit keys, not the keys of a cache whose prefix starts the same.

The cache's recovery invalidates the same namespace (tests/cache/test_degraded.py).
"""

from __future__ import annotations

import hashlib
import uuid
from typing import Any

import pytest
from django.core.cache import caches
from django.test import override_settings

from django_redis_resilience.cache import ResilientRedisCache
from django_redis_resilience.exceptions import ConfigurationError

from .conftest import resilient_caches

#: Keys that land on every master of the test cluster (and many of them elsewhere).
KEYS = [f"k{i}" for i in range(12)]
#: Versions Django makes keys with: ``decr_version`` goes below one, and below zero.
VERSIONS = (-12, -1, 0, 1, 7)


def version_first(key: str, key_prefix: str, version: int) -> str:
    """One fixed form, version first: not Django's, but found by its pattern."""
    return f"{version}|{key_prefix}|{key}"


def digest_after_prefix(key: str, key_prefix: str, version: int) -> str:
    """Short keys of any length, as people write for memcached: the prefix, then a digest."""
    return f"{key_prefix}:" + hashlib.sha256(f"{version}:{key}".encode()).hexdigest()


def digest_of_everything(key: str, key_prefix: str, version: int) -> str:
    """Nothing in these keys tells them from any other key: refused (E006)."""
    return hashlib.sha256(f"{key_prefix}:{version}:{key}".encode()).hexdigest()


KEY_FUNCTIONS = [
    pytest.param(None, id="django-default"),
    pytest.param("tests.cache.test_namespace.version_first", id="version-first"),
    pytest.param("tests.cache.test_namespace.digest_after_prefix", id="digest-after-prefix"),
]


def _setting(location: Any, key_function: str | None, prefix: str) -> dict[str, Any]:
    # Read back from the primary: a replica may not hold the clear() yet.
    entry = resilient_caches(location, KEY_PREFIX=prefix, READ_FROM_REPLICAS=False)["default"]
    if key_function is not None:
        entry["KEY_FUNCTION"] = key_function
    return entry


def _raw_keys(cache: ResilientRedisCache, prefix: str) -> set[bytes]:
    """Every key holding ``prefix`` in the database, on every master."""
    client = cache.get_client()
    match = f"*{prefix}*"
    if cache.manager.cluster is not None:
        return set(client.scan_iter(match=match, count=1000, target_nodes=client.PRIMARIES))
    return set(client.scan_iter(match=match, count=1000))


@pytest.mark.parametrize("key_function", KEY_FUNCTIONS)
def test_clear_deletes_every_version_and_nothing_else(
    location: Any, key_function: str | None
) -> None:
    """Before: ``clear()`` missed negative versions (``prefix:[0-9]*``), and with a
    digest the pattern was a literal digest of ``*``: it deleted nothing at all."""
    prefix = f"t{uuid.uuid4().hex[:8]}"
    setting = {
        "default": _setting(location, key_function, prefix),
        # A cache whose prefix starts with this one's, same key function: not ours.
        "longer": _setting(location, key_function, prefix + "2"),
    }
    with override_settings(CACHES=setting):
        cache, longer = caches["default"], caches["longer"]
        assert isinstance(cache, ResilientRedisCache)
        raw = cache.get_client()
        others = [f"{prefix}:drr:lock:{{x}}", f"{prefix}:drr:rl:{{y}}:z", f"foreign:{prefix}"]
        try:
            for version in VERSIONS:
                cache.set_many(dict.fromkeys(KEYS, "mine"), version=version)
            longer.set_many(dict.fromkeys(KEYS, "longer"))
            for key in others:
                raw.set(key, "kept")
            before = _raw_keys(cache, prefix)

            cache.clear()

            for version in VERSIONS:
                assert cache.get_many(KEYS, version=version) == {}, version
            made = {cache.make_key(k, version=v).encode() for k in KEYS for v in VERSIONS}
            assert made <= before
            assert _raw_keys(cache, prefix) == before - made  # only the cache's own keys went
            assert longer.get_many(KEYS) == dict.fromkeys(KEYS, "longer")
            assert all(raw.get(key) == b"kept" for key in others)
        finally:
            for key in others:
                raw.delete(key)
            longer.clear()
            cache.clear()


def test_clear_deletes_keys_of_a_non_integer_version(location: Any) -> None:
    """A ``VERSION`` that is no integer still makes ``prefix:<VERSION>:key`` keys."""
    prefix = f"t{uuid.uuid4().hex[:8]}"
    setting = {"default": {**_setting(location, None, prefix), "VERSION": "blue"}}
    with override_settings(CACHES=setting):
        cache = caches["default"]
        cache.set_many(dict.fromkeys(KEYS, "mine"))
        cache.set("k", "numbered", version=3)
        assert cache.get_client().exists(f"{prefix}:blue:k0") == 1
        cache.clear()
        assert cache.get_many(KEYS) == {}
        assert cache.get("k", version=3) is None


def test_a_key_function_whose_keys_cannot_be_found_is_refused(drr_redis_server: Any) -> None:
    """No SCAN finds a digest of the whole key: such a cache is not used at all, rather
    than one whose ``clear()`` and recovery would silently delete nothing."""
    setting = {"default": _setting(drr_redis_server.url, None, "t")}
    setting["default"]["KEY_FUNCTION"] = "tests.cache.test_namespace.digest_of_everything"
    refused = pytest.raises(ConfigurationError, match=r"E006: CACHES\['default'\]\['KEY_FUNC")
    with override_settings(CACHES=setting), refused:
        caches["default"].set("k", 1)
