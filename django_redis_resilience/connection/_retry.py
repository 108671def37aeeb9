"""When to try a failed command again: one pure policy for the sync and async paths.

The rule that matters: a command that may already have run on the server is
never sent twice unless it is idempotent. Only a failure that proves the
server did not run it (the connection could not be made, the request could
not be written, or the server replied LOADING/READONLY/CLUSTERDOWN/...) lets a
non-idempotent command (INCR, SET NX, a lock script) be retried.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

import redis.asyncio.retry
import redis.retry
from redis.backoff import NoBackoff

from django_redis_resilience.connection._errors import ErrorKind

#: Commands whose second application changes the outcome. Used when a caller
#: runs a raw command without saying whether it is idempotent.
NON_IDEMPOTENT_COMMANDS = frozenset(
    {
        "APPEND", "BLMOVE", "BLMPOP", "BLPOP", "BRPOP", "BRPOPLPUSH", "BZMPOP", "BZPOPMAX",
        "BZPOPMIN", "DECR", "DECRBY", "EVAL", "EVALSHA", "EVAL_RO", "EVALSHA_RO", "FCALL",
        "GETDEL", "GETEX", "GETSET", "HINCRBY", "HINCRBYFLOAT", "HSETNX", "INCR", "INCRBY",
        "INCRBYFLOAT", "LINSERT", "LMOVE", "LMPOP", "LPOP", "LPUSH", "LPUSHX", "MSETNX",
        "PFADD", "PUBLISH", "RENAMENX", "RPOP", "RPOPLPUSH", "RPUSH", "RPUSHX", "SETNX",
        "SETRANGE", "SINTERCARD", "SMOVE", "SPOP", "XADD", "XAUTOCLAIM", "XCLAIM", "XREADGROUP",
        "ZINCRBY", "ZMPOP", "ZPOPMAX", "ZPOPMIN",
    }
)  # fmt: skip


def no_retry(*, asyncio: bool) -> Any:
    """redis-py's own retry, switched off, of the kind the client expects.

    redis-py's retry cannot tell a request that never left from one whose
    reply was lost; ours can, so redis-py's is disabled. An asyncio client
    needs ``redis.asyncio.retry.Retry``: redis-py 8.2 warns on (and converts)
    a sync one on every pool it builds.
    """
    if asyncio:
        return redis.asyncio.retry.Retry(NoBackoff(), 0)
    return redis.retry.Retry(NoBackoff(), 0)


def is_idempotent(command: str, *args: object) -> bool:
    """Best guess for a raw command; ``SET`` is idempotent unless it has NX or GET."""
    name = command.upper()
    if name == "SET":
        flags = {str(a).upper() for a in args[2:] if isinstance(a, str | bytes)}
        flags |= {a.decode().upper() for a in args[2:] if isinstance(a, bytes)}
        return not flags & {"NX", "GET"}
    return name not in NON_IDEMPOTENT_COMMANDS


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded retries with full-jitter exponential backoff.

    Timeouts are not retried by default: a slow server gets slower when every
    client doubles its load, and the breaker is the better answer to it.
    """

    attempts: int = 3
    backoff_base: float = 0.005
    backoff_cap: float = 0.1
    retry_on_timeout: bool = False

    def should_retry(
        self, *, attempt: int, kind: ErrorKind, unsent: bool, idempotent: bool
    ) -> bool:
        """Whether attempt number ``attempt`` (0-based) may be followed by another."""
        if attempt + 1 >= self.attempts or not kind.retryable:
            return False
        if kind is ErrorKind.TIMEOUT and not self.retry_on_timeout:
            return False  # even a connect timeout: a slow server is the breaker's job
        return idempotent or unsent or kind.rejected

    def delay(self, attempt: int) -> float:
        """Seconds to wait before the retry that follows attempt ``attempt``."""
        if attempt == 0:
            return 0.0  # the first retry is on a fresh connection; no reason to wait
        return random.uniform(0, min(self.backoff_cap, self.backoff_base * 2**attempt))
