"""``Redlock`` over three independent servers: majority, partial grants given back, outages."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from django.test import override_settings

from django_redis_resilience import Redlock
from django_redis_resilience.exceptions import (
    InvalidLock,
    LockAlreadyHeld,
    LockNotAcquired,
    RedisUnavailable,
)
from django_redis_resilience.locks import RedlockHeld
from django_redis_resilience.locks._protocol import LockKeys
from django_redis_resilience.testing import RedisServer
from tests.cache.conftest import BACKEND, FAST_BREAKER
from tests.locks.conftest import unique

ALIASES = ["a", "b", "c"]
PREFIX = "rl"


@pytest.fixture
def servers(drr_redis_factory: Any) -> Iterator[list[RedisServer]]:
    """Three servers as the caches ``a``, ``b`` and ``c``."""
    started = [drr_redis_factory() for _ in ALIASES]
    options = {"SOCKET_TIMEOUT": 0.2, "SOCKET_CONNECT_TIMEOUT": 0.2, "BREAKER": FAST_BREAKER}
    caches = {
        alias: {
            "BACKEND": BACKEND,
            "LOCATION": server.url,
            "KEY_PREFIX": PREFIX,
            "OPTIONS": options,
        }
        for alias, server in zip(ALIASES, started, strict=True)
    }
    caches["default"] = caches["a"]
    with override_settings(CACHES=caches):
        yield started


def _holders(servers: list[RedisServer], name: str) -> list[bytes | None]:
    key = LockKeys.build(PREFIX, name).lock
    return [s.client().get(key) for s in servers]


def test_held_on_every_server_and_released_everywhere(servers: list[RedisServer]) -> None:
    name = unique()
    with Redlock(name, caches=ALIASES, timeout=5) as held:
        assert isinstance(held, RedlockHeld)
        assert held.token is None  # no increasing token across independent servers
        assert sorted(held.tokens) == ALIASES
        values = _holders(servers, name)
        assert all(values)
        assert len(set(values)) == 3
        assert held.valid_for > 4
    assert _holders(servers, name) == [None, None, None]


def test_a_majority_is_enough_and_a_minority_is_given_back(servers: list[RedisServer]) -> None:
    name = unique()
    key = LockKeys.build(PREFIX, name).lock
    # Someone else holds it on two servers: a majority cannot be had.
    servers[0].client().set(key, "other:1", px=10_000)
    servers[1].client().set(key, "other:1", px=10_000)
    with pytest.raises(LockNotAcquired):
        Redlock(name, caches=ALIASES, timeout=5, wait=0).acquire()
    # The third server granted it for a moment; that grant was given back.
    assert servers[2].client().get(key) is None
    # With only one server taken, two grant it: held.
    servers[1].client().delete(key)
    lk = Redlock(name, caches=ALIASES, timeout=5, wait=0)
    held = lk.acquire()
    assert held is not None
    assert sorted(held.tokens) == ["b", "c"]
    lk.release()
    assert servers[0].client().get(key) == b"other:1"  # not ours: untouched


def test_waits_until_the_holder_releases(servers: list[RedisServer]) -> None:
    name = unique()
    first = Redlock(name, caches=ALIASES, timeout=5)
    held = first.acquire()
    assert held is not None
    errors: list[BaseException] = []

    def other() -> None:
        try:
            Redlock(name, caches=ALIASES, timeout=5, wait=0.3, retry_delay=0.05).acquire()
        except LockNotAcquired as exc:
            errors.append(exc)

    thread = threading.Thread(target=other)
    thread.start()
    thread.join()
    assert len(errors) == 1
    held.release()
    second = Redlock(name, caches=ALIASES, timeout=5, wait=2, retry_delay=0.05).acquire()
    assert second is not None
    assert second.release()


@pytest.mark.chaos
def test_one_server_down_still_locks_two_down_is_an_outage(servers: list[RedisServer]) -> None:
    name = unique()
    servers[0].kill()
    with Redlock(name, caches=ALIASES, timeout=5, wait=0) as held:
        assert sorted(held.tokens) == ["b", "c"]
    servers[1].kill()
    with pytest.raises(RedisUnavailable):
        Redlock(name, caches=ALIASES, timeout=5, wait=0).acquire()
    ran: list[int] = []

    @Redlock(name, caches=ALIASES, timeout=5, wait=0, on_unavailable="skip")
    def job() -> int:
        ran.append(1)
        return 1

    assert job() is None
    assert ran == []


def test_async_and_not_reentrant(servers: list[RedisServer]) -> None:
    name = unique()
    lk = Redlock(name, caches=ALIASES, timeout=5, wait=1, retry_delay=0.05)

    async def main() -> list[bytes | None]:
        async with lk as held:
            assert sorted(held.tokens) == ALIASES
            with pytest.raises(LockAlreadyHeld):
                await lk.aacquire()
            await held.aextend(5)
            inside = _holders(servers, name)
        assert all(inside)
        return _holders(servers, name)

    assert asyncio.run(main()) == [None, None, None]


@pytest.mark.parametrize(
    "caches",
    [["a", "b"], ["a", "a", "b"], "abc", ["a", "b", ""], None],
)
def test_bad_caches(caches: Any) -> None:
    with pytest.raises(InvalidLock, match="caches="):
        Redlock("x", caches=caches)


def test_owned_and_locked_ask_a_majority(servers: list[RedisServer]) -> None:
    name = unique()
    lk = Redlock(name, caches=ALIASES, timeout=5, wait=0)
    assert not lk.locked()
    with lk:
        assert lk.owned()
        assert lk.locked()
        assert asyncio.run(lk.alocked())
    assert not lk.owned()
    assert not lk.locked()


def test_a_cancelled_acquisition_leaves_no_grant_behind(servers: list[RedisServer]) -> None:
    name = unique()
    lk = Redlock(name, caches=ALIASES, timeout=30)

    async def main() -> None:
        task = asyncio.create_task(lk.aacquire())
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            held = await task
            if held is not None:  # it finished before the cancellation: give it back
                await held.arelease()

    asyncio.run(main())
    assert _holders(servers, name) == [None, None, None]
