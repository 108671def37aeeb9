"""Cache operations written once, run by a sync or an asyncio driver (see ``_drive``).

Each cache method is a *plan*: a generator that decides (key, journal,
breaker verdict, fallback, counters) and yields the I/O it needs as one of
the steps below. :func:`run` carries a plan out with redis-py's sync client,
:func:`arun` with ``redis.asyncio`` on the running loop's pool, so ``get`` and
``aget`` share every decision and differ only in how they wait.

A step's outcome goes back into the plan: its value, or the exception it
raised (``RedisUnavailable`` for an outage, a server error as it came).
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Generator, Sequence
from typing import Any, TypeVar

from asgiref.sync import sync_to_async
from django.core.cache.backends.base import BaseCache
from django.core.cache.backends.locmem import LocMemCache

from django_redis_resilience._drive import adrive, drive
from django_redis_resilience.cache._stampede import Flight
from django_redis_resilience.connection import ConnectionManager
from django_redis_resilience.locks import Held, Lock

T = TypeVar("T")

ClientFn = Callable[[Any], Any]
AsyncClientFn = Callable[[Any], Awaitable[Any]]


class Execute:
    """Run ``fn(client)`` on the key's endpoint (breaker, retries, routing)."""

    __slots__ = ("afn", "fn", "idempotent", "key", "manager", "write")

    def __init__(
        self,
        manager: ConnectionManager,
        fn: ClientFn,
        *,
        key: Any,
        write: bool = True,
        idempotent: bool = True,
        afn: AsyncClientFn | None = None,
    ) -> None:
        self.manager = manager
        #: Called with the sync client, or with the asyncio client when
        #: ``afn`` is not given (redis-py's asyncio methods mirror the sync
        #: ones and return awaitables, which the driver awaits).
        self.fn = fn
        self.afn = afn
        self.key = key
        self.write = write
        self.idempotent = idempotent


class Grouped:
    """Run ``fn(client, keys)`` once per shard: ``[(keys, result or RedisUnavailable)]``."""

    __slots__ = ("fn", "keys", "manager", "write")

    def __init__(
        self,
        manager: ConnectionManager,
        keys: Sequence[str],
        fn: Callable[[Any, list[str]], Any],
        *,
        write: bool = True,
    ) -> None:
        self.manager = manager
        self.keys = keys
        self.fn = fn
        self.write = write


class Primaries:
    """Run a function on every master: ``[(endpoint, result or RedisUnavailable)]``."""

    __slots__ = ("afn", "fn", "manager")

    def __init__(self, manager: ConnectionManager, fn: ClientFn, afn: AsyncClientFn) -> None:
        self.manager = manager
        self.fn = fn
        self.afn = afn


class Fallback:
    """Call ``fn(store)`` on the fallback store."""

    __slots__ = ("fn", "store")

    def __init__(self, store: BaseCache, fn: Callable[[BaseCache], Any]) -> None:
        self.store = store
        self.fn = fn


class Compute:
    """Call the caller's function (``get_or_set``'s default); the async driver awaits
    what it returns when that is awaitable (an async function)."""

    __slots__ = ("fn",)

    def __init__(self, fn: Callable[[], Any]) -> None:
        self.fn = fn


class Follow:
    """Wait for another caller's computation of the same key (single flight)."""

    __slots__ = ("flight",)

    def __init__(self, flight: Flight) -> None:
        self.flight = flight


class TakeLock:
    """Acquire the app's lock: the :class:`Held`, or ``None`` when skipped."""

    __slots__ = ("lock",)

    def __init__(self, lock: Lock) -> None:
        self.lock = lock


class ReleaseLock:
    __slots__ = ("held",)

    def __init__(self, held: Held) -> None:
        self.held = held


Step = Execute | Grouped | Primaries | Fallback | Compute | Follow | TakeLock | ReleaseLock
Plan = Generator[Step, Any, T]


def run(plan: Plan[T]) -> T:
    """Carry out ``plan`` with the sync clients."""
    return drive(plan, _do)


def _do(step: Step) -> Any:
    if type(step) is Execute:
        return step.manager.execute(
            step.fn, key=step.key, write=step.write, idempotent=step.idempotent
        )
    if type(step) is Fallback:
        return step.fn(step.store)
    if type(step) is Grouped:
        return step.manager.execute_grouped(step.keys, step.fn, write=step.write)
    if type(step) is Primaries:
        return step.manager.for_each_primary(step.fn)
    if type(step) is Compute:
        return step.fn()
    if type(step) is Follow:
        return step.flight.wait()
    if type(step) is TakeLock:
        return step.lock.acquire()
    assert type(step) is ReleaseLock
    return step.held.release()


async def arun(plan: Plan[T]) -> T:
    """Carry out ``plan`` with the asyncio clients of the running event loop."""
    return await adrive(plan, _ado)


async def _awaited(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value


async def _ado(step: Step) -> Any:
    if type(step) is Execute:
        fn = step.fn
        afn = step.afn or (lambda client: _awaited(fn(client)))
        return await step.manager.aexecute(
            afn, key=step.key, write=step.write, idempotent=step.idempotent
        )
    if type(step) is Fallback:
        if isinstance(step.store, LocMemCache) or getattr(step.store, "in_memory", False):
            # In-process memory never blocks: no thread hop for it.
            return step.fn(step.store)
        return await sync_to_async(step.fn, thread_sensitive=False)(step.store)
    if type(step) is Grouped:
        gfn = step.fn
        return await step.manager.aexecute_grouped(
            step.keys, lambda client, keys: _awaited(gfn(client, keys)), write=step.write
        )
    if type(step) is Primaries:
        return await step.manager.afor_each_primary(step.afn)
    if type(step) is Compute:
        return await _awaited(step.fn())
    if type(step) is Follow:
        return await step.flight.await_outcome()
    if type(step) is TakeLock:
        return await step.lock.aacquire()
    assert type(step) is ReleaseLock
    return await step.held.arelease()
