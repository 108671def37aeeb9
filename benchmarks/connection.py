"""Benchmarks of the connection layer: the breaker's hot path and one command.

The project promises that resilience is (almost) free while Redis is healthy:
a closed breaker costs at most 2 µs per call, and a GET through the client
layer is within 5 % of raw redis-py. These benchmarks measure exactly the
code those promises are about, on a real server, in the same run.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager

import redis

from benchmarks._env import BenchEnv
from benchmarks._runner import Benchmark, BenchmarkSkipped, Contender, Target
from django_redis_resilience.connection import (
    BreakerConfig,
    CircuitBreaker,
    ConnectionManager,
    ConnectionOptions,
    Scheduler,
    parse_location,
)

BenchmarkFactory = Callable[[BenchEnv], AbstractContextManager[Benchmark]]

KEY_PREFIX = "drr-bench:"
VALUE = b"v" * 32  # a small cached value: the per-call overhead, not bandwidth, is measured

#: Contender names, shared with the targets that judge them.
EMPTY_CALL = "empty call"
CLOSED_PAIR = "closed + record_success()"
ALLOW_PAIR = "allow() + record_success()"
RAW = "redis-py"
RAW_SAME_POOL = "get_client() (no breaker)"
EXECUTE = "execute(lambda)"
EXECUTE_COMMAND = "execute_command()"


# --- breaker -------------------------------------------------------------------------


def _empty() -> None:
    """The baseline: a call that does nothing, to subtract the loop and call overhead."""


def _breaker_contenders(breaker: CircuitBreaker) -> tuple[Contender, ...]:
    def empty_call(n: int) -> None:
        for _ in range(n):
            _empty()

    def closed_pair(n: int) -> None:
        for _ in range(n):
            if breaker.closed:
                breaker.record_success()

    def allow_pair(n: int) -> None:
        for _ in range(n):
            if breaker.allow():
                breaker.record_success()

    return (
        Contender(EMPTY_CALL, empty_call, "a no-op function call (baseline)"),
        Contender(
            CLOSED_PAIR, closed_pair, "what ConnectionManager.execute pays on its sync fast path"
        ),
        Contender(
            ALLOW_PAIR,
            allow_pair,
            "what the retry path and aexecute pay (_Attempt.next_endpoint)",
        ),
    )


@contextmanager
def breaker_benchmark(env: BenchEnv) -> Iterator[Benchmark]:
    """A closed breaker's cost per call; needs no server (nothing touches the network)."""
    del env
    scheduler = Scheduler()
    breaker = CircuitBreaker(
        name="bench", config=BreakerConfig(), probe=lambda: None, scheduler=scheduler
    )
    try:
        yield Benchmark(
            name="breaker",
            description="closed circuit breaker, per call",
            contenders=_breaker_contenders(breaker),
            ops=200_000,
            quick_ops=2_000,
            targets=(
                Target(
                    label="breaker closed-state cost",
                    contenders=(CLOSED_PAIR, ALLOW_PAIR),
                    kind="us",
                    limit=2.0,
                ),
            ),
        )
    finally:
        scheduler.stop()


# --- one command: GET and SET ----------------------------------------------------------


@contextmanager
def _clients(url: str) -> Iterator[tuple[redis.Redis, ConnectionManager]]:
    """Raw redis-py with its defaults and a manager built as the cache builds it.

    Both are closed on the way out: an unclosed pool is a ResourceWarning,
    which the test suite treats as an error.
    """
    with ExitStack() as stack:
        scheduler = Scheduler()
        stack.callback(scheduler.stop)
        manager = ConnectionManager(
            alias="bench",
            topology=parse_location(url),
            options=ConnectionOptions(),
            scheduler=scheduler,
        )
        stack.callback(manager.close)
        raw = redis.Redis.from_url(url)
        stack.callback(raw.close)
        yield raw, manager


def _get_contenders(raw: redis.Redis, manager: ConnectionManager) -> tuple[Contender, ...]:
    key = f"{KEY_PREFIX}get"
    direct = manager.get_client()

    def raw_get(n: int) -> None:
        for _ in range(n):
            raw.get(key)

    def same_pool_get(n: int) -> None:
        for _ in range(n):
            direct.get(key)

    def execute_get(n: int) -> None:
        for _ in range(n):
            manager.execute(lambda c: c.get(key), write=False)

    def execute_command_get(n: int) -> None:
        for _ in range(n):
            manager.execute_command("GET", key, write=False)

    return (
        Contender(RAW, raw_get, "redis.Redis.from_url(url).get(key), default options (baseline)"),
        Contender(RAW_SAME_POOL, same_pool_get, "the manager's own pool, without execute()"),
        Contender(EXECUTE, execute_get, "manager.execute(lambda c: c.get(key), write=False)"),
        Contender(
            EXECUTE_COMMAND, execute_command_get, 'manager.execute_command("GET", key, write=False)'
        ),
    )


