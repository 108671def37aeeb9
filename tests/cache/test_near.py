"""The near cache: in-process copies of hot values, kept correct by Redis's invalidations.

``OPTIONS["NEAR_CACHE"]`` keeps what a process read in its own memory and serves it
again without a round trip, until Redis (``CLIENT TRACKING``) says the key changed.
The contract under test, on real servers only:

* coherence: a write by anyone (this process, another process of the app, raw
  redis-py) ends every near copy; a process sees its own writes at once, another
  process within the invalidation's delivery time (bounded waits, never timings),
  and no process goes back to an older value once it served a newer one;
* safety: nothing is served near for a node whose invalidation link is not
  verified, and a node's entries go when its link drops, its breaker opens, its
  Sentinel fails over, or ``MAX_AGE`` passes;
* bounds: ``MAX_ENTRIES`` and ``MAX_BYTES`` (LRU), ``KEY_PREFIXES``; a caller
  changing a returned object changes nothing for the next one.

A read was served near when ``stats()["near_hits"]`` went up by one. Before counting,
every test waits until the links it needs are verified (``near_links_verified ==
near_links > 0``), reading a probe key on every node, so that lazy links are asked for.
Own writes may leave an invalidation in flight that drops a copy just made (more
invalidation than needed is allowed), so "kept near" is awaited with a bounded wait;
once a key was served near and nothing writes, the next read must be near too.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import pickle
import subprocess
import sys
import threading
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
from django.core.cache import caches
from django.test import override_settings

from django_redis_resilience.cache import ResilientRedisCache
from django_redis_resilience.connection import CircuitBreaker
from django_redis_resilience.testing import (
    ClusterGroup,
    RedisServer,
    acl_user,
    find_redis_server,
    redis_version,
)
from tests._polling import wait_for

from .conftest import BACKEND, FAST_BREAKER, resilient_cache, resilient_caches

#: The near cache as the tests switch it on (the defaults, spelled out).
NEAR = {"MAX_ENTRIES": 10_000, "MAX_BYTES": 64 * 2**20, "MAX_AGE": 300, "KEY_PREFIXES": None}
#: What an invalidation may take to arrive, generously: a bound, not a measurement.
DELIVERY = 2.0
#: Opens only after five failures: one timed-out call leaves it closed.
PATIENT_BREAKER = {**FAST_BREAKER, "FAILURE_THRESHOLD": 5}
#: Short enough that a hung or dead server costs a fifth of a second per call.
QUICK_SOCKETS = {"SOCKET_TIMEOUT": 0.2, "SOCKET_CONNECT_TIMEOUT": 0.2}
#: Commands that read a key: a replica that answers none of them served no read.
READ_COMMANDS = ("get", "mget", "exists", "getex", "pttl", "ttl", "eval", "evalsha", "fcall")
ROOT = Path(__file__).resolve().parents[2]


# --- where the near cache lives ---------------------------------------------------------------


@dataclass
class Target:
    """A topology's ``location`` for ``CACHES``, and the node (primary) holding a key."""

    topology: str
    location: Any
    node_of: Callable[[str], RedisServer]
    cluster: ClusterGroup | None = None

    def raw(self, cache: ResilientRedisCache, key: str) -> redis.Redis:
        """A plain redis-py client on the node holding ``key`` (writes "from outside")."""
        return self.node_of(cache.make_key(key)).client()

    def probes(self, cache: ResilientRedisCache) -> list[str]:
        """Keys never written, one on every node: reading them asks for every node's link."""
        if self.cluster is None:
            return ["near:probe"]
        wanted = {master.port for master in self.cluster.masters}
        found: dict[int, str] = {}
        for i in range(10_000):
            key = f"near:probe:{i}"
            found.setdefault(self.node_of(cache.make_key(key)).port, key)
            if set(found) == wanted:
                break
        return list(found.values())


@pytest.fixture
def target(request: pytest.FixtureRequest, topology: str) -> Target:
    """The session's shared servers of ``topology``; tests here only use unique keys."""
    if topology == "standalone":
        server = request.getfixturevalue("drr_redis_server")
        return Target(topology, server.url, lambda made: server)
    if topology == "replicas":
        group = request.getfixturevalue("drr_replica_group")
        return Target(topology, group.location, lambda made: group.primary)
    if topology == "sentinel":
        group = request.getfixturevalue("drr_sentinel_group")
        primary = group.current_primary()
        return Target(topology, group.location, lambda made: primary)
    cluster = request.getfixturevalue("drr_cluster")
    return Target(topology, cluster.location, cluster.node_for_key, cluster)


@contextmanager
def near_cache(
    location: Any, near: dict[str, Any] | None = None, **options: Any
) -> Iterator[ResilientRedisCache]:
    """``caches["default"]`` with the near cache on (``NEAR`` unless ``near`` is given).

    Reads from replicas stay on (the default): with the near cache on, misses must
    be fetched from the primary anyway.
    """
    with resilient_cache(location, NEAR_CACHE=dict(NEAR if near is None else near), **options) as c:
        yield c


# --- helpers ---------------------------------------------------------------------------------


def _near(cache: ResilientRedisCache, name: str) -> int:
    value = cache.stats()[name]
    assert isinstance(value, int), (name, value)
    return value


def _links_verified(cache: ResilientRedisCache) -> bool:
    stats = cache.stats()
    return stats["near_links"] > 0 and stats["near_links_verified"] == stats["near_links"]


def _linked(cache: ResilientRedisCache, probes: list[str], timeout: float = 5.0) -> None:
    """Wait until every link this cache wants is verified, reading ``probes`` meanwhile."""

    def verified() -> bool:
        for probe in probes:
            cache.get(probe)
        return _links_verified(cache)

    assert wait_for(verified, timeout=timeout), f"links never verified: {cache.stats()}"


def _served_near(cache: ResilientRedisCache, key: str, expected: Any) -> bool:
    """Read ``key`` (it must be ``expected``); whether the near cache served it."""
    before = _near(cache, "near_hits")
    got = cache.get(key)
    assert got == expected, f"{key}: got {got!r}, expected {expected!r}"
    return _near(cache, "near_hits") == before + 1


def _kept_near(cache: ResilientRedisCache, key: str, expected: Any) -> None:
    """Read ``key`` until a read is served near (bounded): the copy is kept now."""
    assert wait_for(lambda: _served_near(cache, key, expected), timeout=DELIVERY), (
        f"{key} was never served near: {cache.stats()}"
    )


async def _aserved_near(cache: ResilientRedisCache, key: str, expected: Any) -> bool:
    before = _near(cache, "near_hits")
    got = await cache.aget(key)
    assert got == expected, f"{key}: got {got!r}, expected {expected!r}"
    return _near(cache, "near_hits") == before + 1


