"""``Redlock``: one lock over several independent Redis caches, held by a majority.

It survives the loss of a minority of the servers without a failover, which
a single-server lock cannot. Its limits, which are why :class:`Lock` is the
default:

- No strictly increasing fencing token: each server counts on its own, so
  ``held.token`` is ``None`` (``held.tokens`` has each server's). Fencing is
  the real safety against a holder paused past its lease; without it, a
  Redlock relies on bounded clock drift and pauses shorter than the lease.
- Waiting polls with a random back-off (no fair queue across servers).
- A server that restarts without persistence forgets its grants: keep it down
  for longer than the lease after a crash, or run it with AOF ``fsync always``.
"""

from __future__ import annotations

import contextlib
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from django_redis_resilience._steps import Gather, Plan, Settled, Shield, Sleep, command, one, run
from django_redis_resilience.clients import get_manager
from django_redis_resilience.connection import ConnectionManager
from django_redis_resilience.exceptions import InvalidLock, RedisUnavailable
from django_redis_resilience.locks._lock import Held, Lock, _ms, _prefix_of
from django_redis_resilience.locks._protocol import (
    LockKeys,
    grant_of,
    new_owner,
    script_args,
    script_step,
)

#: Clock drift allowed per second of lease, plus a fixed 2 ms (as the Redlock description).
DRIFT = 0.01


@dataclass(frozen=True)
class _Server:
    alias: str
    manager: ConnectionManager
    keys: LockKeys


@dataclass(frozen=True)
class _Part:
    server: _Server
    fence: int


class RedlockHeld(Held):
    """An acquisition granted by a majority of the servers."""

    def __init__(self, lock: Redlock, *, name: str, owner: str, parts: list[_Part], ends: float):
        first = parts[0].server  # its scheduler (one per process) renews
        super().__init__(lock, name=name, keys=first.keys, manager=first.manager, owner=owner)
        self._granted = True
        self._parts = parts
        self._quorum = lock.quorum
        self._valid_until = ends
        #: Each server's fencing token (they do not make one increasing sequence).
        self.tokens = {p.server.alias: p.fence for p in parts}

    def _part_args(self, part: _Part, op: str, *extra: Any) -> list[Any]:
        return script_args(op, f"{self._owner}:{part.fence}", *extra)

    def _ask(self, op: str, *extra: Any) -> Gather:
        """``op`` on every server that granted, each with its own token."""
        servers = [p.server for p in self._parts]
        return _each(servers, [self._part_args(p, op, *extra) for p in self._parts])

    def _majority(self, replies: list[Any]) -> bool:
        down = [r for r in replies if isinstance(r, RedisUnavailable)]
        ok = sum(_succeeded(r) for r in replies if not isinstance(r, RedisUnavailable))
        if ok >= self._quorum:
            return True
        if ok + len(down) >= self._quorum:
            raise down[0]  # undecided: the servers that could not be asked may still agree
        return False

    def _release_plan(self) -> Plan[bool]:
        if not self._end():
            return not self._lost
        # Shielded, as for one server: once marked released, it must reach the servers.
        ok = self._majority((yield Shield(self._ask("release"))))
        return self._released_reply([int(ok)])

    def _extend_plan(self, seconds: float, replace: bool) -> Plan[None]:
        args = self._extension(seconds, replace)
        sent, before = time.monotonic(), self._valid_until
        ok = self._majority((yield self._ask("extend", *args)))
        self._extended(int(ok), sent, seconds, replace, before)

    def _renew_call(self, lease: float) -> bool:
        """Whether a majority still had the lock (sync: renewals run on the background thread).

        Raises :class:`RedisUnavailable` when too many servers could not be
        asked to tell (the renewal retries, as for one server).
        """
        return self._majority(run(one(self._ask("extend", _ms(lease), "renew"))))

    def _owned_plan(self) -> Plan[bool]:
        values = yield Gather([_settled_get(p.server) for p in self._parts])
        mine = sum(_holds(p, v, self._owner) for p, v in zip(self._parts, values, strict=True))
        return mine >= self._quorum


def _settled_get(server: _Server) -> Settled:
    """The lock's value on ``server``; a server that is down answers a RedisUnavailable."""
    return Settled(command(server.manager, "get", server.keys.lock, key=server.keys.lock))


def _holds(part: _Part, value: Any, owner: str) -> int:
    return int(
        not isinstance(value, RedisUnavailable) and value == f"{owner}:{part.fence}".encode()
    )


def _succeeded(reply: Any) -> int:
    first = reply[0] if isinstance(reply, list | tuple) else reply
    return 1 if int(first) == 1 else 0


