"""Worker processes that start together, for tests that need real concurrency across processes.

The parent starts ``count`` processes (forkserver, Django and redis-py preloaded), each
counts itself in ``keys["ready"]`` and waits for a token on ``keys["go"]``, so all of them
start their ``work`` at once. ``work(spec, client)`` runs in each child with Django set up
(warnings as errors) under ``spec["caches"]``; its result, or the traceback of what it
raised, comes back as ``("ok", result)`` or ``("error", traceback)``.
"""

from __future__ import annotations

import multiprocessing
import os
import traceback
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import redis
from redis.cluster import RedisCluster

from tests._polling import wait_for
from tests.cache.conftest import resilient_caches

#: Imported once by the forkserver, so each worker only forks and sets Django up.
PRELOAD = [
    "django",
    "django.db.models",
    "django.contrib.admin",
    "redis",
    "redis.cluster",
    "django_redis_resilience.cache",
    "django_redis_resilience.locks",
    "tests._processes",
]

Work = Callable[[dict[str, Any], Any], Any]


def target(request: pytest.FixtureRequest, prefix: str) -> dict[str, Any]:
    """``caches`` and ``raw`` (where the test's own keys live) on the shared standalone server
    (``request.param == "standalone"``) or the shared cluster."""
    if request.param == "standalone":
        server = request.getfixturevalue("drr_redis_server")
        return {
            "caches": resilient_caches(server.url, KEY_PREFIX=prefix),
            "raw": {"cluster": False, "url": server.url},
        }
    cluster = request.getfixturevalue("drr_cluster")
    host, port = cluster.seeds[0]
    return {
        "caches": resilient_caches(cluster.location, KEY_PREFIX=prefix),
        "raw": {"cluster": True, "host": host, "port": port},
    }


def raw_client(raw: dict[str, Any]) -> Any:
    """A plain redis-py client (``RedisCluster`` on a cluster) for the test's own keys."""
    if raw["cluster"]:
        return RedisCluster(host=raw["host"], port=raw["port"], socket_timeout=30)
    return redis.Redis.from_url(raw["url"], socket_timeout=30)


def _child(work: Work, spec: dict[str, Any], results: Any) -> None:
    try:
        results.put(("ok", _started(work, spec)))
    except BaseException:
        results.put(("error", traceback.format_exc()))


def _started(work: Work, spec: dict[str, Any]) -> Any:
    warnings.simplefilter("error")
    os.environ["DJANGO_SETTINGS_MODULE"] = "tests.settings"
    import django

    django.setup()
    from django.test import override_settings

    keys = spec["keys"]
    client = raw_client(spec["raw"])
    try:
        with override_settings(CACHES=spec["caches"]):
            client.incr(keys["ready"])
            if client.blpop([keys["go"]], timeout=60) is None:
                raise RuntimeError("never told to start")
            return work(spec, client)
    finally:
        client.close()


@contextmanager
def together(work: Work, spec: dict[str, Any], count: int) -> Iterator[tuple[list[Any], Any]]:
    """Run ``work`` in ``count`` processes started at once; yields their reports (all
    checked "ok", exit code 0) and a raw client. The test's keys are deleted afterwards."""
    keys = spec["keys"]
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(PRELOAD)
    results = context.Queue()
    workers = [context.Process(target=_child, args=(work, spec, results)) for _ in range(count)]
    for worker in workers:
        worker.start()
    client = raw_client(spec["raw"])
    try:
        ready = wait_for(lambda: int(client.get(keys["ready"]) or 0) == count, timeout=30)
        client.rpush(keys["go"], *["go"] * count)  # every process starts now
        reports = [results.get(timeout=60) for _ in workers]
        for worker in workers:
            worker.join(10)
        assert ready
        assert [status for status, _ in reports] == ["ok"] * count, reports
        assert [worker.exitcode for worker in workers] == [0] * count
        yield [result for _, result in reports], client
    finally:
        for worker in workers:
            if worker.is_alive():
                worker.kill()
                worker.join()
        results.close()
        for key in keys.values():
            client.delete(key)
        client.close()
