"""The cache's degraded mode against real failures: killed, hung and restarted servers.

Every test here breaks servers it started itself (the harness's factories). The
contract under test: reads and writes never raise into user code during an
outage; counters raise (or count locally when asked); and after recovery a
process never reads a value older than what it wrote, deleted or cleared
during the outage, although Redis came back *with* its old data.

An outage whose old data must survive is a crash after a ``SAVE`` followed by
``restart(keep_data=True)``: nothing queued in a frozen server can sneak in,
so Redis provably still holds the value from before the outage.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from django.core.cache import caches
from django.test import override_settings

from django_redis_resilience import signals
from django_redis_resilience.cache import ResilientRedisCache
from django_redis_resilience.cache._state import JOURNAL_LIMIT
from django_redis_resilience.connection import BreakerState, CircuitBreaker
from django_redis_resilience.exceptions import RedisUnavailable
from django_redis_resilience.testing import ClusterGroup, RedisServer

from .conftest import BACKEND, FAST_BREAKER, resilient_cache, wait_for

#: Opens only after five failures: one timed-out call leaves it closed.
PATIENT_BREAKER = {**FAST_BREAKER, "FAILURE_THRESHOLD": 5}
#: Opens after two failures and stays open until reset: a process that recovers late.
SLEEPY_BREAKER = {"FAILURE_THRESHOLD": 2, "RECOVERY_TIMEOUT": 30, "MAX_RECOVERY_TIMEOUT": 30}


# --- helpers ---------------------------------------------------------------------------------


def _calls(server: RedisServer, command: str) -> int:
    with server.client() as client:
        stats = client.info("commandstats").get(f"cmdstat_{command}", {})
    return int(stats.get("calls", 0)) if isinstance(stats, dict) else 0


def _crash_keeping_data(server: RedisServer) -> None:
    """Snapshot, then crash: ``restart(keep_data=True)`` brings back exactly this data."""
    with server.client() as client:
        client.save()
    server.kill()


def _breaker(cache: ResilientRedisCache, key: str | None = None) -> CircuitBreaker:
    """The breaker of the endpoint serving ``key`` (the primary's off-cluster)."""
    made = None if key is None else cache.make_key(key)
    return cache.manager.route(write=True, key=made)[0].breaker


def _degrade(cache: ResilientRedisCache, key: str = "probe:never-written") -> None:
    """Read a key until its endpoint's breaker opens (reads journal nothing)."""
    assert wait_for(lambda: cache.get(key) is None and not _breaker(cache, key).closed, timeout=10)


def _recovered(cache: ResilientRedisCache, key: str | None = None, timeout: float = 15) -> None:
    assert wait_for(lambda: _breaker(cache, key).closed, timeout=timeout)


def _namespace(server: RedisServer, cache: ResilientRedisCache) -> list[bytes]:
    """This cache's keys in ``server`` (every version), as Redis has them."""
    with server.client() as client:
        return sorted(client.scan_iter(match=f"{cache.key_prefix}:*"))


def _keys_by_master(
    cluster: ClusterGroup, cache: ResilientRedisCache, keys: list[str]
) -> dict[int, list[str]]:
    out: dict[int, list[str]] = {master.port: [] for master in cluster.masters}
    for key in keys:
        out[cluster.node_for_key(cache.make_key(key)).port].append(key)
    return out


# --- no stale read after recovery ------------------------------------------------------------

_OUTAGE_WRITES: dict[str, Callable[[ResilientRedisCache], object]] = {
    "set": lambda c: c.set("k", 2),
    "set_many": lambda c: c.set_many({"k": 2}),
    "delete": lambda c: c.delete("k"),
    "delete_many": lambda c: c.delete_many(["k"]),
}


@pytest.mark.chaos
@pytest.mark.parametrize("op", list(_OUTAGE_WRITES))
@pytest.mark.parametrize("breaker", ["open", "closed"])
def test_no_stale_read_after_redis_returns_with_its_old_data(
    drr_redis_factory, op: str, breaker: str
) -> None:
    """``breaker="closed"``: the write is the call that fails, before the breaker opens."""
    server = drr_redis_factory()
    with resilient_cache(server.url, BREAKER=FAST_BREAKER) as cache:
        cache.set("k", 1)
        cache.set("untouched", "u")
        assert cache.get("k") == 1
        _crash_keeping_data(server)
        if breaker == "open":
            _degrade(cache)
        _OUTAGE_WRITES[op](cache)
        assert cache.stats()["journal_size"] == 1
        _degrade(cache)
        written = 2 if op.startswith("set") else None
        # During the outage the fallback answers with what this process wrote (or
        # misses: the fallback starts empty when the breaker opens).
        if breaker == "open":
            assert cache.get("k") == written
            assert cache.get_many(["k"]).get("k") == written
        else:
            assert cache.get("k") in (written, None)
        assert cache.stats()["journal_size"] == 1

        server.restart(keep_data=True)  # Redis holds k=1 again
        _recovered(cache)
        assert cache.stats()["invalidated_keys"] == 1  # k=1 was there, and deleted
        assert cache.get("untouched") == "u"  # the old data is back and served from Redis
        assert cache.get("k") in (written, None)  # never 1
        assert cache.get_many(["k", "untouched"]).get("k") in (written, None)
        assert cache.stats()["journal_size"] == 0


@pytest.mark.chaos
def test_clear_during_an_outage_empties_the_namespace_on_recovery(drr_redis_factory) -> None:
    server = drr_redis_factory()
    with resilient_cache(server.url, BREAKER=FAST_BREAKER) as cache:
        cache.set_many({"a": 1, "b": "two", "c": [3]})
        cache.set("a", "old version", version=2)
        with server.client() as client:
            client.set("foreign:key", b"not ours")
        _crash_keeping_data(server)
        _degrade(cache)
        cache.clear()  # no exception: the master is down, so it is cleared when it returns
        assert cache.get_many(["a", "b", "c"]) == {}
        cache.set("d", 4)
        assert cache.get("d") == 4

        server.restart(keep_data=True)
        _recovered(cache)
        assert _namespace(server, cache) == []
        assert cache.get_many(["a", "b", "c", "d"]) == {}
        assert cache.get("a", version=2) is None
        with server.client() as client:
            assert client.get("foreign:key") == b"not ours"  # only this cache's keys


@pytest.mark.chaos
def test_invalidate_namespace_hides_old_values_from_another_process(drr_redis_factory) -> None:
    """Two aliases on one server and prefix stand for two processes: own managers,
    breakers, journals and fallbacks. The writer recovers first."""
    server = drr_redis_factory()
    prefix = f"t{uuid.uuid4().hex[:8]}"

    def config(timeout: int) -> dict[str, Any]:
        options = {"BREAKER": FAST_BREAKER, "RECOVERY": "invalidate_namespace"}
        return {
            "BACKEND": BACKEND,
            "LOCATION": server.url,
            "KEY_PREFIX": prefix,
            "TIMEOUT": timeout,  # only so that each alias finds its own settings
            "OPTIONS": options,
        }

    with override_settings(CACHES={"default": config(300), "other": config(301)}):
        writer, reader = caches["default"], caches["other"]
        assert writer.manager is not reader.manager
        reader.set("k", 1)
        reader.set("untouched", "u")
        assert writer.get("k") == 1
        _crash_keeping_data(server)
        _degrade(writer)
        writer.set("k", 2)
        assert writer.get("k") == 2

        server.restart(keep_data=True)  # Redis holds k=1 again
        _recovered(writer)
        assert writer.stats()["invalidated_keys"] == 2  # k and untouched
        assert _namespace(server, writer) == []
        assert reader.get("k") is None  # the reader never saw the outage; still not 1
        assert reader.get("untouched") is None
        assert writer.get("k") is None


@pytest.mark.chaos
def test_invalidate_namespace_protects_a_writer_that_recovers_late(drr_redis_factory) -> None:
    """The stricter case: the process that did *not* write recovers first."""
    server = drr_redis_factory()
    prefix = f"t{uuid.uuid4().hex[:8]}"

    def config(breaker: dict[str, Any]) -> dict[str, Any]:
        options = {"BREAKER": breaker, "RECOVERY": "invalidate_namespace"}
        return {"BACKEND": BACKEND, "LOCATION": server.url, "KEY_PREFIX": prefix,
                "OPTIONS": options}  # fmt: skip

    caches_setting = {"default": config(SLEEPY_BREAKER), "other": config(FAST_BREAKER)}
    with override_settings(CACHES=caches_setting):
        writer, reader = caches["default"], caches["other"]
        reader.set("k", 1)
        _crash_keeping_data(server)
        _degrade(writer)
        _degrade(reader)
        writer.set("k", 2)

        server.restart(keep_data=True)
        _recovered(reader)
        assert reader.stats()["invalidated_keys"] == 1  # k=1, deleted by the reader
        assert not _breaker(writer).closed  # the writer is still in its outage
        assert reader.get("k") is None  # not 1, although the writer has not recovered
        assert writer.get("k") == 2
        _breaker(writer).reset()  # the writer recovers now
        assert writer.get("k") is None
        assert reader.get("k") is None


@pytest.mark.chaos
def test_timed_out_write_is_journaled_and_the_old_value_never_read(drr_redis_factory) -> None:
    server = drr_redis_factory()
    with resilient_cache(server.url, BREAKER=PATIENT_BREAKER, SOCKET_TIMEOUT=0.2) as cache:
        cache.set("k", 1)
        breaker = _breaker(cache)
        server.hang()
        try:
            assert cache.set("k", 2) is True  # timed out on Redis, stored in the fallback
            assert breaker.state is BreakerState.CLOSED  # one failure of five
            stats = cache.stats()
            assert (stats["journal_size"], stats["errors"], stats["fallback_writes"]) == (1, 1, 1)
            assert cache.get("k") == 2  # journaled: from the fallback, not the frozen Redis
            assert cache.stats()["fallback_reads"] == stats["fallback_reads"] + 1
        finally:
            server.resume()

        seen: list[Any] = []

        def drained() -> bool:
            seen.append(cache.get("k"))
            return cache.stats()["journal_size"] == 0

        assert wait_for(drained, timeout=10)
        assert breaker.state is BreakerState.CLOSED
        assert 1 not in seen
        assert set(seen) <= {2, None}
        assert cache.get("k") in (2, None)
        with server.client() as client:
            assert client.get(cache.make_key("k")) in (b"2", None)


@pytest.mark.chaos
def test_clear_that_timed_out_is_carried_out_without_an_outage(drr_redis_factory) -> None:
    """A ``clear()`` that failed while the breaker stayed closed must still happen."""
    server = drr_redis_factory()
    with resilient_cache(server.url, BREAKER=PATIENT_BREAKER, SOCKET_TIMEOUT=0.2) as cache:
        cache.set("a", 1)
        server.hang()
        try:
            cache.clear()  # times out: one failure of five, the breaker stays closed
            assert _breaker(cache).state is BreakerState.CLOSED
            assert cache.get("a") is None
        finally:
            server.resume()
        assert wait_for(lambda: _namespace(server, cache) == [], timeout=5), (
            "the clear() that timed out was never carried out on the healthy server"
        )
        # Until the drain has finished, keys are read from the fallback (a miss, never a
        # stale value): wait for it before reading back a new write from Redis.
        assert wait_for(lambda: not cache.stats()["journal_overflowed"], timeout=5)
        cache.set("b", "fresh")
        assert cache.get("b") == "fresh"


@pytest.mark.chaos
def test_journal_overflow_invalidates_the_namespace(drr_redis_factory) -> None:
    server = drr_redis_factory()
    with resilient_cache(server.url, BREAKER=FAST_BREAKER) as cache:
        cache.set("old", "never written during the outage")
        cache.set("k", 1)
        _crash_keeping_data(server)
        _degrade(cache)
        for i in range(JOURNAL_LIMIT + 1):
            cache.set(f"w{i}", i)
        assert cache.stats()["journal_size"] == JOURNAL_LIMIT
        # Overflowed: any key may be outdated in Redis, so every read uses the fallback.
        assert cache.get("old") is None

        server.restart(keep_data=True)
        _recovered(cache, timeout=20)
        assert _namespace(server, cache) == []
        assert cache.get("old") is None
        assert cache.get("k") is None
        assert cache.stats()["invalidated_keys"] == 2
        cache.set("after", "v")
        assert cache.get("after") == "v"  # reads are back on Redis


# --- the namespace invalidated: every key the cache makes ------------------------------------


@pytest.mark.chaos
@pytest.mark.parametrize(
    ("key_function", "version"),
    [
        pytest.param(None, -1, id="django-default-negative-version"),
        pytest.param("tests.cache.test_namespace.digest_after_prefix", 1, id="digest"),
    ],
)
@pytest.mark.parametrize("trigger", ["clear", "invalidate_namespace"])
def test_namespace_invalidation_finds_every_key_of_the_cache(
    drr_redis_factory, key_function: str | None, version: int, trigger: str
) -> None:
    """Before: the SCAN pattern missed ``prefix:-1:...`` and, with a digest, was a literal
    digest of ``*``; after recovery the value from before the outage came back."""
    server = drr_redis_factory()
    options: dict[str, Any] = {"BREAKER": FAST_BREAKER}
    if trigger == "invalidate_namespace":
        options["RECOVERY"] = "invalidate_namespace"
    setting = {"default": {"BACKEND": BACKEND, "LOCATION": server.url, "OPTIONS": options,
                           "KEY_PREFIX": f"t{uuid.uuid4().hex[:8]}"}}  # fmt: skip
    if key_function is not None:
        setting["default"]["KEY_FUNCTION"] = key_function
    with override_settings(CACHES=setting):
        cache = caches["default"]
        cache.set("old", "before the outage", version=version)
        reserved = f"{cache.key_prefix}:drr:lock:{{job}}"
        with server.client() as client:
            client.set(reserved, b"held")
        _crash_keeping_data(server)
        _degrade(cache)
        if trigger == "clear":
            cache.clear()
        cache.set("new", "during the outage", version=version)

        server.restart(keep_data=True)  # Redis holds "old" again
        _recovered(cache)
        assert cache.get("old", version=version) is None
        with server.client() as client:
            assert client.exists(cache.make_key("old", version=version)) == 0
            assert client.get(reserved) == b"held"  # the app's own keys stay


# --- a shared fallback: nothing from an earlier outage ---------------------------------------

#: How each ``FALLBACK`` kind is given; "fallback" is a ``CACHES`` alias of its own.
_FALLBACKS = {
    "alias": "fallback",
    "backend-class": "django.core.cache.backends.locmem.LocMemCache",
    "private": None,  # the default
}


def _fallback_caches(url: str, fallback: str, **options: Any) -> dict[str, Any]:
    """``CACHES``: a resilient ``default`` using the ``fallback`` kind, and the alias."""
    opts = {"BREAKER": FAST_BREAKER, **options}
    if _FALLBACKS[fallback] is not None:
        opts["FALLBACK"] = _FALLBACKS[fallback]
    return {
        "default": {"BACKEND": BACKEND, "LOCATION": url, "OPTIONS": opts,
                    "KEY_PREFIX": f"t{uuid.uuid4().hex[:8]}"},
        "fallback": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache",
                     "LOCATION": f"fallback-{uuid.uuid4().hex[:8]}",
                     "OPTIONS": {"MAX_ENTRIES": 100_000}},
    }  # fmt: skip


