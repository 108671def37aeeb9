"""django-redis 7's set, hash and sorted-set helpers, as plans.

Keys are made with the cache's ``make_key`` (prefix, version) and members and
values encoded with its serializer and compressor, exactly as django-redis does,
so data written by either is read by the other.

The helpers speak to Redis itself. A local store cannot say truthfully what a
set in Redis holds, so during an outage they raise :class:`RedisUnavailable`
(at once while the breaker is open) instead of using the fallback. Every one
goes through :func:`command`, which holds what they share: the cluster slot
check, the journal (a key whose Redis value may be outdated is not served, and
a write that may have reached a failing server is journaled, so recovery deletes
the key rather than let ``get`` read an older value), and the breaker.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import partial
from typing import Any

from django_redis_resilience._steps import Call, Execute, Plan
from django_redis_resilience.cache._context import CacheContext
from django_redis_resilience.cache._degraded import outdated
from django_redis_resilience.cache._near import writing
from django_redis_resilience.connection import slot_of
from django_redis_resilience.exceptions import BreakerOpen, CrossSlotKeys, RedisUnavailable

#: What the caller named a key: its key and version (the journal keeps it).
Original = tuple[Any, int | None]


def command(
    ctx: CacheContext,
    name: str,
    fn: Callable[[Any], Any],
    keys: Sequence[tuple[str, Original]],
    *,
    writes: int = 0,
    idempotent: bool = True,
    primary: bool = False,
    client: Any = None,
) -> Plan[Any]:
    """``fn(client)`` on the node holding ``keys``; the first ``writes`` of them are written.

    A caller's own ``client`` (django-redis's ``client=`` argument) is used as
    given, outside the breaker, as django-redis uses it.
    """
    manager, state = ctx.current()
    if len(keys) > 1 and manager.cluster is not None:
        _one_slot(name, keys)
    if state.journaling:
        for made, _ in keys:
            if state.journaled(made, partial(ctx.endpoint, made)):
                raise outdated(ctx, made)
    if client is not None:
        return (yield Call(partial(fn, client)))
    first = keys[0][0]
    write = writes > 0 or primary
    try:
        with writing(state.near if writes else None, [made for made, _ in keys[:writes]]):
            return (yield Execute(manager, fn, key=first, write=write, idempotent=idempotent))
    except RedisUnavailable as exc:
        state.note_unavailable(exc)
        if not isinstance(exc, BreakerOpen):  # it may have been carried out: Redis is unsure
            for made, original in keys[:writes]:
                state.record_write(ctx.endpoint(made), made, original, exc, force=True)
        raise


def _one_slot(name: str, keys: Sequence[tuple[str, Original]]) -> None:
    first_made, (first_key, _) = keys[0]
    first_slot = slot_of(first_made)
    for made, (key, _) in keys[1:]:
        slot = slot_of(made)
        if slot != first_slot:
            raise CrossSlotKeys(
                f"{name}() needs all its keys in one Redis Cluster slot, but {first_key!r} "
                f"is in slot {first_slot} and {key!r} in slot {slot}. Give the keys a common "
                "hash tag, such as '{user42}:friends' and '{user42}:blocked', so that the "
                "cluster keeps them in one slot."
            )


def _keyed(ctx: CacheContext, keys: Iterable[Any], version: int | None) -> list[tuple[str, Any]]:
    return [(ctx.key(key, version), (key, version)) for key in keys]


def _members(ctx: CacheContext, raw: Iterable[Any]) -> set[Any]:
    decode = ctx.codec.decode
    return {decode(value) for value in raw}


def _scored(ctx: CacheContext, raw: Any, withscores: bool) -> list[Any]:
    decode = ctx.codec.decode
    if withscores:
        return [(decode(member), score) for member, score in raw]
    return [decode(member) for member in raw]


# --- sets ---------------------------------------------------------------------------------


def sadd(
    ctx: CacheContext, key: Any, values: Sequence[Any], version: int | None, client: Any
) -> Plan[int]:
    encoded = [ctx.codec.encode(value) for value in values]
    keys = _keyed(ctx, [key], version)
    made = keys[0][0]
    return int(
        (
            yield from command(
                ctx, "sadd", lambda c: c.sadd(made, *encoded), keys, writes=1, client=client
            )
        )
    )


def srem(
    ctx: CacheContext, key: Any, members: Sequence[Any], version: int | None, client: Any
) -> Plan[int]:
    encoded = [ctx.codec.encode(member) for member in members]
    keys = _keyed(ctx, [key], version)
    made = keys[0][0]
    return int(
        (
            yield from command(
                ctx, "srem", lambda c: c.srem(made, *encoded), keys, writes=1, client=client
            )
        )
    )


def scard(ctx: CacheContext, key: Any, version: int | None, client: Any) -> Plan[int]:
    keys = _keyed(ctx, [key], version)
    made = keys[0][0]
    return int((yield from command(ctx, "scard", lambda c: c.scard(made), keys, client=client)))


def smembers(ctx: CacheContext, key: Any, version: int | None, client: Any) -> Plan[set[Any]]:
    keys = _keyed(ctx, [key], version)
    made = keys[0][0]
    raw = yield from command(ctx, "smembers", lambda c: c.smembers(made), keys, client=client)
    return _members(ctx, raw)


def sismember(
    ctx: CacheContext, key: Any, member: Any, version: int | None, client: Any
) -> Plan[bool]:
    encoded = ctx.codec.encode(member)
    keys = _keyed(ctx, [key], version)
    made = keys[0][0]
    fn = lambda c: c.sismember(made, encoded)  # noqa: E731
    return bool((yield from command(ctx, "sismember", fn, keys, client=client)))


def smismember(
    ctx: CacheContext, key: Any, members: Sequence[Any], version: int | None, client: Any
) -> Plan[list[bool]]:
    encoded = [ctx.codec.encode(member) for member in members]
    keys = _keyed(ctx, [key], version)
    made = keys[0][0]
    fn = lambda c: c.smismember(made, encoded)  # noqa: E731
    return [bool(x) for x in (yield from command(ctx, "smismember", fn, keys, client=client))]


def combine(
    ctx: CacheContext, name: str, keys: Sequence[Any], version: int | None, client: Any
) -> Plan[set[Any]]:
    """``sdiff``, ``sinter``, ``sunion``: the members, decoded, as a set."""
    keyed = _keyed(ctx, keys, version)
    made = [k for k, _ in keyed]
    fn = lambda c: getattr(c, name)(made)  # noqa: E731
    return _members(ctx, (yield from command(ctx, name, fn, keyed, client=client)))


def combine_store(
    ctx: CacheContext,
    name: str,
    dest: Any,
    keys: Sequence[Any],
    dest_version: int | None,
    keys_version: int | None,
    client: Any,
) -> Plan[int]:
    """``sdiffstore``, ``sinterstore``, ``sunionstore``: the size of the set stored."""
    keyed = _keyed(ctx, [dest], dest_version) + _keyed(ctx, keys, keys_version)
    made = [k for k, _ in keyed]
    fn = lambda c: getattr(c, name)(made[0], made[1:])  # noqa: E731
    return int((yield from command(ctx, name, fn, keyed, writes=1, client=client)))


def smove(
    ctx: CacheContext,
    source: Any,
    destination: Any,
    member: Any,
    version: int | None,
    client: Any,
) -> Plan[bool]:
    encoded = ctx.codec.encode(member)
    keyed = _keyed(ctx, [source, destination], version)
    src, dst = keyed[0][0], keyed[1][0]
    fn = lambda c: c.smove(src, dst, encoded)  # noqa: E731
    return bool(
        (yield from command(ctx, "smove", fn, keyed, writes=2, idempotent=False, client=client))
    )


def spop(
    ctx: CacheContext, key: Any, count: int | None, version: int | None, client: Any
) -> Plan[Any]:
    """One member (``None`` for an empty set), or a set of ``count`` members."""
    keyed = _keyed(ctx, [key], version)
    made = keyed[0][0]
    fn = lambda c: c.spop(made, count)  # noqa: E731
    raw = yield from command(ctx, "spop", fn, keyed, writes=1, idempotent=False, client=client)
    return _one_or_many(ctx, raw, set)


def srandmember(
    ctx: CacheContext, key: Any, count: int | None, version: int | None, client: Any
) -> Plan[Any]:
    """One member (``None`` for an empty set), or a list of up to ``count`` members."""
    keyed = _keyed(ctx, [key], version)
    made = keyed[0][0]
    fn = lambda c: c.srandmember(made, count)  # noqa: E731
    return _one_or_many(
        ctx, (yield from command(ctx, "srandmember", fn, keyed, client=client)), list
    )


def _one_or_many(ctx: CacheContext, raw: Any, kind: Callable[[Iterable[Any]], Any]) -> Any:
    if raw is None:
        return None
    if isinstance(raw, list):
        return kind(ctx.codec.decode(value) for value in raw)
    return ctx.codec.decode(raw)


def sscan(
    ctx: CacheContext,
    key: Any,
    cursor: int,
    match: str | None,
    count: int | None,
    version: int | None,
    client: Any,
) -> Plan[tuple[int, set[Any]]]:
    """One ``SSCAN`` page from ``cursor``: the next cursor (0 at the end) and its members.

    Every page is asked of the primary: a cursor is only meaningful on the node
    that gave it, and replicas are chosen per call.
    """
    if match and ctx.codec.compresses:
        raise ValueError(
            "sscan() cannot match members of a cache with a COMPRESSOR: the pattern would "
            "be compared with compressed bytes. Scan without match= and filter the members."
        )
    pattern = ctx.codec.encode(match) if match else None
    keyed = _keyed(ctx, [key], version)
    made = keyed[0][0]
    fn = lambda c: c.sscan(made, cursor, match=pattern, count=count)  # noqa: E731
    after, raw = yield from command(ctx, "sscan", fn, keyed, primary=True, client=client)
    return int(after), _members(ctx, raw)


def sscan_once(
    ctx: CacheContext,
    key: Any,
    match: str | None,
    count: int | None,
    version: int | None,
    client: Any,
) -> Plan[set[Any]]:
    """django-redis's ``sscan``: the members of the first page only."""
    _, members = yield from sscan(ctx, key, 0, match, count, version, client)
    return members


