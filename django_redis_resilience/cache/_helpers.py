"""django-redis 7's set, hash and sorted-set helpers on the cache, and their asyncio twins.

Each method runs one plan of :mod:`._structures` with the sync or the asyncio
driver; the plans hold every decision. Signatures, return values and key making
are django-redis's, so code written for it keeps working; ``client=`` takes a
redis-py client to use instead of the cache's own (then outside the breaker).
During an outage the helpers raise :class:`RedisUnavailable`: no local store
can answer them truthfully.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from typing import Any

from django_redis_resilience._steps import arun, run
from django_redis_resilience.cache import _structures as _s
from django_redis_resilience.cache._context import CacheContext


class DataStructureHelpers:
    """Sets, hashes and sorted sets as django-redis 7 offers them, sync and async."""

    _ctx: CacheContext

    def sadd(self, key: Any, *values: Any, version: int | None = None, client: Any = None) -> int:
        """Add members to the set at ``key``; how many were new."""
        return run(_s.sadd(self._ctx, key, values, version, client))

    async def asadd(
        self, key: Any, *values: Any, version: int | None = None, client: Any = None
    ) -> int:
        return await arun(_s.sadd(self._ctx, key, values, version, client))

    def scard(self, key: Any, version: int | None = None, client: Any = None) -> int:
        return run(_s.scard(self._ctx, key, version, client))

    async def ascard(self, key: Any, version: int | None = None, client: Any = None) -> int:
        return await arun(_s.scard(self._ctx, key, version, client))

    def sdiff(self, *keys: Any, version: int | None = None, client: Any = None) -> set[Any]:
        return run(_s.combine(self._ctx, "sdiff", keys, version, client))

    async def asdiff(self, *keys: Any, version: int | None = None, client: Any = None) -> set[Any]:
        return await arun(_s.combine(self._ctx, "sdiff", keys, version, client))

    def sdiffstore(
        self,
        dest: Any,
        *keys: Any,
        version_dest: int | None = None,
        version_keys: int | None = None,
        client: Any = None,
    ) -> int:
        return run(
            _s.combine_store(
                self._ctx, "sdiffstore", dest, keys, version_dest, version_keys, client
            )
        )

    async def asdiffstore(
        self,
        dest: Any,
        *keys: Any,
        version_dest: int | None = None,
        version_keys: int | None = None,
        client: Any = None,
    ) -> int:
        return await arun(
            _s.combine_store(
                self._ctx, "sdiffstore", dest, keys, version_dest, version_keys, client
            )
        )

    def sinter(self, *keys: Any, version: int | None = None, client: Any = None) -> set[Any]:
        return run(_s.combine(self._ctx, "sinter", keys, version, client))

    async def asinter(self, *keys: Any, version: int | None = None, client: Any = None) -> set[Any]:
        return await arun(_s.combine(self._ctx, "sinter", keys, version, client))

    def sinterstore(
        self, dest: Any, *keys: Any, version: int | None = None, client: Any = None
    ) -> int:
        return run(_s.combine_store(self._ctx, "sinterstore", dest, keys, version, version, client))

    async def asinterstore(
        self, dest: Any, *keys: Any, version: int | None = None, client: Any = None
    ) -> int:
        return await arun(
            _s.combine_store(self._ctx, "sinterstore", dest, keys, version, version, client)
        )

    def sismember(
        self, key: Any, member: Any, version: int | None = None, client: Any = None
    ) -> bool:
        return run(_s.sismember(self._ctx, key, member, version, client))

    async def asismember(
        self, key: Any, member: Any, version: int | None = None, client: Any = None
    ) -> bool:
        return await arun(_s.sismember(self._ctx, key, member, version, client))

    def smismember(
        self, key: Any, *members: Any, version: int | None = None, client: Any = None
    ) -> list[bool]:
        return run(_s.smismember(self._ctx, key, members, version, client))

    async def asmismember(
        self, key: Any, *members: Any, version: int | None = None, client: Any = None
    ) -> list[bool]:
        return await arun(_s.smismember(self._ctx, key, members, version, client))

    def smembers(self, key: Any, version: int | None = None, client: Any = None) -> set[Any]:
        return run(_s.smembers(self._ctx, key, version, client))

    async def asmembers(self, key: Any, version: int | None = None, client: Any = None) -> set[Any]:
        return await arun(_s.smembers(self._ctx, key, version, client))

    def smove(
        self,
        source: Any,
        destination: Any,
        member: Any,
        version: int | None = None,
        client: Any = None,
    ) -> bool:
        """Move ``member`` between sets; ``version`` applies to both keys (django-redis
        gives ``destination`` the default version)."""
        return run(_s.smove(self._ctx, source, destination, member, version, client))

    async def asmove(
        self,
        source: Any,
        destination: Any,
        member: Any,
        version: int | None = None,
        client: Any = None,
    ) -> bool:
        return await arun(_s.smove(self._ctx, source, destination, member, version, client))

    def spop(
        self, key: Any, count: int | None = None, version: int | None = None, client: Any = None
    ) -> Any:
        return run(_s.spop(self._ctx, key, count, version, client))

    async def aspop(
        self, key: Any, count: int | None = None, version: int | None = None, client: Any = None
    ) -> Any:
        return await arun(_s.spop(self._ctx, key, count, version, client))

    def srandmember(
        self, key: Any, count: int | None = None, version: int | None = None, client: Any = None
    ) -> Any:
        return run(_s.srandmember(self._ctx, key, count, version, client))

    async def asrandmember(
        self, key: Any, count: int | None = None, version: int | None = None, client: Any = None
    ) -> Any:
        return await arun(_s.srandmember(self._ctx, key, count, version, client))

    def srem(self, key: Any, *members: Any, version: int | None = None, client: Any = None) -> int:
        return run(_s.srem(self._ctx, key, members, version, client))

    async def asrem(
        self, key: Any, *members: Any, version: int | None = None, client: Any = None
    ) -> int:
        return await arun(_s.srem(self._ctx, key, members, version, client))

    def sscan(
        self,
        key: Any,
        match: str | None = None,
        count: int | None = 10,
        version: int | None = None,
        client: Any = None,
    ) -> set[Any]:
        """The members of one ``SSCAN`` call from the start (django-redis's ``sscan``)."""
        return run(_s.sscan_once(self._ctx, key, match, count, version, client))

    async def asscan(
        self,
        key: Any,
        match: str | None = None,
        count: int | None = 10,
        version: int | None = None,
        client: Any = None,
    ) -> set[Any]:
        return await arun(_s.sscan_once(self._ctx, key, match, count, version, client))

    def sscan_iter(
        self,
        key: Any,
        match: str | None = None,
        count: int | None = 10,
        version: int | None = None,
        client: Any = None,
    ) -> Iterator[Any]:
        """Every member of the set at ``key``, ``SSCAN`` page by page."""
        pages = self._sscan_pages(key, match, count, version, client)
        while not pages.done:
            yield from run(pages.next())

    async def asscan_iter(
        self,
        key: Any,
        match: str | None = None,
        count: int | None = 10,
        version: int | None = None,
        client: Any = None,
    ) -> AsyncIterator[Any]:
        pages = self._sscan_pages(key, match, count, version, client)
        while not pages.done:
            for member in await arun(pages.next()):
                yield member

    def _sscan_pages(
        self, key: Any, match: str | None, count: int | None, version: int | None, client: Any
    ) -> _s.ScanPages:
        ctx = self._ctx
        return _s.ScanPages(
            lambda cursor: _s.sscan(ctx, key, cursor, match, count, version, client)
        )

    def sunion(self, *keys: Any, version: int | None = None, client: Any = None) -> set[Any]:
        return run(_s.combine(self._ctx, "sunion", keys, version, client))

    async def asunion(self, *keys: Any, version: int | None = None, client: Any = None) -> set[Any]:
        return await arun(_s.combine(self._ctx, "sunion", keys, version, client))

    def sunionstore(
        self, destination: Any, *keys: Any, version: int | None = None, client: Any = None
    ) -> int:
        return run(
            _s.combine_store(self._ctx, "sunionstore", destination, keys, version, version, client)
        )

    async def asunionstore(
        self, destination: Any, *keys: Any, version: int | None = None, client: Any = None
    ) -> int:
        return await arun(
            _s.combine_store(self._ctx, "sunionstore", destination, keys, version, version, client)
        )

    def hset(
        self,
        key: Any,
        field: Any = None,
        value: Any = None,
        mapping: Mapping[Any, Any] | None = None,
        version: int | None = None,
        client: Any = None,
    ) -> int:
        """Set one field or a ``mapping`` of them; how many fields were added."""
        return run(_s.hset(self._ctx, key, field, value, mapping, version, client))

    async def ahset(
        self,
        key: Any,
        field: Any = None,
        value: Any = None,
        mapping: Mapping[Any, Any] | None = None,
        version: int | None = None,
        client: Any = None,
    ) -> int:
        return await arun(_s.hset(self._ctx, key, field, value, mapping, version, client))

    def hdel(self, key: Any, field: Any, version: int | None = None, client: Any = None) -> int:
        return run(_s.hdel(self._ctx, key, field, version, client))

    async def ahdel(
        self, key: Any, field: Any, version: int | None = None, client: Any = None
    ) -> int:
        return await arun(_s.hdel(self._ctx, key, field, version, client))

    def hlen(self, key: Any, version: int | None = None, client: Any = None) -> int:
        return run(_s.hlen(self._ctx, key, version, client))

    async def ahlen(self, key: Any, version: int | None = None, client: Any = None) -> int:
        return await arun(_s.hlen(self._ctx, key, version, client))

    def hkeys(self, key: Any, version: int | None = None, client: Any = None) -> list[Any]:
        return run(_s.hkeys(self._ctx, key, version, client))

    async def ahkeys(self, key: Any, version: int | None = None, client: Any = None) -> list[Any]:
        return await arun(_s.hkeys(self._ctx, key, version, client))

    def hexists(self, key: Any, field: Any, version: int | None = None, client: Any = None) -> bool:
        return run(_s.hexists(self._ctx, key, field, version, client))

    async def ahexists(
        self, key: Any, field: Any, version: int | None = None, client: Any = None
    ) -> bool:
        return await arun(_s.hexists(self._ctx, key, field, version, client))

    def zadd(
        self,
        key: Any,
        mapping: Mapping[Any, float],
        nx: bool = False,
        xx: bool = False,
        ch: bool = False,
        incr: bool = False,
        gt: bool = False,
        lt: bool = False,
        version: int | None = None,
        client: Any = None,
    ) -> Any:
        return run(
            _s.zadd(
                self._ctx,
                key,
                mapping,
                {"nx": nx, "xx": xx, "ch": ch, "incr": incr, "gt": gt, "lt": lt},
                version,
                client,
            )
        )

    async def azadd(
        self,
        key: Any,
        mapping: Mapping[Any, float],
        nx: bool = False,
        xx: bool = False,
        ch: bool = False,
        incr: bool = False,
        gt: bool = False,
        lt: bool = False,
        version: int | None = None,
        client: Any = None,
    ) -> Any:
        return await arun(
            _s.zadd(
                self._ctx,
                key,
                mapping,
                {"nx": nx, "xx": xx, "ch": ch, "incr": incr, "gt": gt, "lt": lt},
                version,
                client,
            )
        )

    def zcard(self, key: Any, version: int | None = None, client: Any = None) -> int:
        return run(_s.zcount_like(self._ctx, "zcard", key, (), version, client))

    async def azcard(self, key: Any, version: int | None = None, client: Any = None) -> int:
        return await arun(_s.zcount_like(self._ctx, "zcard", key, (), version, client))

    def zcount(
        self,
        key: Any,
        min: float | str,
        max: float | str,
        version: int | None = None,
        client: Any = None,
    ) -> int:
        return run(_s.zcount_like(self._ctx, "zcount", key, (min, max), version, client))

    async def azcount(
        self,
        key: Any,
        min: float | str,
        max: float | str,
        version: int | None = None,
        client: Any = None,
    ) -> int:
        return await arun(_s.zcount_like(self._ctx, "zcount", key, (min, max), version, client))

    def zincrby(
        self, key: Any, amount: float, value: Any, version: int | None = None, client: Any = None
    ) -> Any:
        return run(_s.zincrby(self._ctx, key, amount, value, version, client))

    async def azincrby(
        self, key: Any, amount: float, value: Any, version: int | None = None, client: Any = None
    ) -> Any:
        return await arun(_s.zincrby(self._ctx, key, amount, value, version, client))

    def zpopmax(
        self, key: Any, count: int | None = None, version: int | None = None, client: Any = None
    ) -> Any:
        return run(_s.zpop(self._ctx, "zpopmax", key, count, version, client))

    async def azpopmax(
        self, key: Any, count: int | None = None, version: int | None = None, client: Any = None
    ) -> Any:
        return await arun(_s.zpop(self._ctx, "zpopmax", key, count, version, client))

    def zpopmin(
        self, key: Any, count: int | None = None, version: int | None = None, client: Any = None
    ) -> Any:
        return run(_s.zpop(self._ctx, "zpopmin", key, count, version, client))

    async def azpopmin(
        self, key: Any, count: int | None = None, version: int | None = None, client: Any = None
    ) -> Any:
        return await arun(_s.zpop(self._ctx, "zpopmin", key, count, version, client))

    def zrange(
        self,
        key: Any,
        start: int,
        end: int,
        desc: bool = False,
        withscores: bool = False,
        score_cast_func: Callable[[Any], Any] = float,
        version: int | None = None,
        client: Any = None,
    ) -> list[Any]:
        return run(
            _s.zrange_like(
                self._ctx,
                "zrange",
                key,
                (start, end),
                {"desc": desc, "withscores": withscores, "score_cast_func": score_cast_func},
                version,
                client,
            )
        )

    async def azrange(
        self,
        key: Any,
        start: int,
        end: int,
        desc: bool = False,
        withscores: bool = False,
        score_cast_func: Callable[[Any], Any] = float,
        version: int | None = None,
        client: Any = None,
    ) -> list[Any]:
        return await arun(
            _s.zrange_like(
                self._ctx,
                "zrange",
                key,
                (start, end),
                {"desc": desc, "withscores": withscores, "score_cast_func": score_cast_func},
                version,
                client,
            )
        )

    def zrangebyscore(
        self,
        key: Any,
        min: float | str,
        max: float | str,
        start: int | None = None,
        num: int | None = None,
        withscores: bool = False,
        score_cast_func: Callable[[Any], Any] = float,
        version: int | None = None,
        client: Any = None,
    ) -> list[Any]:
        return run(
            _s.zrange_like(
                self._ctx,
                "zrangebyscore",
                key,
                (min, max),
                {
                    "start": start,
                    "num": num,
                    "withscores": withscores,
                    "score_cast_func": score_cast_func,
                },
                version,
                client,
            )
        )

    async def azrangebyscore(
        self,
        key: Any,
        min: float | str,
        max: float | str,
        start: int | None = None,
        num: int | None = None,
        withscores: bool = False,
        score_cast_func: Callable[[Any], Any] = float,
        version: int | None = None,
        client: Any = None,
    ) -> list[Any]:
        return await arun(
            _s.zrange_like(
                self._ctx,
                "zrangebyscore",
                key,
                (min, max),
                {
                    "start": start,
                    "num": num,
                    "withscores": withscores,
                    "score_cast_func": score_cast_func,
                },
                version,
                client,
            )
        )

    def zrank(
        self,
        key: Any,
        value: Any,
        withscore: bool = False,
        version: int | None = None,
        client: Any = None,
    ) -> Any:
        return run(_s.zrank(self._ctx, key, value, withscore, version, client))

    async def azrank(
        self,
        key: Any,
        value: Any,
        withscore: bool = False,
        version: int | None = None,
        client: Any = None,
    ) -> Any:
        return await arun(_s.zrank(self._ctx, key, value, withscore, version, client))

    def zrem(self, key: Any, *values: Any, version: int | None = None, client: Any = None) -> int:
        return run(_s.zrem(self._ctx, key, values, version, client))

    async def azrem(
        self, key: Any, *values: Any, version: int | None = None, client: Any = None
    ) -> int:
        return await arun(_s.zrem(self._ctx, key, values, version, client))

    def zremrangebyscore(
        self,
        key: Any,
        min: float | str,
        max: float | str,
        version: int | None = None,
        client: Any = None,
    ) -> int:
        return run(_s.zcount_like(self._ctx, "zremrangebyscore", key, (min, max), version, client))

    async def azremrangebyscore(
        self,
        key: Any,
        min: float | str,
        max: float | str,
        version: int | None = None,
        client: Any = None,
    ) -> int:
        return await arun(
            _s.zcount_like(self._ctx, "zremrangebyscore", key, (min, max), version, client)
        )

    def zrevrange(
        self,
        key: Any,
        start: int,
        end: int,
        withscores: bool = False,
        score_cast_func: Callable[[Any], Any] = float,
        version: int | None = None,
        client: Any = None,
    ) -> list[Any]:
        return run(
            _s.zrange_like(
                self._ctx,
                "zrevrange",
                key,
                (start, end),
                {"withscores": withscores, "score_cast_func": score_cast_func},
                version,
                client,
            )
        )

    async def azrevrange(
        self,
        key: Any,
        start: int,
        end: int,
        withscores: bool = False,
        score_cast_func: Callable[[Any], Any] = float,
        version: int | None = None,
        client: Any = None,
    ) -> list[Any]:
        return await arun(
            _s.zrange_like(
                self._ctx,
                "zrevrange",
                key,
                (start, end),
                {"withscores": withscores, "score_cast_func": score_cast_func},
                version,
                client,
            )
        )

    def zrevrangebyscore(
        self,
        key: Any,
        max: float | str,
        min: float | str,
        start: int | None = None,
        num: int | None = None,
        withscores: bool = False,
        score_cast_func: Callable[[Any], Any] = float,
        version: int | None = None,
        client: Any = None,
    ) -> list[Any]:
        return run(
            _s.zrange_like(
                self._ctx,
                "zrevrangebyscore",
                key,
                (max, min),
                {
                    "start": start,
                    "num": num,
                    "withscores": withscores,
                    "score_cast_func": score_cast_func,
                },
                version,
                client,
            )
        )

    async def azrevrangebyscore(
        self,
        key: Any,
        max: float | str,
        min: float | str,
        start: int | None = None,
        num: int | None = None,
        withscores: bool = False,
        score_cast_func: Callable[[Any], Any] = float,
        version: int | None = None,
        client: Any = None,
    ) -> list[Any]:
        return await arun(
            _s.zrange_like(
                self._ctx,
                "zrevrangebyscore",
                key,
                (max, min),
                {
                    "start": start,
                    "num": num,
                    "withscores": withscores,
                    "score_cast_func": score_cast_func,
                },
                version,
                client,
            )
        )

    def zscore(self, key: Any, value: Any, version: int | None = None, client: Any = None) -> Any:
        return run(_s.zscore(self._ctx, key, value, version, client))

    async def azscore(
        self, key: Any, value: Any, version: int | None = None, client: Any = None
    ) -> Any:
        return await arun(_s.zscore(self._ctx, key, value, version, client))