@pytest.mark.chaos
@pytest.mark.parametrize("fallback", list(_FALLBACKS))
@pytest.mark.parametrize("forgotten", ["clear", "journal_overflow"])
def test_no_fallback_serves_what_an_earlier_outage_wrote(
    drr_redis_factory, fallback: str, forgotten: str
) -> None:
    """After a ``clear()`` or an overflow the journal names no key written during the
    outage. Before: a shared fallback kept them, and served ``v2`` in the next outage."""
    server = drr_redis_factory()
    with override_settings(CACHES=_fallback_caches(server.url, fallback)):
        cache = caches["default"]
        cache.set("price", "v1")
        server.kill()
        _degrade(cache)  # outage 1
        if forgotten == "clear":
            cache.clear()
        else:
            for i in range(JOURNAL_LIMIT + 1):
                cache.set(f"w{i}", i)
        assert cache.stats()["journal_overflowed"]
        cache.set("price", "v2")
        assert cache.get("price") == "v2"

        server.restart()
        _recovered(cache)
        cache.set("price", "v3")
        assert cache.get("price") == "v3"

        server.kill()
        _degrade(cache)  # outage 2
        assert cache.get("price") is None  # a miss: v3 is out of reach, v2 is outdated
        assert cache.get_many(["price"]) == {}


