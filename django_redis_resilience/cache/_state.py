"""What one cache shares across threads: fallback stores, outage journals, counters.

Django builds a backend object per thread and per async context and closes it
after every request, so this state lives beside the connection manager, one
per manager: a changed configuration gets a new manager and a new state.

The outage journal is what makes recovery safe. Every key this process wrote
or deleted through the fallback, and every key whose write failed with a
connection error, is recorded per endpoint; before that endpoint's breaker
closes, the keys are deleted from Redis (under the breaker's lock, so nothing
is journaled meanwhile). A key that is still journaled is read from the
fallback, never from Redis, so the value Redis held before the outage cannot
come back. When the journal overflows, or with ``RECOVERY="invalidate_namespace"``,
the cache's whole namespace on that endpoint is deleted instead.
"""

from __future__ import annotations

import functools
import itertools
import logging
import secrets
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import redis
import redis.asyncio
from django.core.cache import caches
from django.core.cache.backends.base import DEFAULT_TIMEOUT, BaseCache
from django.core.cache.backends.locmem import LocMemCache

from django_redis_resilience._steps import Call, Plan, arun, run
from django_redis_resilience.cache._namespace import Namespace
from django_redis_resilience.cache._near import NearCache, NearSettings
from django_redis_resilience.cache._stampede import Flights
from django_redis_resilience.connection import (
    BreakerState,
    CircuitBreaker,
    ConnectionManager,
    LogicalEndpoint,
    Slot,
    redirect_of,
)
from django_redis_resilience.exceptions import BreakerOpen, RedisUnavailable

logger = logging.getLogger("django_redis_resilience")

#: Keys deleted per pipeline / per UNLINK while draining or invalidating.
BATCH = 500
#: The journal keeps at most this many keys per endpoint; beyond, the namespace is invalidated.
JOURNAL_LIMIT = 10_000

#: ``FALLBACK`` not given: a private in-process store per endpoint.
PRIVATE = "private"


#: The counters of :class:`CacheCounters` also kept per endpoint (for metrics): what an
#: outage or a refusing server does, counted when a call degrades, never on the hot path.
EndpointCounter = Literal[
    "errors", "short_circuited", "fallback_reads", "fallback_writes", "refused_writes"
]


@dataclass
class CacheCounters:
    """Per-cache, per-process counters (approximate under threads); the health report shows them."""

    hits: int = 0
    misses: int = 0
    fallback_reads: int = 0
    fallback_writes: int = 0
    short_circuited: int = 0
    errors: int = 0
    invalidated_keys: int = 0
    #: Writes Redis answered but refused (memory full, ``MISCONF``...): nothing stored.
    refused_writes: int = 0
    #: Reads served from the near cache, and reads it could not serve.
    near_hits: int = 0
    near_misses: int = 0
    #: Near values dropped by Redis's invalidation messages.
    near_invalidations: int = 0
    #: Times near values were dropped wholesale for safety (link lost, breaker, failover, clear).
    near_flushes: int = 0
    last_outage_start: float | None = None
    last_outage_end: float | None = None

    def snapshot(self) -> dict[str, Any]:
        return dict(self.__dict__)


