"""In-process traffic: cache, lock and rate-limit workers as threads and as asyncio tasks.

Everything runs in this process against ``caches["default"]`` (a
``ResilientRedisCache`` set up by the test with ``override_settings``), so the
checks can see what only this process knows: which value each writer wrote
last, which fencing token each holder had, how each rate-limit decision was
made. Calls that the contract says never raise are not wrapped in anything
but a catch-all that counts them as unexpected.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any

from django.core.cache import caches

from django_redis_resilience import lock, signals
from django_redis_resilience.cache import ResilientRedisCache
from django_redis_resilience.exceptions import LockLost, LockNotAcquired, RedisUnavailable
from django_redis_resilience.ratelimiting import ahit, hit
from tests.soak._ledger import Errors, KeyHistory, LockLedger, RateLedger, Tally, Value

#: The guarded lock's lease: kills keep a node down for longer than this.
LEASE = 2.0
LOCK_NAME = "soak-critical"
#: A second lock whose sections outlast its lease: held only thanks to renewal.
RENEWED_NAME = "soak-renewed"
RENEWED_LEASE = 1.0
RENEWED_SECTION = (1.2, 2.4)
#: Keys per writer: few enough that reads often find what the writer wrote.
KEYS = 8
#: Long enough never to expire during a run: a miss then means the cache forgot it.
TIMEOUT = 3600


@dataclass(frozen=True)
class Limit:
    """A limit the workers hit, with the count and period its check needs."""

    name: str
    key: str
    rate: str
    algorithm: str
    count: int
    period: float


LIMITS = (
    Limit("gcra 10/s", "soak:gcra", "10/s", "gcra", 10, 1.0),
    Limit("sliding_window 15/s", "soak:sliding", "15/s", "sliding_window", 15, 1.0),
)

#: Cache operations and how often each is picked.
CACHE_OPS = ("get", "set", "delete", "get_many", "set_many", "get_or_set", "incr")
CACHE_WEIGHTS = (35, 25, 8, 10, 7, 8, 5)


class Soak:
    """What every worker shares: the stop flag, the counters and the ledgers."""

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self.stop = threading.Event()
        self.ops = Tally()
        self.errors = Errors()
        self.locks = LockLedger()
        self.renewed = LockLedger()
        self.rates = {
            limit.name: RateLedger(limit.name, limit.algorithm, limit.count, limit.period)
            for limit in LIMITS
        }
        self.histories: list[KeyHistory] = []
        self._events = threading.Lock()
        self.outages = 0
        self.recoveries = 0
        self.invalidated = 0

    def rng(self, name: str) -> random.Random:
        return random.Random(f"{self.seed}:{name}")

    def history(self, writer: str) -> KeyHistory:
        history = KeyHistory(writer, KEYS)
        self.histories.append(history)
        return history

    # --- breaker events (signals) ------------------------------------------------------

    def _degraded(self, sender: Any, **kwargs: Any) -> None:
        with self._events:  # sent by whichever thread's failure opened the breaker
            self.outages += 1

    def _recovered(self, sender: Any, *, invalidated_keys: int = 0, **kwargs: Any) -> None:
        with self._events:
            self.invalidated += invalidated_keys
            self.recoveries += 1

    def listen(self) -> None:
        signals.redis_degraded.connect(self._degraded, weak=False, dispatch_uid="soak-degraded")
        signals.redis_recovered.connect(self._recovered, weak=False, dispatch_uid="soak-recovered")

    def unlisten(self) -> None:
        signals.redis_degraded.disconnect(dispatch_uid="soak-degraded")
        signals.redis_recovered.disconnect(dispatch_uid="soak-recovered")


def _cache() -> ResilientRedisCache:
    cache = caches["default"]
    assert isinstance(cache, ResilientRedisCache)
    return cache


def breakers_closed() -> bool:
    return all(endpoint.breaker.closed for endpoint in _cache().manager.endpoints)


# --- cache -----------------------------------------------------------------------------------


class CacheWriter:
    """One writer's keys: every read is judged against what this writer wrote last."""

    def __init__(self, soak: Soak, name: str) -> None:
        self.soak = soak
        self.name = name
        self.rng = soak.rng(name)
        self.history = soak.history(name)
        self._recoveries_seen = 0

    def _judge(self, key: str, got: Any) -> None:
        history = self.history
        if not history.judge(key, got, breaker_closed=breakers_closed(), outages=self.soak.outages):
            journal = int(_cache().stats()["journal_size"])
            history.stale[-1] = replace(history.stale[-1], journal_size=journal)

    def _wrote(self, key: str, value: Value, op: str, started: float) -> None:
        self.history.wrote(key, value, op=op, started=started, closed=breakers_closed())

    def _got_or_set(
        self, key: str, got: Any, computed: list[Value], op: str, started: float
    ) -> None:
        """``get_or_set`` returns what it computed only if that is what it stored.

        As Django's: after a miss the computed value is *added*, and the key read
        back, so a value already there wins (the miss came from a fallback or a
        failed read while Redis still held the key). What came back is then a
        read like any other, judged against this writer's last write.
        """
        if computed and got == computed[-1]:
            self._wrote(key, got, op, started)
        else:
            if computed:
                self.soak.ops.add("cache.get_or_set_found_stored")
            self._judge(key, got)

    def _pick(self) -> tuple[str, str]:
        op = self.rng.choices(CACHE_OPS, CACHE_WEIGHTS)[0]
        return op, self.rng.choice(self.history.keys)

    def _recovered_since(self) -> bool:
        """A breaker closed since this writer last looked: time to check every key."""
        if self.soak.recoveries == self._recoveries_seen:
            return False
        self._recoveries_seen = self.soak.recoveries
        return True

    def _many(self) -> list[str]:
        return self.rng.sample(self.history.keys, 3)

    def step(self) -> None:
        cache, history = _cache(), self.history
        if self._recovered_since():
            for key in history.keys:
                self._judge(key, cache.get(key))
            self.soak.ops.add("cache.check_after_recovery")
        op, key = self._pick()
        self.soak.ops.add(f"cache.{op}")
        started = time.monotonic()
        if op == "get":
            self._judge(key, cache.get(key))
        elif op == "set":
            value = history.next_value(key)
            cache.set(key, value, TIMEOUT)
            self._wrote(key, value, op, started)
        elif op == "delete":
            cache.delete(key)
            history.deleted(key, started=started, closed=breakers_closed())
        elif op == "get_many":
            keys = self._many()
            found = cache.get_many(keys)
            for k in keys:
                self._judge(k, found.get(k))
        elif op == "set_many":
            values = {k: history.next_value(k) for k in self._many()}
            assert cache.set_many(values, TIMEOUT) == []  # a fallback takes what Redis cannot
            for k, v in values.items():
                self._wrote(k, v, op, started)
        elif op == "get_or_set":
            computed: list[Value] = []

            def compute() -> Value:
                computed.append(history.next_value(key))
                return computed[-1]

            got = cache.get_or_set(key, compute, TIMEOUT)
            self._got_or_set(key, got, computed, op, started)
        else:
            self._incr(cache)

    def _incr(self, cache: ResilientRedisCache) -> None:
        """Counters raise ``RedisUnavailable`` during an outage (``DEGRADED_COUNTERS="raise"``)."""
        key = f"{self.name}:n"
        try:
            cache.incr(key)
        except RedisUnavailable as exc:
            self.soak.errors.expect("cache.incr", exc)
        except ValueError as exc:  # missing: never set, or Redis came back empty
            self.soak.errors.expect("cache.incr", exc)
            cache.add(key, 0, TIMEOUT)

    async def astep(self) -> None:
        cache, history = _cache(), self.history
        if self._recovered_since():
            found = await cache.aget_many(history.keys)
            for key in history.keys:
                self._judge(key, found.get(key))
            self.soak.ops.add("cache.check_after_recovery")
        op, key = self._pick()
        self.soak.ops.add(f"cache.a{op}")
        started = time.monotonic()
        if op == "get":
            self._judge(key, await cache.aget(key))
        elif op == "set":
            value = history.next_value(key)
            await cache.aset(key, value, TIMEOUT)
            self._wrote(key, value, f"a{op}", started)
        elif op == "delete":
            await cache.adelete(key)
            history.deleted(key, started=started, closed=breakers_closed())
        elif op == "get_many":
            keys = self._many()
            found = await cache.aget_many(keys)
            for k in keys:
                self._judge(k, found.get(k))
        elif op == "set_many":
            values = {k: history.next_value(k) for k in self._many()}
            assert await cache.aset_many(values, TIMEOUT) == []
            for k, v in values.items():
                self._wrote(k, v, f"a{op}", started)
        elif op == "get_or_set":
            computed: list[Value] = []

            async def compute() -> Value:
                computed.append(history.next_value(key))
                return computed[-1]

            got = await cache.aget_or_set(key, compute, TIMEOUT)
            self._got_or_set(key, got, computed, f"a{op}", started)
        else:
            try:
                await cache.aincr(f"{self.name}:n")
            except RedisUnavailable as exc:
                self.soak.errors.expect("cache.incr", exc)
            except ValueError as exc:
                self.soak.errors.expect("cache.incr", exc)
                await cache.aadd(f"{self.name}:n", 0, TIMEOUT)