@pytest.mark.chaos
def test_a_fallback_write_that_the_recovery_overtook_is_undone(drr_redis_factory) -> None:
    """A write decided during the outage (store chosen) that lands after the recovery
    must not wait in the shared fallback for the next outage."""
    server = drr_redis_factory()
    with override_settings(CACHES=_fallback_caches(server.url, "alias", BREAKER=SLEEPY_BREAKER)):
        cache = caches["default"]
        server.kill()
        _degrade(cache)
        made = cache.make_key("price")
        store = cache.state.fallback(cache.manager.route(write=True, key=made)[0])
        assert store is not None

        server.restart()
        _breaker(cache).reset()  # the recovery runs between the choice and the write
        assert _breaker(cache).closed
        store.set("price", "late")

        server.kill()
        _degrade(cache)
        assert cache.get("price") is None


@pytest.mark.chaos
def test_processes_sharing_a_fallback_alias_share_one_outage(drr_redis_factory) -> None:
    """Two aliases with one prefix stand for two processes; the generation of the shared
    fallback is kept in it, so an outage's values are the same for both."""
    server = drr_redis_factory()
    caches_setting = _fallback_caches(server.url, "alias")
    caches_setting["other"] = {**caches_setting["default"], "TIMEOUT": 301}
    with override_settings(CACHES=caches_setting):
        writer, reader = caches["default"], caches["other"]
        assert writer.manager is not reader.manager
        server.kill()
        _degrade(writer)
        _degrade(reader)
        writer.set("session", "logged in")
        assert reader.get("session") == "logged in"


