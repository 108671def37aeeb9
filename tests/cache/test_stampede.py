"""``get_or_set``/``aget_or_set`` stampede protection on real Redis.

One computation per key at a time in a process, whether the callers are
threads, asyncio tasks or both; with ``lock=True`` one in all processes.
Loaders count their calls, so every assertion is about how many times a value
was computed and which value each caller got, never about how long it took.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from django.apps import apps
from django.core import checks as django_checks
from django.core.cache import caches
from django.test import override_settings

from django_redis_resilience import checks
from django_redis_resilience.cache import ResilientRedisCache
from django_redis_resilience.conf import conf
from django_redis_resilience.exceptions import ConfigurationError
from django_redis_resilience.testing import RedisServer
from tests import _processes

from . import _stampede_worker
from .conftest import BACKEND, FAST_BREAKER, resilient_cache, settle, wait_for

#: XFetch's beta so large that a value is always "about to expire": it is recomputed at
#: once (the chance of not refreshing a 60 s value computed in 10 ms is about 1e-5).
ALWAYS = 1e9
#: What the loaders of the concurrency tests take, so that every caller arrives meanwhile.
SLOW = 0.2


class LoaderFailed(Exception):
    pass


# --- helpers ---------------------------------------------------------------------------------


def _in_flight(cache: ResilientRedisCache) -> int:
    return cache.state.flights.in_flight()


def _async_followers(cache: ResilientRedisCache, key: str) -> int:
    """How many asyncio tasks wait for the computation of ``key`` in progress."""
    flight = cache.state.flights._flights.get(cache.make_key(key))
    return 0 if flight is None else len(flight._futures)


async def _until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        assert loop.time() < deadline, "the condition never held"
        await asyncio.sleep(0.005)


class Outcomes:
    """What concurrent callers got: values and exceptions, in arrival order."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.values: list[Any] = []
        self.errors: list[BaseException] = []

    def add(self, outcome: Any) -> None:
        with self._lock:
            if isinstance(outcome, BaseException):
                self.errors.append(outcome)
            else:
                self.values.append(outcome)

    def call(self, fn: Callable[[], Any]) -> None:
        try:
            outcome = fn()
        except BaseException as exc:
            outcome = exc
        self.add(outcome)


def _start(*targets: Callable[[], Any]) -> list[threading.Thread]:
    threads = [threading.Thread(target=target, daemon=True) for target in targets]
    for thread in threads:
        thread.start()
    return threads


def _join(threads: list[threading.Thread]) -> None:
    for thread in threads:
        thread.join(timeout=30)
    assert [t.name for t in threads if t.is_alive()] == []


# --- single flight in one process ------------------------------------------------------------


def test_fifty_tasks_compute_a_cold_key_once(cache: ResilientRedisCache) -> None:
    calls: list[int] = []

    async def loader() -> dict[str, int]:
        calls.append(1)
        await asyncio.sleep(SLOW)
        return {"computed": len(calls)}

    async def body() -> list[Any]:
        return await asyncio.gather(
            *(cache.aget_or_set("cold", loader, 60) for _ in range(50)), return_exceptions=True
        )

    assert asyncio.run(body()) == [{"computed": 1}] * 50
    assert len(calls) == 1
    assert _in_flight(cache) == 0
    settle(cache)
    assert cache.get("cold") == {"computed": 1}
    assert 55 <= (cache.ttl("cold") or 0) <= 60


def test_twenty_threads_compute_a_cold_key_once(cache: ResilientRedisCache) -> None:
    calls: list[int] = []
    barrier = threading.Barrier(20)
    outcomes = Outcomes()

    def loader() -> str:
        calls.append(threading.get_ident())
        time.sleep(SLOW)
        return f"computed by {threading.get_ident()}"

    def caller() -> None:
        barrier.wait(timeout=10)
        # Django gives every thread its own backend object: they share one flight.
        outcomes.call(lambda: caches["default"].get_or_set("cold", loader, 60))

    _join(_start(*[caller] * 20))
    assert outcomes.errors == []
    assert len(calls) == 1
    assert outcomes.values == [f"computed by {calls[0]}"] * 20
    assert _in_flight(cache) == 0
    settle(cache)
    assert cache.get("cold") == f"computed by {calls[0]}"