class OutageJournal:
    """Keys of one endpoint that Redis may hold an outdated value for."""

    def __init__(self, *, limit: int = JOURNAL_LIMIT) -> None:
        self.limit = limit
        self._lock = threading.Lock()
        self._seq = itertools.count()
        #: Redis key -> (the key and version the caller used, sequence number).
        self._keys: dict[str, tuple[tuple[Any, int | None], int]] = {}
        #: Too many keys, or a ``clear()`` during the outage: invalidate the namespace.
        self.overflowed = False

    def __len__(self) -> int:
        return len(self._keys)

    def __bool__(self) -> bool:
        return self.overflowed or bool(self._keys)

    def __contains__(self, redis_key: object) -> bool:
        # Overflowed: any key may be outdated in Redis until the namespace is invalidated.
        return self.overflowed or redis_key in self._keys  # dict lookups: atomic

    def add(self, redis_key: str, original: tuple[Any, int | None]) -> None:
        with self._lock:
            if self.overflowed:
                return
            if redis_key not in self._keys and len(self._keys) >= self.limit:
                self.overflowed = True
                return
            self._keys[redis_key] = (original, next(self._seq))

    def invalidate_all(self) -> None:
        with self._lock:
            self.overflowed = True

    def snapshot(self) -> tuple[dict[str, tuple[tuple[Any, int | None], int]], bool]:
        with self._lock:
            return dict(self._keys), self.overflowed

    def discard(
        self, done: dict[str, tuple[tuple[Any, int | None], int]], overflowed: bool
    ) -> None:
        """Forget what was dealt with; a key journaled again meanwhile stays."""
        with self._lock:
            for key, (_, seq) in done.items():
                entry = self._keys.get(key)
                if entry is not None and entry[1] == seq:
                    del self._keys[key]
            if overflowed:
                self.overflowed = False
                self._keys.clear()


@dataclass(frozen=True)
class CacheSettings:
    """What the state needs to know about the cache; plain values, read once."""

    alias: str
    fallback: str | type | None
    fallback_params: dict[str, Any] = field(default_factory=dict)
    recovery: str = "journal"
    #: The cache's keys in Redis (what ``clear()`` and invalidation delete).
    namespace: Namespace | None = None
    #: ``KEY_PREFIX``: names the generation of a shared fallback (:class:`GenerationStore`).
    key_prefix: str = ""
    #: ``OPTIONS["NEAR_CACHE"]``; ``None``: no near cache.
    near: NearSettings | None = None


class GenerationStore(BaseCache):
    """A shared fallback store, seen through the cache's current generation.

    A shared fallback (another ``CACHES`` alias, a backend class) cannot be
    emptied when Redis returns as a private one is: it may hold other data,
    other processes may be using it, and the journal does not name every key
    written to it (none after an overflow or a ``clear()``). So each key is
    stored as ``<token>:<key>``, the token being kept in the store itself (the
    processes sharing the store agree on it), and every recovery and every
    ``clear()`` replaces the token: what was written before is never read again,
    by this process or another, even one that ended during the outage. Old
    entries expire or are culled as the store's own do.

    A write that a recovery of this process overtook (decided before the
    recovery, landing after it) is undone, so it cannot reach the next outage.

    Built for each call, cheaply; the token is read from the store once per
    call, never kept longer. Only the methods the backend uses are provided.
    """

    def __init__(self, store: BaseCache, *, record: str, overtaken: Callable[[], bool]) -> None:
        # No BaseCache.__init__: every method used is forwarded to ``store``.
        self.store = store
        #: In-process memory (no thread hop needed from async code).
        self.in_memory = isinstance(store, LocMemCache)
        self._record = record
        self._overtaken = overtaken
        self._token: str | None = None

    def _key(self, key: Any) -> str:
        if self._token is None:
            self._token = self._current()
        return f"{self._token}:{key}"

    def _current(self) -> str:
        token = self.store.get(self._record)
        if not isinstance(token, str):
            self.store.add(self._record, _new_token(), timeout=None)
            token = self.store.get(self._record)
        # A store that keeps nothing (a dummy cache) gets a new generation each call.
        return token if isinstance(token, str) else _new_token()

    def _undo_if_overtaken(self, made: str, version: int | None) -> None:
        if self._overtaken():
            self.store.delete(made, version=version)

    def get(self, key: Any, default: Any | None = None, version: int | None = None) -> Any:
        return self.store.get(self._key(key), default, version=version)

    def has_key(self, key: Any, version: int | None = None) -> bool:
        return self.store.has_key(self._key(key), version=version)

    def set(
        self,
        key: Any,
        value: Any,
        timeout: float | None = DEFAULT_TIMEOUT,
        version: int | None = None,
    ) -> None:
        made = self._key(key)
        self.store.set(made, value, timeout, version=version)
        self._undo_if_overtaken(made, version)

    def add(
        self,
        key: Any,
        value: Any,
        timeout: float | None = DEFAULT_TIMEOUT,
        version: int | None = None,
    ) -> bool:
        made = self._key(key)
        added = self.store.add(made, value, timeout, version=version)
        self._undo_if_overtaken(made, version)
        return added

    def incr(self, key: Any, delta: int = 1, version: int | None = None) -> int:
        made = self._key(key)
        value = self.store.incr(made, delta, version=version)
        self._undo_if_overtaken(made, version)
        return value

    def touch(
        self, key: Any, timeout: float | None = DEFAULT_TIMEOUT, version: int | None = None
    ) -> bool:
        return self.store.touch(self._key(key), timeout, version=version)

    def delete(self, key: Any, version: int | None = None) -> bool:
        return self.store.delete(self._key(key), version=version)

    def clear(self) -> None:
        """Start a new generation: this cache's entries are gone, the store's others stay."""
        self.store.set(self._record, _new_token(), timeout=None)
        self._token = None