# --- resetting a closed breaker ---------------------------------------------------------------


def test_resetting_a_closed_breaker_recovers_nothing(drr_redis_factory) -> None:
    """Before: the recovery hooks ran first, so ``RECOVERY="invalidate_namespace"``
    deleted the whole namespace of a healthy cache."""
    server = drr_redis_factory()
    options = {"BREAKER": FAST_BREAKER, "RECOVERY": "invalidate_namespace"}
    with resilient_cache(server.url, **options) as cache:
        cache.set_many({"a": 1, "b": 2})
        breaker = _breaker(cache)
        reset = breaker.reset()
        assert breaker.state is BreakerState.CLOSED
        assert cache.get_many(["a", "b"]) == {"a": 1, "b": 2}
        with server.client() as client:
            assert client.exists(cache.make_key("a"), cache.make_key("b")) == 2
        assert cache.stats()["invalidated_keys"] == 0
        assert reset is False  # nothing was done


# --- counters ---------------------------------------------------------------------------------


@pytest.mark.chaos
def test_counters_raise_during_an_outage_by_default(drr_redis_factory) -> None:
    server = drr_redis_factory()
    with resilient_cache(server.url, BREAKER=FAST_BREAKER) as cache:
        cache.set("n", 10)
        _crash_keeping_data(server)
        with pytest.raises(RedisUnavailable):
            cache.incr("n")  # the breaker is still closed: the call itself failed
        _degrade(cache)
        with pytest.raises(RedisUnavailable):
            cache.incr("n")
        with pytest.raises(RedisUnavailable):
            cache.decr("n")
        server.restart(keep_data=True)
        _recovered(cache)
        assert cache.incr("n") == 11


