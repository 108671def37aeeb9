"""One process of the multi-process lock test, started by ``multiprocessing`` (forkserver).

``spec`` holds ``caches`` (the ``CACHES`` to use), ``raw`` (where the test's own keys live),
``name`` (the lock), ``keys`` (``ready``, ``go``, ``counter``, ``order``) and
``iterations``. The process counts itself in ``ready``, waits for a token on ``go`` so all
start together, then ``iterations`` times takes the lock and increments ``counter`` with a
plain GET and SET (a lost update shows in the total), appending each fencing token to
``order`` inside the lock. It puts ``("ok", tokens)`` or ``("error", traceback)`` on
``results``.
"""

from __future__ import annotations

import os
import traceback
import warnings
from typing import Any

import redis
from redis.cluster import RedisCluster

#: Imported once by the forkserver, so each worker only forks and sets Django up.
PRELOAD = [
    "django",
    "django.db.models",
    "django.contrib.admin",
    "redis",
    "redis.cluster",
    "django_redis_resilience.cache",
    "django_redis_resilience.locks",
    "tests.locks._lock_worker",
]


def raw_client(raw: dict[str, Any]) -> Any:
    """A plain redis-py client (``RedisCluster`` on a cluster) for the test's own keys."""
    if raw["cluster"]:
        return RedisCluster(host=raw["host"], port=raw["port"], socket_timeout=30)
    return redis.Redis.from_url(raw["url"], socket_timeout=30)


def run(spec: dict[str, Any], results: Any) -> None:
    try:
        results.put(("ok", _increments(spec)))
    except BaseException:
        results.put(("error", traceback.format_exc()))


def _increments(spec: dict[str, Any]) -> list[int]:
    warnings.simplefilter("error")
    os.environ["DJANGO_SETTINGS_MODULE"] = "tests.settings"
    import django

    django.setup()
    from django.test import override_settings

    from django_redis_resilience import lock

    keys = spec["keys"]
    tokens: list[int] = []
    client = raw_client(spec["raw"])
    try:
        with override_settings(CACHES=spec["caches"]):
            client.incr(keys["ready"])
            if client.blpop([keys["go"]], timeout=60) is None:
                raise RuntimeError("never told to start")
            for _ in range(spec["iterations"]):
                with lock(spec["name"], timeout=5, wait=30) as held:
                    value = int(client.get(keys["counter"]) or 0)
                    client.set(keys["counter"], value + 1)
                    client.rpush(keys["order"], held.token)
                    tokens.append(held.token)
    finally:
        client.close()
    return tokens
