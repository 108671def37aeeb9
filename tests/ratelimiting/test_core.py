"""``hit``/``peek``/``ahit``/``apeek`` on real Redis: exactness across processes, one round
trip per check, keys, and the outage policies."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import re
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.core.cache import caches
from django.test import override_settings
from redis.crc import key_slot

from django_redis_resilience.clients import get_manager
from django_redis_resilience.connection import BreakerState
from django_redis_resilience.exceptions import InvalidRateLimit
from django_redis_resilience.ratelimiting import (
    Decision,
    Limit,
    acheck_many,
    ahit,
    apeek,
    check_many,
    hit,
    peek,
)
from django_redis_resilience.testing import RedisServer
from tests._memory import MEGABYTE, retained_by
from tests._polling import wait_for
from tests.cache.conftest import FAST_BREAKER, resilient_caches

ALGORITHMS = ["gcra", "sliding_window", "sliding_window_counter", "fixed_window"]
HOUR_US = 3600 * 1_000_000
LOCMEM = {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}


def _key() -> str:
    return f"user-{uuid.uuid4().hex}"


def _prefix() -> str:
    return f"rl{uuid.uuid4().hex[:8]}"


@pytest.fixture
def standalone(drr_redis_server: RedisServer) -> Iterator[str]:
    """The shared server as the ``default`` cache; yields its ``KEY_PREFIX``."""
    prefix = _prefix()
    with override_settings(CACHES=resilient_caches(drr_redis_server.url, KEY_PREFIX=prefix)):
        yield prefix


@pytest.fixture(params=["standalone", "cluster"])
def topology(request: pytest.FixtureRequest) -> Iterator[tuple[str, Any]]:
    """``(KEY_PREFIX, a node to ask for TIME)`` with ``default`` on the shared servers."""
    if request.param == "standalone":
        server = request.getfixturevalue("drr_redis_server")
        location, clock = server.url, server
    else:
        cluster = request.getfixturevalue("drr_cluster")
        location, clock = cluster.location, cluster.nodes[0]  # one machine, one clock
    prefix = _prefix()
    with override_settings(CACHES=resilient_caches(location, KEY_PREFIX=prefix)):
        yield prefix, clock


def _redis_time_us(server: RedisServer) -> int:
    with server.client() as client:
        seconds, micros = client.time()
    return int(seconds) * 1_000_000 + int(micros)


def _rl_keys(server: RedisServer, prefix: str) -> list[str]:
    with server.client() as client:
        return sorted(k.decode() for k in client.scan_iter(match=f"{prefix}:drr:rl:*"))


# --- exactness across processes -----------------------------------------------------------------


def _hits_in_forked_children(procs: int, hits: int, key: str, rate: str, algorithm: str) -> int:
    """``procs`` forked processes, released together, each calling ``hit`` ``hits`` times;
    the total admitted. A child that errs or gets a degraded answer fails the test."""
    go_read, go_write = os.pipe()
    children: list[tuple[int, int]] = []
    for _ in range(procs):
        read_fd, write_fd = os.pipe()
        pid = os.fork()
        if pid == 0:  # child: must never return into pytest
            report = "error"
            try:
                os.close(go_write)
                os.read(go_read, 1)  # returns b"" once the parent closes its end
                decisions = [hit(key, rate, algorithm=algorithm) for _ in range(hits)]
                degraded = sum(d.degraded for d in decisions)
                report = f"{sum(d.allowed for d in decisions)} {degraded}"
            finally:
                os.write(write_fd, report.encode())
                os._exit(0)
        os.close(write_fd)
        children.append((pid, read_fd))
    os.close(go_read)
    os.close(go_write)  # every child starts now
    total = 0
    reports = []
    for pid, read_fd in children:
        with os.fdopen(read_fd) as reader:
            reports.append(reader.read())
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
    for report in reports:
        assert re.fullmatch(r"\d+ 0", report), reports  # no errors, nothing degraded
        total += int(report.split()[0])
    return total


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # fork() with threads, 3.12+
@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_eight_processes_share_one_limit_exactly(
    topology: tuple[str, RedisServer], algorithm: str
) -> None:
    _, clock = topology
    key = _key()
    before = _redis_time_us(clock)
    total = _hits_in_forked_children(8, 100, key, "100/h", algorithm)
    after = _redis_time_us(clock)
    one_window = before // HOUR_US == after // HOUR_US
    if algorithm in ("gcra", "sliding_window") or one_window:
        # gcra: 100 at once, the next one 36 s later; sliding window: exact. The windowed
        # algorithms are exact within one aligned window (the counter has no previous one
        # to weigh for a new key).
        assert total == 100
        assert not hit(key, "100/h", algorithm=algorithm).allowed  # nor in this process
    else:
        # The hour turned during the test: at most 100 per window (fixed window) or the
        # counter's bound of twice the count across a boundary.
        assert 100 <= total <= 200


# --- one round trip per check --------------------------------------------------------------------


def _script_stats(server: RedisServer) -> tuple[int, int]:
    """(EVALSHA calls, SCRIPT calls) from INFO commandstats.

    Commands that a script runs are counted under their own names (GET, ZADD...), not
    under EVALSHA, so the EVALSHA count is the number of script invocations a client
    sent: with no other client on the server, it counts the checks' round trips. SCRIPT
    is ``cmdstat_script`` before Redis 7 and ``cmdstat_script|load`` from 7 on.
    """
    with server.client() as client:
        stats = client.info("commandstats")
    evalsha = int(stats.get("cmdstat_evalsha", {}).get("calls", 0))
    script = sum(int(v["calls"]) for k, v in stats.items() if k.startswith("cmdstat_script"))
    return evalsha, script


def test_each_check_is_exactly_one_evalsha_and_no_script_load(drr_redis_factory: Any) -> None:
    server = drr_redis_factory()  # its own server: no other client's scripts in the counts
    with override_settings(CACHES=resilient_caches(server.url)):
        hit(_key(), "1/s")  # warm-up: connects and loads the script (NOSCRIPT, SCRIPT LOAD)
        evalsha, script = _script_stats(server)
        key = _key()
        checks = 0
        for algorithm in ALGORITHMS:
            for rate in ("2/s", "100/h"):
                for _ in range(5):
                    hit(key, rate, algorithm=algorithm)
                    peek(key, rate, algorithm=algorithm, cost=2)
                    checks += 2

        async def async_checks() -> int:
            for algorithm in ALGORITHMS:
                await ahit(key, "3/m", algorithm=algorithm)
                await apeek(key, "3/m", algorithm=algorithm)
            return 2 * len(ALGORITHMS)

        checks += asyncio.run(async_checks())
        evalsha_after, script_after = _script_stats(server)
    assert evalsha_after - evalsha == checks
    assert script_after - script == 0


@pytest.mark.chaos
def test_checks_survive_a_restart_that_empties_the_script_cache(drr_redis_factory: Any) -> None:
    server = drr_redis_factory()
    key = _key()
    with override_settings(CACHES=resilient_caches(server.url, BREAKER=FAST_BREAKER)):
        assert hit(key, "3/h").allowed
        server.restart()  # a new, empty process: its script cache is empty
        decision = hit(key, "3/h")
        assert decision.allowed
        assert not decision.degraded
        assert decision.remaining == 2  # the state was lost with the data: a fresh quota
        assert _script_stats(server)[1] == 1  # loaded again after NOSCRIPT
        server.restart()
        decision = asyncio.run(ahit(key, "3/h"))
        assert (decision.allowed, decision.degraded, decision.remaining) == (True, False, 2)


# --- answers -------------------------------------------------------------------------------------


def test_gcra_five_per_second_admits_five_at_once_then_refuses(standalone: str) -> None:
    key = _key()
    decisions = [hit(key, "5/s") for _ in range(5)]
    assert all(d.allowed and not d.degraded for d in decisions)
    assert [d.remaining for d in decisions] == [4, 3, 2, 1, 0]
    assert all(d.limit == 5 and d.algorithm == "gcra" for d in decisions)
    sixth = hit(key, "5/s")
    assert not sixth.allowed
    assert not sixth.degraded
    assert sixth.remaining == 0
    assert 0 < sixth.retry_after <= 0.2
    assert 0 < sixth.reset_after <= 1.0


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_peek_consumes_nothing(standalone: str, algorithm: str) -> None:
    key = _key()
    peeks = [peek(key, "1/h", algorithm=algorithm) for _ in range(10)]
    assert all(p.allowed and not p.degraded for p in peeks)
    assert hit(key, "1/h", algorithm=algorithm).allowed
    assert not peek(key, "1/h", algorithm=algorithm).allowed
    assert not hit(key, "1/h", algorithm=algorithm).allowed


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_cost_takes_that_many_units(standalone: str, algorithm: str) -> None:
    key = _key()
    answers = [hit(key, "10/h", algorithm=algorithm, cost=c) for c in (4, 4, 4, 2, 1)]
    assert [(d.allowed, d.remaining) for d in answers] == [
        (True, 6),
        (True, 2),
        (False, 2),
        (True, 0),
        (False, 0),
    ]


def test_sliding_window_counter_retry_after_is_honoured_on_redis(
    standalone: str, drr_redis_server: RedisServer
) -> None:
    # Fill a fresh half-second window early, then retry when told: the answer must be yes.
    period_us = 500_000
    now = _redis_time_us(drr_redis_server)
    time.sleep((period_us - now % period_us) / 1_000_000 + 0.01)  # ~10 ms into a window
    key = _key()
    answers = [hit(key, "5/0.5s", algorithm="sliding_window_counter") for _ in range(6)]
    assert [d.allowed for d in answers] == [True] * 5 + [False]
    time.sleep(answers[-1].retry_after + 0.005)
    later = hit(key, "5/0.5s", algorithm="sliding_window_counter")
    assert later.allowed, later


def _answer(d: Decision) -> tuple[Any, ...]:
    return (d.allowed, d.remaining, d.limit, d.rate, d.algorithm, d.degraded, d.name)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_async_checks_answer_as_the_sync_ones(standalone: str, algorithm: str) -> None:
    ops = ["peek", "hit", "hit", "peek", "hit", "hit", "peek"]
    sync_key, async_key = _key(), _key()
    sync = [
        (hit if op == "hit" else peek)(sync_key, "3/h", algorithm=algorithm, name="n") for op in ops
    ]

    async def run() -> list[Decision]:
        return [
            await (ahit if op == "hit" else apeek)(async_key, "3/h", algorithm=algorithm, name="n")
            for op in ops
        ]

    asynchronous = asyncio.run(run())
    assert [_answer(d) for d in asynchronous] == [_answer(d) for d in sync]
    assert [d.allowed for d in sync] == [True, True, True, True, True, False, False]


# --- keys ----------------------------------------------------------------------------------------

IDENTITY = "alice@example.com"
LIMITS = [
    ("gcra", "5/m"),
    ("gcra", "100/h"),
    ("sliding_window", "10/h"),
    ("fixed_window", "3/s"),
    ("sliding_window_counter", "7/d"),
]


def _assert_reserved_and_one_slot(keys: list[str], prefix: str) -> None:
    assert len(keys) == len(LIMITS)
    tags = set()
    for key in keys:
        assert key.startswith(f"{prefix}:drr:rl:{{")
        match = re.fullmatch(re.escape(prefix) + r":drr:rl:\{([0-9a-f]{32})\}:.+", key)
        assert match is not None, key
        tags.add(match.group(1))
        assert "alice" not in key
        assert "example" not in key
    assert len(tags) == 1  # one identity, one hash tag
    assert len({key_slot(k.encode()) for k in keys}) == 1


def test_keys_are_reserved_hash_tagged_and_hold_no_identity(
    standalone: str, drr_redis_server: RedisServer
) -> None:
    for algorithm, rate in LIMITS:
        assert hit(IDENTITY, rate, algorithm=algorithm).allowed
    keys = _rl_keys(drr_redis_server, standalone)
    _assert_reserved_and_one_slot(keys, standalone)
    # ...:<algorithm>:<count>:<period in us>:<burst>
    algorithms_and_rates = {tuple(k.rsplit(":", 4)[1:]) for k in keys}
    assert algorithms_and_rates == {
        ("gcra", "5", "60000000", "5"),
        ("gcra", "100", "3600000000", "100"),
        ("sliding_window", "10", "3600000000", "10"),
        ("fixed_window", "3", "1000000", "3"),
        ("sliding_window_counter", "7", "86400000000", "7"),
    }


def test_a_remembered_limit_follows_the_key_prefix_and_the_secret_key(
    drr_redis_server: RedisServer,
) -> None:
    """A limit's key is worked out once and remembered: a new KEY_PREFIX or SECRET_KEY
    (``override_settings``, a key rotation) must still give the key it names."""
    identity = _key()
    for prefix in (_prefix(), _prefix()):
        caches = resilient_caches(drr_redis_server.url, KEY_PREFIX=prefix)
        for secret in ("first-secret-key", "second-secret-key", "first-secret-key"):
            with override_settings(CACHES=caches, SECRET_KEY=secret):
                assert hit(identity, "5/m").allowed
        # The second secret named a key of its own; back on the first, the first key.
        keys = _rl_keys(drr_redis_server, prefix)
        assert len(keys) == 2


def test_a_decision_has_every_field_of_the_dataclass(standalone: str) -> None:
    """Decisions from Redis are made without the frozen __init__: they must be whole."""
    decision = hit(_key(), "5/m")
    names = {f.name for f in dataclasses.fields(Decision)}
    assert set(vars(decision)) == names
    same = Decision(**{name: getattr(decision, name) for name in names})
    assert decision == same
    assert hash(decision) == hash(same)
    assert repr(decision) == repr(same)
    assert dataclasses.replace(decision, remaining=0).remaining == 0
    with pytest.raises(dataclasses.FrozenInstanceError):
        decision.remaining = 3  # type: ignore[misc]


def test_on_a_cluster_every_limit_of_one_identity_is_on_one_node(drr_cluster: Any) -> None:
    prefix = _prefix()
    with override_settings(CACHES=resilient_caches(drr_cluster.location, KEY_PREFIX=prefix)):
        for algorithm, rate in LIMITS:
            decision = hit(IDENTITY, rate, algorithm=algorithm)
            assert decision.allowed
            assert not decision.degraded
    holders = {node.port: _rl_keys(node, prefix) for node in drr_cluster.masters}
    nonempty = [keys for keys in holders.values() if keys]
    assert len(nonempty) == 1
    _assert_reserved_and_one_slot(nonempty[0], prefix)


def test_on_a_cluster_identities_in_several_slots_of_one_shard_are_checked_together(
    drr_cluster: Any,
) -> None:
    """A shard serves many slots: one request's identities may share a shard, not a slot,
    and one script call may only touch one slot's keys (else CROSSSLOT)."""
    prefix = _prefix()
    limits = [Limit(f"client-{n}", "5/m", name=f"n{n}", group="many") for n in range(12)]
    # Generous timeouts: a connection timing out under a loaded machine would degrade a
    # shard's limits to local ones, which is not what this test is about.
    caches_setting = resilient_caches(
        drr_cluster.location, KEY_PREFIX=prefix, SOCKET_CONNECT_TIMEOUT=5, SOCKET_TIMEOUT=5
    )
    with override_settings(CACHES=caches_setting):
        decisions = check_many(limits)
        assert [(d.allowed, d.degraded) for d in decisions] == [(True, False)] * 12
        decisions = async_to_sync(acheck_many)(limits)
        assert [(d.remaining, d.degraded) for d in decisions] == [(3, False)] * 12
    keys = [k for node in drr_cluster.masters for k in _rl_keys(node, prefix)]
    assert len(keys) == 12
    shards = [drr_cluster.node_for_key(k).port for k in keys]
    assert len(set(shards)) < len(shards)  # twelve slots on three shards: some share one