class Redlock(Lock):
    """A lock granted by a majority of independent Redis caches (the Redlock algorithm).

    ``Redlock("report", caches=["lock1", "lock2", "lock3"], timeout=30)`` is
    used like :class:`Lock` (decorator, ``with``, ``async with``, by hand).
    Each cache must be a ``ResilientRedisCache`` on its own server.
    """

    def __init__(
        self,
        name: str | Callable[..., str],
        *,
        caches: Sequence[str],
        timeout: float = 30.0,
        wait: float | None = None,
        renew: bool = True,
        on_busy: str = "raise",
        on_unavailable: str = "raise",
        on_lost: str = "raise",
        retry_delay: float = 0.2,
    ) -> None:
        if (
            isinstance(caches, str)
            or not isinstance(caches, Sequence)
            or len(caches) < 3
            or len(set(caches)) != len(caches)
            or not all(isinstance(c, str) and c for c in caches)
        ):
            raise InvalidLock(
                f"caches={caches!r} is not valid: Redlock needs at least 3 distinct CACHES "
                "aliases, each on its own Redis server."
            )
        super().__init__(
            name,
            timeout=timeout,
            wait=wait,
            renew=renew,
            cache=caches[0],
            on_busy=on_busy,
            on_unavailable=on_unavailable,
            on_lost=on_lost,
        )
        if (
            isinstance(retry_delay, bool)
            or not isinstance(retry_delay, int | float)
            or not math.isfinite(retry_delay)
            or retry_delay <= 0
        ):
            raise InvalidLock(f"retry_delay={retry_delay!r} is not valid: give seconds > 0.")
        self.caches = tuple(caches)
        self.quorum = len(self.caches) // 2 + 1
        self.retry_delay = float(retry_delay)

    def __repr__(self) -> str:
        return f"<Redlock {self.name!r} timeout={self.timeout:g}s caches={list(self.caches)!r}>"

    def _identity(self, name: str) -> tuple[object, str]:
        return (self.caches, name)

    def _servers(self, name: str, *, check: bool = True) -> list[_Server]:
        if check:
            self._check_reentry(name)
        return [
            _Server(alias, get_manager(alias), LockKeys.build(_prefix_of(alias), name))
            for alias in self.caches
        ]

    def _round(
        self, name: str, owner: str, started: float, replies: list[Any], servers: list[_Server]
    ) -> tuple[RedlockHeld | None, list[_Part], RedisUnavailable | None]:
        """Judge one round: held when a majority granted with lease left after drift."""
        parts: list[_Part] = []
        unavailable: RedisUnavailable | None = None
        down = 0
        for server, reply in zip(servers, replies, strict=True):
            if isinstance(reply, RedisUnavailable):
                down += 1
                unavailable = reply
            elif (grant := grant_of(reply, started)) is not None:
                parts.append(_Part(server, grant.fence))
        elapsed = time.monotonic() - started
        drift = self.timeout * DRIFT + 0.002
        validity = self.timeout - elapsed - drift
        if len(parts) >= self.quorum and validity > 0:
            # The lease began when the round began (drift allowed for): no later.
            ends = started + self.timeout - drift
            held = RedlockHeld(self, name=name, owner=owner, parts=parts, ends=ends)
            if self.renew:
                held._schedule(self.timeout / 3)
            return held, [], None
        # No majority possible when too many servers are down: that is an outage.
        if down > len(servers) - self.quorum:
            return None, parts, unavailable
        return None, parts, None

    def _pause(self, deadline: float) -> float | None:
        """Seconds to back off before the next round, or ``None`` when time is up."""
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        return min(left, random.uniform(self.retry_delay / 2, self.retry_delay))

    def _acquire_plan(self, name: str, wait: float | None) -> Plan[Held]:
        """Rounds of "try once on every server" until a majority grants, time runs out,
        or too many servers are down; written once for both drivers."""
        servers = self._servers(name)
        deadline = math.inf if wait is None else time.monotonic() + wait
        while True:
            owner = new_owner()
            started = time.monotonic()
            # Try once on every server (no queue): waiting is the rounds' back-off.
            acquire = script_args("acquire", owner, _ms(self.timeout), 0)
            try:
                replies = yield _same(servers, acquire)
            except BaseException:
                # Cancelled or interrupted mid-round: any server may have granted.
                with contextlib.suppress(Exception):
                    yield _same(servers, script_args("leave", owner, 1))
                raise
            held, parts, down = self._round(name, owner, started, replies, servers)
            if held is not None:
                return held
            if parts:  # a minority granted: give those back at once
                yield _same([p.server for p in parts], script_args("leave", owner, 1))
            if down is not None:
                return self._unavailable(name, down)
            pause = self._pause(deadline)
            if pause is None:
                return self._busy(name, wait)
            yield Sleep(pause)

    def _locked_plan(self) -> Plan[bool]:
        servers = self._servers(self._static_name(), check=False)
        found = yield Gather([_settled_exists(s) for s in servers])
        return sum(bool(f) for f in found if not isinstance(f, RedisUnavailable)) >= self.quorum


def _each(servers: list[_Server], args: list[list[Any]]) -> Gather:
    """The lock script on each server with its arguments (in turn with the sync driver,
    at once with the asyncio one); a server that is down answers a RedisUnavailable."""
    pairs = zip(servers, args, strict=True)
    return Gather([Settled(script_step(s.manager, s.keys, a)) for s, a in pairs])


def _same(servers: list[_Server], args: list[Any]) -> Gather:
    return _each(servers, [args] * len(servers))


def _settled_exists(server: _Server) -> Settled:
    return Settled(command(server.manager, "exists", server.keys.lock, key=server.keys.lock))
