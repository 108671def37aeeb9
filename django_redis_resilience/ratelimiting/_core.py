"""``hit()`` and ``peek()``: one limit check, one round trip (one EVALSHA), Redis's clock.

The sync and async functions share everything but the call itself:
:func:`_prepare` validates and builds the script call, :func:`_decide` reads
its answer, :func:`_degraded` applies the outage policy.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from django.conf import settings

from django_redis_resilience.clients import get_manager
from django_redis_resilience.conf import conf
from django_redis_resilience.connection import ConnectionManager
from django_redis_resilience.exceptions import InvalidRateLimit, RedisUnavailable
from django_redis_resilience.ratelimiting._algorithms import ALGORITHMS, LocalLimiter, Policy
from django_redis_resilience.ratelimiting._rates import Rate, parse_rate

ON_UNAVAILABLE = ("local", "allow", "deny")
_local = LocalLimiter()


@dataclass(frozen=True)
class Decision:
    """The outcome of one check; ``request.ratelimit`` in views."""

    allowed: bool
    #: The quota: at most this many at once (the burst for GCRA).
    limit: int
    remaining: int
    #: Seconds until this call would be admitted (0 when it was).
    retry_after: float
    #: Seconds until the quota is whole again.
    reset_after: float
    rate: Rate
    algorithm: str
    #: Redis could not be asked: decided by ``on_unavailable``.
    degraded: bool = False
    #: The policy's name in the ``RateLimit`` headers.
    name: str = "default"


@dataclass(frozen=True)
class _Call:
    manager: ConnectionManager
    redis_key: str
    policy: Policy
    args: list[Any]
    cost: int
    peek: bool
    name: str


def policy_for(rate: Any, algorithm: str, burst: int | None = None) -> Policy:
    """Validate a rate, algorithm and burst together (also at decoration time)."""
    return Policy.build(parse_rate(rate), algorithm, burst)


def check_options(*, cost: Any, on_unavailable: str, cache: str | None) -> None:
    if not isinstance(cost, int) or isinstance(cost, bool) or cost < 1:
        raise InvalidRateLimit(f"cost={cost!r} is not valid: it must be an integer >= 1.")
    if on_unavailable not in ON_UNAVAILABLE:
        raise InvalidRateLimit(
            f"on_unavailable={on_unavailable!r} is not valid: use one of "
            + ", ".join(repr(p) for p in ON_UNAVAILABLE)
            + "."
        )
    if cache is not None and not isinstance(cache, str):
        raise InvalidRateLimit(f"cache={cache!r} is not valid: give a CACHES alias.")


def _alias(cache: str | None) -> str:
    alias = cache or "default"
    if alias not in conf.resilient_aliases():
        raise InvalidRateLimit(
            f"cache={alias!r} is not a ResilientRedisCache in CACHES: rate limits need a Redis "
            "that every process shares."
        )
    return alias


def redis_key(prefix: str, key: str, policy: Policy) -> str:
    """The limit's key: the cache's prefix without its version, in the reserved namespace.

    The identity is hashed (bounded length, nothing personal in Redis) and
    hash-tagged, so every limit of one identity lives in one cluster slot.
    """
    digest = hashlib.sha256(key.encode()).hexdigest()[:32]
    rate = policy.rate
    return f"{prefix}:drr:rl:{{{digest}}}:{policy.algorithm}:{rate.count}/{rate.period:g}"


def _prepare(
    key: str,
    rate: Any,
    *,
    algorithm: str,
    cost: int,
    cache: str | None,
    burst: int | None,
    peek: bool,
    name: str,
    on_unavailable: str,
) -> _Call:
    if not isinstance(key, str):
        raise InvalidRateLimit(f"key={key!r} is not valid: hit() and peek() take a string.")
    check_options(cost=cost, on_unavailable=on_unavailable, cache=cache)
    policy = policy_for(rate, algorithm, burst)
    alias = _alias(cache)
    caches: Mapping[str, Any] = settings.CACHES
    prefix = str(caches[alias].get("KEY_PREFIX", ""))
    args = policy.args(cost, peek)
    if algorithm == "sliding_window":
        args.append(uuid.uuid4().hex)  # members of the sorted set must not collide
    return _Call(get_manager(alias), redis_key(prefix, key, policy), policy, args, cost, peek, name)


def _decide(call: _Call, raw: Any, *, degraded: bool = False) -> Decision:
    allowed, remaining, retry_us, reset_us = (int(x) for x in raw)
    return Decision(
        allowed=bool(allowed),
        limit=call.policy.limit,
        remaining=max(remaining, 0),
        retry_after=max(retry_us, 0) / 1_000_000,
        reset_after=max(reset_us, 0) / 1_000_000,
        rate=call.policy.rate,
        algorithm=call.policy.algorithm,
        degraded=degraded,
        name=call.name,
    )


def _degraded(call: _Call, on_unavailable: str) -> Decision:
    policy = call.policy
    if on_unavailable == "local":
        result = _local.check(call.redis_key, policy, call.cost, peek=call.peek)
        return _decide(call, result, degraded=True)
    allowed = on_unavailable == "allow"
    period = policy.rate.period
    return Decision(
        allowed=allowed,
        limit=policy.limit,
        remaining=policy.limit if allowed else 0,
        retry_after=0.0 if allowed else min(period, 1.0),
        reset_after=0.0,
        rate=policy.rate,
        algorithm=policy.algorithm,
        degraded=True,
        name=call.name,
    )


def _run(call: _Call, on_unavailable: str) -> Decision:
    script = ALGORITHMS[call.policy.algorithm].script
    try:
        raw = call.manager.execute(
            lambda c: script(c, [call.redis_key], call.args), key=call.redis_key, idempotent=False
        )
    except RedisUnavailable:
        return _degraded(call, on_unavailable)
    return _decide(call, raw)


async def _arun(call: _Call, on_unavailable: str) -> Decision:
    script = ALGORITHMS[call.policy.algorithm].script
    try:
        raw = await call.manager.aexecute(
            lambda c: script.acall(c, [call.redis_key], call.args),
            key=call.redis_key,
            idempotent=False,
        )
    except RedisUnavailable:
        return _degraded(call, on_unavailable)
    return _decide(call, raw)


def hit(
    key: str,
    rate: Any,
    *,
    algorithm: str = "gcra",
    cost: int = 1,
    cache: str | None = None,
    burst: int | None = None,
    on_unavailable: str = "local",
    name: str = "default",
) -> Decision:
    """Consume ``cost`` units of ``key``'s quota under ``rate`` if they are available.

    One round trip (one EVALSHA) on Redis's clock. When Redis is unavailable
    (breaker open, no waiting for socket timeouts) ``on_unavailable`` decides:
    ``"local"`` limits in this process, ``"allow"`` admits, ``"deny"`` refuses;
    the decision then says ``degraded=True``.
    """
    call = _prepare(key, rate, algorithm=algorithm, cost=cost, cache=cache, burst=burst,
                    peek=False, name=name, on_unavailable=on_unavailable)  # fmt: skip
    return _run(call, on_unavailable)


def peek(
    key: str,
    rate: Any,
    *,
    algorithm: str = "gcra",
    cost: int = 1,
    cache: str | None = None,
    burst: int | None = None,
    on_unavailable: str = "local",
    name: str = "default",
) -> Decision:
    """Whether ``cost`` units would be admitted now, consuming nothing."""
    call = _prepare(key, rate, algorithm=algorithm, cost=cost, cache=cache, burst=burst,
                    peek=True, name=name, on_unavailable=on_unavailable)  # fmt: skip
    return _run(call, on_unavailable)


async def ahit(
    key: str,
    rate: Any,
    *,
    algorithm: str = "gcra",
    cost: int = 1,
    cache: str | None = None,
    burst: int | None = None,
    on_unavailable: str = "local",
    name: str = "default",
) -> Decision:
    """The asyncio twin of :func:`hit`, on ``redis.asyncio`` (no thread hop)."""
    call = _prepare(key, rate, algorithm=algorithm, cost=cost, cache=cache, burst=burst,
                    peek=False, name=name, on_unavailable=on_unavailable)  # fmt: skip
    return await _arun(call, on_unavailable)


async def apeek(
    key: str,
    rate: Any,
    *,
    algorithm: str = "gcra",
    cost: int = 1,
    cache: str | None = None,
    burst: int | None = None,
    on_unavailable: str = "local",
    name: str = "default",
) -> Decision:
    """The asyncio twin of :func:`peek`."""
    call = _prepare(key, rate, algorithm=algorithm, cost=cost, cache=cache, burst=burst,
                    peek=True, name=name, on_unavailable=on_unavailable)  # fmt: skip
    return await _arun(call, on_unavailable)
