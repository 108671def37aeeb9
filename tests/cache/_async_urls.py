"""URLs for test_async's WSGI test: an async view that reads and writes the cache."""

from __future__ import annotations

import asyncio
import threading

from django.core.cache import caches
from django.http import HttpRequest, JsonResponse
from django.urls import path


async def visit(request: HttpRequest, key: str) -> JsonResponse:
    """Count a visit under ``key`` with the async API only; report what earlier visits left.

    Every read here is of what an earlier request wrote: on a primary with replicas a
    read may be served by a replica that has not yet received this request's writes.
    """
    cache = caches["default"]
    before = await cache.aget(key, 0)
    seen = await cache.aget_many([f"{key}:last", f"{key}:never-set"])
    has_key = await cache.ahas_key(key)
    stored = await cache.aset(key, before + 1)
    failed = await cache.aset_many(
        {f"{key}:last": before + 1, f"{key}:loop": id(asyncio.get_running_loop())}
    )
    return JsonResponse(
        {
            "before": before,
            "seen": seen,
            "has_key": has_key,
            "stored": stored,
            "failed": failed,
            "thread": threading.get_ident(),
        }
    )


urlpatterns = [path("visit/<str:key>/", visit)]