@pytest.mark.parametrize("leader", ["thread", "task"])
def test_threads_and_tasks_at_once_compute_once(cache: ResilientRedisCache, leader: str) -> None:
    """The leader is a thread (tasks are woken from it) or a task (threads wait for it)."""
    calls: list[str] = []
    outcomes = Outcomes()

    def sync_loader() -> str:
        calls.append("thread")
        time.sleep(SLOW)
        return "value"

    async def async_loader() -> str:
        calls.append("task")
        await asyncio.sleep(SLOW)
        return "value"

    def in_thread() -> None:
        outcomes.call(lambda: caches["default"].get_or_set("cold", sync_loader, 60))

    def tasks(n: int) -> Callable[[], None]:
        async def gathered() -> list[Any]:
            pending = [cache.aget_or_set("cold", async_loader, 60) for _ in range(n)]
            return await asyncio.gather(*pending, return_exceptions=True)

        def run() -> None:
            for outcome in asyncio.run(gathered()):
                outcomes.add(outcome)

        return run

    first = _start(in_thread if leader == "thread" else tasks(1))
    assert wait_for(lambda: _in_flight(cache) == 1)
    others = _start(*[in_thread] * 10, tasks(20), tasks(5))
    _join(first + others)
    assert outcomes.errors == []
    assert outcomes.values == ["value"] * 36
    assert calls == [leader]
    assert _in_flight(cache) == 0


@pytest.mark.parametrize("side", ["threads", "tasks"])
def test_a_failing_loader_fails_its_followers_and_the_next_call_computes_again(
    cache: ResilientRedisCache, side: str
) -> None:
    calls: list[str] = []
    outcomes = Outcomes()

    def failing() -> str:
        calls.append("failed")
        time.sleep(SLOW)
        raise LoaderFailed("the database is down")

    async def never() -> str:
        raise AssertionError("the value was cached: no loader runs")

    if side == "threads":

        def caller() -> None:
            outcomes.call(lambda: caches["default"].get_or_set("k", failing, 60))

        leader = _start(caller)
        assert wait_for(lambda: _in_flight(cache) == 1)
        _join(leader + _start(*[caller] * 10))
    else:

        async def body() -> None:
            release = asyncio.Event()

            async def afailing() -> str:
                calls.append("failed")
                await release.wait()
                raise LoaderFailed("the database is down")

            first = asyncio.create_task(cache.aget_or_set("k", afailing, 60))
            await _until(lambda: _in_flight(cache) == 1)
            rest = [asyncio.create_task(cache.aget_or_set("k", afailing, 60)) for _ in range(10)]
            await _until(lambda: _async_followers(cache, "k") == 10)
            release.set()
            for outcome in await asyncio.gather(first, *rest, return_exceptions=True):
                outcomes.add(outcome)

        asyncio.run(body())

    assert calls == ["failed"]  # the followers never ran their own loader
    assert outcomes.values == []
    assert len(outcomes.errors) == 11
    assert all(isinstance(e, LoaderFailed) for e in outcomes.errors)
    assert len({id(e) for e in outcomes.errors}) == 1  # the leader's own exception
    assert _in_flight(cache) == 0
    settle(cache)
    assert cache.has_key("k") is False  # nothing stored

    assert cache.get_or_set("k", lambda: calls.append("sync") or "recovered", 60) == "recovered"
    assert calls == ["failed", "sync"]
    settle(cache)
    assert asyncio.run(cache.aget_or_set("k", never, 60)) == "recovered"
    settle(cache)
    assert cache.get("k") == "recovered"