@pytest.mark.chaos
def test_local_counters_count_during_an_outage(drr_redis_factory) -> None:
    server = drr_redis_factory()
    with resilient_cache(server.url, BREAKER=FAST_BREAKER, DEGRADED_COUNTERS="local") as cache:
        cache.set("n", 10)
        _crash_keeping_data(server)
        _degrade(cache)
        first = cache.incr("n")  # the counter exists (in Redis): count it locally
        assert cache.incr("n") == first + 1
        assert cache.decr("n", 2) == first - 1


@pytest.mark.chaos
def test_local_counts_are_never_written_over_redis(drr_redis_factory) -> None:
    server = drr_redis_factory()
    with resilient_cache(server.url, BREAKER=FAST_BREAKER, DEGRADED_COUNTERS="local") as cache:
        cache.set("n", 10)
        _crash_keeping_data(server)
        # Local counts start from zero: whether a key exists is Redis's to say.
        assert cache.incr("missing") == 1
        _degrade(cache)
        for _ in range(5):
            cache.incr("n")
        server.restart(keep_data=True)
        _recovered(cache)
        assert cache.get("n") == 10  # the real count, not the local one
        with pytest.raises(ValueError):
            cache.incr("missing")  # the local count was never written to Redis
        assert cache.incr("n") == 11
        with server.client() as client:
            assert client.get(cache.make_key("n")) == b"11"


# --- without a fallback -----------------------------------------------------------------------


@pytest.mark.chaos
def test_without_fallback_strict_calls_raise_redis_unavailable(drr_redis_factory) -> None:
    server = drr_redis_factory()
    with resilient_cache(
        server.url, BREAKER=FAST_BREAKER, FALLBACK=None, IGNORE_EXCEPTIONS=False
    ) as cache:
        cache.set("r", 1)
        server.kill()
        calls: list[Callable[[], object]] = [
            lambda: cache.get("r"),
            lambda: cache.get_many(["r", "s"]),
            lambda: cache.has_key("r"),
            lambda: cache.set("w1", 1),
            lambda: cache.add("w2", 1),
            lambda: cache.delete("w3"),
            lambda: cache.set_many({"w4": 1}),
            lambda: cache.delete_many(["w5"]),
            lambda: cache.incr("r"),
        ]
        for _ in range(2):  # once on failing calls, once with the breaker open
            for call in calls:
                with pytest.raises(RedisUnavailable):
                    call()
        assert not _breaker(cache).closed


