"""The algorithms: one Lua script for Redis (``lua/limits.lua``) and in-process twins.

The script checks any number of limits in one call, all or nothing. The
twins follow it step by step (same arithmetic, same result tuple, same
all-or-nothing rule) so a limit keeps its meaning when Redis is down; only
"now" differs (Redis's clock there, this process's here). Results are
``(allowed, remaining, retry_after_us, reset_after_us)``.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django_redis_resilience._lua import LuaScript
from django_redis_resilience.exceptions import InvalidRateLimit
from django_redis_resilience.ratelimiting._rates import Rate, shown

Result = tuple[int, int, int, int]
_PACKAGE = "django_redis_resilience.ratelimiting"
#: The exact sliding window stores one entry per admitted unit: bounded here.
SLIDING_WINDOW_MAX = 100_000
#: Counts and bursts beyond this are typos (and would strain the script's doubles).
MAX_COUNT = 1_000_000_000


@dataclass(frozen=True)
class Policy:
    """A rate, an algorithm and its burst: what one limit means, validated once."""

    rate: Rate
    algorithm: str
    burst: int

    @classmethod
    def build(cls, rate: Rate, algorithm: str, burst: int | None) -> Policy:
        if not isinstance(algorithm, str) or algorithm not in ALGORITHMS:
            raise InvalidRateLimit(
                f"Algorithm {shown(algorithm)} is not known; use one of {', '.join(ALGORITHMS)}."
            )
        if burst is not None and (
            not isinstance(burst, int) or isinstance(burst, bool) or burst < 1
        ):
            raise InvalidRateLimit(
                f"burst={shown(burst)} is not valid: it must be an integer >= 1."
            )
        if burst is not None and algorithm != "gcra":
            raise InvalidRateLimit(f"burst applies to the gcra algorithm only, not {algorithm!r}.")
        if rate.count > MAX_COUNT or (burst or 0) > MAX_COUNT:
            what = str(rate) if burst is None else f"{rate} (burst {shown(burst)})"
            raise InvalidRateLimit(f"Rate {what} is too large: at most {MAX_COUNT} per period.")
        if rate.period / rate.count < 1e-6:
            raise InvalidRateLimit(f"Rate {rate} is more than one per microsecond.")
        if algorithm == "sliding_window" and rate.count > SLIDING_WINDOW_MAX:
            raise InvalidRateLimit(
                f"Rate {rate} is too large for the exact sliding window (it keeps one entry per "
                f"request; at most {SLIDING_WINDOW_MAX}): use sliding_window_counter or gcra."
            )
        return cls(rate, algorithm, burst if burst is not None else rate.count)

    @property
    def limit(self) -> int:
        """What the headers call the quota: the burst for GCRA, the count otherwise."""
        return self.burst if self.algorithm == "gcra" else self.rate.count

    @property
    def interval_us(self) -> int:
        """GCRA's T in whole microseconds, rounded up: never faster than the rate."""
        return math.ceil(self.rate.emission_interval * 1_000_000)

    def args(self, cost: int) -> list[Any]:
        """This limit's algorithm, a, b and cost in the script (the twin takes the last three)."""
        if self.algorithm == "gcra":
            return [self.algorithm, self.interval_us, self.burst, cost]
        return [self.algorithm, round(self.rate.period * 1_000_000), self.rate.count, cost]