class ScanPages:
    """The pages of a whole ``SSCAN`` (``sscan_iter``): each page one plan, run by the
    caller's driver, until Redis gives cursor 0 back."""

    def __init__(self, plan: Callable[[int], Plan[tuple[int, set[Any]]]]) -> None:
        self._plan = plan
        self._cursor: int | None = None

    @property
    def done(self) -> bool:
        return self._cursor == 0

    def next(self) -> Plan[set[Any]]:
        self._cursor, members = yield from self._plan(self._cursor or 0)
        return members


# --- hashes -------------------------------------------------------------------------------


def hset(
    ctx: CacheContext,
    key: Any,
    field: Any,
    value: Any,
    mapping: Mapping[Any, Any] | None,
    version: int | None,
    client: Any,
) -> Plan[int]:
    """The number of fields added (not those updated)."""
    encode = ctx.codec.encode
    data = None if value is None else encode(value)
    encoded = None if mapping is None else {f: encode(v) for f, v in mapping.items()}
    keyed = _keyed(ctx, [key], version)
    made = keyed[0][0]
    fn = lambda c: c.hset(made, key=field, value=data, mapping=encoded)  # noqa: E731
    return int((yield from command(ctx, "hset", fn, keyed, writes=1, client=client)))


def hdel(ctx: CacheContext, key: Any, field: Any, version: int | None, client: Any) -> Plan[int]:
    keyed = _keyed(ctx, [key], version)
    made = keyed[0][0]
    fn = lambda c: c.hdel(made, field)  # noqa: E731
    return int((yield from command(ctx, "hdel", fn, keyed, writes=1, client=client)))