async def _eventually(predicate: Callable[[], Awaitable[bool]], timeout: float = DELIVERY) -> bool:
    """``wait_for`` for async predicates, without blocking the loop."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        if await predicate():
            return True
        await asyncio.sleep(0.02)
    return await predicate()


def _converges(read: Callable[[], Any], new: Any, old: Any, timeout: float = DELIVERY) -> None:
    """Reads give ``old`` then ``new`` within ``timeout``, and never ``old`` again after."""
    seen: list[Any] = []

    def arrived() -> bool:
        seen.append(read())
        return seen[-1] == new

    assert wait_for(arrived, timeout=timeout), f"never {new!r}; read {seen[-5:]!r}"
    assert all(value in (old, new) for value in seen), seen
    after = [read() for _ in range(20)]
    assert after == [new] * 20, f"{old!r} came back after {new!r}: {after!r}"


def _encoded(value: Any) -> bytes:
    """A value as django-redis stores it: integers as digits, the rest pickled."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value).encode()
    return pickle.dumps(value)


def _raw_set(target: Target, cache: ResilientRedisCache, key: str, value: Any) -> None:
    with target.raw(cache, key) as client:
        client.set(cache.make_key(key), _encoded(value))


def _breaker(cache: ResilientRedisCache, key: str | None = None) -> CircuitBreaker:
    made = None if key is None else cache.make_key(key)
    return cache.manager.route(write=True, key=made)[0].breaker


def _degrade(cache: ResilientRedisCache, key: str = "probe:never-written") -> None:
    """Read a never-written key until its endpoint's breaker opens."""
    assert wait_for(lambda: cache.get(key) is None and not _breaker(cache, key).closed, timeout=10)


def _recovered(cache: ResilientRedisCache, key: str | None = None, timeout: float = 15) -> None:
    assert wait_for(lambda: _breaker(cache, key).closed, timeout=timeout)


def _reads_on(server: RedisServer) -> int:
    """How many key-reading commands ``server`` has answered."""
    with server.client() as client:
        stats = client.info("commandstats")
    return sum(int(stats.get(f"cmdstat_{name}", {}).get("calls", 0)) for name in READ_COMMANDS)


def _keys_by_master(
    cluster: ClusterGroup, cache: ResilientRedisCache, keys: list[str]
) -> dict[int, list[str]]:
    out: dict[int, list[str]] = {master.port: [] for master in cluster.masters}
    for key in keys:
        out[cluster.node_for_key(cache.make_key(key)).port].append(key)
    return out


# --- configuration ----------------------------------------------------------------------------


@pytest.mark.parametrize("setting", ["absent", "none"])
def test_without_the_option_nothing_is_kept_near(drr_redis_server, setting: str) -> None:
    options = {} if setting == "absent" else {"NEAR_CACHE": None}
    with resilient_cache(drr_redis_server.url, **options) as cache:
        cache.set("k", 1)
        assert [cache.get("k") for _ in range(3)] == [1, 1, 1]
        stats = cache.stats()
        assert stats.get("near_hits", 0) == 0
        assert stats.get("near_entries", 0) == 0
        assert stats.get("near_links", 0) == 0
        with drr_redis_server.client() as client:
            client.set(cache.make_key("k"), b"2")
        assert cache.get("k") == 2  # at once: every read goes to Redis


def test_an_empty_dict_turns_it_on_with_the_defaults(drr_redis_server) -> None:
    with near_cache(drr_redis_server.url, near={}) as cache:
        cache.set("k", "v")
        _linked(cache, ["near:probe"])
        _kept_near(cache, "k", "v")
        assert _near(cache, "near_entries") >= 1


def test_stats_count_near_reads_as_integers(drr_redis_server) -> None:
    with near_cache(drr_redis_server.url) as cache:
        names = ["near_hits", "near_misses", "near_invalidations", "near_flushes",
                 "near_entries", "near_links", "near_links_verified"]  # fmt: skip
        cache.get("anything")
        stats = cache.stats()
        assert {name: type(stats[name]) for name in names} == dict.fromkeys(names, int)


# --- near hits --------------------------------------------------------------------------------


def test_a_value_read_once_is_served_near_after(target: Target) -> None:
    with near_cache(target.location) as cache:
        cache.set("k", 1)
        cache.set("k", "other version", version=2)
        _linked(cache, target.probes(cache))
        _kept_near(cache, "k", 1)
        hits, misses = _near(cache, "near_hits"), _near(cache, "near_misses")
        assert [cache.get("k") for _ in range(3)] == [1, 1, 1]
        assert (_near(cache, "near_hits"), _near(cache, "near_misses")) == (hits + 3, misses)
        assert _near(cache, "near_entries") >= 1
        # Versions are other keys: neither is served for the other.
        _kept_near(cache, "k", 1)
        assert cache.get("k", version=2) == "other version"
        assert cache.get("k") == 1


def test_a_miss_is_counted_and_answered_with_the_default(target: Target) -> None:
    with near_cache(target.location) as cache:
        _linked(cache, target.probes(cache))
        misses = _near(cache, "near_misses")
        assert cache.get("never-set", "default") == "default"
        assert _near(cache, "near_misses") == misses + 1
        assert cache.get("never-set") is None


# --- own writes: visible at once --------------------------------------------------------------


def _after_two_misses(write: Callable[[ResilientRedisCache, str], Any]) -> Any:
    """Delete the key and read it twice (a near copy of its absence, if any), then write."""

    def run(cache: ResilientRedisCache, key: str) -> Any:
        cache.delete(key)
        assert cache.get(key) is None
        assert cache.get(key) is None
        return write(cache, key)

    return run


#: Each own write of a key near-cached as 1, and what this process reads right after it.
_OWN_WRITES: dict[str, tuple[Callable[[ResilientRedisCache, str], Any], Any]] = {
    "set": (lambda c, k: c.set(k, 2), 2),
    "set-object": (lambda c, k: c.set(k, {"v": 2}), {"v": 2}),
    "set-timeout-0": (lambda c, k: c.set(k, 2, timeout=0), None),
    "set_many": (lambda c, k: c.set_many({k: 2, f"{k}:elsewhere": 3}), 2),
    "delete": (lambda c, k: c.delete(k), None),
    "delete_many": (lambda c, k: c.delete_many([k, f"{k}:elsewhere"]), None),
    "incr": (lambda c, k: c.incr(k), 2),
    "incr-by-10": (lambda c, k: c.incr(k, 10), 11),
    "decr": (lambda c, k: c.decr(k), 0),
    "add-existing": (lambda c, k: c.add(k, 2), 1),  # refused: the value stays
    "add-missing": (_after_two_misses(lambda c, k: c.add(k, 2)), 2),
    "get_or_set-missing": (_after_two_misses(lambda c, k: c.get_or_set(k, 2)), 2),
    "touch": (lambda c, k: c.touch(k, 60), 1),  # not a value change
}


