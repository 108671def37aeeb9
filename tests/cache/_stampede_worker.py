"""One process of the multi-process stampede test, started by ``multiprocessing`` (forkserver).

``spec`` holds ``caches`` (the ``CACHES`` to use), ``raw`` (where the test's own keys
live), ``key`` (the cache key everyone asks for), ``keys`` (raw keys ``ready``, ``go``
and ``counter``) and ``threads``. The process counts itself in ``ready``, waits for a
token on ``go`` so all processes start together, then ``threads`` threads call
``get_or_set(key, loader, lock=True)`` at once. The loader increments ``counter``
(every computation in every process shows there) and takes a while. The process puts
``("ok", values)`` (what each thread got) or ``("error", traceback)`` on ``results``.
"""

from __future__ import annotations

import os
import threading
import time
import traceback
import uuid
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
    "tests.cache._stampede_worker",
]

#: How long the loader takes: long enough for every other process to be waiting.
COMPUTE_SECONDS = 0.2


def raw_client(raw: dict[str, Any]) -> Any:
    """A plain redis-py client (``RedisCluster`` on a cluster) for the test's own keys."""
    if raw["cluster"]:
        return RedisCluster(host=raw["host"], port=raw["port"], socket_timeout=30)
    return redis.Redis.from_url(raw["url"], socket_timeout=30)


def run(spec: dict[str, Any], results: Any) -> None:
    try:
        results.put(("ok", _callers(spec)))
    except BaseException:
        results.put(("error", traceback.format_exc()))


def _callers(spec: dict[str, Any]) -> list[Any]:
    warnings.simplefilter("error")
    os.environ["DJANGO_SETTINGS_MODULE"] = "tests.settings"
    import django

    django.setup()
    from django.core.cache import caches
    from django.test import override_settings

    keys = spec["keys"]
    client = raw_client(spec["raw"])
    got: list[Any] = []
    errors: list[str] = []

    def loader() -> str:
        client.incr(keys["counter"])
        time.sleep(COMPUTE_SECONDS)
        return f"computed by {os.getpid()}: {uuid.uuid4().hex}"

    barrier = threading.Barrier(spec["threads"])

    def call() -> None:
        try:
            barrier.wait(timeout=30)
            got.append(caches["default"].get_or_set(spec["key"], loader, 60, lock=True))
        except BaseException:
            errors.append(traceback.format_exc())

    try:
        with override_settings(CACHES=spec["caches"]):
            client.incr(keys["ready"])
            if client.blpop([keys["go"]], timeout=60) is None:
                raise RuntimeError("never told to start")
            threads = [threading.Thread(target=call) for _ in range(spec["threads"])]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(timeout=60)
            if any(thread.is_alive() for thread in threads):
                raise RuntimeError("a get_or_set call never returned")
    finally:
        client.close()
    if errors:
        raise RuntimeError("\n".join(errors))
    return got