def _set_contenders(raw: redis.Redis, manager: ConnectionManager) -> tuple[Contender, ...]:
    key = f"{KEY_PREFIX}set"

    def raw_set(n: int) -> None:
        for _ in range(n):
            raw.set(key, VALUE)

    def execute_set(n: int) -> None:
        for _ in range(n):
            manager.execute(lambda c: c.set(key, VALUE))

    def execute_command_set(n: int) -> None:
        for _ in range(n):
            manager.execute_command("SET", key, VALUE)

    return (
        Contender(RAW, raw_set, "redis.Redis.from_url(url).set(key, value) (baseline)"),
        Contender(EXECUTE, execute_set, "manager.execute(lambda c: c.set(key, value))"),
        Contender(EXECUTE_COMMAND, execute_command_set, 'manager.execute_command("SET", ...)'),
    )


@contextmanager
def get_benchmark(env: BenchEnv) -> Iterator[Benchmark]:
    """GET of a small existing key: the client layer against raw redis-py."""
    with _clients(env.url) as (raw, manager):
        raw.set(f"{KEY_PREFIX}get", VALUE)
        yield Benchmark(
            name="get",
            description="GET of a small existing key, per command",
            contenders=_get_contenders(raw, manager),
            ops=2_000,
            quick_ops=50,
            targets=(
                Target(
                    label="GET through execute() vs raw redis-py",
                    contenders=(EXECUTE,),
                    kind="ratio",
                    limit=1.05,
                ),
            ),
        )


@contextmanager
def set_benchmark(env: BenchEnv) -> Iterator[Benchmark]:
    """SET of a small value: the client layer against raw redis-py (no stated target)."""
    with _clients(env.url) as (raw, manager):
        yield Benchmark(
            name="set",
            description="SET of a small value, per command",
            contenders=_set_contenders(raw, manager),
            ops=2_000,
            quick_ops=50,
        )


# --- TLS connects ------------------------------------------------------------------------


def _connect_contender(name: str, kwargs: dict[str, object], description: str) -> Contender:
    cls = kwargs.pop("connection_class")
    assert callable(cls)

    def connect(n: int) -> None:
        for _ in range(n):
            connection = cls(**kwargs)
            connection.connect()
            connection.disconnect()

    return Contender(name, connect, description)


@contextmanager
def tls_connect_benchmark(env: BenchEnv) -> Iterator[Benchmark]:
    """A new TLS connection (TCP, handshake, redis-py's connect-time commands).

    This is what a pool pays for every connection after a mass disconnect, so
    it decides whether reconnecting fits in a sub-second connect timeout.
    """
    del env
    from django_redis_resilience.connection._endpoint import pool_kwargs
    from django_redis_resilience.testing import (
        RedisServer,
        TLSMaterial,
        find_redis_server,
        supports_tls,
    )

    if not supports_tls(find_redis_server()):
        raise BenchmarkSkipped("this redis-server was built without TLS")

    with ExitStack() as stack:
        material = stack.enter_context(TLSMaterial.create())
        server = stack.enter_context(RedisServer(tls=material))
        ca = str(material.ca_file)
        raw_kwargs: dict[str, object] = {
            "connection_class": redis.connection.SSLConnection,
            "host": server.host,
            "port": server.port,
            "ssl_ca_certs": ca,
            "ssl_cert_reqs": "required",
            "ssl_check_hostname": True,
        }
        options = ConnectionOptions(socket_connect_timeout=5, pool_kwargs=(("ssl_ca_certs", ca),))
        ours = pool_kwargs(parse_location(server.url).primary, options, asyncio=False)
        for name in ("retry", "max_connections"):
            ours.pop(name, None)
        yield Benchmark(
            name="tls_connect",
            description="one new verified TLS connection, per connect",
            contenders=(
                _connect_contender(
                    "redis-py SSLConnection", raw_kwargs, "a context per connection (baseline)"
                ),
                _connect_contender(
                    "one context per endpoint", ours, "the context shared by the endpoint's pool"
                ),
            ),
            ops=40,
            quick_ops=3,
        )


BENCHMARKS: dict[str, BenchmarkFactory] = {
    "breaker": breaker_benchmark,
    "get": get_benchmark,
    "set": set_benchmark,
    "tls_connect": tls_connect_benchmark,
}