@pytest.mark.parametrize("topology", ["standalone"])  # flights are per process: one is enough
def test_cancelling_the_leader_does_not_cancel_its_followers(cache: ResilientRedisCache) -> None:
    """A leader task cancelled mid-computation (a client that went away) must not make
    the other requests' tasks, which were not cancelled, raise ``CancelledError``."""
    calls: list[int] = []

    async def body() -> tuple[list[Any], bool]:
        never_set = asyncio.Event()

        async def loader() -> str:
            calls.append(1)
            if len(calls) == 1:
                await never_set.wait()  # the first computation only ends by cancellation
            return "value"

        leader = asyncio.create_task(cache.aget_or_set("k", loader, 60))
        await _until(lambda: _in_flight(cache) == 1)
        followers = [asyncio.create_task(cache.aget_or_set("k", loader, 60)) for _ in range(5)]
        await _until(lambda: _async_followers(cache, "k") == 5)
        leader.cancel()
        outcomes = await asyncio.gather(*followers, return_exceptions=True)
        await asyncio.gather(leader, return_exceptions=True)
        return outcomes, leader.cancelled()

    outcomes, leader_cancelled = asyncio.run(body())
    assert leader_cancelled
    assert outcomes == ["value"] * 5
    assert _in_flight(cache) == 0


# --- several processes -----------------------------------------------------------------------

PROCESSES = 4
THREADS = 20


@pytest.fixture(params=["standalone", "cluster"])
def process_target(request: pytest.FixtureRequest) -> dict[str, Any]:
    """``CACHES`` and where the counter lives, for worker processes."""
    return _processes.target(request, f"st{uuid.uuid4().hex[:8]}")


def test_processes_with_lock_compute_a_cold_key_once_in_all(
    process_target: dict[str, Any],
) -> None:
    label = f"stampede-{uuid.uuid4().hex[:8]}"
    keys = {part: f"{label}:{part}" for part in ("ready", "go", "counter")}
    spec = {**process_target, "key": label, "keys": keys, "threads": THREADS}
    with _processes.together(_stampede_worker.callers, spec, PROCESSES) as (reports, client):
        values = [value for got in reports for value in got]
        assert len(values) == PROCESSES * THREADS
        assert len(set(values)) == 1, set(values)  # every caller got the one computed value
        assert int(client.get(keys["counter"])) == 1  # computed once in all processes
        with override_settings(CACHES=process_target["caches"]):
            assert caches["default"].get(label) == values[0]
            caches["default"].delete(label)


# --- NULL_TIMEOUT ----------------------------------------------------------------------------


def test_null_timeout_keeps_none_briefly_and_values_for_the_timeout(location: Any) -> None:
    with resilient_cache(location, STAMPEDE={"NULL_TIMEOUT": 5}) as cache:
        calls: list[str] = []

        def absent() -> None:
            calls.append("absent")

        async def aabsent() -> None:
            calls.append("aabsent")

        assert cache.get_or_set("absent", absent, 300) is None
        settle(cache)
        assert cache.get_or_set("absent", absent, 300) is None  # the None is cached
        assert calls == ["absent"]
        assert cache.get_or_set("locked", absent, 300, lock=True) is None
        assert cache.get_or_set("present", lambda: "row", 300) == "row"
        assert asyncio.run(cache.aget_or_set("a-absent", aabsent, 300)) is None
        settle(cache)
        assert asyncio.run(cache.aget_or_set("a-absent", aabsent, 300)) is None
        assert asyncio.run(cache.aget_or_set("a-present", lambda: "row", 300)) == "row"
        assert calls == ["absent", "absent", "aabsent"]
        settle(cache)
        for key in ("absent", "locked", "a-absent"):
            assert cache.has_key(key)
            assert 0 < (cache.pttl(key) or 0) <= 5000, key
        for key in ("present", "a-present"):
            assert 290_000 < (cache.pttl(key) or 0) <= 300_000, key


def test_without_null_timeout_none_is_kept_for_the_timeout(cache: ResilientRedisCache) -> None:
    assert cache.get_or_set("absent", lambda: None, 300) is None
    assert asyncio.run(cache.aget_or_set("a-absent", lambda: None, 300)) is None
    settle(cache)
    for key in ("absent", "a-absent"):
        assert 290_000 < (cache.pttl(key) or 0) <= 300_000


# --- early refresh ---------------------------------------------------------------------------


