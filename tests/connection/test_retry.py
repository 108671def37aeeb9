"""The retry policy: what may be sent again, and how long to wait."""

from __future__ import annotations

import pytest

from django_redis_resilience.connection import ErrorKind, RetryPolicy, is_idempotent


@pytest.mark.parametrize(
    ("command", "args", "expected"),
    [
        ("GET", ("k",), True),
        ("set", ("k", "v"), True),
        ("SET", ("k", "v", "EX", 10), True),
        ("SET", ("k", "v", "NX"), False),
        ("SET", ("k", "v", b"nx"), False),
        ("SET", ("k", "v", "GET"), False),
        ("INCR", ("k",), False),
        ("incrby", ("k", 2), False),
        ("EVALSHA", ("sha", 1, "k"), False),
        ("DEL", ("k",), True),
        ("LPUSH", ("k", "v"), False),
    ],
)
def test_is_idempotent(command: str, args: tuple[object, ...], expected: bool) -> None:
    assert is_idempotent(command, command, *args) is expected


def test_sent_non_idempotent_commands_are_never_retried() -> None:
    policy = RetryPolicy(attempts=5, retry_on_timeout=True)
    for kind in (ErrorKind.RESET, ErrorKind.TIMEOUT):
        assert not policy.should_retry(attempt=0, kind=kind, unsent=False, idempotent=False)
        assert policy.should_retry(attempt=0, kind=kind, unsent=True, idempotent=False)


def test_replies_that_prove_nothing_ran_allow_retrying_anything() -> None:
    policy = RetryPolicy()
    for kind in (ErrorKind.LOADING, ErrorKind.READONLY, ErrorKind.CLUSTER_DOWN, ErrorKind.REFUSED):
        assert policy.should_retry(attempt=0, kind=kind, unsent=False, idempotent=False)


def test_timeouts_are_not_retried_unless_asked() -> None:
    assert not RetryPolicy().should_retry(
        attempt=0, kind=ErrorKind.TIMEOUT, unsent=False, idempotent=True
    )
    assert RetryPolicy(retry_on_timeout=True).should_retry(
        attempt=0, kind=ErrorKind.TIMEOUT, unsent=False, idempotent=True
    )


def test_deterministic_failures_are_never_retried() -> None:
    policy = RetryPolicy(attempts=10)
    for kind in (ErrorKind.AUTH, ErrorKind.TLS, ErrorKind.BREAKER_OPEN):
        assert not policy.should_retry(attempt=0, kind=kind, unsent=True, idempotent=True)


def test_attempts_bound_the_retries() -> None:
    policy = RetryPolicy(attempts=3)
    allowed = [
        policy.should_retry(attempt=n, kind=ErrorKind.RESET, unsent=True, idempotent=True)
        for n in range(4)
    ]
    assert allowed == [True, True, False, False]


def test_backoff_is_jittered_and_capped() -> None:
    policy = RetryPolicy(backoff_base=0.01, backoff_cap=0.05)
    assert policy.delay(0) == 0.0  # first retry: fresh connection, no wait
    delays = [policy.delay(n) for n in range(1, 10) for _ in range(50)]
    assert all(0 <= d <= 0.05 for d in delays)
    assert len({round(d, 6) for d in delays}) > 10


def test_connect_timeouts_are_not_retried_by_default() -> None:
    """A timeout while connecting proves nothing ran, but retrying only makes callers wait."""
    assert not RetryPolicy().should_retry(
        attempt=0, kind=ErrorKind.TIMEOUT, unsent=True, idempotent=True
    )
