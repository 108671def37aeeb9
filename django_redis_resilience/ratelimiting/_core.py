"""``hit()``, ``peek()`` and ``check_many()``: one EVALSHA per check (per slot), Redis's clock.

Each sync function and its asyncio twin are one plan (:func:`check_plan`,
:func:`release_plan`) run by ``_steps.run`` or ``_steps.arun``: :func:`_checks`
validates and builds the keys, :func:`_args` the script's arguments,
:func:`_collect` reads its answers and applies the outage policy to the slots
that could not be asked.

A check is one round trip, so what this process spends around it decides its
cost: a limit's key, policy and script argument are worked out once per
(identity, rate, group, ...) and remembered (:func:`_check_of`), and each slot
is asked with one :class:`Script` step straight through the connection
manager's fast path.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import logging
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import redis.exceptions as rex
from django.conf import settings
from redis.crc import key_slot

from django_redis_resilience import _process
from django_redis_resilience._steps import Gather, Plan, Script, Settled, arun, run
from django_redis_resilience.clients import get_manager, key_prefix
from django_redis_resilience.connection import ConnectionManager, rejected
from django_redis_resilience.exceptions import InvalidRateLimit, RedisUnavailable
from django_redis_resilience.ratelimiting._algorithms import (
    LIMITS,
    RELEASE,
    LocalLimiter,
    Policy,
)
from django_redis_resilience.ratelimiting._fleet import fleet_of
from django_redis_resilience.ratelimiting._rates import Rate, parse_rate

logger = logging.getLogger("django_redis_resilience")

ON_UNAVAILABLE = ("local", "allow", "deny")
_local = LocalLimiter()


@dataclass(eq=False)
class Lease:
    """Slots a ``concurrency`` limit admitted; :func:`release` ends them, once."""

    manager: ConnectionManager
    redis_key: str
    members: tuple[str, ...]
    policy: Policy
    cost: int
    degraded: bool
    released: bool = False

    def claim(self) -> bool:
        """Whether the caller is the one to release (a second release does nothing)."""
        with _release_lock:
            if self.released:
                return False
            self.released = True
            return True


_release_lock = threading.Lock()


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
    #: For an admitted ``concurrency`` limit: the slots to :func:`release` when done.
    lease: Lease | None = field(default=None, repr=False, compare=False)


@dataclass(frozen=True)
class Limit:
    """One limit to check, for :func:`hit_many` (and the middleware's rules)."""

    #: Who is limited (an address, a user, an API key): hashed into the key's hash tag,
    #: so all of one identity's limits share a cluster slot.
    key: str
    rate: Any
    algorithm: str = "gcra"
    cost: int = 1
    burst: int | None = None
    name: str = "default"
    #: What is limited (a view, a rule); limits of one identity with other groups are apart.
    group: str = ""
    #: ``False``: over this limit the call still goes ahead (and consumes nothing here).
    block: bool = True


@dataclass(frozen=True)
class _Check:
    redis_key: str
    policy: Policy
    cost: int
    name: str
    block: bool
    #: This limit's argument of the script: "<algorithm> <a> <b> <cost> <blocking>".
    arg: bytes = b""
    #: ``policy.limit``, read once.
    quota: int = 0


#: Rates, groups and identities up to this many characters are remembered (hashed or parsed
#: once); longer ones, which only a client writing a huge header or form field brings, are
#: worked out each time: the caches below hold kilobytes per entry at most, whatever the
#: requests carry (8192 identities of 1 MB once held 8 GB).
REMEMBERED_LENGTH = 128


def _remembered(text: Any) -> bool:
    return not isinstance(text, str) or len(text) <= REMEMBERED_LENGTH


def policy_for(rate: Any, algorithm: str, burst: int | None = None) -> Policy:
    """Validate a rate, algorithm and burst together (also at decoration time)."""
    if not (_remembered(rate) and _remembered(algorithm)):
        return Policy.build(parse_rate(rate), algorithm, burst)
    try:
        return _policy_cached(rate, algorithm, burst)
    except TypeError:  # an unhashable rate: parse it every time
        return Policy.build(parse_rate(rate), algorithm, burst)


@functools.lru_cache(maxsize=1024)
def _policy_cached(rate: Any, algorithm: str, burst: int | None) -> Policy:
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


def _prefix(cache: str | None) -> tuple[str, str]:
    """The alias and its ``KEY_PREFIX``."""
    alias = cache or "default"
    prefix = key_prefix(alias)
    if prefix is None:
        raise InvalidRateLimit(
            f"cache={alias!r} is not a ResilientRedisCache in CACHES: rate limits need a "
            "Redis that every process shares."
        )
    return alias, prefix


def _digest(text: str) -> str:
    """A keyed hash: an address space is small enough to reverse a plain hash by brute force."""
    secret = str(settings.SECRET_KEY)
    return _keyed(secret, text) if _remembered(text) else _hmac(secret, text)


@functools.lru_cache(maxsize=8192)
def _keyed(secret: str, text: str) -> str:
    return _hmac(secret, text)


def _hmac(secret: str, text: str) -> str:
    return hmac.new(_hmac_key(secret), text.encode(), "sha256").hexdigest()[:32]


def _group_hash(group: str) -> str:
    return _group_hash_cached(group) if _remembered(group) else _sha(group)


@functools.lru_cache(maxsize=1024)
def _group_hash_cached(group: str) -> str:
    return _sha(group)


def _sha(group: str) -> str:
    return hashlib.sha256(group.encode()).hexdigest()[:12] if group else "-"


@functools.lru_cache(maxsize=4)
def _hmac_key(secret: str) -> bytes:
    return hashlib.sha256(b"drr-ratelimit:" + secret.encode()).digest()


def redis_key(prefix: str, limit: Limit, policy: Policy) -> str:
    """The limit's key: the cache's prefix without its version, in the reserved namespace.

    The identity is hashed (bounded length, nothing personal in Redis) into the
    hash tag, so every limit of one identity lives in one cluster slot; the
    group, algorithm, rate and burst tell its limits apart.
    """
    return _key_of(prefix, _digest(limit.key), limit.group, policy)


def _key_of(prefix: str, tag: str, group: str, policy: Policy) -> str:
    what = _group_hash(group)
    period_us = round(policy.rate.period * 1_000_000)
    return (
        f"{prefix}:drr:rl:{{{tag}}}:{what}:{policy.algorithm}:"
        f"{policy.rate.count}:{period_us}:{policy.burst}"
    )


def _script_arg(policy: Policy, cost: int, block: Any) -> bytes:
    """The limit as the script reads it (``lua/limits.lua``): one argument, not five."""
    algorithm, a, b, units = policy.args(cost)
    return f"{algorithm} {a} {b} {units} {'1' if block else '0'}".encode()


def _check_of(prefix: str, secret: str, limit: Limit) -> _Check:
    """``limit`` validated, with its key and script argument.

    Remembered per prefix, secret and limit when every part is short and
    hashable (see :data:`REMEMBERED_LENGTH`): a request's limits repeat, and
    hashing, parsing and formatting them again would cost more than the
    check's own Python. The checks here, before the lookup, are the ones a
    remembered equal limit cannot stand for (``True == 1``).
    """
    key, cost = limit.key, limit.cost
    if not isinstance(key, str):
        raise InvalidRateLimit(f"key={key!r} is not valid: limits take a string key.")
    if not isinstance(cost, int) or isinstance(cost, bool) or cost < 1:
        raise InvalidRateLimit(f"cost={cost!r} is not valid: it must be an integer >= 1.")
    rate, algorithm, group, name = limit.rate, limit.algorithm, limit.group, limit.name
    if (
        len(key) <= REMEMBERED_LENGTH
        and (type(rate) is not str or len(rate) <= REMEMBERED_LENGTH)
        and (type(algorithm) is not str or len(algorithm) <= REMEMBERED_LENGTH)
        and (type(group) is not str or len(group) <= REMEMBERED_LENGTH)
        and (type(name) is not str or len(name) <= REMEMBERED_LENGTH)
    ):
        try:
            # The parts, not the Limit: a tuple of them hashes and compares in C.
            return _check_cached(
                prefix, secret, key, rate, algorithm, cost, limit.burst, name, group, limit.block
            )
        except TypeError:  # an unhashable part: worked out every time
            pass
    return _build_check(prefix, secret, limit)


@functools.lru_cache(maxsize=4096)
def _check_cached(
    prefix: str,
    secret: str,
    key: str,
    rate: Any,
    algorithm: str,
    cost: int,
    burst: int | None,
    name: str,
    group: str,
    block: bool,
) -> _Check:
    return _build_check(
        prefix, secret, Limit(key, rate, algorithm, cost, burst, name, group, block)
    )


def _build_check(prefix: str, secret: str, limit: Limit) -> _Check:
    policy = policy_for(limit.rate, limit.algorithm, limit.burst)
    if not isinstance(limit.group, str):
        raise InvalidRateLimit(f"group={limit.group!r} is not valid: give a string.")
    if limit.cost > policy.limit:
        raise InvalidRateLimit(
            f"cost={limit.cost} exceeds the limit of {policy.limit} ({limit.rate!r}): "
            "such a call could never be admitted."
        )
    tag = _keyed(secret, limit.key) if _remembered(limit.key) else _hmac(secret, limit.key)
    return _Check(
        _key_of(prefix, tag, limit.group, policy),
        policy,
        limit.cost,
        limit.name,
        limit.block,
        _script_arg(policy, limit.cost, limit.block),
        policy.limit,
    )


def _checks(
    limits: Sequence[Limit], *, cache: str | None, on_unavailable: str
) -> tuple[ConnectionManager, list[_Check]]:
    if on_unavailable not in ON_UNAVAILABLE or not (cache is None or isinstance(cache, str)):
        check_options(cost=1, on_unavailable=on_unavailable, cache=cache)
    alias, prefix = _prefix(cache)
    secret = str(settings.SECRET_KEY)
    checks = [_check_of(prefix, secret, limit) for limit in limits]
    manager = get_manager(alias)
    fleet_of(manager, prefix)  # presence, written in the background while Redis is up
    return manager, checks


def _by_slot(manager: ConnectionManager, checks: list[_Check]) -> list[list[_Check]]:
    """``checks`` split by their keys' cluster slot (one group elsewhere): one script call may
    only touch keys of one slot, and a shard serves many slots (a request's identities
    spread over them)."""
    if manager.cluster is None or len(checks) == 1:
        return [checks]
    slots: dict[int, list[_Check]] = {}
    for check in checks:
        slots.setdefault(key_slot(check.redis_key.encode()), []).append(check)
    return list(slots.values())


def _asked(manager: ConnectionManager, group: list[_Check], peek: bool, token: str) -> Settled:
    """The script call of one slot's limits; its outage is its answer, not raised."""
    keys = [check.redis_key for check in group]
    args = _args(group, peek, token)
    return Settled(Script(manager, LIMITS, keys, args, idempotent=False, on_error=_refused))


_MEMBERS = ("sliding_window", "concurrency")


def _token(checks: Sequence[_Check]) -> str:
    """Sorted-set members must not collide (and leases must be released by their holder)."""
    for check in checks:
        if check.policy.algorithm in _MEMBERS:
            return uuid.uuid4().hex
    return ""


def _args(checks: Sequence[_Check], peek: bool, token: str) -> list[Any]:
    args: list[Any] = [("1" if peek else "0") + token]
    for check in checks:
        args.append(check.arg)
    return args


def _decision(check: _Check, raw: Sequence[Any], *, degraded: bool) -> Decision:
    allowed, remaining, retry_us, reset_us = raw
    policy = check.policy
    # What Decision(...) makes, without its frozen __init__'s ten object.__setattr__
    # calls: this runs once per check, right on the request path.
    decision = object.__new__(Decision)
    decision.__dict__.update(
        allowed=allowed == b"1" or bool(int(allowed)),
        limit=check.quota,
        remaining=max(int(remaining), 0),
        retry_after=max(int(retry_us), 0) / 1_000_000,
        reset_after=max(int(reset_us), 0) / 1_000_000,
        rate=policy.rate,
        algorithm=policy.algorithm,
        degraded=degraded,
        name=check.name,
        lease=None,
    )
    return decision


def _degraded(
    manager: ConnectionManager, checks: Sequence[_Check], peek: bool, on_unavailable: str
) -> list[Decision]:
    if on_unavailable == "local":
        # Each process admits its share: an admission costs as many units as there are
        # processes (concurrency leases stay per process: they are given back one by one).
        share = fleet_of(manager, "").size
        items = [
            (
                c.redis_key,
                c.policy,
                c.cost
                if c.policy.algorithm == "concurrency"
                else min(c.cost * share, c.policy.limit),
                c.block,
            )
            for c in checks
        ]
        results = _local.check(items, peek=peek)
        return [
            _decision(c, _shared(r, share, c), degraded=True)
            for c, r in zip(checks, results, strict=True)
        ]
    allowed = on_unavailable == "allow"
    return [
        Decision(
            allowed=allowed,
            limit=c.policy.limit,
            remaining=c.policy.limit if allowed else 0,
            retry_after=0.0 if allowed else min(c.policy.rate.period, 1.0),
            reset_after=0.0,
            rate=c.policy.rate,
            algorithm=c.policy.algorithm,
            degraded=True,
            name=c.name,
        )
        for c in checks
    ]


def _shared(result: Any, share: int, check: _Check) -> Any:
    """A local result in the caller's units: what remains of this process's share."""
    if share == 1 or check.policy.algorithm == "concurrency":
        return result
    return (result[0], int(result[1]) // share, *result[2:])


def _collect(
    manager: ConnectionManager,
    checks: list[_Check],
    groups: list[list[_Check]],
    results: list[Any],
    peek: bool,
    on_unavailable: str,
    token: str,
) -> list[Decision]:
    """Decisions in the order of ``checks`` from the per-slot answers."""
    if len(groups) == 1:  # standalone and Sentinel, or one slot: already in order
        decisions = _collect_group(manager, checks, results[0], peek, on_unavailable, token)
    else:
        by_key: dict[str, Decision] = {}
        for group, result in zip(groups, results, strict=True):
            found = _collect_group(manager, group, result, peek, on_unavailable, token)
            by_key.update((c.redis_key, d) for c, d in zip(group, found, strict=True))
        decisions = [by_key[c.redis_key] for c in checks]
    if not peek:
        _process.count_decisions(decisions)
    return decisions


def _collect_group(
    manager: ConnectionManager,
    group: list[_Check],
    result: Any,
    peek: bool,
    on_unavailable: str,
    token: str,
) -> list[Decision]:
    """The decisions of one slot's limits from its script answer (or its outage)."""
    degraded = isinstance(result, RedisUnavailable | _ServerRefused)
    if degraded:
        decisions = _degraded(manager, group, peek, on_unavailable)
    else:
        raw = result.split() if isinstance(result, bytes | str) else list(result)
        if len(group) == 1:
            decisions = [_decision(group[0], raw, degraded=False)]
        else:
            decisions = [
                _decision(c, raw[i * 4 : i * 4 + 4], degraded=False) for i, c in enumerate(group)
            ]
    if peek:
        return decisions
    for check in group:
        if check.policy.algorithm == "concurrency":
            break
    else:
        return decisions
    if not all(d.allowed or not c.block for c, d in zip(group, decisions, strict=True)):
        return decisions  # refused: nothing was consumed, no slot to release
    where = "redis" if not degraded else ("local" if on_unavailable == "local" else "none")
    return [
        _with_lease(d, manager, c, i, token, where)
        for i, (c, d) in enumerate(zip(group, decisions, strict=True))
    ]


def _with_lease(
    decision: Decision, manager: ConnectionManager, check: _Check, i: int, token: str, where: str
) -> Decision:
    """Attach the slots an admitted ``concurrency`` limit took (``where``: redis, local, none)."""
    if check.policy.algorithm != "concurrency" or where == "none" or not decision.allowed:
        return decision
    members = tuple(f"{token}:{i + 1}:{unit + 1}" for unit in range(check.cost))
    lease = Lease(manager, check.redis_key, members, check.policy, check.cost, where == "local")
    return replace(decision, lease=lease)


def _claimed(decision: Decision) -> Lease | None:
    """The lease this caller must end in Redis, if any; local leases end here and now."""
    lease = decision.lease
    if lease is None or not lease.claim():
        return None
    if lease.degraded:
        _local.release(lease.redis_key, lease.policy, lease.cost)
        return None
    return lease


def release(decision: Decision) -> None:
    """End the slots of an admitted ``concurrency`` decision (no-op for any other).

    Idempotent, and never raises for an outage: an unreleased slot frees
    itself when its lease ends.
    """
    run(release_plan(decision))


async def arelease(decision: Decision) -> None:
    """The asyncio twin of :func:`release`."""
    await arun(release_plan(decision))


def release_plan(decision: Decision) -> Plan[None]:
    """:func:`release` and :func:`arelease`, written once."""
    lease = _claimed(decision)
    if lease is None:
        return
    try:
        yield Script(lease.manager, RELEASE, [lease.redis_key], lease.members)
    except RedisUnavailable:
        logger.debug("Concurrency slots of %s end with their lease", lease.redis_key)


class _ServerRefused:
    """Redis answered the script with an error about itself (OOM, BUSY): degrade, not 500."""

    def __init__(self, error: Exception) -> None:
        self.error = error


_last_warning = [0.0]


def _refused(error: rex.ResponseError) -> _ServerRefused:
    if not rejected(error):
        raise error  # the caller's error, or READONLY, LOADING...: the connection layer's
    now = time.monotonic()
    if now - _last_warning[0] > 60:  # one line a minute, not one per request
        _last_warning[0] = now
        logger.warning("Rate limits degrade: Redis refused the check script: %s", error)
    return _ServerRefused(error)


def check_many(
    limits: Sequence[Limit],
    *,
    peek: bool = False,
    cache: str | None = None,
    on_unavailable: str = "local",
) -> list[Decision]:
    """Check several limits in one EVALSHA per cluster slot (one in all elsewhere).

    All or nothing within a slot: units are consumed only if every limit in
    it admits the call. Limits of one identity share a slot (hash tags), so
    a request's limits on one key are all or nothing everywhere.
    """
    return run(check_plan(limits, peek=peek, cache=cache, on_unavailable=on_unavailable))


async def acheck_many(
    limits: Sequence[Limit],
    *,
    peek: bool = False,
    cache: str | None = None,
    on_unavailable: str = "local",
) -> list[Decision]:
    """The asyncio twin of :func:`check_many`, on ``redis.asyncio`` (no thread hop)."""
    return await arun(check_plan(limits, peek=peek, cache=cache, on_unavailable=on_unavailable))


def check_plan(
    limits: Sequence[Limit], *, peek: bool, cache: str | None, on_unavailable: str
) -> Plan[list[Decision]]:
    """:func:`check_many` and :func:`acheck_many`, written once: the slots are asked in
    turn by the sync driver, concurrently by the asyncio one."""
    manager, checks = _checks(limits, cache=cache, on_unavailable=on_unavailable)
    if len(checks) > 1 and len({c.redis_key for c in checks}) != len(checks):
        raise InvalidRateLimit("The same limit (key, rate and algorithm) is given twice.")
    token = _token(checks)
    groups = _by_slot(manager, checks)
    if len(groups) == 1:  # standalone and Sentinel, or one slot: no gathering
        results = [(yield _asked(manager, checks, peek, token))]
    else:
        results = yield Gather([_asked(manager, group, peek, token) for group in groups])
    return _collect(manager, checks, groups, results, peek, on_unavailable, token)


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
    limit = Limit(key, rate, algorithm, cost, burst, name)
    return run(check_plan([limit], peek=False, cache=cache, on_unavailable=on_unavailable))[0]


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
    limit = Limit(key, rate, algorithm, cost, burst, name)
    return run(check_plan([limit], peek=True, cache=cache, on_unavailable=on_unavailable))[0]


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
    """The asyncio twin of :func:`hit`."""
    limit = Limit(key, rate, algorithm, cost, burst, name)
    plan = check_plan([limit], peek=False, cache=cache, on_unavailable=on_unavailable)
    return (await arun(plan))[0]


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
    limit = Limit(key, rate, algorithm, cost, burst, name)
    plan = check_plan([limit], peek=True, cache=cache, on_unavailable=on_unavailable)
    return (await arun(plan))[0]