def test_early_refresh_recomputes_before_expiry_only_when_asked(
    cache: ResilientRedisCache,
) -> None:
    calls: list[str] = []

    def loader() -> int:
        calls.append("sync")
        time.sleep(0.01)  # a computation that takes a while: XFetch weighs its duration
        return len(calls)

    async def aloader() -> int:
        calls.append("async")
        await asyncio.sleep(0.01)
        return len(calls)

    assert cache.get_or_set("k", loader, 60) == 1
    settle(cache)
    # Without early refresh the cached value is returned however soon it expires.
    assert cache.get_or_set("k", loader, 60) == 1
    assert cache.get_or_set("k", loader, 60, early_refresh=None) == 1
    assert cache.get_or_set("k", loader, 60, early_refresh=0) == 1
    assert asyncio.run(cache.aget_or_set("k", aloader, 60)) == 1
    assert calls == ["sync"]

    assert cache.get_or_set("k", loader, 60, early_refresh=ALWAYS) == 2
    settle(cache)
    assert cache.get("k") == 2  # the new value replaced the old one, with a new expiry
    assert 55_000 < (cache.pttl("k") or 0) <= 60_000
    assert asyncio.run(cache.aget_or_set("k", aloader, 60, early_refresh=ALWAYS)) == 3
    settle(cache)
    assert cache.get("k") == 3
    assert asyncio.run(cache.aget_or_set("k", aloader, 60)) == 3
    assert cache.get_or_set("k", loader, 60, lock=True, early_refresh=ALWAYS) == 4
    assert calls == ["sync", "sync", "async", "sync"]


def test_early_refresh_needs_a_duration_from_this_process_and_an_expiry(
    cache: ResilientRedisCache,
) -> None:
    calls: list[int] = []

    def loader() -> str:
        calls.append(1)
        time.sleep(0.01)
        return "computed"

    cache.set("stored-elsewhere", "stored", 60)  # never computed here: no duration known
    assert cache.get_or_set("forever", loader, None) == "computed"
    settle(cache)
    calls.clear()
    for key, value in (("stored-elsewhere", "stored"), ("forever", "computed")):
        assert cache.get_or_set(key, loader, 60, early_refresh=ALWAYS) == value
        assert asyncio.run(cache.aget_or_set(key, loader, 60, early_refresh=ALWAYS)) == value
    assert calls == []


def test_during_an_early_refresh_other_callers_get_the_current_value(
    cache: ResilientRedisCache,
) -> None:
    assert cache.get_or_set("k", lambda: time.sleep(0.01) or "v1", 60) == "v1"
    settle(cache)
    release = threading.Event()
    calls: list[str] = []

    def slow_refresh() -> str:
        calls.append("refresh")
        assert release.wait(10)
        return "v2"

    def other() -> str:
        calls.append("other")
        return "never"

    outcomes = Outcomes()
    refresher = _start(
        lambda: outcomes.call(
            lambda: caches["default"].get_or_set("k", slow_refresh, 60, early_refresh=ALWAYS)
        )
    )
    try:
        assert wait_for(lambda: _in_flight(cache) == 1)
        # Someone refreshes already: the others neither wait nor compute.
        assert cache.get_or_set("k", other, 60, early_refresh=ALWAYS) == "v1"
        assert asyncio.run(cache.aget_or_set("k", other, 60, early_refresh=ALWAYS)) == "v1"
        assert cache.get_or_set("k", other, 60) == "v1"
    finally:
        release.set()
        _join(refresher)
    assert outcomes.values == ["v2"]
    assert calls == ["refresh"]
    settle(cache)
    assert cache.get("k") == "v2"


@pytest.mark.parametrize("beta", [ALWAYS, None])
def test_early_refresh_from_the_stampede_option(location: Any, beta: float | None) -> None:
    with resilient_cache(location, STAMPEDE={"EARLY_REFRESH": beta}) as cache:
        calls: list[int] = []

        def loader() -> int:
            calls.append(1)
            time.sleep(0.01)
            return len(calls)

        assert cache.get_or_set("k", loader, 60) == 1
        settle(cache)
        assert cache.get_or_set("k", loader, 60, early_refresh=0) == 1  # off for this call
        assert cache.get_or_set("k", loader, 60) == (2 if beta else 1)
        assert len(calls) == (2 if beta else 1)


# --- outages ---------------------------------------------------------------------------------


def _degrade(cache: ResilientRedisCache) -> None:
    breaker = cache.manager.route(write=True)[0].breaker
    assert wait_for(lambda: cache.get("probe:never-written") is None and not breaker.closed)


