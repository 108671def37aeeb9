"""A circuit breaker per logical endpoint, shared by every thread and event loop.

Closed: calls go to Redis. After ``failure_threshold`` failed calls within
``failure_window`` seconds it opens: calls are refused at once (the caller
serves its fallback) and nothing touches the network. After a jittered,
exponentially growing, capped cool-down the background thread moves it to
half-open and probes the endpoint; only when the probe succeeds and every
before-close hook ran (the cache drains its outage journal there) does it
close again. No caller ever waits for a probe.

The closed-state path is one attribute read (``allow``) and, on success, one
integer test (``record_success``): no lock is taken unless something failed.
"""

from __future__ import annotations

import enum
import logging
import random
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from django_redis_resilience.connection._background import Job, Scheduler

logger = logging.getLogger("django_redis_resilience")


class BreakerState(str, enum.Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass(frozen=True)
class BreakerConfig:
    """Tuning of a breaker; the defaults open within a few hundred milliseconds."""

    failure_threshold: int = 3
    failure_window: float = 2.0
    recovery_timeout: float = 1.0
    max_recovery_timeout: float = 30.0
    jitter: float = 0.2
    summary_interval: float = 60.0


#: ``listener(breaker, old_state, new_state, error)``; called outside the lock.
Listener = Callable[["CircuitBreaker", BreakerState, BreakerState, BaseException | None], None]
#: Runs under the breaker's lock just before it closes; returns a count to report
#: (e.g. keys invalidated). Raising keeps the breaker open.
BeforeClose = Callable[[], int]


class CircuitBreaker:
    """Breaker for one logical endpoint (a server, a Sentinel service, a shard)."""

    def __init__(
        self,
        *,
        name: str,
        config: BreakerConfig,
        probe: Callable[[], None],
        scheduler: Scheduler,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.config = config
        self._probe = probe
        self._scheduler = scheduler
        self._clock = clock
        self._lock = threading.RLock()
        #: Held while a close is attempted (probe and recovery hooks), outside ``_lock``.
        self._closing = threading.Lock()
        self._state = BreakerState.CLOSED
        #: ``True`` only while closed: the one attribute the hot path reads.
        self.closed = True
        self._failures = 0
        self._first_failure_at = 0.0
        self._opened_at = 0.0
        self._reopen_count = 0
        self._rejected = 0
        self._last_error: BaseException | None = None
        self._job: Job | None = None
        self._listeners: list[Listener] = []
        self._prepare_close: list[BeforeClose] = []
        self._before_close: list[BeforeClose] = []
        self.last_outage_seconds: float | None = None
        self.last_recovered_count = 0
        #: Whether a call's outcome was ever recorded: until then a closed breaker knows
        #: nothing about Redis (the load-balancer endpoint probes instead of trusting it).
        self.used = False
        self._stopped = False

    def __repr__(self) -> str:
        return f"<CircuitBreaker {self.name} {self._state.value}>"

    # --- reading -----------------------------------------------------------

    @property
    def state(self) -> BreakerState:
        return self._state

    @property
    def last_error(self) -> BaseException | None:
        return self._last_error

    @property
    def opened_at(self) -> float | None:
        return self._opened_at if not self.closed else None

    def allow(self) -> bool:
        """Whether a call may go to the network; counts refusals while open."""
        if self.closed:
            return True
        self._rejected += 1  # approximate under threads; only feeds the summary log
        return False

    @contextmanager
    def locked(self) -> Iterator[BreakerState]:
        """Hold the breaker's lock, e.g. to journal a write atomically with the state."""
        with self._lock:
            yield self._state

    # --- wiring ------------------------------------------------------------

    def add_listener(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def add_before_close(self, hook: BeforeClose, *, prepare: BeforeClose | None = None) -> None:
        """Run ``hook`` under the lock just before closing; ``prepare`` first, without the lock.

        ``prepare`` does the slow part (e.g. deleting thousands of keys) while
        callers may still record things; ``hook`` then deals with what they
        recorded meanwhile, briefly, with the lock held.
        """
        if prepare is not None:
            self._prepare_close.append(prepare)
        self._before_close.append(hook)

    # --- recording ---------------------------------------------------------

    def record_success(self) -> None:
        self.used = True
        if self._failures:
            with self._lock:
                self._failures = 0

    def record_failure(self, error: BaseException) -> None:
        """Count a failed call; opens the breaker after a burst of them."""
        events: list[tuple[BreakerState, BreakerState]] = []
        self.used = True
        with self._lock:
            if not self.closed:
                return
            now = self._clock()
            if not self._failures or now - self._first_failure_at > self.config.failure_window:
                self._failures = 0
                self._first_failure_at = now
            self._failures += 1
            self._last_error = error
            if self._failures >= self.config.failure_threshold:
                events.append(self._open_locked(error, now))
        self._notify(events, error)

    def trip(self, error: BaseException) -> None:
        """Open at once, e.g. on ``CLUSTERDOWN``: no point waiting for a burst."""
        events: list[tuple[BreakerState, BreakerState]] = []
        self.used = True
        with self._lock:
            self._last_error = error
            if self.closed:
                events.append(self._open_locked(error, self._clock()))
        self._notify(events, error)

    def stop(self) -> None:
        """No more probes: its endpoint was closed or left the topology.

        A stopped breaker keeps its state for whoever still reads it, but
        schedules nothing, so a replaced manager does not probe forever.
        """
        with self._lock:
            self._stopped = True
            if self._job is not None:
                self._job.cancel()
                self._job = None

    def reset(self) -> bool:
        """Close now (an operator's action); before-close hooks still run.

        A closed breaker is left alone and ``False`` returned: its hooks are
        recovery steps (draining the journal, invalidating the namespace with
        ``RECOVERY="invalidate_namespace"``) that have nothing to recover from,
        and an admin's POST lands on any worker, usually one whose breaker is
        closed. ``True``: the breaker was open or half-open and a close was tried.
        """
        with self._lock:
            if self.closed:
                return False
            if self._job is not None:
                self._job.cancel()
                self._job = None
        self._attempt_close(probe=False)
        return True

    # --- internals ---------------------------------------------------------

    def _cooldown(self) -> float:
        cfg = self.config
        growth: float = 2.0 ** min(self._reopen_count, 30)
        base = min(cfg.max_recovery_timeout, cfg.recovery_timeout * growth)
        spread = base * cfg.jitter
        return max(0.0, min(cfg.max_recovery_timeout, base + random.uniform(-spread, spread)))

    def _open_locked(self, error: BaseException, now: float) -> tuple[BreakerState, BreakerState]:
        old = self._state
        if old is BreakerState.CLOSED:
            self._opened_at = now
            self._rejected = 0
        self._state = BreakerState.OPEN
        self.closed = False
        self._failures = 0
        self._last_error = error
        delay = self._cooldown()
        self._reopen_count += 1
        if not self._stopped:
            self._job = self._scheduler.call_later(
                delay, self._on_cooldown_over, name=f"probe {self.name}"
            )
        return old, BreakerState.OPEN

    def _on_cooldown_over(self) -> None:
        events: list[tuple[BreakerState, BreakerState]] = []
        with self._lock:
            if self._state is not BreakerState.OPEN or self._stopped:
                return
            self._state = BreakerState.HALF_OPEN
            events.append((BreakerState.OPEN, BreakerState.HALF_OPEN))
            self._log_summary()
        self._notify(events, None)
        self._attempt_close(probe=True)

    def _attempt_close(self, *, probe: bool) -> None:
        # One attempt at a time (a reset during the probe's own attempt): the
        # recovery hooks must not run again once the breaker has closed.
        if not self._closing.acquire(blocking=False):
            return
        try:
            if not self.closed:
                self._close_or_reopen(probe=probe)
        finally:
            self._closing.release()

    def _close_or_reopen(self, *, probe: bool) -> None:
        events: list[tuple[BreakerState, BreakerState]] = []
        error: BaseException | None = None
        try:
            if probe:
                self._probe()  # outside the lock: it may take up to its timeout
            prepared = sum(hook() for hook in self._prepare_close)
            with self._lock:
                if self.closed:
                    return
                recovered = prepared + sum(hook() for hook in self._before_close)
                old = self._state
                self.last_outage_seconds = self._clock() - self._opened_at
                self.last_recovered_count = recovered
                self._state = BreakerState.CLOSED
                self.closed = True
                self._failures = 0
                self._reopen_count = 0
                events.append((old, BreakerState.CLOSED))
        except Exception as exc:
            error = exc
            with self._lock:
                if self.closed:
                    return
                old = self._state
                self._state = BreakerState.OPEN  # so _open_locked reports half_open -> open
                events.append((old, self._open_locked(exc, self._clock())[1]))
        self._notify(events, error)

    def _log_summary(self) -> None:
        now = self._clock()
        if now - self._opened_at >= self.config.summary_interval and self._rejected:
            logger.warning(
                "Redis %s still unavailable after %.0fs; %d calls served by the fallback",
                self.name,
                now - self._opened_at,
                self._rejected,
            )
            self._rejected = 0

    def _notify(
        self, events: list[tuple[BreakerState, BreakerState]], error: BaseException | None
    ) -> None:
        for old, new in events:
            if old is BreakerState.CLOSED and new is BreakerState.OPEN:
                # Credentials and certificates do not fix themselves: say so loudly.
                kind = getattr(getattr(error, "kind", None), "label", "")
                level = logging.ERROR if kind in {"auth", "tls"} else logging.WARNING
                logger.log(level, "Redis %s unavailable, breaker opened: %s", self.name, error)
            elif new is BreakerState.CLOSED:
                logger.info(
                    "Redis %s recovered after %.1fs, breaker closed",
                    self.name,
                    self.last_outage_seconds or 0.0,
                )
            for listener in list(self._listeners):
                try:
                    listener(self, old, new, error)
                except Exception:
                    logger.exception("Breaker listener failed for %s", self.name)
