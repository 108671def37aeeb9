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

MakeManager = Callable[..., ConnectionManager]


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


def wait_for(predicate: Callable[[], bool], timeout: float = 5.0, step: float = 0.02) -> bool:
    """Poll ``predicate`` until it is true or ``timeout`` passes (no timing assertions)."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return predicate()
