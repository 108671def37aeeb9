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

import asyncio
import contextlib
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from django_redis_resilience.clients import get_manager
from django_redis_resilience.connection import ConnectionManager
from django_redis_resilience.exceptions import InvalidLock, RedisUnavailable
from django_redis_resilience.locks._lock import Held, Lock, _ms, _prefix_of
from django_redis_resilience.locks._protocol import (
    LockKeys,
    acall,
    call,
    grant_of,
    new_owner,
    script_args,
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

    def _each(self, op: str, *extra: Any) -> int:
        """Run ``op`` on every server that granted; how many still had the lock."""
        ok = 0
        for part in self._parts:
            try:
                reply = call(
                    part.server.manager, part.server.keys, self._part_args(part, op, *extra)
                )
            except RedisUnavailable:
                continue
            ok += _succeeded(reply)
        return ok

    async def _aeach(self, op: str, *extra: Any) -> int:
        async def one(part: _Part) -> int:
            try:
                args = self._part_args(part, op, *extra)
                return _succeeded(await acall(part.server.manager, part.server.keys, args))
            except RedisUnavailable:
                return 0

        return sum(await asyncio.gather(*(one(p) for p in self._parts)))

    def release(self) -> bool:
        if not self._end():
            return not self._lost
        return self._released_count(self._each("release"))

    async def arelease(self) -> bool:
        if not self._end():
            return not self._lost
        return self._released_count(await self._aeach("release"))

    def _released_count(self, ok: int) -> bool:
        return self._released_reply([1 if ok >= self._quorum else 0])

    def extend(self, seconds: float, *, replace: bool = False) -> None:
        args = self._extension(seconds, replace)
        sent = time.monotonic()
        self._extended(int(self._each("extend", *args) >= self._quorum), sent, seconds, replace)

    async def aextend(self, seconds: float, *, replace: bool = False) -> None:
        args = self._extension(seconds, replace)
        sent = time.monotonic()
        ok = await self._aeach("extend", *args)
        self._extended(int(ok >= self._quorum), sent, seconds, replace)

    def _renew_call(self, lease: float) -> bool:
        return self._each("extend", _ms(lease), "set") >= self._quorum


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

    def _servers(self, name: str) -> list[_Server]:
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
        validity = self.timeout - elapsed - (self.timeout * DRIFT + 0.002)
        if len(parts) >= self.quorum and validity > 0:
            held = RedlockHeld(self, name=name, owner=owner, parts=parts, ends=started + validity)
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

    def _acquire(self, name: str, wait: float | None) -> Held:
        servers = self._servers(name)
        deadline = math.inf if wait is None else time.monotonic() + wait
        args_for = self._args_for
        while True:
            owner = new_owner()
            started = time.monotonic()
            replies: list[Any] = []
            for server in servers:
                try:
                    replies.append(call(server.manager, server.keys, args_for(owner)))
                except RedisUnavailable as exc:
                    replies.append(exc)
            held, parts, down = self._round(name, owner, started, replies, servers)
            if held is not None:
                return held
            for part in parts:  # a minority granted: give those back at once
                with contextlib.suppress(RedisUnavailable):  # else its lease ends by itself
                    call(part.server.manager, part.server.keys, _release_args(owner, part))
            if down is not None:
                return self._unavailable(name, down)
            pause = self._pause(deadline)
            if pause is None:
                return self._busy(name, wait)
            time.sleep(pause)

    async def _aacquire(self, name: str, wait: float | None) -> Held:
        servers = self._servers(name)
        deadline = math.inf if wait is None else time.monotonic() + wait

        async def ask(server: _Server, args: list[Any]) -> Any:
            try:
                return await acall(server.manager, server.keys, args)
            except RedisUnavailable as exc:
                return exc

        async def give_back(part: _Part, owner: str) -> None:
            with contextlib.suppress(RedisUnavailable):  # else its lease ends by itself
                await acall(part.server.manager, part.server.keys, _release_args(owner, part))

        while True:
            owner = new_owner()
            started = time.monotonic()
            args = self._args_for(owner)
            replies = list(await asyncio.gather(*(ask(s, args) for s in servers)))
            held, parts, down = self._round(name, owner, started, replies, servers)
            if held is not None:
                return held
            await asyncio.gather(*(give_back(p, owner) for p in parts))
            if down is not None:
                return self._unavailable(name, down)
            pause = self._pause(deadline)
            if pause is None:
                return self._busy(name, wait)
            await asyncio.sleep(pause)

    def _args_for(self, owner: str) -> list[Any]:
        # Try once on every server (no queue): waiting is the rounds' back-off.
        return script_args("acquire", owner, _ms(self.timeout), 0)


def _release_args(owner: str, part: _Part) -> list[Any]:
    return script_args("release", f"{owner}:{part.fence}")