def test_own_writes_are_visible_at_once(target: Target) -> None:
    with near_cache(target.location) as cache:
        keys = {op: f"k:{op}" for op in _OWN_WRITES}
        cache.set_many(dict.fromkeys(keys.values(), 1))
        _linked(cache, target.probes(cache))
        wrong: list[tuple[str, Any]] = []
        for op, (write, expected) in _OWN_WRITES.items():
            key = keys[op]
            _kept_near(cache, key, 1)
            write(cache, key)
            # No waiting: what this process wrote is what it reads, by every read method.
            got = (cache.get(key), cache.get_many([key]).get(key), cache.has_key(key))
            if got != (expected, expected, expected is not None):
                wrong.append((op, got))
        assert wrong == [], "(op, (get, get_many, has_key)) right after the write"
        for op, (_, expected) in _OWN_WRITES.items():
            assert [cache.get(keys[op]) for _ in range(3)] == [expected] * 3, op


async def _aafter_two_misses(cache: ResilientRedisCache, key: str, write: Any) -> Any:
    await cache.adelete(key)
    assert await cache.aget(key) is None
    assert await cache.aget(key) is None
    return await write


_OWN_AWRITES: dict[str, tuple[Callable[[ResilientRedisCache, str], Awaitable[Any]], Any]] = {
    "aset": (lambda c, k: c.aset(k, 2), 2),
    "aset-object": (lambda c, k: c.aset(k, [2]), [2]),
    "aset_many": (lambda c, k: c.aset_many({k: 2, f"{k}:elsewhere": 3}), 2),
    "adelete": (lambda c, k: c.adelete(k), None),
    "adelete_many": (lambda c, k: c.adelete_many([k, f"{k}:elsewhere"]), None),
    "aincr": (lambda c, k: c.aincr(k), 2),
    "adecr": (lambda c, k: c.adecr(k), 0),
    "aadd-existing": (lambda c, k: c.aadd(k, 2), 1),
    "aadd-missing": (lambda c, k: _aafter_two_misses(c, k, c.aadd(k, 2)), 2),
    "aget_or_set-missing": (lambda c, k: _aafter_two_misses(c, k, c.aget_or_set(k, 2)), 2),
    "atouch": (lambda c, k: c.atouch(k, 60), 1),
}


def test_own_async_writes_are_visible_at_once(target: Target) -> None:
    with near_cache(target.location) as cache:
        keys = {op: f"k:{op}" for op in _OWN_AWRITES}
        cache.set_many(dict.fromkeys(keys.values(), 1))
        _linked(cache, target.probes(cache))

        async def body() -> None:
            wrong: list[tuple[str, Any]] = []
            for op, (write, expected) in _OWN_AWRITES.items():
                key = keys[op]
                assert await _eventually(lambda key=key: _aserved_near(cache, key, 1))
                await write(cache, key)
                got = (
                    await cache.aget(key),
                    (await cache.aget_many([key])).get(key),
                    await cache.ahas_key(key),
                )
                if got != (expected, expected, expected is not None):
                    wrong.append((op, got))
            assert wrong == [], "(op, (aget, aget_many, ahas_key)) right after the write"
            for op, (_, expected) in _OWN_AWRITES.items():
                assert [await cache.aget(keys[op]) for _ in range(3)] == [expected] * 3, op

        asyncio.run(body())


@pytest.mark.parametrize("how", ["clear", "aclear"])
def test_clear_is_visible_at_once_and_counts_a_flush(target: Target, how: str) -> None:
    with near_cache(target.location) as cache:
        cache.set_many({"a": 1, "b": 2})
        _linked(cache, target.probes(cache))
        _kept_near(cache, "a", 1)
        _kept_near(cache, "b", 2)
        flushes = _near(cache, "near_flushes")
        if how == "clear":
            cache.clear()
        else:
            asyncio.run(cache.aclear())
        assert _near(cache, "near_flushes") > flushes
        assert _near(cache, "near_entries") == 0
        assert cache.get("a") is None
        assert cache.get_many(["a", "b"]) == {}
        assert cache.has_key("b") is False
        assert asyncio.run(cache.aget("b")) is None
        assert [cache.get("a") for _ in range(3)] == [None] * 3


# --- writes from outside ----------------------------------------------------------------------


def test_raw_writes_from_outside_end_the_near_copies(target: Target) -> None:
    """``SET`` of an integer and of a pickled value, and ``DEL``, by plain redis-py."""
    with near_cache(target.location) as cache:
        cache.set_many({"n": 1, "s": "old", "gone": {"old": True}})
        _linked(cache, target.probes(cache))
        for key, value in (("n", 1), ("s", "old"), ("gone", {"old": True})):
            _kept_near(cache, key, value)
        invalidations = _near(cache, "near_invalidations")

        _raw_set(target, cache, "n", 2)
        _converges(lambda: cache.get("n"), 2, 1)
        _raw_set(target, cache, "s", "new")
        _converges(lambda: cache.get("s"), "new", "old")
        with target.raw(cache, "gone") as client:
            assert client.delete(cache.make_key("gone")) == 1
        _converges(lambda: cache.get("gone"), None, {"old": True})
        assert _near(cache, "near_invalidations") >= invalidations + 3
        # Served near again once read again, with the new values.
        _kept_near(cache, "n", 2)
        _kept_near(cache, "s", "new")


def test_other_commands_from_outside_end_the_near_copies(target: Target) -> None:
    """Commands this app never sends: ``INCRBY``, ``PEXPIRE`` (it then expires), ``UNLINK``."""
    with near_cache(target.location) as cache:
        cache.set_many({"n": 10, "e": "expires", "u": "unlinked"})
        _linked(cache, target.probes(cache))
        for key, value in (("n", 10), ("e", "expires"), ("u", "unlinked")):
            _kept_near(cache, key, value)
        with target.raw(cache, "n") as client:
            assert client.incrby(cache.make_key("n"), 5) == 15
        _converges(lambda: cache.get("n"), 15, 10)
        with target.raw(cache, "e") as client:
            assert client.pexpire(cache.make_key("e"), 1)
        _converges(lambda: cache.get("e"), None, "expires")
        with target.raw(cache, "u") as client:
            assert client.unlink(cache.make_key("u")) == 1
        _converges(lambda: cache.get("u"), None, "unlinked")