@pytest.mark.chaos
@pytest.mark.parametrize("lock", [False, True], ids=["no-lock", "lock"])
def test_get_or_set_during_an_outage_computes_into_the_fallback(
    drr_redis_factory: Any, lock: bool
) -> None:
    server = drr_redis_factory()
    stampede = {"LOCK": True, "LOCK_TIMEOUT": 2} if lock else {}
    with resilient_cache(server.url, BREAKER=FAST_BREAKER, STAMPEDE=stampede) as cache:
        server.kill()
        _degrade(cache)
        calls: list[str] = []

        def loader() -> str:
            calls.append("sync")
            return "computed"

        async def aloader() -> str:
            calls.append("async")
            return "async computed"

        stats = cache.stats()
        assert cache.get_or_set("k", loader, 60) == "computed"
        assert cache.get_or_set("k", loader, 60) == "computed"  # from the fallback
        assert asyncio.run(cache.aget_or_set("k", aloader, 60)) == "computed"
        assert asyncio.run(cache.aget_or_set("ak", aloader, 60)) == "async computed"
        assert asyncio.run(cache.aget_or_set("ak", aloader, 60)) == "async computed"
        assert cache.get_or_set("ak", loader, 60) == "async computed"
        assert calls == ["sync", "async"]
        assert cache.get_many(["k", "ak"]) == {"k": "computed", "ak": "async computed"}
        after = cache.stats()
        assert after["fallback_writes"] >= stats["fallback_writes"] + 2
        assert after["fallback_reads"] > stats["fallback_reads"] + 4

        # Single flight holds during the outage too.
        barrier = threading.Barrier(10)
        outcomes = Outcomes()

        def slow() -> str:
            calls.append("cold")
            time.sleep(SLOW)
            return "cold value"

        def caller() -> None:
            barrier.wait(timeout=10)
            outcomes.call(lambda: caches["default"].get_or_set("cold", slow, 60))

        _join(_start(*[caller] * 10))
        assert outcomes.errors == []
        assert outcomes.values == ["cold value"] * 10
        assert calls.count("cold") == 1


@pytest.mark.chaos
@pytest.mark.parametrize("api", ["sync", "async"])
def test_a_lock_skipped_during_an_outage_is_not_kept_by_the_caller(
    drr_redis_factory: Any, api: str
) -> None:
    """With ``on_unavailable="run"`` the computation runs without the lock; the
    skipped acquisition must not count as held by this thread or task afterwards."""
    server = drr_redis_factory()
    with resilient_cache(server.url, BREAKER=FAST_BREAKER, STAMPEDE={"LOCK": True}) as cache:
        server.kill()
        _degrade(cache)
        calls: list[int] = []

        def loader() -> str:
            calls.append(1)
            return f"computed {len(calls)}"

        if api == "sync":
            assert cache.get_or_set("k", loader, 60) == "computed 1"
            assert cache.delete("k") is True  # gone from the fallback: computed again
            assert cache.get_or_set("k", loader, 60) == "computed 2"
        else:

            async def body() -> None:  # one task, as in one request
                assert await cache.aget_or_set("k", loader, 60) == "computed 1"
                assert await cache.adelete("k") is True
                assert await cache.aget_or_set("k", loader, 60) == "computed 2"

            asyncio.run(body())
        assert len(calls) == 2


@pytest.mark.chaos
def test_get_or_set_with_lock_works_again_after_the_outage(drr_redis_factory: Any) -> None:
    server = drr_redis_factory()
    with resilient_cache(server.url, BREAKER=FAST_BREAKER, STAMPEDE={"LOCK": True}) as cache:
        server.kill()
        _degrade(cache)
        assert cache.get_or_set("k", lambda: "during", 60) == "during"
        server.restart()  # empty
        assert wait_for(lambda: cache.manager.route(write=True)[0].breaker.closed, timeout=15)
        assert cache.get("k") is None
        assert cache.get_or_set("k", lambda: "after", 60) == "after"
        with server.client() as client:
            assert client.get(cache.make_key("k")) is not None  # stored in Redis again


# --- configuration ---------------------------------------------------------------------------

