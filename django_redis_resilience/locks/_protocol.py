"""The lock's conversation with Redis, written once for sync and async code.

:func:`acquire_steps` is a generator that *describes* an acquisition (run the
script, block on the wake-up list, sleep) without doing any I/O; :func:`run`
and :func:`arun` carry the steps out with the sync or asyncio client. So the
waiting logic (fair queue, wake-ups, the bounded re-check when a holder's
lease ran out, leaving the queue when cancelled) exists once. Every acquire
script carries a deadline on the server's clock (:class:`ServerClock`), so a
script that a hung server runs after its caller gave up neither grants nor queues.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import math
import os
import time
from collections.abc import Generator
from dataclasses import dataclass
from typing import Any, NamedTuple, TypeVar

import redis.exceptions

from django_redis_resilience._lua import LuaScript
from django_redis_resilience._steps import POP_FAILED, Plan, Pop, Session, Sleep, mapped, one
from django_redis_resilience._steps import Step as SharedStep
from django_redis_resilience._steps import arun as steps_arun
from django_redis_resilience._steps import run as steps_run
from django_redis_resilience.connection import MAX_BLOCK, ConnectionManager, untagged
from django_redis_resilience.exceptions import RedisUnavailable

T = TypeVar("T")

LOCK = LuaScript("django_redis_resilience.locks", "lock")

#: How long a waiter's queue entry lives without a refresh: a waiter that dies
#: holds up the queue at most this long. Waiters refresh it every
#: :data:`MAX_BLOCK` seconds, so it is several times that.
ENTRY_LEASE = 2.0
#: How long the fencing counter outlives its last use: it only matters while it
#: runs ahead of the server's clock (many acquisitions in one microsecond) or
#: the clock steps back, so an hour is plenty and idle names leave no keys.
COUNTER_KEEP = 3600.0
#: After a connection failure while blocked, wait this long before asking again.
_BLOCK_RETRY = 0.05
#: BLPOP's smallest useful timeout (0 would block forever).
_MIN_BLOCK = 0.002


@dataclass(frozen=True)
class LockKeys:
    """The keys of one lock; they share a hash tag, so one cluster slot."""

    lock: str
    counter: str
    queue: str
    waiters: str

    @classmethod
    def build(cls, prefix: str, name: str) -> LockKeys:
        """``<prefix>:drr:lock:{<name>}``: the reserved namespace, never versioned.

        The name is the hash tag, so a lock's keys share a cluster slot; a name
        with a brace of its own is hashed instead (``}x`` would end the tag early),
        and so is a name starting with ``#``: digests start with it, so no name
        can spell another name's digest. ``prefix`` holds no hash tag of its own
        (:func:`~django_redis_resilience.connection.untagged`; prefixes from
        ``key_prefix()`` already hold none): Redis hashes a key on its first ``{...}``.
        """
        prefix = untagged(prefix)
        tag = _digest(name) if "{" in name or "}" in name or name.startswith("#") else name
        base = f"{prefix}:drr:lock:{{{tag}}}"
        return cls(base, f"{base}:fence", f"{base}:queue", f"{base}:waiters")

    @property
    def all(self) -> tuple[str, str, str, str]:
        return (self.lock, self.counter, self.queue, self.waiters)

    def wake(self, owner: str) -> str:
        return f"{self.lock}:wake:{owner}"


def _digest(name: str) -> str:
    return "#" + hashlib.sha256(name.encode()).hexdigest()[:32]


def new_owner() -> str:
    """A fresh waiter id: unguessable, so no other caller can release this acquisition."""
    return os.urandom(12).hex()


def _ms(seconds: float) -> int:
    return max(1, math.ceil(seconds * 1000))


def script_args(op: str, who: str, value: Any = "", mode: Any = "") -> list[Any]:
    """The script's request: its six fields in one argument, each ended by a newline
    (``lock.lua``); an acquire's deadline follows as a second argument."""
    return [f"{op}\n{who}\n{value}\n{mode}\n{_ms(COUNTER_KEEP)}\n{_ms(ENTRY_LEASE)}\n"]


class Grant(NamedTuple):
    """An acquisition: its fencing token and how long the lease is known to last."""

    fence: int
    #: The lease left when it was granted, in ms (a hand-off grants a short one first).
    lease_ms: int
    #: ``time.monotonic()`` when the request that granted it was sent (the lease
    #: started no earlier, so ``sent_at + lease_ms`` is a safe end).
    sent_at: float
    #: Granted by a hand-off: the lease is the short hand-off one until extended.
    handed: bool


def grant_of(reply: Any, sent_at: float, *, handed: bool = False) -> Grant | None:
    """Read an ``acquire``/``leave`` reply."""
    if int(reply[0]) != 1:
        return None
    return Grant(int(reply[1]), int(reply[2]), sent_at, handed)