@pytest.mark.chaos
def test_without_fallback_strict_read_of_a_key_whose_write_failed_raises(
    drr_redis_factory,
) -> None:
    server = drr_redis_factory()
    with resilient_cache(
        server.url, BREAKER=FAST_BREAKER, FALLBACK=None, IGNORE_EXCEPTIONS=False
    ) as cache:
        cache.set("k", 1)
        server.kill()
        with pytest.raises(RedisUnavailable):
            cache.set("k", 2)
        # Redis is down: IGNORE_EXCEPTIONS=False asks for an error, not a silent miss.
        with pytest.raises(RedisUnavailable):
            cache.get("k")


@pytest.mark.chaos
def test_without_fallback_calls_return_misses_and_never_stale(drr_redis_factory) -> None:
    server = drr_redis_factory()
    with resilient_cache(server.url, BREAKER=FAST_BREAKER, FALLBACK=None) as cache:
        cache.set("k", 1)
        cache.set("untouched", "u")
        _crash_keeping_data(server)
        for _ in range(2):  # once on failing calls, once with the breaker open
            assert cache.get("untouched") is None
            assert cache.get("untouched", "default") == "default"
            assert cache.get_many(["untouched", "k"]) == {}
            assert cache.has_key("untouched") is False
            assert cache.set("k", 2) is False
            assert cache.add("new", 1) is False
            assert cache.delete("other") is False
            assert cache.set_many({"x": 1}) == ["x"]
            assert cache.delete_many(["x"]) == 0  # nothing deleted: Redis is out of reach
            with pytest.raises(RedisUnavailable):
                cache.incr("k")
        assert not _breaker(cache).closed

        server.restart(keep_data=True)  # Redis holds k=1 again
        _recovered(cache)
        assert cache.get("untouched") == "u"
        assert cache.get("k") is None  # its write failed: invalidated, never 1


# --- threads ------------------------------------------------------------------------------------


@pytest.mark.chaos
def test_threads_never_see_an_exception_through_kill_restart_and_hang(drr_redis_factory) -> None:
    server = drr_redis_factory()
    with resilient_cache(
        server.url, BREAKER=FAST_BREAKER, SOCKET_TIMEOUT=0.1, SOCKET_CONNECT_TIMEOUT=0.1
    ) as cache:
        stop = threading.Event()
        errors: list[str] = []
        calls = [0] * 8

        def worker(n: int) -> None:
            local = caches["default"]  # Django gives each thread its own backend object
            i = 0
            while not stop.is_set():
                i += 1
                key = f"t{(n * 7 + i) % 16}"
                try:
                    if i % 4 == 0:
                        local.set(key, (n, i))
                    elif i % 4 == 1:
                        local.get(key)
                    elif i % 4 == 2:
                        local.get_many([key, f"t{i % 16}", "never-set"])
                    else:
                        local.delete(key)
                except BaseException as exc:
                    errors.append(f"thread {n}: {exc!r}")
                calls[n] += 1
                time.sleep(0.001)

        threads = [threading.Thread(target=worker, args=(n,), daemon=True) for n in range(8)]
        for thread in threads:
            thread.start()
        try:
            time.sleep(0.2)
            server.kill()
            time.sleep(0.3)
            server.restart()  # empty
            time.sleep(0.3)
            server.hang()
            time.sleep(0.4)
            server.resume()
            time.sleep(0.3)
        finally:
            stop.set()
            for thread in threads:
                thread.join(timeout=10)
        assert [t.name for t in threads if t.is_alive()] == []  # every call returned
        assert errors == []
        assert all(n > 0 for n in calls)
        stats = cache.stats()
        assert stats["last_outage_start"] is not None  # the degraded path did run
        assert stats["fallback_reads"] + stats["fallback_writes"] > 0
        _recovered(cache)
        assert cache.set("after", "ok") is True
        assert cache.get("after") == "ok"


# --- signals ------------------------------------------------------------------------------------