def _new_token() -> str:
    return secrets.token_hex(4)


class CacheState:
    """Fallbacks, journals and counters of one cache in this process."""

    def __init__(self, *, manager: ConnectionManager, settings: CacheSettings) -> None:
        self.manager = manager
        self.settings = settings
        self.counters = CacheCounters()
        self._counts_lock = threading.Lock()
        self._by_endpoint: dict[tuple[EndpointCounter, str], int] = {}
        self._refusal_warned_at = 0.0
        #: ``get_or_set`` computations in progress in this process (single flight).
        self.flights = Flights()
        self._lock = threading.Lock()
        self._journals: dict[int, OutageJournal] = {}
        self._private: dict[int, LocMemCache] = {}
        #: Counters kept in a shared fallback during an outage, per endpoint (by breaker).
        self._local_counters: dict[int, set[tuple[Any, int | None]]] = {}
        self._shared: BaseCache | None = None
        #: Counts recoveries: a shared fallback's write that a recovery overtook is undone.
        self._recoveries = 0
        self._drain_scheduled = False
        manager.add_endpoint_hook(self._wire)
        #: The near cache (``OPTIONS["NEAR_CACHE"]``), or ``None``.
        self.near = (
            None
            if settings.near is None
            else NearCache(manager=manager, settings=settings.near, counters=self.counters)
        )

    # --- wiring ---------------------------------------------------------------------

    def _wire(self, endpoint: LogicalEndpoint) -> None:
        breaker = endpoint.breaker
        with self._lock:
            self._journals[id(breaker)] = OutageJournal()

        def prepare() -> int:  # the bulk of it, while degraded writes may still arrive
            return self._recover(endpoint, bulk=True)

        def before_close() -> int:  # under the breaker's lock: only what arrived meanwhile
            return self._recover(endpoint, bulk=False)

        def listener(
            breaker: CircuitBreaker,
            old: BreakerState,
            new: BreakerState,
            error: BaseException | None,
        ) -> None:
            if old is BreakerState.CLOSED and new is BreakerState.OPEN:
                self.counters.last_outage_start = time.time()
                # Each outage starts from an empty private store: nothing from
                # an earlier outage can be served.
                store = self._private.get(id(breaker))
                if store is not None:
                    store.clear()
            elif new is BreakerState.CLOSED:
                self.counters.last_outage_end = time.time()

        breaker.add_before_close(before_close, prepare=prepare)
        breaker.add_listener(listener)

    def journal(self, endpoint: LogicalEndpoint) -> OutageJournal:
        journal = self._journals.get(id(endpoint.breaker))
        if journal is None:  # an endpoint the hook has not seen yet (a race at startup)
            self._wire(endpoint)
            journal = self._journals[id(endpoint.breaker)]
        return journal

    def pending(self) -> int:
        """Keys journaled over every endpoint."""
        return sum(len(j) for j in list(self._journals.values()))

    def overflowed(self) -> bool:
        """Whether some endpoint's namespace is to be invalidated (overflow or ``clear()``)."""
        return any(j.overflowed for j in list(self._journals.values()))

    @property
    def journaling(self) -> bool:
        """Whether any endpoint's journal holds keys (almost never outside an outage)."""
        return any(self._journals.values())

    def journaled(self, redis_key: str, endpoint: Callable[[], LogicalEndpoint]) -> bool:
        """Whether ``redis_key`` waits in its endpoint's journal (cheap while none does)."""
        if not self.journaling:
            return False
        return redis_key in self.journal(endpoint())

    # --- fallback stores ---------------------------------------------------------------

    def fallback(self, endpoint: LogicalEndpoint) -> BaseCache | None:
        """The endpoint's fallback store: its private one, or the shared one seen through
        the cache's current generation (:class:`GenerationStore`); ``None`` without one."""
        spec = self.settings.fallback
        if spec is None:
            return None
        if spec == PRIVATE:
            store = self._private.get(id(endpoint.breaker))
            if store is None:
                with self._lock:
                    store = self._private.get(id(endpoint.breaker))
                    if store is None:
                        name = f"drr-fallback:{self.settings.alias}:{id(self)}:{endpoint.role}"
                        store = LocMemCache(name, dict(self.settings.fallback_params))
                        self._private[id(endpoint.breaker)] = store
            return store
        shared: BaseCache
        if isinstance(spec, str) and "." not in spec:
            shared = caches[spec]  # thread-local, as Django wants
        else:
            if self._shared is None:
                with self._lock:
                    if self._shared is None:
                        from django.utils.module_loading import import_string

                        cls = import_string(spec) if isinstance(spec, str) else spec
                        self._shared = cls("", dict(self.settings.fallback_params))
            shared = self._shared
        recoveries = self._recoveries
        return GenerationStore(
            shared,
            record=f"drr:generation:{self.settings.key_prefix}",
            overtaken=lambda: self._recoveries != recoveries,
        )

    # --- recording -----------------------------------------------------------------

    def record_write(
        self,
        endpoint: LogicalEndpoint,
        redis_key: str,
        original: tuple[Any, int | None],
        error: RedisUnavailable,
        *,
        force: bool = False,
    ) -> bool:
        """Journal a key about to be written to the fallback; ``False``: retry on Redis.

        Under the breaker's lock, so a recovery cannot slip between the check
        and the record. If the breaker closed since the call was refused, the
        write belongs in Redis, and the caller tries once more.
        """
        with endpoint.breaker.locked() as state:
            if state is BreakerState.CLOSED and isinstance(error, BreakerOpen) and not force:
                return False
        self._journal(endpoint, lambda journal: journal.add(redis_key, original))
        return True

    def invalidate_on_recovery(self, endpoint: LogicalEndpoint) -> None:
        """Have the endpoint's whole namespace deleted before Redis is trusted again
        (a ``clear()`` that could not reach it)."""
        self._journal(endpoint, lambda journal: journal.invalidate_all())

    def _journal(self, endpoint: LogicalEndpoint, record: Callable[[OutageJournal], None]) -> None:
        """Record in the endpoint's journal under its breaker's lock. If the breaker is
        closed (the failure did not open it), no recovery will drain the journal: a
        background drain will."""
        with endpoint.breaker.locked() as state:
            record(self.journal(endpoint))
        if state is BreakerState.CLOSED:
            self.schedule_drain()

    def warn_refused(self, alias: str, error: BaseException) -> None:
        """One WARNING a minute per cache while Redis refuses writes, not one per call."""
        now = time.monotonic()
        if now - self._refusal_warned_at > 60:
            self._refusal_warned_at = now
            logger.warning(
                "Redis refuses writes to cache %r (%s: %s): values are not stored until it "
                "accepts them again; reads go on",
                alias,
                type(error).__name__,
                error,
            )

    def note_unavailable(self, error: RedisUnavailable) -> None:
        """A call Redis could not serve: short-circuited by an open breaker, or failed."""
        name: EndpointCounter = "short_circuited" if isinstance(error, BreakerOpen) else "errors"
        self.count(name, error.endpoint)

    def count(self, name: EndpointCounter, endpoint: str, n: int = 1) -> None:
        """Count in the cache's totals and under ``endpoint`` (its display), exactly: only
        calls that degrade or are refused come here, so the lock costs the hot path nothing."""
        with self._counts_lock:
            setattr(self.counters, name, getattr(self.counters, name) + n)
            key = (name, endpoint)
            self._by_endpoint[key] = self._by_endpoint.get(key, 0) + n

    def endpoint_counts(self) -> dict[tuple[EndpointCounter, str], int]:
        """``{(counter, endpoint display): count}`` since the cache was built in this process."""
        with self._counts_lock:
            return dict(self._by_endpoint)

    # --- recovery --------------------------------------------------------------------

    def _recover(self, endpoint: LogicalEndpoint, *, bulk: bool) -> int:
        """Before the breaker closes: make Redis forget what the fallback saw.

        ``bulk`` (the first pass, without the breaker's lock) also invalidates
        the whole namespace when ``RECOVERY="invalidate_namespace"``; the pass
        under the lock only handles what was journaled since.
        """
        journal = self.journal(endpoint)
        keys, overflowed = journal.snapshot()
        count = 0
        if bulk or keys or overflowed:
            namespace = overflowed or (bulk and self.settings.recovery == "invalidate_namespace")
            count = self._invalidate(endpoint, keys, namespace=namespace)
            journal.discard(keys, overflowed)
        # Every pass: what reached the fallback since the last one (a local count,
        # a write the journal did not record after an overflow) goes too.
        self._forget_fallback(endpoint, keys)
        self.counters.invalidated_keys += count
        if count:
            logger.info(
                "Redis %s: %d key(s) written during the outage invalidated before recovery",
                endpoint.display,
                count,
            )
        return count

    def _invalidate(
        self,
        endpoint: LogicalEndpoint,
        keys: dict[str, tuple[tuple[Any, int | None], int]],
        *,
        namespace: bool,
    ) -> int:
        client = endpoint.client
        if namespace:
            assert self.settings.namespace is not None  # the settings refuse a cache without one
            return unlink_matching(client, self.settings.namespace)
        return self._delete(client, list(keys))

    def _delete(self, client: redis.Redis, keys: Sequence[str]) -> int:
        deleted = 0
        for start in range(0, len(keys), BATCH):
            batch = keys[start : start + BATCH]
            pipe = client.pipeline(transaction=False)
            for key in batch:
                pipe.delete(key)
            results = pipe.execute(raise_on_error=False)
            for key, result in zip(batch, results, strict=True):
                if isinstance(result, Exception):
                    if redirect_of(result) is None:
                        raise result
                    # The slot moved during the outage: delete it where it lives now.
                    result = self.manager.execute_command("DEL", key)
                deleted += int(result)
        return deleted

    def note_local_counter(self, endpoint: LogicalEndpoint, key: Any, version: int | None) -> None:
        """A counter counted in the fallback: dropped when Redis returns, never journaled
        (journaling would delete Redis's real count)."""
        with self._lock:
            self._local_counters.setdefault(id(endpoint.breaker), set()).add((key, version))

    def _forget_fallback(
        self, endpoint: LogicalEndpoint, keys: dict[str, tuple[tuple[Any, int | None], int]]
    ) -> None:
        """Empty the fallback of what the outage wrote, before Redis is trusted again.

        A private store is emptied. A shared one (another alias, a backend class)
        may hold other data, and the journal does not name every key written to
        it (after an overflow or a ``clear()`` it records none): its generation
        is replaced, so nothing written before is ever read again, by any process
        sharing it. The keys the journal names are deleted first, to free room.
        """
        with self._lock:
            counters = self._local_counters.pop(id(endpoint.breaker), set())
            self._recoveries += 1
        if self.settings.fallback == PRIVATE:
            store = self._private.get(id(endpoint.breaker))
            if store is not None:
                store.clear()
            return
        shared = self.fallback(endpoint)
        if shared is not None:
            for key, version in {(key, version) for (key, version), _ in keys.values()} | counters:
                shared.delete(key, version=version)
            shared.clear()

    def schedule_drain(self, delay: float = 0.05) -> None:
        """Drain journals of closed breakers soon, on the background thread."""
        with self._lock:
            if self._drain_scheduled:
                return
            self._drain_scheduled = True
        self.manager.scheduler.call_later(delay, self._drain_closed, name="drain journals")

    def _drain_closed(self) -> None:
        with self._lock:
            self._drain_scheduled = False
        again = False
        for endpoint in self.manager.endpoints:
            journal = self._journals.get(id(endpoint.breaker))
            if not journal or not endpoint.breaker.closed:
                continue  # nothing to do, or its recovery will drain it
            # No lock: entries journaled meanwhile keep their sequence number
            # and survive ``discard``; the breaker's own recovery may run too.
            try:
                self._recover(endpoint, bulk=False)
            except Exception as exc:
                logger.debug("Journal of %s not drained yet: %s", endpoint.display, exc)
                again = endpoint.breaker.closed
        if again:  # Redis fails but the breaker has not opened (yet): not in a tight loop
            self.schedule_drain(0.5)