def test_cache_clear_keeps_the_rate_limits(standalone: str, drr_redis_server: RedisServer) -> None:
    key = _key()
    assert hit(key, "1/h").allowed
    assert hit(key, "2/h", algorithm="sliding_window").allowed
    cache = caches["default"]
    cache.set("page", "cached")
    keys = _rl_keys(drr_redis_server, standalone)
    assert len(keys) == 2
    cache.clear()
    assert cache.get("page") is None
    assert _rl_keys(drr_redis_server, standalone) == keys
    assert not hit(key, "1/h").allowed
    assert hit(key, "2/h", algorithm="sliding_window").remaining == 0


# --- memory -------------------------------------------------------------------------------------


def test_huge_distinct_identities_are_not_remembered(standalone: str) -> None:
    """A hash cache keyed by the identity once kept each one: 300 of 1 MB held 300 MB."""
    assert hit(_key(), "5/m").allowed  # connected, the script loaded: nothing left to set up

    def huge_identities() -> None:
        for n in range(150):
            assert hit(f"{n}:" + "x" * MEGABYTE, "5/m").allowed
            assert peek(f"peek-{n}:" + "y" * MEGABYTE, "5/m").allowed

    assert retained_by(huge_identities) < 5 * MEGABYTE


def test_huge_groups_and_rate_texts_are_not_remembered(standalone: str) -> None:
    def huge_groups() -> None:
        for n in range(100):
            limit = Limit(_key(), "5/m", name="g", group=f"{n}:" + "g" * MEGABYTE)
            assert check_many([limit])[0].allowed
            assert hit(_key(), f"{n + 1}/" + "0" * MEGABYTE + "1s").allowed

    assert retained_by(huge_groups) < 5 * MEGABYTE