@pytest.mark.chaos
def test_degraded_and_recovered_signals_fire_once_per_outage(drr_redis_factory) -> None:
    server = drr_redis_factory()
    events: list[tuple[str, int | None]] = []

    def on_degraded(sender: Any, alias: str, endpoint: str, **kwargs: Any) -> None:
        if alias == "default" and f":{server.port}" in endpoint:
            events.append(("degraded", None))

    def on_recovered(
        sender: Any, alias: str, endpoint: str, invalidated_keys: int, **kwargs: Any
    ) -> None:
        if alias == "default" and f":{server.port}" in endpoint:
            events.append(("recovered", invalidated_keys))

    signals.redis_degraded.connect(on_degraded, weak=False)
    signals.redis_recovered.connect(on_recovered, weak=False)
    try:
        with resilient_cache(server.url, BREAKER=FAST_BREAKER) as cache:
            cache.set_many({"a": 1, "b": 2, "c": 3})
            _crash_keeping_data(server)
            _degrade(cache)
            cache.set("a", 10)
            cache.delete("b")
            assert cache.stats()["journal_size"] == 2
            server.restart(keep_data=True)
            _recovered(cache)
            assert wait_for(lambda: len(events) >= 2)
            assert events == [("degraded", None), ("recovered", 2)]
            assert cache.stats()["invalidated_keys"] == 2

            _crash_keeping_data(server)  # a second outage
            _degrade(cache)
            cache.set("c", 30)
            server.restart(keep_data=True)
            _recovered(cache)
            assert wait_for(lambda: len(events) >= 4)
            assert events == [
                ("degraded", None),
                ("recovered", 2),
                ("degraded", None),
                ("recovered", 1),
            ]
            assert cache.stats()["invalidated_keys"] == 3
            assert cache.get_many(["a", "b", "c"]) == {}
    finally:
        signals.redis_degraded.disconnect(on_degraded)
        signals.redis_recovered.disconnect(on_recovered)


# --- cluster ------------------------------------------------------------------------------------


@pytest.mark.chaos
def test_cluster_hung_shard_degrades_alone_and_never_serves_stale(drr_cluster_factory) -> None:
    cluster = drr_cluster_factory(masters=3, require_full_coverage=False)
    with resilient_cache(
        cluster.location, BREAKER=FAST_BREAKER, SOCKET_TIMEOUT=0.1, SOCKET_CONNECT_TIMEOUT=0.1
    ) as cache:
        by_port = _keys_by_master(cluster, cache, [f"k{i}" for i in range(60)])
        hung = cluster.masters[0]
        healthy = [m for m in cluster.masters if m is not hung]
        probe, target, other = by_port[hung.port][:3]
        everything = [k for keys in by_port.values() for k in keys]
        assert cache.set_many({k: f"v1:{k}" for k in everything}) == []

        hung.hang()
        try:
            _degrade(cache, probe)
            assert all(_breaker(cache, by_port[m.port][0]).closed for m in healthy)
            before = {m.port: (_calls(m, "get"), _calls(m, "set")) for m in healthy}
            for master in healthy:
                for key in by_port[master.port]:
                    assert cache.set(key, f"v2:{key}") is True
                    assert cache.get(key) == f"v2:{key}"
            for master in healthy:  # every healthy-shard call reached Redis
                n = len(by_port[master.port])
                gets, sets = before[master.port]
                assert (_calls(master, "get") - gets, _calls(master, "set") - sets) == (n, n)

            stats = cache.stats()
            assert cache.set(target, "v2") is True
            assert cache.get(target) == "v2"
            after = cache.stats()
            assert after["fallback_writes"] == stats["fallback_writes"] + 1
            assert after["fallback_reads"] == stats["fallback_reads"] + 1
            expected = {k: f"v2:{k}" for m in healthy for k in by_port[m.port]}
            assert cache.get_many(everything) == {**expected, target: "v2"}
        finally:
            hung.resume()

        cluster.wait_for_ok()
        _recovered(cache, target, timeout=20)
        assert cache.get(target) in ("v2", None)  # never v1
        assert cache.get(other) == f"v1:{other}"  # not written during the outage: Redis's
        assert all(_breaker(cache, by_port[m.port][0]).closed for m in healthy)


