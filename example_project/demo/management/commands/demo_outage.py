"""``manage.py demo_outage``: watch the app ride out a Redis outage, in the console.

A scripted walkthrough on an embedded ``redis-server`` (from the test
harness): healthy calls, a crash, the breaker opening and closing, and the
cache's fallback with no stale read afterwards. It needs no setup, and it
never touches a Redis you already run. ``manage.py demo`` runs the example
site instead.
"""

from __future__ import annotations

import time
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand
from django.test import override_settings

from django_redis_resilience import signals
from django_redis_resilience.clients import get_manager
from django_redis_resilience.exceptions import RedisUnavailable
from django_redis_resilience.testing import RedisServer


class Command(BaseCommand):
    help = "Start an embedded Redis, break it, and show the breaker degrade and recover."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--calls", type=int, default=8, help="calls made during the outage")

    def handle(self, *args: Any, calls: int, **options: Any) -> None:
        with RedisServer() as server:
            caches = {"default": {**settings.REDIS_CACHE, "LOCATION": server.url}}
            with override_settings(CACHES=caches):
                self._run(server, calls)

    def _timed(self, label: str) -> None:
        manager = get_manager()
        started = time.perf_counter()
        try:
            value = manager.execute(lambda c: c.incr("demo:visits"), idempotent=False)
            outcome = f"ok, visits={value}"
        except RedisUnavailable as exc:
            outcome = f"{type(exc).__name__} ({exc.kind.label if exc.kind else '?'})"
        elapsed = (time.perf_counter() - started) * 1e6
        self.stdout.write(f"  {label:<10} {elapsed:>9.0f} µs  {outcome}")

    def _run(self, server: RedisServer, calls: int) -> None:
        def on_recovered(sender: object, **kw: Any) -> None:
            self.stdout.write(
                self.style.SUCCESS(f"  recovered after {kw['outage_seconds']:.2f}s outage")
            )

        signals.redis_recovered.connect(on_recovered, weak=False)
        try:
            self.stdout.write(f"Embedded Redis at {server.url}")
            self.stdout.write("1. Redis healthy:")
            for _ in range(3):
                self._timed("healthy")
            self.stdout.write(self.style.WARNING("2. Redis killed (SIGKILL):"))
            server.kill()
            for _ in range(calls):
                self._timed("outage")
            self.stdout.write("   After the breaker opens, calls are refused without network I/O.")
            self.stdout.write(
                self.style.WARNING("3. Redis restarted; a background probe closes the breaker:")
            )
            server.restart()
            breaker = get_manager().primary.breaker
            deadline = time.monotonic() + 10
            while not breaker.closed and time.monotonic() < deadline:
                time.sleep(0.05)
            for _ in range(3):
                self._timed("recovered")
            self._cache_outage(server)
        finally:
            signals.redis_recovered.disconnect(on_recovered)

    def _cache_outage(self, server: RedisServer) -> None:
        """The cache backend through an outage: served by the fallback, no stale read after."""
        from django.core.cache import cache

        self.stdout.write("4. The cache during an outage:")
        cache.set("page", "v1 (before the outage)")
        self.stdout.write(f"  get('page') = {cache.get('page')!r}")
        server.hang()  # SIGSTOP: the server keeps v1 in memory
        for _ in range(3):  # each waits the socket timeout; then the breaker opens
            cache.get("page")
        started = time.perf_counter()
        cache.set("page", "v2 (written during the outage)")
        value = cache.get("page")
        elapsed = (time.perf_counter() - started) * 1e6
        self.stdout.write(f"  set + get in {elapsed:.0f} µs from the fallback: {value!r}")
        server.resume()  # Redis comes back still holding v1
        breaker = get_manager().primary.breaker
        deadline = time.monotonic() + 10
        while not breaker.closed and time.monotonic() < deadline:
            time.sleep(0.05)
        self.stdout.write(
            f"  after recovery get('page') = {cache.get('page')!r}: the outage's write was "
            "invalidated in Redis, so the stale v1 is never served"
        )