# --- the steps ---------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    """Run the lock script through the connection manager (breaker, retries)."""

    args: list[Any]


@dataclass(frozen=True)
class Block:
    """``BLPOP`` the waiter's wake-up list on a blocking connection; gives the fence or None."""

    key: str
    timeout: float


#: A lock step, made a shared one for a lock's manager and keys by :func:`bound`.
Step = Run | Block | Sleep
#: What a :class:`Block` gives back when its connection failed (the next
#: :class:`Run` tells whether Redis is really unavailable).
BLOCK_FAILED = POP_FAILED


def acquire_steps(
    keys: LockKeys, *, owner: str, lease: float, wait: float | None
) -> Generator[Step, Any, Grant | None]:
    """Acquire, or queue and wait to be handed the lock; ``None`` when ``wait`` ran out.

    Waiting is fair: the script serves the queue in arrival order and hands
    the lock straight to the first waiter on release, so a releasing process
    cannot take it back while the others sleep. Waiters block on their own
    wake-up list; they re-run the script at least every :data:`MAX_BLOCK`
    (refreshing their queue entry) and as soon as the holder's lease would
    have ended, which covers a holder that died without releasing.
    """
    lease_ms = _ms(lease)
    deadline = None if wait is None else time.monotonic() + wait
    entry_ms = 0 if wait == 0 else _ms(ENTRY_LEASE)
    acquire = script_args("acquire", owner, lease_ms, entry_ms)
    try:
        sent = time.monotonic()
        reply = yield Run(acquire)
        grant = grant_of(reply, sent)
        if grant is not None or wait == 0:
            return grant
        while True:
            remaining = math.inf if deadline is None else deadline - time.monotonic()
            if remaining <= 0:
                sent = time.monotonic()
                return grant_of((yield Run(script_args("leave", owner, 0))), sent)
            holder_ms = int(reply[1])
            timeout = min(remaining, MAX_BLOCK)
            if holder_ms > 0:  # wake up when the holder's lease would end
                timeout = min(timeout, holder_ms / 1000 + _MIN_BLOCK)
            fence = yield Block(keys.wake(owner), max(timeout, _MIN_BLOCK))
            if fence is BLOCK_FAILED:
                yield Sleep(_BLOCK_RETRY)
            elif fence is not None:
                # Handed on after our last Run reached Redis (that Run would
                # have seen it otherwise), so the hand-off lease ends after
                # ``sent`` + its length.
                return Grant(int(fence), min(lease_ms, _ms(ENTRY_LEASE)), sent, True)
            sent = time.monotonic()
            reply = yield Run(acquire)
            grant = grant_of(reply, sent)
            if grant is not None:
                return grant
    except BaseException as exc:
        # Cancelled, interrupted, or a reply lost: leave the queue, and pass the
        # lock on if it was granted or handed to us meanwhile. Best effort: if
        # Redis cannot be asked, the queue entry and any grant expire with their
        # leases. Not when Redis certainly ran nothing (refused, breaker open).
        kind = getattr(exc, "kind", None)
        if not (isinstance(exc, RedisUnavailable) and kind is not None and kind.rejected):
            with contextlib.suppress(Exception):  # the original error is what the caller sees
                yield Run(script_args("leave", owner, 1))
        raise


# --- running the steps ---------------------------------------------------------


def bound(steps: Generator[Step, Any, T], manager: ConnectionManager, keys: LockKeys) -> Plan[T]:
    """``steps`` as shared steps on the lock's ``manager`` and ``keys``, for a lock's plan."""
    return mapped(steps, functools.partial(_shared, manager, keys))


def _shared(manager: ConnectionManager, keys: LockKeys, step: Step) -> SharedStep:
    if isinstance(step, Run):
        return script_step(manager, keys, step.args)
    if isinstance(step, Block):
        return Pop(manager, keys.lock, step.key, step.timeout)
    return step


def run(steps: Generator[Step, Any, T], manager: ConnectionManager, keys: LockKeys) -> T:
    """Carry out ``steps`` with the sync clients."""
    return steps_run(bound(steps, manager, keys))


async def arun(steps: Generator[Step, Any, T], manager: ConnectionManager, keys: LockKeys) -> T:
    """Carry out ``steps`` with the asyncio clients of the running loop (a cancelled
    waiter still leaves the queue, and passes on a lock handed to it meanwhile)."""
    return await steps_arun(bound(steps, manager, keys))


def script_step(manager: ConnectionManager, keys: LockKeys, args: list[Any]) -> Session:
    """One run of the lock script on the lock's endpoint (an acquire with its deadline).

    A reply lost after the script ran must not make it run twice (it would
    queue or hand on twice): retried only when never sent.
    """
    plan = functools.partial(_script_runs, keys, args)
    return Session(manager, plan, key=keys.lock, idempotent=False)


