"""pytest fixtures over the harness, enabled per project with::

    pytest_plugins = ["django_redis_resilience.testing"]

Shared (session) servers are for tests that only read and write unique keys;
anything that kills, hangs, restarts or reconfigures a server takes a fresh one
from a factory, so a broken server never leaks into the next test.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import pytest

from django_redis_resilience.testing._servers import (
    RedisServer,
    RedisServerFactory,
    ReplicaGroup,
    ReplicaGroupFactory,
    stop_all,
)

__all__ = [
    "drr_redis_factory",
    "drr_redis_server",
    "drr_replica_group",
    "drr_replica_group_factory",
    "pytest_sessionfinish",
]


def _stop_each(items: Sequence[RedisServer | ReplicaGroup]) -> None:
    """Stop everything, newest first, even if stopping one of them fails."""
    errors: list[Exception] = []
    for item in reversed(items):
        try:
            item.stop()
        except Exception as exc:
            errors.append(exc)
    if errors:
        raise errors[0]


@pytest.fixture(scope="session")
def drr_redis_server() -> Iterator[RedisServer]:
    """One standalone server for the session; not flushed, so use unique keys."""
    with RedisServer() as server:
        yield server


@pytest.fixture
def drr_redis_factory() -> Iterator[RedisServerFactory]:
    """Start fresh servers (``factory(**RedisServer kwargs)``); all stopped after the test."""
    started: list[RedisServer] = []

    def factory(**kwargs: Any) -> RedisServer:
        server = RedisServer(**kwargs)
        started.append(server)
        return server.start()

    yield factory
    _stop_each(started)


@pytest.fixture(scope="session")
def drr_replica_group() -> Iterator[ReplicaGroup]:
    """One primary with one replica for the session; tests must not break it."""
    with ReplicaGroup() as group:
        yield group


@pytest.fixture
def drr_replica_group_factory() -> Iterator[ReplicaGroupFactory]:
    """Start fresh replica groups (``factory(**ReplicaGroup kwargs)``); stopped after the test."""
    started: list[ReplicaGroup] = []

    def factory(**kwargs: Any) -> ReplicaGroup:
        group = ReplicaGroup(**kwargs)
        started.append(group)
        return group.start()

    yield factory
    _stop_each(started)


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int | pytest.ExitCode) -> None:
    """Backstop after fixture teardown: no server outlives the session, whatever failed."""
    stop_all()
