"""Read-your-writes while a key waits in the outage journal with its breaker closed.

One write times out (a frozen server) without opening the breaker: the key is
journaled, its value goes to the fallback, and the journal is drained later,
in the background. Until then reads of that key go to the fallback. Writes do
not: with the breaker closed they go to Redis. So a writer that writes the
key again, or deletes it, in that window reads back the value it wrote
*before*: a value older than its own last write, from a cache that is up.

Any fault that is over before the breaker opens leads there: a short freeze,
or a server restarted within a fraction of a second while few calls were
failing (one writer thread writing through a ``SHUTDOWN SAVE`` and restart
reads back its pre-restart value tens of times in a row). Here it is made
certain: the server stays frozen until the background drain has failed once,
which puts the next attempt half a second away.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest

from django_redis_resilience.cache import ResilientRedisCache
from django_redis_resilience.connection import BreakerState
from django_redis_resilience.testing import RedisServer
from tests._polling import wait_for
from tests.cache.conftest import FAST_BREAKER, resilient_cache

pytestmark = pytest.mark.chaos

#: One timed-out call of five: the breaker stays closed.
PATIENT = {**FAST_BREAKER, "FAILURE_THRESHOLD": 5}


@pytest.fixture
def journaled(
    drr_redis_factory: Any, caplog: pytest.LogCaptureFixture
) -> Iterator[tuple[RedisServer, ResilientRedisCache]]:
    """``k`` written as 1, then as 2 while the server was frozen (journaled, in the
    fallback); the server answers again and the breaker never opened."""
    caplog.set_level(logging.DEBUG, logger="django_redis_resilience")
    server = drr_redis_factory()
    with resilient_cache(server.url, BREAKER=PATIENT, SOCKET_TIMEOUT=0.2) as cache:
        cache.set("k", 1)
        breaker = cache.manager.route(write=True, key=cache.make_key("k"))[0].breaker
        server.hang()
        try:
            assert cache.set("k", 2) is True  # timed out: journaled, kept in the fallback
            assert cache.stats()["journal_size"] == 1
            # The background drain tries (0.05 s later), times out, and retries in 0.5 s.
            assert wait_for(lambda: "not drained yet" in caplog.text, timeout=5)
        finally:
            server.resume()
        assert breaker.state is BreakerState.CLOSED
        yield server, cache


def test_a_write_after_a_timed_out_write_is_read_back(
    journaled: tuple[RedisServer, ResilientRedisCache],
) -> None:
    server, cache = journaled
    assert cache.set("k", 3) is True  # the breaker is closed: this one goes to Redis
    with server.client() as client:
        assert client.get(cache.make_key("k")) == b"3"
    got = cache.get("k")
    assert cache.stats()["journal_size"] == 1  # still journaled: the read was in the window
    assert got in (3, None)  # never 2, which this writer has since replaced


def test_a_delete_after_a_timed_out_write_is_read_back(
    journaled: tuple[RedisServer, ResilientRedisCache],
) -> None:
    _, cache = journaled
    cache.delete("k")
    got = cache.get("k")
    assert cache.stats()["journal_size"] == 1  # still journaled: the read was in the window
    assert got is None  # deleted: not the value from before the delete