def test_writes_by_another_instance_of_the_app_reach_the_reader(target: Target) -> None:
    """Two aliases on one prefix stand for two processes: own managers, links, near caches."""
    prefix = f"t{uuid.uuid4().hex[:8]}"

    def config(timeout: int) -> dict[str, Any]:
        return {"BACKEND": BACKEND, "LOCATION": target.location, "KEY_PREFIX": prefix,
                "TIMEOUT": timeout, "OPTIONS": {"NEAR_CACHE": dict(NEAR)}}  # fmt: skip

    with override_settings(CACHES={"default": config(300), "other": config(301)}):
        writer, reader = caches["default"], caches["other"]
        assert writer.manager is not reader.manager
        writer.set_many({"a": 1, "b": 1, "c": 1, "d": 1, "e": 1, "f": 1, "g": 1})
        _linked(reader, target.probes(reader))
        _linked(writer, target.probes(writer))
        for key in "abcdefg":
            _kept_near(reader, key, 1)

        writer.set("a", 2)
        _converges(lambda: reader.get("a"), 2, 1)
        writer.delete("b")
        _converges(lambda: reader.get("b"), None, 1)
        writer.set_many({"c": 2})
        _converges(lambda: reader.get_many(["c"]).get("c"), 2, 1)
        writer.delete_many(["d"])
        _converges(lambda: reader.has_key("d"), False, True)
        assert writer.incr("e", 5) == 6
        _converges(lambda: reader.get("e"), 6, 1)
        assert writer.delete_pattern("f*") >= 1
        _converges(lambda: reader.get("f"), None, 1)
        writer.clear()
        _converges(lambda: reader.get("g"), None, 1)


@pytest.mark.parametrize("command", ["flushdb", "flushall"])
def test_a_flush_from_outside_ends_every_near_copy(drr_redis_factory, command: str) -> None:
    server = drr_redis_factory()
    with near_cache(server.url) as cache:
        values = {f"f{i}": i for i in range(10)}
        cache.set_many(values)
        _linked(cache, ["near:probe"])
        for key, value in values.items():
            _kept_near(cache, key, value)
        with server.client() as client:
            getattr(client, command)()
        for key, value in values.items():
            _converges(lambda key=key: cache.get(key), None, value)
        assert cache.get_many(list(values)) == {}
        assert wait_for(lambda: _near(cache, "near_entries") == 0, timeout=DELIVERY)


def test_a_value_that_expires_in_redis_is_not_served_after(target: Target) -> None:
    with near_cache(target.location) as cache:
        cache.set("t", "short-lived", timeout=1)
        _linked(cache, target.probes(cache))
        _kept_near(cache, "t", "short-lived")
        _converges(lambda: cache.get("t"), None, "short-lived", timeout=5)


# --- every read method ------------------------------------------------------------------------


def test_get_many_mixes_near_hits_and_misses(target: Target) -> None:
    with near_cache(target.location) as cache:
        cache.set_many({"a": 1, "b": 2, "c": "three"})
        _linked(cache, target.probes(cache))
        _kept_near(cache, "a", 1)
        _kept_near(cache, "b", 2)
        hits, misses = _near(cache, "near_hits"), _near(cache, "near_misses")
        wanted = ["a", "b", "c", "missing"]
        assert cache.get_many(wanted) == {"a": 1, "b": 2, "c": "three"}
        assert (_near(cache, "near_hits"), _near(cache, "near_misses")) == (hits + 2, misses + 2)
        _raw_set(target, cache, "b", 20)
        _converges(lambda: cache.get_many(wanted), {"a": 1, "b": 20, "c": "three"},
                   {"a": 1, "b": 2, "c": "three"})  # fmt: skip
        assert cache.get_many([]) == {}


@pytest.mark.parametrize("topology", ["standalone", "cluster"])
@pytest.mark.parametrize("method", ["get_many", "aget_many"])
def test_get_many_keeps_what_it_fetched(target: Target, method: str) -> None:
    """Values ``get_many`` read from Redis are served near by the next ``get_many``."""
    with near_cache(target.location) as cache:
        cache.set_many({"a": 1, "b": 2, "c": "three"})
        _linked(cache, target.probes(cache))

        def all_near() -> bool:
            before = _near(cache, "near_hits")
            if method == "get_many":
                got = cache.get_many(["a", "b", "c"])
            else:
                got = asyncio.run(cache.aget_many(["a", "b", "c"]))
            assert got == {"a": 1, "b": 2, "c": "three"}
            return _near(cache, "near_hits") == before + 3

        assert wait_for(all_near, timeout=DELIVERY), (
            f"{method} never served near what an earlier {method} read from Redis: "
            f"{ {name: v for name, v in cache.stats().items() if name.startswith('near_')} }"
        )


def test_aget_many_mixes_near_hits_and_misses(target: Target) -> None:
    with near_cache(target.location) as cache:
        cache.set_many({"a": 1, "b": 2, "c": 3})
        _linked(cache, target.probes(cache))

        async def body() -> None:
            assert await _eventually(lambda: _aserved_near(cache, "a", 1))
            assert await _eventually(lambda: _aserved_near(cache, "b", 2))
            hits, misses = _near(cache, "near_hits"), _near(cache, "near_misses")
            assert await cache.aget_many(["a", "b", "c", "missing"]) == {"a": 1, "b": 2, "c": 3}
            assert _near(cache, "near_hits") == hits + 2
            assert _near(cache, "near_misses") == misses + 2
            _raw_set(target, cache, "b", 20)

            async def arrived() -> bool:
                got = await cache.aget_many(["a", "b"])
                assert got in ({"a": 1, "b": 2}, {"a": 1, "b": 20}), got
                return got["b"] == 20

            assert await _eventually(arrived)
            assert [await cache.aget("b") for _ in range(10)] == [20] * 10

        asyncio.run(body())


def test_get_or_set_is_served_near_and_follows_outside_writes(target: Target) -> None:
    with near_cache(target.location) as cache:
        _linked(cache, target.probes(cache))
        calls: list[int] = []

        def load() -> str:
            calls.append(1)
            return "computed"

        assert cache.get_or_set("g", load) == "computed"

        def near_get_or_set() -> bool:
            before = _near(cache, "near_hits")
            assert cache.get_or_set("g", load) == "computed"
            return _near(cache, "near_hits") == before + 1

        assert wait_for(near_get_or_set, timeout=DELIVERY)
        assert calls == [1]
        _raw_set(target, cache, "g", "from outside")
        _converges(lambda: cache.get_or_set("g", load), "from outside", "computed")
        assert calls == [1]
        with target.raw(cache, "g") as client:
            client.delete(cache.make_key("g"))
        _converges(lambda: cache.get_or_set("g", load), "computed", "from outside")
        assert calls == [1, 1]


def test_aget_or_set_is_served_near_and_follows_outside_writes(target: Target) -> None:
    with near_cache(target.location) as cache:
        _linked(cache, target.probes(cache))
        calls: list[int] = []

        async def load() -> str:
            calls.append(1)
            return "computed"

        async def body() -> None:
            assert await cache.aget_or_set("g", load) == "computed"

            async def near_get_or_set() -> bool:
                before = _near(cache, "near_hits")
                assert await cache.aget_or_set("g", load) == "computed"
                return _near(cache, "near_hits") == before + 1

            assert await _eventually(near_get_or_set)
            assert calls == [1]
            _raw_set(target, cache, "g", "from outside")

            async def arrived() -> bool:
                got = await cache.aget_or_set("g", load)
                assert got in ("computed", "from outside"), got
                return got == "from outside"

            assert await _eventually(arrived)
            assert calls == [1]

        asyncio.run(body())