def hlen(ctx: CacheContext, key: Any, version: int | None, client: Any) -> Plan[int]:
    keyed = _keyed(ctx, [key], version)
    made = keyed[0][0]
    return int((yield from command(ctx, "hlen", lambda c: c.hlen(made), keyed, client=client)))


def hkeys(ctx: CacheContext, key: Any, version: int | None, client: Any) -> Plan[list[Any]]:
    keyed = _keyed(ctx, [key], version)
    made = keyed[0][0]
    raw = yield from command(ctx, "hkeys", lambda c: c.hkeys(made), keyed, client=client)
    return [k.decode() if isinstance(k, bytes) else k for k in raw]


def hexists(
    ctx: CacheContext, key: Any, field: Any, version: int | None, client: Any
) -> Plan[bool]:
    keyed = _keyed(ctx, [key], version)
    made = keyed[0][0]
    fn = lambda c: c.hexists(made, field)  # noqa: E731
    return bool((yield from command(ctx, "hexists", fn, keyed, client=client)))


# --- sorted sets --------------------------------------------------------------------------
# Members are always serialized, integers too, as django-redis writes them.


def zadd(
    ctx: CacheContext,
    key: Any,
    mapping: Mapping[Any, float],
    flags: Mapping[str, bool],
    version: int | None,
    client: Any,
) -> Plan[Any]:
    """``ZADD``: members added (changed with ``ch``), or the new score with ``incr``."""
    serialize = ctx.codec.serialize
    encoded = {serialize(member): score for member, score in mapping.items()}
    keyed = _keyed(ctx, [key], version)
    made = keyed[0][0]
    fn = lambda c: c.zadd(made, encoded, **flags)  # noqa: E731
    idempotent = not flags.get("incr")
    return (
        yield from command(ctx, "zadd", fn, keyed, writes=1, idempotent=idempotent, client=client)
    )


