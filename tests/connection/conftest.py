"""Managers built straight from the framework-free layer, closed after each test."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from django_redis_resilience.connection import (
    BreakerConfig,
    ConnectionManager,
    ConnectionOptions,
    RetryPolicy,
    Scheduler,
    parse_location,
)
from tests._polling import wait_for  # noqa: F401 - re-exported for the tests here

MakeManager = Callable[..., ConnectionManager]

#: ``make_manager`` timeouts for a server the test never breaks: a loaded machine's slow
#: connect or reply must not read as a failure under a test that is about something else.
UNBROKEN = {"socket_timeout": 2.0, "socket_connect_timeout": 2.0}


@pytest.fixture
def scheduler() -> Iterator[Scheduler]:
    sched = Scheduler()
    yield sched
    sched.stop()


@pytest.fixture
def make_manager(scheduler: Scheduler) -> Iterator[MakeManager]:
    made: list[ConnectionManager] = []

    def make(
        location: str | list[str],
        *,
        breaker: dict[str, Any] | None = None,
        retry: dict[str, Any] | None = None,
        alias: str = "test",
        **options: Any,
    ) -> ConnectionManager:
        opts = ConnectionOptions(
            breaker=BreakerConfig(**(breaker or {})),
            retry=RetryPolicy(**(retry or {})),
            **options,
        )
        manager = ConnectionManager(
            alias=alias, topology=parse_location(location), options=opts, scheduler=scheduler
        )
        made.append(manager)
        return manager

    yield make
    for manager in made:
        manager.close()