LOCATION = "redis://127.0.0.1:1/0"  # nothing listens on port 1: nothing here connects
STAMPEDE_SETTING = "CACHES['default']['OPTIONS']['STAMPEDE']"

BAD_STAMPEDE: list[Any] = [
    pytest.param("yes", "must be a dict", id="not-a-dict"),
    pytest.param({"LOCKS": True}, "unknown key 'LOCKS'", id="unknown-key"),
    pytest.param({"LOCK": "yes"}, "['LOCK'] = 'yes'", id="lock-str"),
    pytest.param({"LOCK": 1}, "['LOCK'] = 1", id="lock-int"),
    pytest.param({"LOCK_TIMEOUT": 0}, "['LOCK_TIMEOUT'] = 0", id="lock-timeout-zero"),
    pytest.param({"LOCK_TIMEOUT": -1}, "['LOCK_TIMEOUT'] = -1", id="lock-timeout-negative"),
    pytest.param({"LOCK_TIMEOUT": float("inf")}, "['LOCK_TIMEOUT'] = inf", id="lock-timeout-inf"),
    pytest.param({"LOCK_TIMEOUT": "abc"}, "['LOCK_TIMEOUT'] = 'abc'", id="lock-timeout-str"),
    pytest.param({"LOCK_TIMEOUT": None}, "['LOCK_TIMEOUT'] = None", id="lock-timeout-none"),
    pytest.param({"EARLY_REFRESH": -1}, "['EARLY_REFRESH'] = -1", id="beta-negative"),
    pytest.param({"EARLY_REFRESH": "1"}, "['EARLY_REFRESH'] = '1'", id="beta-str"),
    pytest.param({"EARLY_REFRESH": True}, "['EARLY_REFRESH'] = True", id="beta-bool"),
    pytest.param({"EARLY_REFRESH": float("nan")}, "['EARLY_REFRESH'] = nan", id="beta-nan"),
    pytest.param({"NULL_TIMEOUT": -5}, "['NULL_TIMEOUT'] = -5", id="null-negative"),
    pytest.param({"NULL_TIMEOUT": "5"}, "['NULL_TIMEOUT'] = '5'", id="null-str"),
    pytest.param({"NULL_TIMEOUT": float("inf")}, "['NULL_TIMEOUT'] = inf", id="null-inf"),
]


def _configured(stampede: Any) -> override_settings:
    cache = {"BACKEND": BACKEND, "LOCATION": LOCATION, "OPTIONS": {"STAMPEDE": stampede}}
    return override_settings(CACHES={"default": cache})


@pytest.mark.parametrize(("stampede", "named"), BAD_STAMPEDE)
def test_invalid_stampede_option_is_an_e004_system_check(stampede: Any, named: str) -> None:
    with _configured(stampede):
        messages = checks.check_settings()
    assert len(messages) == 1, messages
    message = messages[0]
    assert isinstance(message, django_checks.Error)
    assert message.id == "django_redis_resilience.E004"
    assert message.msg.startswith(f"{STAMPEDE_SETTING} = ")
    assert named in message.msg


@pytest.mark.parametrize(("stampede", "named"), BAD_STAMPEDE)
def test_invalid_stampede_option_stops_startup_with_e004(stampede: Any, named: str) -> None:
    installed = apps.get_app_config("django_redis_resilience")
    fresh = type(installed)(installed.name, installed.module)
    with _configured(stampede), pytest.raises(ConfigurationError) as info:
        fresh.ready()  # validates before it wires anything
    assert f"django_redis_resilience.E004: {STAMPEDE_SETTING} = " in str(info.value)
    assert named in str(info.value)
    with _configured(stampede), pytest.raises(ConfigurationError) as info:
        conf.validate()
    assert named in str(info.value)


@pytest.mark.parametrize(("stampede", "named"), BAD_STAMPEDE)
def test_a_cache_configured_after_startup_refuses_an_invalid_stampede_with_e004(
    stampede: Any, named: str
) -> None:
    """A settings change after startup is not validated by ``ready()``: the cache's
    first use must refuse the value the same way, naming it."""
    with _configured(stampede), pytest.raises(ConfigurationError) as info:
        caches["default"].get("k")
    assert f"django_redis_resilience.E004: {STAMPEDE_SETTING} = " in str(info.value)
    assert named in str(info.value)