@pytest.mark.chaos
def test_cluster_full_coverage_lost_master_every_call_returns(drr_cluster_factory) -> None:
    cluster = drr_cluster_factory(masters=3, require_full_coverage=True)
    with resilient_cache(cluster.location, BREAKER=FAST_BREAKER, SOCKET_TIMEOUT=0.2) as cache:
        keys = [f"k{i}" for i in range(30)]
        assert cache.set_many({k: f"v1:{k}" for k in keys}) == []
        victim = cluster.masters[0]
        survivors = [m for m in cluster.masters if m is not victim]
        # A key that ``exercise`` never writes, on a master that stays up.
        survivor_key = next(
            k for k in keys[20:] if cluster.node_for_key(cache.make_key(k)) in survivors
        )
        errors: list[str] = []

        def exercise() -> None:
            calls: list[Callable[[], object]] = [
                lambda: cache.get(keys[0]),
                lambda: cache.get(survivor_key),
                lambda: cache.set(keys[1], "x"),
                lambda: cache.add("added", 1),
                lambda: cache.has_key(keys[2]),
                lambda: cache.touch(keys[3], 60),
                lambda: cache.delete(keys[4]),
                lambda: cache.get_many(keys),
                lambda: cache.set_many(dict.fromkeys(keys[5:15], "m")),
                lambda: cache.delete_many(keys[15:20]),
            ]
            for call in calls:
                try:
                    call()
                except Exception as exc:
                    errors.append(repr(exc))

        victim.kill()
        cluster.wait_for_state("fail", nodes=survivors)
        # CLUSTERDOWN from any node opens every shard's breaker.
        assert wait_for(
            lambda: (exercise(), all(not s.breaker.closed for s in cache.manager.endpoints))[1],
            timeout=10,
        )
        exercise()
        cache.clear()
        assert cache.set(survivor_key, "v2") is True
        assert cache.get(survivor_key) == "v2"

        victim.restart()
        cluster.wait_for_ok()
        assert wait_for(lambda: all(s.breaker.closed for s in cache.manager.endpoints), timeout=20)
        exercise()
        assert errors == []
        assert cache.get(survivor_key) in ("v2", None)  # never v1
        assert cache.set("after", "ok") is True
        node = cluster.node_for_key(cache.make_key("after"))
        with node.client() as client:
            assert client.get(cache.make_key("after")) is not None
        assert cache.get("after") == "ok"


# --- sentinel -----------------------------------------------------------------------------------


@pytest.mark.chaos
def test_sentinel_failover_mid_traffic_never_reaches_the_caller(drr_sentinel_factory) -> None:
    group = drr_sentinel_factory()
    with resilient_cache(group.location, BREAKER=FAST_BREAKER) as cache:
        stop = threading.Event()
        errors: list[str] = []
        done: list[int] = []

        def traffic() -> None:
            local = caches["default"]
            i = 0
            while not stop.is_set():
                i += 1
                try:
                    local.set(f"s{i % 10}", i)
                    local.get(f"s{(i + 5) % 10}")
                    local.get_many([f"s{j}" for j in range(10)])
                    done.append(i)
                except BaseException as exc:
                    errors.append(repr(exc))
                time.sleep(0.002)

        def reaches(node: RedisServer) -> bool:
            cache.set("after", "x")
            with node.client() as client:
                return client.get(cache.make_key("after")) is not None

        thread = threading.Thread(target=traffic, daemon=True)
        thread.start()
        try:
            assert wait_for(lambda: len(done) > 20)
            old = group.current_primary()
            old.kill()
            new = group.wait_for_failover(old, timeout=30)
            _recovered(cache)
            assert wait_for(lambda: reaches(new), timeout=10)
            mark = len(done)
            assert wait_for(lambda: len(done) > mark + 20)
        finally:
            stop.set()
            thread.join(timeout=10)
        assert not thread.is_alive()
        assert errors == []
        assert cache.stats()["last_outage_start"] is not None
        before = _calls(new, "get")
        assert cache.get("after") == "x"
        assert _calls(new, "get") == before + 1


@pytest.mark.chaos
def test_every_extra_degrades_or_raises_redis_unavailable_never_a_raw_error(
    drr_redis_factory,
) -> None:
    server = drr_redis_factory()
    with resilient_cache(server.url, BREAKER=FAST_BREAKER) as cache:
        cache.set("k", 1, 60)
        lock = cache.lock("job", timeout=5)
        server.kill()
        _degrade(cache)
        # Writes of expiry degrade to the fallback (and are journaled), silently.
        assert cache.touch("k", 30) in (True, False)
        assert cache.expire("k", 30) in (True, False)
        assert cache.pexpire("k", 30_000) in (True, False)
        assert cache.persist("k") in (True, False)
        # What a fallback cannot answer truthfully raises the documented error.
        for call in (
            lambda: cache.ttl("k"),
            lambda: cache.pttl("k"),
            lambda: cache.keys("*"),
            lambda: list(cache.iter_keys("*")),
            lambda: cache.delete_pattern("*"),
            lambda: lock.acquire(blocking=False),
            lambda: cache.incr("k"),
        ):
            with pytest.raises(RedisUnavailable):
                call()