# --- outages -------------------------------------------------------------------------------------


@pytest.fixture
def killed(drr_redis_factory: Any) -> Iterator[RedisServer]:
    """``default`` on a server that was killed after its first check."""
    server = drr_redis_factory()
    with override_settings(CACHES=resilient_caches(server.url, BREAKER=FAST_BREAKER)):
        assert not hit(_key(), "1/s").degraded
        server.kill()
        yield server


@pytest.mark.chaos
@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_local_limits_in_process_with_the_same_algorithm(
    killed: RedisServer, algorithm: str
) -> None:
    key = _key()
    decisions = [peek(key, "3/h", algorithm=algorithm)]  # a peek consumes nothing here either
    decisions += [hit(key, "3/h", algorithm=algorithm) for _ in range(6)]
    assert all(d.degraded for d in decisions)
    assert [d.allowed for d in decisions] == [True, True, True, True, False, False, False]
    assert [d.remaining for d in decisions[1:4]] == [2, 1, 0]
    assert all(d.retry_after > 0 for d in decisions[4:])
    assert all(d.limit == 3 and d.algorithm == algorithm for d in decisions)
    assert not asyncio.run(ahit(key, "3/h", algorithm=algorithm)).allowed


@pytest.mark.chaos
def test_allow_admits_everything_while_degraded(killed: RedisServer) -> None:
    key = _key()
    decisions = [hit(key, "1/h", on_unavailable="allow") for _ in range(20)]
    decisions.append(asyncio.run(ahit(key, "1/h", on_unavailable="allow")))
    decisions.append(peek(key, "1/h", on_unavailable="allow"))
    assert all(d.allowed and d.degraded for d in decisions)