# --- locks -----------------------------------------------------------------------------------


class LockUser:
    """Takes the one guarded lock again and again, with one of the documented policies.

    ``skip``: ``on_busy="skip", on_unavailable="skip"`` in a ``with`` block (the
    block runs with a falsy handle when skipped, and must not enter the section).
    ``raise``: ``acquire()``/``release()`` by hand with the default ``"raise"``
    policies: ``LockNotAcquired`` and ``RedisUnavailable`` mean no section.
    """

    def __init__(self, soak: Soak, name: str, policy: str, wait: float) -> None:
        self.soak = soak
        self.name = name
        self.policy = policy
        self.rng = soak.rng(name)
        skip = policy == "skip"
        self.guard = lock(
            LOCK_NAME,
            timeout=LEASE,
            wait=wait,
            on_busy="skip" if skip else "raise",
            on_unavailable="skip" if skip else "raise",
        )

    def _skipped(self, held: Any) -> None:
        self.soak.ops.add("lock.skipped_unavailable" if held.degraded else "lock.skipped_busy")

    def _work(self) -> float:
        return self.rng.uniform(0.0005, 0.003)

    def step(self) -> None:
        soak = self.soak
        soak.ops.add("lock.attempt")
        if self.policy == "skip":
            try:
                with self.guard as held:
                    if not held:
                        self._skipped(held)
                        return
                    self._section(held, time.sleep)
            except LockLost as exc:
                soak.errors.expect("lock.exit", exc)
            return
        try:
            held = self.guard.acquire()
        except (LockNotAcquired, RedisUnavailable) as exc:
            soak.errors.expect("lock.acquire", exc)
            return
        assert held is not None  # "raise" policies never skip
        self._section(held, time.sleep)
        try:
            self.guard.release()
        except (LockLost, RedisUnavailable) as exc:
            soak.errors.expect("lock.release", exc)

    def _section(self, held: Any, pause: Callable[[float], object]) -> None:
        start = self.soak.locks.enter(held)
        pause(self._work())
        self.soak.ops.add("lock.acquired")
        self.soak.locks.leave(held.token, start, self.name)

    async def _asection(self, held: Any) -> None:
        start = self.soak.locks.enter(held)
        await asyncio.sleep(self._work())
        self.soak.ops.add("lock.acquired")
        self.soak.locks.leave(held.token, start, self.name)

    async def astep(self) -> None:
        soak = self.soak
        soak.ops.add("lock.attempt")
        if self.policy == "skip":
            try:
                async with self.guard as held:
                    if not held:
                        self._skipped(held)
                        return
                    await self._asection(held)
            except LockLost as exc:
                soak.errors.expect("lock.exit", exc)
            return
        try:
            held = await self.guard.aacquire()
        except (LockNotAcquired, RedisUnavailable) as exc:
            soak.errors.expect("lock.acquire", exc)
            return
        assert held is not None
        await self._asection(held)
        try:
            await self.guard.arelease()
        except (LockLost, RedisUnavailable) as exc:
            soak.errors.expect("lock.release", exc)