def test_has_key_is_served_near_and_follows_outside_deletes(target: Target) -> None:
    with near_cache(target.location) as cache:
        cache.set("h", "here")
        _linked(cache, target.probes(cache))
        _kept_near(cache, "h", "here")  # a value read is kept; has_key answers from it

        def near_has_key() -> bool:
            before = _near(cache, "near_hits")
            assert cache.has_key("h") is True
            return _near(cache, "near_hits") == before + 1

        assert wait_for(near_has_key, timeout=DELIVERY), cache.stats()
        assert cache.has_key("never-set") is False
        with target.raw(cache, "h") as client:
            client.delete(cache.make_key("h"))
        _converges(lambda: cache.has_key("h"), False, True)
        _raw_set(target, cache, "h", "back")
        _converges(lambda: cache.has_key("h"), True, False)


def test_ahas_key_is_served_near_and_follows_outside_deletes(target: Target) -> None:
    with near_cache(target.location) as cache:
        cache.set("h", "here")
        _linked(cache, target.probes(cache))
        _kept_near(cache, "h", "here")

        async def body() -> None:
            async def near_has_key() -> bool:
                before = _near(cache, "near_hits")
                assert await cache.ahas_key("h") is True
                return _near(cache, "near_hits") == before + 1

            assert await _eventually(near_has_key)
            with target.raw(cache, "h") as client:
                client.delete(cache.make_key("h"))

            async def gone() -> bool:
                return not await cache.ahas_key("h")

            assert await _eventually(gone)
            assert [await cache.ahas_key("h") for _ in range(10)] == [False] * 10

        asyncio.run(body())


def test_aget_is_served_near_after_one_read(target: Target) -> None:
    with near_cache(target.location) as cache:
        cache.set("k", {"v": 1})
        _linked(cache, target.probes(cache))

        async def body() -> None:
            assert await _eventually(lambda: _aserved_near(cache, "k", {"v": 1}))
            hits, misses = _near(cache, "near_hits"), _near(cache, "near_misses")
            assert [await cache.aget("k") for _ in range(3)] == [{"v": 1}] * 3
            assert (_near(cache, "near_hits"), _near(cache, "near_misses")) == (hits + 3, misses)
            _raw_set(target, cache, "k", {"v": 2})

            async def arrived() -> bool:
                got = await cache.aget("k")
                assert got in ({"v": 1}, {"v": 2}), got
                return got == {"v": 2}

            assert await _eventually(arrived)
            assert [await cache.aget("k") for _ in range(10)] == [{"v": 2}] * 10

        asyncio.run(body())


# --- a caller's objects are its own -----------------------------------------------------------


def test_changing_a_returned_object_changes_nothing_for_the_next_caller(drr_redis_server) -> None:
    with near_cache(drr_redis_server.url) as cache:
        given = {"a": [1], "nested": {"x": 1}}
        cache.set("m", given)
        given["a"].append("changed after set")  # the caller's object, not the cache's
        cache.set("l", [1, 2])
        _linked(cache, ["near:probe"])
        _kept_near(cache, "m", {"a": [1], "nested": {"x": 1}})
        _kept_near(cache, "l", [1, 2])

        got = cache.get("m")
        got["a"].append(2)
        got["nested"]["x"] = "changed"
        got["new"] = True
        assert _served_near(cache, "m", {"a": [1], "nested": {"x": 1}})
        cache.get("l").append(3)
        assert _served_near(cache, "l", [1, 2])
        many = cache.get_many(["m", "l"])
        many["m"]["a"].clear()
        many["l"].clear()
        assert _served_near(cache, "m", {"a": [1], "nested": {"x": 1}})
        assert _served_near(cache, "l", [1, 2])
        cache.get_or_set("l", [9]).append(4)
        assert _served_near(cache, "l", [1, 2])

        written = [5]
        cache.set("w", written)  # an own write, perhaps kept near at once
        written.append(6)
        assert cache.get("w") == [5]
        assert cache.get("w") == [5]

        async def body() -> None:
            (await cache.aget("m"))["a"].append("async")
            (await cache.aget_many(["l"]))["l"].append("async")
            (await cache.aget_or_set("l", [0])).append("async")
            assert await cache.aget("m") == {"a": [1], "nested": {"x": 1}}
            assert await cache.aget("l") == [1, 2]

        asyncio.run(body())


# --- bounds -----------------------------------------------------------------------------------


def test_key_prefixes_limit_what_is_kept_near(drr_redis_server) -> None:
    near = {**NEAR, "KEY_PREFIXES": ["hot:", "warm:"]}
    with near_cache(drr_redis_server.url, near=near) as cache:
        cache.set_many({"hot:a": 1, "warm:b": 2, "cold:c": 3, "xhot:d": 4})
        _linked(cache, ["hot:probe"])
        _kept_near(cache, "hot:a", 1)
        _kept_near(cache, "warm:b", 2)
        entries = _near(cache, "near_entries")
        for key, value in (("cold:c", 3), ("xhot:d", 4)):  # "hot:" must start the key
            assert [_served_near(cache, key, value) for _ in range(3)] == [False] * 3
            assert cache.get_many([key]) == {key: value}
        assert _near(cache, "near_entries") == entries
        # Not kept near: a write from outside is read back at once.
        with drr_redis_server.client() as client:
            client.set(cache.make_key("cold:c"), b"30")
            client.set(cache.make_key("xhot:d"), b"40")
        assert cache.get("cold:c") == 30
        assert cache.get_many(["xhot:d"]) == {"xhot:d": 40}
        assert _served_near(cache, "hot:a", 1)


def test_max_entries_evicts_the_least_recently_used(drr_redis_server) -> None:
    with near_cache(drr_redis_server.url, near={**NEAR, "MAX_ENTRIES": 3}) as cache:
        cache.set_many({"e1": 1, "e2": 2, "e3": 3, "e4": 4})
        _linked(cache, ["near:probe"])  # the probe's absence may take an entry: read it first
        _kept_near(cache, "e1", 1)
        _kept_near(cache, "e2", 2)
        _kept_near(cache, "e3", 3)
        assert _near(cache, "near_entries") == 3
        assert _served_near(cache, "e1", 1)  # e1 used last now: e2 is the least recent
        _kept_near(cache, "e4", 4)
        assert _near(cache, "near_entries") == 3
        assert _served_near(cache, "e1", 1)
        assert _served_near(cache, "e3", 3)
        assert _served_near(cache, "e4", 4)
        assert not _served_near(cache, "e2", 2)  # evicted
        assert _near(cache, "near_entries") <= 3