def _gcra(now: int, state: Any, args: list[Any]) -> tuple[Result, Any]:
    interval, burst, cost = int(args[0]), int(args[1]), int(args[2])
    tolerance = interval * burst
    tat = max(state if state is not None else now, now)
    new_tat = tat + interval * cost
    allow_at = new_tat - tolerance
    if allow_at > now:
        return (0, max((tolerance - (tat - now)) // interval, 0), allow_at - now, tat - now), state
    return (1, (tolerance - (new_tat - now)) // interval, 0, new_tat - now), new_tat


def _fixed_window(now: int, state: Any, args: list[Any]) -> tuple[Result, Any]:
    period, limit, cost = int(args[0]), int(args[1]), int(args[2])
    window = now // period
    ends = (window + 1) * period
    used = state[1] if state is not None and state[0] == window else 0
    if used + cost > limit:
        return (0, max(limit - used, 0), ends - now, ends - now), state
    return (1, limit - used - cost, 0, ends - now), (window, used + cost)


def _sliding_window(now: int, state: Any, args: list[Any]) -> tuple[Result, Any]:
    period, limit, cost = int(args[0]), int(args[1]), int(args[2])
    admitted = [t for t in (state or []) if t > now - period]
    used = len(admitted)
    if used + cost > limit:
        index = used + cost - limit - 1
        retry = admitted[index] + period - now if index < used else period
        reset = admitted[-1] + period - now if admitted else period
        return (0, max(limit - used, 0), retry, reset), admitted
    return (1, limit - used - cost, 0, period), admitted + [now] * cost


def _sliding_window_counter(now: int, state: Any, args: list[Any]) -> tuple[Result, Any]:
    period, limit, cost = int(args[0]), int(args[1]), int(args[2])
    window = now // period
    elapsed = now - window * period
    current = previous = 0
    if state is not None and state[0] == window:
        current, previous = state[1], state[2]
    elif state is not None and state[0] == window - 1:
        previous = state[1]
    estimate = previous * (period - elapsed) / period + current
    if estimate + cost > limit:
        retry: float
        if current + cost <= limit:  # the previous window's weight falls until there is room
            retry = max(period - elapsed - (limit - current - cost) * period / previous, 1)
        else:  # only in the next window, once this one's weight has fallen enough
            retry = period - elapsed + period * (current + cost - limit) / current
        reset = 2 * period - elapsed if current > 0 else period - elapsed
        remaining = max(math.floor(limit - estimate), 0)
        return (0, remaining, math.ceil(retry), reset), state
    remaining = max(math.floor(limit - estimate - cost), 0)
    return (1, remaining, 0, 2 * period - elapsed), (window, current + cost, previous)


def _concurrency(now: int, state: Any, args: list[Any]) -> tuple[Result, Any]:
    """State: the end of each unit's lease (the twin has no members to release by name)."""
    lease, limit, cost = int(args[0]), int(args[1]), int(args[2])
    active = sorted(t for t in (state or []) if t > now)
    used = len(active)
    if used + cost > limit:
        return (0, max(limit - used, 0), active[used + cost - limit - 1] - now, lease), active
    return (1, limit - used - cost, 0, lease), active + [now + lease] * cost


Twin = Callable[[int, Any, list[Any]], tuple[Result, Any]]

#: The algorithms by name, with their in-process twins.
ALGORITHMS: dict[str, Twin] = {
    "gcra": _gcra,
    "sliding_window": _sliding_window,
    "sliding_window_counter": _sliding_window_counter,
    "fixed_window": _fixed_window,
    "concurrency": _concurrency,
}
#: Ends concurrency leases: KEYS[1] the in-flight set, ARGV the call's members.
RELEASE = LuaScript(_PACKAGE, "release")
#: Checks N limits in one EVALSHA: KEYS are the limits' keys, ARGV = peek, token, then
#: ``Policy.args(cost)`` per limit.
LIMITS = LuaScript(_PACKAGE, "limits")


class LocalLimiter:
    """Per-process limits for when Redis is unavailable (``on_unavailable="local"``).

    Each process limits on its own, so N processes admit up to N times the
    limit during an outage. Bounded: the least recently used keys are
    forgotten beyond ``max_keys``.
    """

    def __init__(self, *, max_keys: int = 10_000) -> None:
        self.max_keys = max_keys
        self._lock = threading.Lock()
        self._state: OrderedDict[str, Any] = OrderedDict()

    def check(self, checks: list[tuple[str, Policy, int, bool]], *, peek: bool) -> list[Result]:
        """Like the script: every limit checked; units consumed only if no blocking limit
        refuses, and only by the limits that admit."""
        now = time.time_ns() // 1000
        with self._lock:
            outcomes = [
                ALGORITHMS[policy.algorithm](now, self._state.get(key), policy.args(cost)[1:])
                for key, policy, cost, _ in checks
            ]
            for key, _, _, _ in checks if not peek else ():
                if key in self._state:  # a refused hit is a use too: not the next to evict
                    self._state.move_to_end(key)
            refused = any(
                r[0] == 0 and block
                for (r, _), (_, _, _, block) in zip(outcomes, checks, strict=True)
            )
            if not peek and not refused:
                for (key, _, _, _), (result, state) in zip(checks, outcomes, strict=True):
                    if not result[0]:
                        continue
                    self._state[key] = state
                    self._state.move_to_end(key)
                while len(self._state) > self.max_keys:
                    self._state.popitem(last=False)
        return [result for result, _ in outcomes]

    def release(self, key: str, policy: Policy, cost: int) -> None:
        """End ``cost`` concurrency leases of ``key`` (the ones ending soonest are as good)."""
        now = time.time_ns() // 1000
        with self._lock:
            if key in self._state:
                leases = sorted(t for t in self._state[key] if t > now)  # expired ones first out
                self._state[key] = leases[cost:]

    def clear(self) -> None:
        with self._lock:
            self._state.clear()
