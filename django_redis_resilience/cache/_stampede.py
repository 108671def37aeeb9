"""Stampede protection for ``get_or_set``: single flight, early refresh, null caching.

When a popular key expires, every request that misses would compute it at
once (a cache stampede). Here one caller per key and process computes (the
*leader*); the others, threads or asyncio tasks, wait for its result. With
``STAMPEDE["LOCK"]`` the leaders of all processes also take the app's lock,
so one computes and the rest read what it stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from django_redis_resilience import _schema

#: Compute times remembered for early refresh, per process and cache.
_DURATIONS = 10_000
#: A flight's outcome when its leader was cancelled or interrupted: followers start over.
RETRY: Any = object()
#: What following gives a caller that must not wait for the leader: it computes alone.
ALONE: Any = object()


@dataclass(frozen=True)
class StampedeConfig:
    """``OPTIONS["STAMPEDE"]``, validated by the system checks (E004)."""

    #: Take the app's lock around the computation, across processes.
    lock: bool = False
    #: Lease of that lock in seconds (renewed while the computation runs).
    lock_timeout: float = 30.0
    #: XFetch's beta (1.0 is the usual choice); ``None``: no early refresh.
    early_refresh: float | None = None
    #: Seconds to keep a ``None`` result (a short time stops repeated misses
    #: for absent rows hammering the database); ``None``: the normal timeout.
    null_timeout: float | None = None

    @classmethod
    def from_options(cls, options: Mapping[str, Any] | None) -> StampedeConfig:
        options = options or {}
        return cls(
            lock=bool(_schema.section("STAMPEDE").read(options, "LOCK")),
            lock_timeout=float(_schema.section("STAMPEDE").read(options, "LOCK_TIMEOUT")),
            early_refresh=_schema.section("STAMPEDE").read(options, "EARLY_REFRESH"),
            null_timeout=_schema.section("STAMPEDE").read(options, "NULL_TIMEOUT"),
        )


def refresh_early(*, beta: float | None, duration: float | None, ttl_ms: int | None) -> bool:
    """XFetch: refresh before expiry with a probability that rises as it nears.

    A value that took ``duration`` seconds to compute is recomputed when
    ``duration * beta * -ln(U)`` exceeds the time it has left, so one caller
    usually refreshes it just before it expires, instead of all callers
    recomputing it just after.
    """
    if not beta or not duration or ttl_ms is None or ttl_ms <= 0:
        return False
    return duration * beta * -math.log(1.0 - random.random()) * 1000 >= ttl_ms


class Flight:
    """One computation in progress; threads and asyncio tasks wait for its outcome."""

    __slots__ = ("_done", "_futures", "_guard", "error", "task", "thread", "value")

    def __init__(self) -> None:
        #: Who leads: a follower in the same thread (a sync call inside the
        #: leader's event loop, or a loader asking for its own key) must not
        #: wait for it, or it would wait for ever.
        self.thread = threading.get_ident()
        self.task = _current_task()
        self._done = threading.Event()
        self._guard = threading.Lock()
        self._futures: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []
        self.value: Any = None
        self.error: BaseException | None = None

    def finish(self, value: Any = None, error: BaseException | None = None) -> None:
        with self._guard:
            self.value, self.error = value, error
            self._done.set()
            futures, self._futures = self._futures, []
        for loop, future in futures:
            with contextlib.suppress(RuntimeError):  # that loop is closed: nobody waits
                loop.call_soon_threadsafe(_wake, future)

    def _outcome(self) -> Any:
        if self.error is not None:
            raise self.error
        return self.value

    def wait(self) -> Any:
        """The leader's value (or its exception), blocking this thread; :data:`ALONE`
        when this thread is the leader's (waiting would block the leader)."""
        if self.thread == threading.get_ident() and not self._done.is_set():
            return ALONE
        self._done.wait()
        return self._outcome()

    async def await_outcome(self) -> Any:
        """The leader's value (or its exception), without blocking the event loop;
        :data:`ALONE` when the caller is the leading task itself."""
        if self.task is not None and self.task is _current_task():
            return ALONE
        with self._guard:
            if not self._done.is_set():
                loop = asyncio.get_running_loop()
                future: asyncio.Future[None] = loop.create_future()
                self._futures.append((loop, future))
            else:
                future = None  # type: ignore[assignment]
        if future is not None:
            await future
        return self._outcome()


def _current_task() -> asyncio.Task[Any] | None:
    try:
        return asyncio.current_task()
    except RuntimeError:  # no running loop
        return None


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class Flights:
    """The computations in progress in this process, by Redis key; and how long they took."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._flights: dict[str, Flight] = {}
        self._durations: OrderedDict[str, float] = OrderedDict()

    def join(self, key: str) -> tuple[Flight, bool]:
        """``(flight, leader)``: lead a new flight, or follow the one in progress."""
        with self._guard:
            flight = self._flights.get(key)
            if flight is not None:
                return flight, False
            flight = self._flights[key] = Flight()
            return flight, True

    def lead(self, key: str) -> Flight | None:
        """A new flight to lead, or ``None`` when one is in progress (an early
        refresh: the caller has a value to return, so it never waits)."""
        with self._guard:
            if key in self._flights:
                return None
            flight = self._flights[key] = Flight()
            return flight

    def land(self, key: str, flight: Flight, value: Any = None, error: BaseException | None = None,
             duration: float | None = None) -> None:  # fmt: skip
        """End the leader's flight: followers get its outcome; the next miss computes again."""
        with self._guard:
            if self._flights.get(key) is flight:
                del self._flights[key]
            if duration is not None:
                self._durations[key] = duration
                self._durations.move_to_end(key)
                while len(self._durations) > _DURATIONS:
                    self._durations.popitem(last=False)
        flight.finish(value, error)

    def abandon(self, key: str, flight: Flight, exc: BaseException) -> None:
        """End a flight whose leader raised: an error goes to the followers; a
        cancellation or interruption was the leader's alone, so they start over."""
        if isinstance(exc, Exception):
            self.land(key, flight, error=exc)
        else:
            self.land(key, flight, value=RETRY)

    def duration(self, key: str) -> float | None:
        return self._durations.get(key)

    def in_flight(self) -> int:
        return len(self._flights)