def test_max_bytes_bounds_what_is_kept(drr_redis_server) -> None:
    with near_cache(drr_redis_server.url, near={**NEAR, "MAX_BYTES": 10_000}) as cache:
        big = {f"b{i}": str(i) * 4_000 for i in range(1, 4)}
        cache.set_many({**big, "huge": "h" * 30_000})
        _linked(cache, ["near:probe"])
        for key, value in big.items():
            _kept_near(cache, key, value)
        # Three values of 4 kB never fit in 10 kB: the least recently used went first.
        assert _near(cache, "near_entries") <= 2
        assert cache.stats().get("near_bytes", 0) <= 10_000
        assert _served_near(cache, "b3", big["b3"])
        assert not _served_near(cache, "b1", big["b1"])
        # A value larger than the whole bound is never kept, and still read right.
        assert [_served_near(cache, "huge", "h" * 30_000) for _ in range(3)] == [False] * 3
        assert cache.get_many(["huge"]) == {"huge": "h" * 30_000}


def test_max_age_bounds_the_life_of_an_entry(drr_redis_server) -> None:
    with near_cache(drr_redis_server.url, near={**NEAR, "MAX_AGE": 0.5}) as cache:
        cache.set("k", "v")
        _linked(cache, ["near:probe"])
        _kept_near(cache, "k", "v")
        # Nothing writes: only its age can end the copy.
        assert wait_for(lambda: not _served_near(cache, "k", "v"), timeout=5), cache.stats()
        _kept_near(cache, "k", "v")  # read again, kept again


# --- where misses are read --------------------------------------------------------------------


def test_misses_are_read_from_the_primary_never_a_replica(drr_replica_group) -> None:
    replica = drr_replica_group.replicas[0]
    with resilient_cache(drr_replica_group.location) as plain:  # READ_FROM_REPLICAS by default
        before = _reads_on(replica)
        for i in range(10):
            plain.get(f"r{i}")
        assert _reads_on(replica) > before  # without the near cache, replicas serve reads

    with near_cache(drr_replica_group.location) as cache:
        before = _reads_on(replica)
        for i in range(10):  # no waiting for the replica: each read is the primary's
            assert cache.set(f"r{i}", i) is True
            assert cache.get(f"r{i}") == i
            assert cache.get_many([f"r{i}", "never-set"]) == {f"r{i}": i}
            assert cache.has_key(f"r{i}") is True
            assert cache.get_or_set(f"r{i}", "computed") == i

        async def body() -> None:
            for i in range(10):
                assert await cache.aget(f"r{i}") == i
                assert await cache.aget_many([f"r{i}"]) == {f"r{i}": i}
                assert await cache.ahas_key(f"r{i}") is True

        asyncio.run(body())
        assert _reads_on(replica) == before


# --- concurrency: many readers, one writer ----------------------------------------------------


def _backwards(reads: list[tuple[int, int, Any]]) -> list[tuple[int, int, Any, int]]:
    """Reads ``(start, end, version)`` (ticket order) that returned an older version than a
    read that had ended before they started."""
    by_start = sorted(reads)
    by_end = sorted(reads, key=lambda read: read[1])
    newest, i, found = -1, 0, []
    for start, end, value in by_start:
        while i < len(by_end) and by_end[i][1] < start:
            newest = max(newest, by_end[i][2])
            i += 1
        if value < newest:
            found.append((start, end, value, newest))
    return found


@pytest.fixture
def many_switches() -> Iterator[None]:
    """Threads switch far more often than every 5 ms: races get their chance."""
    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    yield
    sys.setswitchinterval(before)


@pytest.mark.usefixtures("many_switches")
@pytest.mark.parametrize("topology", ["standalone", "cluster"])
@pytest.mark.parametrize("writes", ["one-at-a-time", "stream"])
def test_threads_never_read_an_older_value_after_a_newer_one(target: Target, writes: str) -> None:
    """A value fetched while its invalidation arrives must not be kept. Readers in tight
    loops race writes from outside, made one at a time (each must reach every reader
    within a bounded wait) or as a stream; no read that started after another ended may
    return an older version, and the last version reaches every reader."""
    with near_cache(target.location) as cache:
        cache.set("hot", 0)
        _linked(cache, target.probes(cache))
        made = cache.make_key("hot")
        ticket = itertools.count()
        stop = threading.Event()
        readers = 6
        reads: list[list[tuple[int, int, Any]]] = [[] for _ in range(readers)]
        last: list[Any] = [None] * readers
        errors: list[str] = []

        def reader(n: int) -> None:
            local = caches["default"]
            try:
                while not stop.is_set():
                    start = next(ticket)
                    value = local.get("hot")
                    reads[n].append((start, next(ticket), value))
                    last[n] = value
            except BaseException as exc:
                errors.append(repr(exc))

        def reached(version: int) -> bool:
            return wait_for(lambda: last == [version] * readers, timeout=DELIVERY, step=0.001)

        threads = [threading.Thread(target=reader, args=(n,), daemon=True) for n in range(readers)]
        for thread in threads:
            thread.start()
        stuck = None
        final = 100 if writes == "one-at-a-time" else 1_000
        try:
            with target.raw(cache, "hot") as client:
                for version in range(1, final + 1):
                    client.set(made, version)
                    if writes == "one-at-a-time" and not reached(version):
                        stuck = (version, list(last))
                        break
                if stuck is None and not reached(final):
                    stuck = (final, list(last))
        finally:
            stop.set()
            for thread in threads:
                thread.join(timeout=10)
        assert errors == []
        assert stuck is None, f"after the write of {stuck[0]} readers stayed at {stuck[1]}"
        everything = [read for per_thread in reads for read in per_thread]
        assert all(isinstance(value, int) for _, _, value in everything)
        backwards = _backwards(everything)
        assert backwards == [], f"older versions read after newer ones: {backwards[:5]}"
        assert _near(cache, "near_hits") > 0