@pytest.mark.chaos
def test_deny_refuses_everything_while_degraded(killed: RedisServer) -> None:
    key = _key()
    decisions = [hit(key, "100/h", on_unavailable="deny") for _ in range(20)]
    decisions.append(asyncio.run(ahit(key, "100/h", on_unavailable="deny")))
    decisions.append(peek(key, "100/h", on_unavailable="deny"))
    assert all(not d.allowed and d.degraded for d in decisions)
    assert all(d.retry_after > 0 and d.remaining == 0 for d in decisions)


SOCKET_TIMEOUT = 0.5


@pytest.mark.chaos
def test_hung_server_once_the_breaker_opens_no_check_waits_for_the_timeout(
    drr_redis_factory: Any,
) -> None:
    server = drr_redis_factory()
    options = {"BREAKER": FAST_BREAKER, "SOCKET_TIMEOUT": SOCKET_TIMEOUT}
    with override_settings(CACHES=resilient_caches(server.url, **options)):
        key = _key()
        assert not hit(key, "1000/h").degraded
        breaker = get_manager().primary.breaker
        server.hang()
        # The first checks pay the socket timeout and open the breaker.
        assert wait_for(
            lambda: hit(key, "1000/h").degraded and breaker.state is not BreakerState.CLOSED,
            timeout=10,
        )
        durations = []
        decisions = []
        for i in range(200):
            started = time.perf_counter()
            decisions.append(hit(key, "1000/h", algorithm=ALGORITHMS[i % 4]))
            durations.append(time.perf_counter() - started)
        # Probes run in the background: even while half-open, callers do not wait.
        assert all(d.degraded for d in decisions)
        # A bound on a timeout, not a performance assertion: none paid SOCKET_TIMEOUT.
        assert max(durations) < SOCKET_TIMEOUT