def unlink_matching(client: redis.Redis, pattern: str | Namespace) -> int:
    """SCAN one node for ``pattern`` (a glob, or a namespace: its glob, then only the keys
    it owns) and UNLINK what it finds; never KEYS.

    One UNLINK per key, pipelined in batches: a cluster node refuses a
    multi-key UNLINK whose keys hash to different slots.
    """
    return run(_unlinking(client, pattern))


async def aunlink_matching(client: redis.asyncio.Redis, pattern: str | Namespace) -> int:
    """:func:`unlink_matching` on the running event loop: the same plan."""
    return await arun(_unlinking(client, pattern))


def _unlinking(client: Any, pattern: str | Namespace) -> Plan[int]:
    """SCAN page by page and UNLINK batch by batch, in the order ``scan_iter`` would;
    with an asyncio client, the driver awaits each of its answers."""
    glob, owns = _matcher(pattern)
    removed = 0
    batch: list[bytes] = []
    cursor: int | str = "0"  # where redis-py's scan_iter starts
    while cursor != 0:
        cursor, keys = yield Call(functools.partial(client.scan, cursor, match=glob, count=1000))
        for key in keys:
            if not owns(key):
                continue
            batch.append(key)
            if len(batch) >= BATCH:
                removed += yield from _unlinked(client, batch)
                batch = []
    if batch:
        removed += yield from _unlinked(client, batch)
    return removed


