"""The one error classifier: degrade on connection-class errors, raise the rest."""

from __future__ import annotations

import errno
import ssl
from typing import Any

import pytest
import redis.exceptions as rex
from redis.sentinel import MasterNotFoundError

from django_redis_resilience.connection import ErrorKind, classify, rejected, translate
from django_redis_resilience.exceptions import (
    BreakerOpen,
    RedisAuthenticationError,
    RedisTLSError,
    RedisUnavailable,
)
from django_redis_resilience.testing import RedisServerFactory
from tests._compat import redis_servers
from tests._refusing import fill_memory, make_read_only


def _with_cause(exc: BaseException, cause: BaseException) -> BaseException:
    exc.__cause__ = cause
    return exc


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (_with_cause(rex.ConnectionError("x"), ConnectionRefusedError(errno.ECONNREFUSED, "r")),
         ErrorKind.REFUSED),
        (rex.ConnectionError("Error 111 connecting to h:1. Connection refused."),
         ErrorKind.REFUSED),
        (rex.ConnectionError("Connection closed by server."), ErrorKind.RESET),
        (_with_cause(rex.ConnectionError("x"), BrokenPipeError(errno.EPIPE, "p")), ErrorKind.RESET),
        (rex.TimeoutError("Timeout reading from socket"), ErrorKind.TIMEOUT),
        (rex.BusyLoadingError("LOADING Redis is loading"), ErrorKind.LOADING),
        (rex.ReadOnlyError("READONLY You can't write against a read only replica."),
         ErrorKind.READONLY),
        (rex.ClusterDownError("CLUSTERDOWN The cluster is down"), ErrorKind.CLUSTER_DOWN),
        (rex.ResponseError("CLUSTERDOWN Hash slot not served"), ErrorKind.CLUSTER_DOWN),
        (rex.TryAgainError("TRYAGAIN"), ErrorKind.TRY_AGAIN),
        (rex.ResponseError("MASTERDOWN Link with MASTER is down"), ErrorKind.MASTER_DOWN),
        (MasterNotFoundError("No master found for 'x'"), ErrorKind.MASTER_NOT_FOUND),
        (rex.AuthenticationError("invalid username-password pair"), ErrorKind.AUTH),
        (rex.ResponseError("WRONGPASS invalid username-password pair"), ErrorKind.AUTH),
        (rex.ResponseError("NOAUTH Authentication required."), ErrorKind.AUTH),
        (_with_cause(rex.ConnectionError("x"), ssl.SSLCertVerificationError("bad cert")),
         ErrorKind.TLS),
        (rex.RedisClusterException("Redis Cluster cannot be connected."), ErrorKind.UNREACHABLE),
        # What a script's redis.call met, in the envelope of Redis 6 (and some 7.x scripts).
        (rex.ResponseError("Error running script (call to f_0a1b): @user_script:12: "
                           "@user_script: 12: -READONLY You can't write against a read only "
                           "replica."), ErrorKind.READONLY),
        (rex.ResponseError("ERR Error running script (call to f_0a1b): @user_script:3: "
                           "@user_script: 3: -MASTERDOWN Link with MASTER is down"),
         ErrorKind.MASTER_DOWN),
    ],
)  # fmt: skip
def test_connection_class_errors(exc: BaseException, kind: ErrorKind) -> None:
    assert classify(exc) is kind


@pytest.mark.parametrize(
    "exc",
    [
        rex.ResponseError("WRONGTYPE Operation against a key holding the wrong kind of value"),
        rex.ResponseError("ERR wrong number of arguments for 'get' command"),
        rex.ResponseError("ERR value is not an integer or out of range"),
        rex.NoScriptError("NOSCRIPT No matching script."),
        rex.ResponseError("ERR Error running script (call to f_x): @user_script:1: boom"),
        rex.ResponseError("Error running script (call to f_x): @user_script:4: @user_script: "
                          "4: -WRONGTYPE Operation against a key holding the wrong kind of value"),
        rex.ResponseError("Error running script (call to f_x): @user_script:9: user_script:9: "
                          "attempt to compare nil with number -READONLY"),
        rex.NoPermissionError("NOPERM this user has no permissions to run the 'flushall' command"),
        rex.DataError("Invalid input of type: 'dict'."),
        ValueError("not a redis error"),
    ],
)  # fmt: skip
def test_errors_the_caller_must_see(exc: BaseException) -> None:
    assert classify(exc) is None


@pytest.mark.parametrize(
    ("kind", "cls"),
    [
        (ErrorKind.AUTH, RedisAuthenticationError),
        (ErrorKind.TLS, RedisTLSError),
        (ErrorKind.BREAKER_OPEN, BreakerOpen),
        (ErrorKind.TIMEOUT, RedisUnavailable),
    ],
)
def test_translate_builds_the_project_exception(kind: ErrorKind, cls: type) -> None:
    error = translate(rex.ConnectionError("boom"), kind, endpoint="redis://h:1/0", alias="a")
    assert type(error) is cls
    assert isinstance(error, rex.ConnectionError)  # django-redis style handlers keep working
    assert error.kind is kind
    assert error.endpoint == "redis://h:1/0"
    assert error.alias == "a"
    assert "redis://h:1/0" in str(error)
    assert kind.label in str(error)


#: Reads, then writes: the write is what the server turns away.
_WRITE_SCRIPT = "redis.call('get', KEYS[1]); return redis.call('set', KEYS[1], ARGV[1])"


def _script_error(client: Any) -> rex.ResponseError:
    with pytest.raises(rex.ResponseError) as raised:
        client.eval(_WRITE_SCRIPT, 1, "script-error-key", "v")
    return raised.value


@pytest.mark.parametrize("binary", redis_servers())
def test_readonly_inside_a_script_is_readonly(
    binary: str, drr_redis_factory: RedisServerFactory
) -> None:
    """A script that writes on a replica (a demoted primary) meets READONLY; the lock's and
    the rate limits' scripts must then be retried on a fresh connection, not raised."""
    server = drr_redis_factory(binary=binary)
    make_read_only(server)
    with server.client() as client:
        error = _script_error(client)
    assert classify(error) is ErrorKind.READONLY, error


@pytest.mark.parametrize("binary", redis_servers())
def test_oom_inside_a_script_is_a_refusal(
    binary: str, drr_redis_factory: RedisServerFactory
) -> None:
    server = drr_redis_factory(binary=binary)
    fill_memory(server)
    with server.client() as client:
        error = _script_error(client)
    assert classify(error) is None, error  # the server is up: no outage
    assert rejected(error), error