def call(manager: ConnectionManager, keys: LockKeys, args: list[Any]) -> Any:
    """One run of the lock script, with the sync client."""
    return steps_run(one(script_step(manager, keys, args)))


async def acall(manager: ConnectionManager, keys: LockKeys, args: list[Any]) -> Any:
    """One run of the lock script, with the asyncio client."""
    return await steps_arun(one(script_step(manager, keys, args)))


# --- the acquire script's deadline ------------------------------------------------


class ServerClock:
    """What this process knows of one server's clock, to give acquisitions a deadline on it.

    Why a deadline: a caller stops reading the acquire script's reply at its
    socket timeout and is told Redis is unavailable. A hung or overloaded
    server may still run the script later (it waits in the server's socket
    buffers); granting then would hold the lock for a whole lease for an owner
    nobody is, and queueing would make the next release hand the lock to
    nobody. The script cannot know when it was sent, so the caller tells it
    until when a reply can still reach it, and past that the script leaves
    instead of acquiring (``lock.lua``). Nothing is left to clean up
    afterwards, so it holds when the caller's process is gone, too.

    Why the socket timeout, not the wait: each script call is one request, and
    a grant is lost exactly when its reply comes after the caller stopped
    reading, whatever the wait. The script may start in the first half of the
    socket timeout; the second half is for the reply's way back, which takes
    as long as the way there did when the network is slow both ways, and no
    time when the server itself was stuck. Without a socket timeout a caller
    reads until the reply comes: no deadline.

    Why on the server's clock: the script can only compare with ``TIME``, and
    this process's clock may disagree with the server's by any amount. Every
    acquire reply carries the server's time, read while the request was under
    way: taken as read halfway between sending and receiving, it gives the
    offset between the clocks to within half that round trip. Until a server
    has answered once, the wall clocks are taken to agree. An estimate that
    puts the deadline too early shows as a refusal the caller still reads; it
    carries the server's time, and the caller asks again at once. One that puts
    it too late (the wall clocks disagree before the first reply, the server's
    clock stepped back, a failover to a server whose clock is behind) lets a
    late script grant for as long as the estimate is off, and only until the
    next reply corrects it.
    """

    __slots__ = ("offset_us",)

    def __init__(self) -> None:
        #: The server's time minus ``time.monotonic()``, in microseconds.
        self.offset_us = (time.time_ns() - time.monotonic_ns()) // 1000

    def deadline(self, sent: float, socket_timeout: float | None) -> int:
        """The deadline on the server's clock for a script sent at ``sent``; 0 for none."""
        if not socket_timeout:
            return 0
        return int((sent + socket_timeout / 2) * 1_000_000) + self.offset_us

    def learn(self, server_us: int, sent: float, received: float) -> None:
        """The server read its clock as ``server_us`` between ``sent`` and ``received``."""
        self.offset_us = server_us - int((sent + received) / 2 * 1_000_000)


#: Refusals as late an acquisition reads before it counts the server as too
#: slow: after the first, the clock estimate comes from that very reply.
_LATE_TRIES = 3
#: One clock per server; a cap so that changing addresses cannot grow it without bound.
_CLOCKS: dict[tuple[Any, ...], ServerClock] = {}
_MAX_CLOCKS = 1024


def _clock_of(client: Any) -> tuple[ServerClock, float | None]:
    """The clock of the server ``client`` talks to, and its socket timeout."""
    pool = client.connection_pool
    kwargs = getattr(pool, "connection_kwargs", None) or {}
    node = (
        kwargs.get("host"),
        kwargs.get("port"),
        kwargs.get("path"),
        getattr(pool, "service_name", None),
    )
    clock = _CLOCKS.get(node)
    if clock is None:
        if len(_CLOCKS) >= _MAX_CLOCKS:
            _CLOCKS.clear()
        clock = _CLOCKS.setdefault(node, ServerClock())
    return clock, kwargs.get("socket_timeout")


def _too_late(tries: int) -> redis.exceptions.TimeoutError:
    return redis.exceptions.TimeoutError(
        f"the server ran the lock script after the caller's deadline {tries} times "
        "(it is slower than the socket timeout allows)"
    )


def _script_runs(
    keys: LockKeys, args: list[Any], client: Any
) -> Generator[tuple[Any, ...], Any, Any]:
    """The lock script on ``client``: an ``acquire`` with a deadline, asked again when
    refused as late but still read; any other operation once."""
    if not args[0].startswith("acquire\n"):
        return (yield (LOCK, keys.all, args))
    clock, socket_timeout = _clock_of(client)
    for _ in range(_LATE_TRIES):
        sent = time.monotonic()
        reply = yield (LOCK, keys.all, [*args, clock.deadline(sent, socket_timeout)])
        clock.learn(int(reply[-1]), sent, time.monotonic())
        if int(reply[0]) != -1:
            return reply
    raise _too_late(_LATE_TRIES)