def _matcher(pattern: str | Namespace) -> tuple[str, Callable[[bytes], bool]]:
    """The glob to ask SCAN for, and which of the keys it returns to unlink."""
    if isinstance(pattern, Namespace):
        return pattern.glob, pattern.owns
    return pattern, _everything


def _everything(key: bytes) -> bool:
    return True


def _unlinked(client: Any, keys: list[bytes]) -> Plan[int]:
    """One UNLINK per key in one pipeline: how many it removed."""
    replies = yield Call(functools.partial(_unlink, client, keys))
    return sum(int(r) for r in replies)


def _unlink(client: Any, keys: list[bytes]) -> Any:
    pipe = client.pipeline(transaction=False)
    for key in keys:
        pipe.unlink(key)
    return pipe.execute()  # awaitable on an asyncio client


#: Where a connection manager keeps its cache's state (the health report and the
#: metrics read it there too).
CACHE_STATE: Slot[CacheState] = Slot("cache")


def state_for(manager: ConnectionManager, settings: Callable[[], CacheSettings]) -> CacheState:
    """The state of ``manager``'s cache, built on first use; it lives as long as the manager."""
    state = manager.extensions.get(CACHE_STATE)
    if state is None:
        state = manager.extensions.obtain(
            CACHE_STATE, lambda: CacheState(manager=manager, settings=settings())
        )
    return state