class RenewedLockUser:
    """Holds :data:`RENEWED_NAME` for longer than its lease, by the background renewal.

    A fault that outlasts the lease (a kill, a long hang or silence) ends it
    while the holder is still inside; another holder may then come in. That is
    what a lease lock allows, so the checks are the ones it promises: the older
    holder is told (``held.lost``, and ``LockLost`` on leaving the block), and
    only such a holder is refused by the fenced register.
    """

    def __init__(self, soak: Soak, name: str) -> None:
        self.soak = soak
        self.name = name
        self.rng = soak.rng(name)
        self.guard = lock(
            RENEWED_NAME,
            timeout=RENEWED_LEASE,
            wait=0.3,  # in the queue for a hand-off, not a busy loop of attempts
            renew=True,
            on_busy="skip",
            on_unavailable="skip",
        )

    def _enter(self, held: Any) -> float | None:
        self.soak.ops.add("renewed.attempt")
        if not held:
            self.soak.ops.add("renewed.skipped")
            return None
        return self.soak.renewed.enter(held)

    def _leave(self, held: Any, start: float) -> None:
        self.soak.ops.add("renewed.lost" if held.lost else "renewed.held")
        self.soak.renewed.leave(held.token, start, self.name, lost=held.lost)

    def step(self) -> None:
        try:
            with self.guard as held:
                start = self._enter(held)
                if start is not None:
                    time.sleep(self.rng.uniform(*RENEWED_SECTION))
                    self._leave(held, start)
        except LockLost as exc:
            self.soak.errors.expect("renewed.exit", exc)

    async def astep(self) -> None:
        try:
            async with self.guard as held:
                start = self._enter(held)
                if start is not None:
                    await asyncio.sleep(self.rng.uniform(*RENEWED_SECTION))
                    self._leave(held, start)
        except LockLost as exc:
            self.soak.errors.expect("renewed.exit", exc)