@pytest.mark.chaos
@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_a_check_a_frozen_server_runs_late_can_only_make_the_limit_stricter(
    drr_redis_factory: Any, algorithm: str
) -> None:
    """A check that timed out stays in the frozen server's buffers and runs when it
    resumes: it consumes a unit nobody was told of (the caller got a degraded answer),
    and never gives one back, so Redis admits at most the limit, never more.

    The fleet presence is off: its first write, on the background thread right after the
    first check, may hold the pooled connection, and a new connection's handshake would
    time out on the frozen server before the check was ever sent."""
    server = drr_redis_factory()
    options = {"BREAKER": FAST_BREAKER, "SOCKET_TIMEOUT": 0.25}
    caches = resilient_caches(server.url, **options)
    with override_settings(CACHES=caches, REDIS_RESILIENCE={"RATELIMIT": {"FLEET": False}}):
        assert not hit(_key(), "3/h", algorithm=algorithm).degraded  # connected, script loaded
        key = _key()
        server.hang()
        try:
            assert hit(key, "3/h", algorithm=algorithm).degraded
        finally:
            server.resume()
        with server.client() as client:
            assert client.ping()  # served after what waited on the old connections
        breaker = get_manager().primary.breaker
        assert wait_for(lambda: breaker.closed, timeout=10)
        decisions = [hit(key, "3/h", algorithm=algorithm) for _ in range(4)]
    assert not any(d.degraded for d in decisions)
    assert [d.allowed for d in decisions] == [True, True, False, False]


