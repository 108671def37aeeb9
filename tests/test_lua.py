"""Scripts as package data: loaded on NOSCRIPT, and their errors raised as a plain command's.

Redis 6 wraps an error a script met in "Error running script (...): -READONLY ...";
Redis 7 replies with the error itself. Both servers available here are tried, so
callers (the cache's ``incr``, the lock, the rate limits) get one exception class.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import redis
import redis.asyncio as aredis
import redis.exceptions as rex

from django_redis_resilience._lua import LuaScript
from django_redis_resilience.testing import RedisServer, RedisServerFactory
from tests._compat import redis_servers
from tests._refusing import fill_memory, make_read_only

#: Adds to an existing integer: a read (EXISTS), then a write (INCRBY).
INCR = LuaScript("django_redis_resilience.cache", "incr")


@pytest.fixture(params=redis_servers())
def server(request: pytest.FixtureRequest, drr_redis_factory: RedisServerFactory) -> RedisServer:
    server = drr_redis_factory(binary=request.param)
    with server.client() as client:
        client.set("n", 1)
    return server


def _run(server: RedisServer) -> Any:
    with redis.Redis(host=server.host, port=server.port) as client:
        return INCR(client, ["n"], [1])


def _arun(server: RedisServer) -> Any:
    async def main() -> Any:
        client = aredis.Redis(host=server.host, port=server.port)
        try:
            return await INCR.acall(client, ["n"], [1])
        finally:
            await client.aclose()

    return asyncio.run(main())


@pytest.mark.parametrize("run", [_run, _arun], ids=["sync", "async"])
def test_a_flushed_script_cache_is_loaded_again(server: RedisServer, run: Any) -> None:
    assert run(server) == 2
    with server.client() as client:
        client.script_flush()
    assert run(server) == 3  # ran once: NOSCRIPT proved the first try did nothing


@pytest.mark.parametrize("run", [_run, _arun], ids=["sync", "async"])
def test_readonly_met_by_a_script_is_a_readonly_error(server: RedisServer, run: Any) -> None:
    run(server)  # loaded, so the error below is the script's own
    make_read_only(server)
    with pytest.raises(rex.ReadOnlyError):
        run(server)
    with server.client() as client:
        assert client.get("n") == b"2"


@pytest.mark.parametrize("run", [_run, _arun], ids=["sync", "async"])
def test_oom_met_by_a_script_is_an_out_of_memory_error(server: RedisServer, run: Any) -> None:
    run(server)
    fill_memory(server)
    with pytest.raises(rex.OutOfMemoryError):
        run(server)


def test_the_scripts_own_errors_are_raised_unchanged(server: RedisServer) -> None:
    with server.client() as client:
        client.set("n", "not a number")
        with pytest.raises(rex.ResponseError) as raised:
            INCR(client, ["n"], [1])
    assert type(raised.value) is rex.ResponseError
    assert "not an integer" in str(raised.value)