# --- rate limits -----------------------------------------------------------------------------


class RateUser:
    """Hits the soak's limits far faster than they admit (``on_unavailable="local"``)."""

    def __init__(self, soak: Soak, name: str) -> None:
        self.soak = soak
        self.rng = soak.rng(name)

    def step(self) -> None:
        limit = self.rng.choice(LIMITS)
        sent = time.monotonic()
        decision = hit(limit.key, limit.rate, algorithm=limit.algorithm)
        self._record(limit, sent, decision)

    async def astep(self) -> None:
        limit = self.rng.choice(LIMITS)
        sent = time.monotonic()
        decision = await ahit(limit.key, limit.rate, algorithm=limit.algorithm)
        self._record(limit, sent, decision)

    def _record(self, limit: Limit, sent: float, decision: Any) -> None:
        answered = time.monotonic()
        self.soak.ops.add(f"ratelimit.{'degraded' if decision.degraded else 'redis'}")
        self.soak.rates[limit.name].record(
            sent, answered, allowed=decision.allowed, degraded=decision.degraded
        )


# --- running them ----------------------------------------------------------------------------

Step = Callable[[], None]
AStep = Callable[[], Awaitable[None]]
#: Pause between two steps of one worker: load, not a busy loop on two shared cores.
PAUSE = (0.001, 0.006)


def _loop(soak: Soak, where: str, step: Step, rng: random.Random) -> None:
    while not soak.stop.is_set():
        try:
            step()
        except Exception as exc:
            soak.errors.surprise(where, exc)
        time.sleep(rng.uniform(*PAUSE))


async def _aloop(soak: Soak, where: str, step: AStep, rng: random.Random) -> None:
    while not soak.stop.is_set():
        try:
            await step()
        except Exception as exc:
            soak.errors.surprise(where, exc)
        await asyncio.sleep(rng.uniform(*PAUSE))


def workers(soak: Soak) -> list[threading.Thread]:
    """Threads for the sync workers, and one thread running the asyncio tasks."""
    sync: list[tuple[str, Step]] = []
    for n in range(2):
        sync.append((f"cache-thread-{n}", CacheWriter(soak, f"ct{n}").step))
    sync.append(("lock-thread-skip", LockUser(soak, "lt-skip", "skip", 0.3).step))
    sync.append(("lock-thread-raise", LockUser(soak, "lt-raise", "raise", 0.0).step))
    sync.append(("rate-thread", RateUser(soak, "rt").step))
    sync.append(("renewed-thread", RenewedLockUser(soak, "rlt").step))
    tasks: list[tuple[str, AStep]] = []
    for n in range(2):
        tasks.append((f"cache-task-{n}", CacheWriter(soak, f"ca{n}").astep))
    tasks.append(("lock-task-skip", LockUser(soak, "la-skip", "skip", 0.3).astep))
    tasks.append(("lock-task-raise", LockUser(soak, "la-raise", "raise", 0.5).astep))
    tasks.append(("rate-task", RateUser(soak, "ra").astep))
    tasks.append(("renewed-task", RenewedLockUser(soak, "rla").astep))

    threads = [
        threading.Thread(
            target=_loop, args=(soak, name, step, soak.rng(name)), name=f"soak-{name}", daemon=True
        )
        for name, step in sync
    ]

    async def main() -> None:
        await asyncio.gather(*(_aloop(soak, n, s, soak.rng(n)) for n, s in tasks))

    def run_loop() -> None:
        try:
            asyncio.run(main())
        except Exception as exc:
            soak.errors.surprise("event loop", exc)

    threads.append(threading.Thread(target=run_loop, name="soak-asyncio", daemon=True))
    return threads