@pytest.mark.parametrize("topology", ["standalone", "cluster"])
def test_another_process_writing_is_seen_in_order_and_to_the_end(target: Target) -> None:
    """A second OS process (near cache on too) writes versions 1..N of a few keys while
    this one reads: versions never go back, and the last one arrives (bounded wait)."""
    prefix = f"t{uuid.uuid4().hex[:8]}"
    setting = resilient_caches(target.location, KEY_PREFIX=prefix, NEAR_CACHE=dict(NEAR))
    keys = ["p0", "p1", "p2", "p3"]
    versions = 150
    spec = {"caches": setting, "keys": keys, "versions": versions, "pause": 0.002}
    with override_settings(CACHES=setting):
        reader = caches["default"]
        assert isinstance(reader, ResilientRedisCache)
        reader.set_many(dict.fromkeys(keys, 0))
        _linked(reader, target.probes(reader))
        for key in keys:
            _kept_near(reader, key, 0)
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        process = subprocess.Popen(
            [sys.executable, "-m", "tests.cache._near_worker", json.dumps(spec)],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip
        seen = dict.fromkeys(keys, 0)
        distinct: dict[str, set[int]] = {key: set() for key in keys}
        backwards: list[tuple[str, int, Any]] = []
        try:
            rounds = 0
            while process.poll() is None and rounds < 200_000:
                rounds += 1
                got = reader.get_many(keys) if rounds % 2 else {k: reader.get(k) for k in keys}
                for key in keys:
                    value = got.get(key)
                    if not isinstance(value, int) or value < seen[key]:
                        backwards.append((key, seen[key], value))
                        continue
                    seen[key] = value
                    distinct[key].add(value)
            out, err = process.communicate(timeout=60)
        finally:
            if process.poll() is None:
                process.kill()
                process.communicate()
        assert process.returncode == 0, err.decode()
        report = json.loads(out.decode().strip().splitlines()[-1])
        assert report["wrong_own_reads"] == [], report  # the writer read its own writes
        assert backwards == [], f"older versions read after newer ones: {backwards[:5]}"
        assert max(len(values) for values in distinct.values()) > 2, distinct  # overlapped
        for key in keys:
            _converges(lambda key=key: reader.get(key), versions, seen[key])
            _kept_near(reader, key, versions)


# --- safety: links ----------------------------------------------------------------------------


def test_nothing_is_served_near_without_a_verified_link(drr_redis_factory) -> None:
    """A user who may neither subscribe nor turn tracking on: the link can never be
    verified, so every read goes to Redis and sees every outside write at once."""
    if redis_version(find_redis_server()) < (7, 0):
        pytest.skip("ACL subcommand rules (-client|tracking) need Redis 7")
    user = acl_user("app", "app-pw", commands="+@all -client|tracking", channels="resetchannels")
    server = drr_redis_factory(users=[user])
    with near_cache(f"redis://app:app-pw@{server.host}:{server.port}/0") as cache:
        with server.client() as client:
            for version in range(20):
                client.set(cache.make_key("k"), str(version).encode())
                assert cache.get("k") == version
                assert cache.get("k") == version
                assert cache.get_many(["k"]) == {"k": version}
        stats = cache.stats()
        assert stats["near_hits"] == 0
        assert stats["near_links_verified"] == 0


@pytest.mark.chaos
@pytest.mark.parametrize("killed", ["pubsub", "all"])
def test_a_link_killed_server_side_drops_the_copies_before_the_next_read(
    drr_redis_factory, killed: str
) -> None:
    server = drr_redis_factory()
    with near_cache(server.url) as cache:
        cache.set_many({"k": 1, "other": "o"})
        _linked(cache, ["near:probe"])
        _kept_near(cache, "k", 1)
        flushes = _near(cache, "near_flushes")
        if killed == "pubsub":
            with server.client() as client:
                assert client.client_kill_filter(_type="pubsub") >= 1
        else:
            assert server.kill_clients() >= 1
        # The loss may be noticed at the next read of anything: read another key meanwhile.
        assert wait_for(
            lambda: (cache.get("other"), _near(cache, "near_flushes") > flushes)[1], timeout=5
        ), cache.stats()
        with server.client() as client:
            client.set(cache.make_key("k"), b"2")
        assert cache.get("k") == 2  # at once: the copy of 1 was dropped with the link
        # A new link is made and verified; then values are served near again.
        _linked(cache, ["near:probe"])
        _kept_near(cache, "k", 2)
        with server.client() as client:
            client.set(cache.make_key("k"), b"3")
        _converges(lambda: cache.get("k"), 3, 2)


@pytest.mark.chaos
@pytest.mark.parametrize("breaker", ["stays-closed", "opens"])
def test_a_hung_server_never_leads_to_a_stale_read_once_resumed(
    drr_redis_factory, breaker: str
) -> None:
    server = drr_redis_factory()
    options = {"BREAKER": PATIENT_BREAKER if breaker == "stays-closed" else FAST_BREAKER}
    with near_cache(server.url, **options, **QUICK_SOCKETS) as cache:
        cache.set("k", 1)
        _linked(cache, ["near:probe"])
        _kept_near(cache, "k", 1)
        flushes = _near(cache, "near_flushes")
        server.hang()
        try:
            during = [cache.get("k"), cache.get("k")]
            assert set(during) <= {1, None}  # near (Redis still holds 1) or the fallback
            if breaker == "opens":
                _degrade(cache)
                assert _near(cache, "near_flushes") > flushes
                assert _near(cache, "near_entries") == 0
                assert cache.get("k") is None  # the fallback's answer, not the near copy
        finally:
            server.resume()
        with server.client() as client:
            client.set(cache.make_key("k"), b"2")
        if breaker == "opens":
            seen: list[Any] = []
            assert wait_for(lambda: (seen.append(cache.get("k")), seen[-1] == 2)[1], timeout=10)
            assert 1 not in seen, seen  # the copy went when the breaker opened
        else:
            _converges(lambda: cache.get("k"), 2, 1, timeout=10)
        assert [cache.get("k") for _ in range(20)] == [2] * 20
        _recovered(cache)
        _linked(cache, ["near:probe"])
        _kept_near(cache, "k", 2)


@pytest.mark.chaos
def test_an_open_breaker_drops_the_entries_and_the_outage_rules_hold(drr_redis_factory) -> None:
    server = drr_redis_factory()
    with near_cache(server.url, BREAKER=FAST_BREAKER, **QUICK_SOCKETS) as cache:
        values = {"a": 1, "b": "two", "c": [3]}
        cache.set_many(values)
        _linked(cache, ["near:probe"])
        for key, value in values.items():
            _kept_near(cache, key, value)
        flushes, hits = _near(cache, "near_flushes"), _near(cache, "near_hits")
        with server.client() as client:
            client.save()
        server.kill()
        _degrade(cache)
        assert _near(cache, "near_flushes") > flushes
        assert _near(cache, "near_entries") == 0
        # The fallback answers now (empty when the breaker opened), never the near copies.
        assert cache.get_many(list(values)) == {}
        assert [cache.get(key) for key in values] == [None] * 3
        assert cache.has_key("a") is False
        cache.set("b", "written during the outage")  # journaled
        assert cache.get("b") == "written during the outage"
        assert _near(cache, "near_hits") == hits

        server.restart(keep_data=True)  # Redis holds a, b, c from before the outage
        _recovered(cache)
        assert cache.get("b") in ("written during the outage", None)  # never "two"
        assert cache.get("a") == 1
        _linked(cache, ["near:probe"])
        _kept_near(cache, "a", 1)
        _kept_near(cache, "c", [3])
        assert cache.get("b") in ("written during the outage", None)


@pytest.mark.chaos
def test_sentinel_failover_drops_the_old_primary_s_copies(drr_sentinel_factory) -> None:
    group = drr_sentinel_factory()
    with near_cache(group.location, BREAKER=FAST_BREAKER) as cache:
        cache.set_many({"k": 1, "j": "old"})
        _linked(cache, ["near:probe"])
        _kept_near(cache, "k", 1)
        _kept_near(cache, "j", "old")
        flushes = _near(cache, "near_flushes")
        new = group.failover()
        with new.client() as client:
            client.set(cache.make_key("k"), b"2")
            client.set(cache.make_key("j"), _encoded("new"))

        def reaches_new() -> bool:
            cache.set("probe:after", "x")
            with new.client() as client:
                return client.get(cache.make_key("probe:after")) is not None

        assert wait_for(reaches_new, timeout=20)  # the cache follows the new primary
        # Its copies from the old primary went with the failover: no wait for an invalidation.
        assert cache.get("k") == 2
        assert cache.get_many(["j"]) == {"j": "new"}
        assert _near(cache, "near_flushes") > flushes
        assert [cache.get("k") for _ in range(20)] == [2] * 20
        _linked(cache, ["near:probe"])
        _kept_near(cache, "k", 2)
        with new.client() as client:
            client.set(cache.make_key("k"), b"3")
        _converges(lambda: cache.get("k"), 3, 2)


@pytest.mark.chaos
def test_cluster_a_dead_master_drops_only_its_own_copies(drr_cluster_factory) -> None:
    cluster = drr_cluster_factory(masters=3, require_full_coverage=False)
    with near_cache(cluster.location, BREAKER=FAST_BREAKER, **QUICK_SOCKETS) as cache:
        keys = [f"k{i}" for i in range(30)]
        by_port = _keys_by_master(cluster, cache, keys)
        victim = cluster.masters[0]
        lost = by_port[victim.port]
        kept = [key for key in keys if key not in lost]
        assert lost
        assert kept
        values = {key: f"v1:{key}" for key in keys}
        assert cache.set_many(values) == []
        _linked(cache, keys)  # every shard's link
        for key in keys:
            _kept_near(cache, key, values[key])
        flushes = _near(cache, "near_flushes")

        def kept_are_near() -> None:
            hits = _near(cache, "near_hits")
            assert cache.get_many(kept) == {key: values[key] for key in kept}
            assert _near(cache, "near_hits") == hits + len(kept), cache.stats()

        with victim.client() as client:
            client.save()
        victim.kill()
        # The victim's link is gone: its copies go, and only those.
        assert wait_for(lambda: _near(cache, "near_flushes") > flushes, timeout=10), cache.stats()
        kept_are_near()
        hits = _near(cache, "near_hits")
        for key in lost:
            assert cache.get(key) is None  # the fallback's answer (empty), never a near copy
        assert _near(cache, "near_hits") == hits
        _degrade(cache, lost[0])
        kept_are_near()  # the other shards' copies survive their neighbour's outage

        victim.restart(keep_data=True)
        cluster.wait_for_ok()
        _recovered(cache, lost[0], timeout=20)
        _linked(cache, keys)
        for key in lost:
            _kept_near(cache, key, values[key])
        kept_are_near()


@pytest.mark.chaos
def test_cluster_a_shard_taken_over_by_its_replica_serves_no_old_copy(
    drr_cluster_factory,
) -> None:
    """The master hangs (its link says nothing, it does not break) and its replica takes
    its slots over: the old master's copies must go, and only those."""
    cluster = drr_cluster_factory(masters=3, replicas=1, require_full_coverage=False)
    with near_cache(cluster.location, BREAKER=FAST_BREAKER, **QUICK_SOCKETS) as cache:
        keys = [f"k{i}" for i in range(30)]
        old = cluster.masters[0]
        by_port = _keys_by_master(cluster, cache, keys)
        moved = by_port[old.port][0]
        kept = [key for port, ks in by_port.items() if port != old.port for key in ks]
        values = {key: f"v1:{key}" for key in keys}
        assert cache.set_many(values) == []
        _linked(cache, keys)
        for key in keys:
            _kept_near(cache, key, values[key])
        replica = cluster.replicas_of(old)[0]

        old.hang()
        try:
            cluster.failover(replica, takeover=True)
            with replica.client() as client:
                client.set(cache.make_key(moved), _encoded("new"))
            seen: list[Any] = []
            assert wait_for(lambda: (seen.append(cache.get(moved)), seen[-1] == "new")[1],
                            timeout=15), seen[-5:]  # fmt: skip
            assert set(seen) <= {values[moved], None, "new"}, seen
            assert [cache.get(moved) for _ in range(10)] == ["new"] * 10
            hits = _near(cache, "near_hits")
            assert cache.get_many(kept) == {key: values[key] for key in kept}
            assert _near(cache, "near_hits") == hits + len(kept)  # other shards kept theirs
        finally:
            old.resume()
        cluster.wait_for_ok()
        _linked(cache, keys)
        _kept_near(cache, moved, "new")  # served near again, from the new master's link
        with replica.client() as client:
            client.set(cache.make_key(moved), _encoded("newer"))
        _converges(lambda: cache.get(moved), "newer", "new")


@pytest.mark.chaos
def test_cluster_a_slot_migrated_to_another_master_serves_no_old_copy(
    drr_cluster_factory,
) -> None:
    """The key's slot moves (MIGRATE, then SETSLOT NODE on every master) behind this
    process's back; a write on the new owner is reported on the new owner's link, which
    the reader checks too before it serves the old copy."""
    cluster = drr_cluster_factory(masters=3)
    with near_cache(cluster.location) as cache:
        key = "{migrating}:value"
        assert cache.set(key, "old") is True
        _linked(cache, [key])
        _kept_near(cache, key, "old")
        made = cache.make_key(key)
        source = cluster.node_for_key(made)
        target = next(node for node in cluster.masters if node is not source)
        slot = int(redis.crc.key_slot(made.encode()))
        with target.client() as client:
            client.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", cluster.node_id(source))
        with source.client() as client:
            client.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", cluster.node_id(target))
            client.execute_command("MIGRATE", "127.0.0.1", target.port, "", 0, 5000, "KEYS", made)
        for node in cluster.masters:
            with node.client() as client:
                client.execute_command("CLUSTER", "SETSLOT", slot, "NODE", cluster.node_id(target))
        with target.client() as client:
            client.set(made, pickle.dumps("new", pickle.HIGHEST_PROTOCOL))
        seen_new = wait_for(lambda: cache.get(key) == "new", timeout=DELIVERY)
        assert seen_new, cache.stats()
        assert all(cache.get(key) == "new" for _ in range(50))  # never the old copy again