def zincrby(
    ctx: CacheContext, key: Any, amount: float, value: Any, version: int | None, client: Any
) -> Plan[Any]:
    member = ctx.codec.serialize(value)
    keyed = _keyed(ctx, [key], version)
    made = keyed[0][0]
    fn = lambda c: c.zincrby(made, amount, member)  # noqa: E731
    return (
        yield from command(ctx, "zincrby", fn, keyed, writes=1, idempotent=False, client=client)
    )


def zrem(
    ctx: CacheContext, key: Any, values: Sequence[Any], version: int | None, client: Any
) -> Plan[int]:
    members = [ctx.codec.serialize(value) for value in values]
    keyed = _keyed(ctx, [key], version)
    made = keyed[0][0]
    fn = lambda c: c.zrem(made, *members)  # noqa: E731
    return int((yield from command(ctx, "zrem", fn, keyed, writes=1, client=client)))


def zpop(
    ctx: CacheContext, name: str, key: Any, count: int | None, version: int | None, client: Any
) -> Plan[Any]:
    """``zpopmax``/``zpopmin``: one ``(member, score)`` (``None`` when empty), or a list."""
    keyed = _keyed(ctx, [key], version)
    made = keyed[0][0]
    fn = lambda c: getattr(c, name)(made, count)  # noqa: E731
    raw = yield from command(ctx, name, fn, keyed, writes=1, idempotent=False, client=client)
    if not raw:
        return None if count is None else []
    popped = _scored(ctx, raw, True)
    return popped[0] if count is None else popped


def zscore(ctx: CacheContext, key: Any, value: Any, version: int | None, client: Any) -> Plan[Any]:
    member = ctx.codec.serialize(value)
    keyed = _keyed(ctx, [key], version)
    made = keyed[0][0]
    return (
        yield from command(ctx, "zscore", lambda c: c.zscore(made, member), keyed, client=client)
    )


def zrank(
    ctx: CacheContext, key: Any, value: Any, withscore: bool, version: int | None, client: Any
) -> Plan[Any]:
    member = ctx.codec.serialize(value)
    keyed = _keyed(ctx, [key], version)
    made = keyed[0][0]
    # ``withscore`` is sent only when asked: Redis before 7.2 knows no WITHSCORE.
    extra = {"withscore": True} if withscore else {}
    fn = lambda c: c.zrank(made, member, **extra)  # noqa: E731
    return (yield from command(ctx, "zrank", fn, keyed, client=client))


def zcount_like(
    ctx: CacheContext, name: str, key: Any, args: Sequence[Any], version: int | None, client: Any
) -> Plan[int]:
    """``zcard``, ``zcount``: a number read; ``zremrangebyscore``: a number removed."""
    keyed = _keyed(ctx, [key], version)
    made = keyed[0][0]
    fn = lambda c: getattr(c, name)(made, *args)  # noqa: E731
    writes = 1 if name == "zremrangebyscore" else 0
    return int((yield from command(ctx, name, fn, keyed, writes=writes, client=client)))


def zrange_like(
    ctx: CacheContext,
    name: str,
    key: Any,
    args: Sequence[Any],
    options: Mapping[str, Any],
    version: int | None,
    client: Any,
) -> Plan[list[Any]]:
    """``zrange``, ``zrevrange``, ``zrangebyscore``, ``zrevrangebyscore``: members decoded,
    with their scores when ``withscores``."""
    keyed = _keyed(ctx, [key], version)
    made = keyed[0][0]
    fn = lambda c: getattr(c, name)(made, *args, **options)  # noqa: E731
    raw = yield from command(ctx, name, fn, keyed, client=client)
    return _scored(ctx, raw, bool(options.get("withscores")))
