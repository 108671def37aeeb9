"""The cache's own steps, beside the shared ones of ``django_redis_resilience._steps``.

Each cache method is a plan (see ``_drive``): a generator that decides (key,
journal, breaker verdict, fallback, counters) and yields the I/O it needs.
Redis work goes through the shared steps (``Execute``, ``Grouped``,
``Primaries``); these are the cache's other waits: its fallback store, another
caller's computation of the same key, and the lock of ``get_or_set``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from asgiref.sync import sync_to_async
from django.core.cache.backends.base import BaseCache
from django.core.cache.backends.locmem import LocMemCache

from django_redis_resilience._steps import Step
from django_redis_resilience.cache._stampede import Flight
from django_redis_resilience.locks import Held, Lock


class Fallback(Step):
    """Call ``fn(store)`` on the fallback store."""

    __slots__ = ("fn", "store")

    def __init__(self, store: BaseCache, fn: Callable[[BaseCache], Any]) -> None:
        self.store = store
        self.fn = fn

    def do(self) -> Any:
        return self.fn(self.store)

    async def ado(self) -> Any:
        store = self.store
        if isinstance(store, LocMemCache) or getattr(store, "in_memory", False):
            # In-process memory never blocks: no thread hop for it.
            return self.fn(store)
        return await sync_to_async(self.fn, thread_sensitive=False)(store)


class Follow(Step):
    """Wait for another caller's computation of the same key (single flight)."""

    __slots__ = ("flight",)

    def __init__(self, flight: Flight) -> None:
        self.flight = flight

    def do(self) -> Any:
        return self.flight.wait()

    async def ado(self) -> Any:
        return await self.flight.await_outcome()


class TakeLock(Step):
    """Acquire the app's lock: the :class:`Held`, or ``None`` when skipped."""

    __slots__ = ("lock",)

    def __init__(self, lock: Lock) -> None:
        self.lock = lock

    def do(self) -> Any:
        return self.lock.acquire()

    async def ado(self) -> Any:
        return await self.lock.aacquire()


class ReleaseLock(Step):
    """Give the lock of ``get_or_set`` back."""

    __slots__ = ("held",)

    def __init__(self, held: Held) -> None:
        self.held = held

    def do(self) -> Any:
        return self.held.release()

    async def ado(self) -> Any:
        return await self.held.arelease()