# --- invalid arguments ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"rate": "0/m"}, "Rate '0/m' is not valid"),
        ({"rate": "10/x"}, "Rate '10/x' is not valid"),
        ({"rate": None}, "Rate None is not valid"),
        ({"algorithm": "leaky_bucket"}, "Algorithm 'leaky_bucket' is not known"),
        ({"cost": 0}, "cost=0 is not valid"),
        ({"cost": -1}, "cost=-1 is not valid"),
        ({"cost": 1.5}, "cost=1.5 is not valid"),
        ({"cost": True}, "cost=True is not valid"),
        ({"cost": "2"}, "cost='2' is not valid"),
        ({"burst": 0}, "burst=0 is not valid"),
        ({"burst": 3, "algorithm": "fixed_window"}, "not 'fixed_window'"),
        ({"on_unavailable": "maybe"}, "on_unavailable='maybe' is not valid"),
        ({"cache": "other"}, "cache='other' is not a ResilientRedisCache"),
        ({"cache": "missing"}, "cache='missing' is not a ResilientRedisCache"),
        ({"cache": 3}, "cache=3 is not valid"),
        ({"key": 123}, "key=123 is not valid"),
        ({"key": None}, "key=None is not valid"),
    ],
)
def test_invalid_arguments_name_the_bad_value(
    drr_redis_server: RedisServer, kwargs: dict[str, Any], fragment: str
) -> None:
    arguments = {"key": "k", "rate": "10/m", **kwargs}
    setting = {**resilient_caches(drr_redis_server.url), "other": LOCMEM}
    with override_settings(CACHES=setting):
        for check in (hit, peek):
            with pytest.raises(InvalidRateLimit) as excinfo:
                check(**arguments)
            assert fragment in str(excinfo.value)
        for acheck in (ahit, apeek):
            with pytest.raises(InvalidRateLimit) as excinfo:
                asyncio.run(acheck(**arguments))
            assert fragment in str(excinfo.value)


def test_without_a_resilient_default_cache_hit_says_so() -> None:
    message = "cache='default' is not a ResilientRedisCache"
    with (
        override_settings(CACHES={"default": LOCMEM}),
        pytest.raises(InvalidRateLimit, match=message),
    ):
        hit("k", "10/m")