@pytest.mark.parametrize(
    "stampede",
    [
        {},
        {"LOCK": False},
        {"LOCK": True, "LOCK_TIMEOUT": 0.5, "EARLY_REFRESH": 1.0, "NULL_TIMEOUT": 0},
        {"EARLY_REFRESH": None, "NULL_TIMEOUT": None},
        {"EARLY_REFRESH": 0, "LOCK_TIMEOUT": 5, "NULL_TIMEOUT": 30},
    ],
)
def test_valid_stampede_options_pass(
    stampede: dict[str, Any], drr_redis_server: RedisServer
) -> None:
    with _configured(stampede):
        assert checks.check_settings() == []
        conf.validate()
    with resilient_cache(drr_redis_server.url, STAMPEDE=stampede) as cache:
        assert cache.get_or_set("k", lambda: "v", 60) == "v"
        assert asyncio.run(cache.aget_or_set("k", "other", 60)) == "v"


# --- callers that must not wait for the leader --------------------------------------------


def test_a_sync_call_inside_the_leaders_event_loop_computes_instead_of_blocking_it(
    drr_redis_server: RedisServer,
) -> None:
    """A sync ``get_or_set`` on the loop thread while a task of that loop leads the same
    key: waiting would block the loop, and with it the leader, for ever."""
    with resilient_cache(drr_redis_server.url) as cache:
        key = f"k-{uuid.uuid4().hex}"
        started = asyncio.Event()
        release = asyncio.Event()

        async def leader_loader() -> str:
            started.set()
            await release.wait()
            return "from the leader"

        async def main() -> tuple[Any, Any]:
            leader = asyncio.create_task(cache.aget_or_set(key, leader_loader, 60))
            await started.wait()
            inside = cache.get_or_set(key, lambda: "computed alone", 60)  # sync, on the loop
            release.set()
            return inside, await leader

        inside, led = asyncio.run(main())
        assert inside == "computed alone"
        assert led in ("from the leader", "computed alone")  # Django's add-then-get


def test_a_loader_that_asks_for_its_own_key_computes_instead_of_waiting_for_itself(
    drr_redis_server: RedisServer,
) -> None:
    with resilient_cache(drr_redis_server.url) as cache:
        key = f"k-{uuid.uuid4().hex}"
        calls: list[str] = []

        def outer() -> str:
            calls.append("outer")
            return "outer:" + str(cache.get_or_set(key, inner, 60))

        def inner() -> str:
            calls.append("inner")
            return "inner"

        assert cache.get_or_set(key, outer, 60) in ("outer:inner", "inner")
        assert calls == ["outer", "inner"]

        async def aouter() -> str:
            return "a:" + str(await cache.aget_or_set(key + "a", ainner, 60))

        async def ainner() -> str:
            return "b"

        assert asyncio.run(cache.aget_or_set(key + "a", aouter, 60)) in ("a:b", "b")


def test_a_key_with_braces_works_with_the_recompute_lock(drr_redis_server: RedisServer) -> None:
    """A cluster hash tag in a cache key is a name for the lock, not a template."""
    with resilient_cache(drr_redis_server.url, STAMPEDE={"LOCK": True}) as cache:
        for key in ("{user:42}:profile", "a{", "a}b"):
            assert cache.get_or_set(key, lambda key=key: f"v-{key}", 60) == f"v-{key}"
            assert asyncio.run(cache.aget_or_set(key + "!", lambda: "w", 60)) == "w"


def test_a_failed_early_refresh_keeps_the_valid_value(drr_redis_server: RedisServer) -> None:
    with resilient_cache(drr_redis_server.url) as cache:
        key = f"k-{uuid.uuid4().hex}"
        assert cache.get_or_set(key, lambda: (time.sleep(0.01), "first")[1], 60) == "first"

        def broken() -> str:
            raise LoaderFailed

        # Always refreshed early (ALWAYS): the refresh fails, the cached value stands.
        assert cache.get_or_set(key, broken, 60, early_refresh=ALWAYS) == "first"
        assert cache.get(key) == "first"
