"""JSON health endpoints: ``health/`` for load balancers, ``health/redis/`` for monitoring.

Anonymous callers learn the status only; staff users, or a caller presenting
``REDIS_RESILIENCE["HEALTH"]["TOKEN"]`` as a bearer token (compared in
constant time), get the details. The probe report is cached per process for
``CACHE_SECONDS`` so that probes cannot be used to hammer Redis.
"""

from __future__ import annotations

import hmac
import threading
import time
from typing import Any

from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_safe

from django_redis_resilience.clients import get_manager
from django_redis_resilience.conf import conf
from django_redis_resilience.health import Report, build_report, process_label

_lock = threading.Lock()
_cached: tuple[float, Report] | None = None


def _trusted(request: HttpRequest) -> bool:
    """Staff, or the configured bearer token (constant-time comparison)."""
    user = getattr(request, "user", None)
    if user is not None and getattr(user, "is_active", False) and getattr(user, "is_staff", False):
        return True
    token = conf.HEALTH["TOKEN"]
    header = request.headers.get("Authorization", "")
    scheme, _, given = header.partition(" ")
    if not token or scheme.lower() != "bearer" or not given:
        return False
    return hmac.compare_digest(given.strip().encode(), str(token).encode())


def cached_report() -> Report:
    """The last report if younger than ``CACHE_SECONDS``, else a new one (one at a time)."""
    global _cached
    ttl = float(conf.HEALTH["CACHE_SECONDS"])
    with _lock:
        if _cached is not None and time.monotonic() - _cached[0] < ttl:
            return _cached[1]
        report = build_report()
        _cached = (time.monotonic(), report)
        return report


def forget_cached_report() -> None:
    global _cached
    with _lock:
        _cached = None


def _breakers() -> dict[str, Any]:
    """This process's view, from its breakers alone: no network."""
    caches: dict[str, Any] = {}
    for alias in conf.resilient_aliases():
        states = [e.breaker.state.value for e in get_manager(alias).endpoints]
        caches[alias] = "degraded" if any(s != "closed" for s in states) else "ok"
    return caches


# Read-only: exempt from CSRF so that other methods get their 405, not a 403; HEAD is
# allowed because some load balancers probe with it.
@csrf_exempt
@never_cache
@require_safe
def health(request: HttpRequest) -> JsonResponse:
    """200 whenever Django can answer; Redis's state (this process's breakers) in the body."""
    caches = _breakers()
    redis = "degraded" if "degraded" in caches.values() else "ok"
    body: dict[str, Any] = {"status": "ok", "redis": redis}
    if _trusted(request):
        body["caches"] = caches
        body["process"] = process_label()
    return JsonResponse(body)


@csrf_exempt
@never_cache
@require_safe
def redis_health(request: HttpRequest) -> JsonResponse:
    """The probe report; 503 when it is critical (or could not be made)."""
    try:
        report = cached_report()
    except Exception:  # the report could not be made: say so, with no detail for strangers
        body: dict[str, Any] = {"status": "unknown"}
        return JsonResponse(body, status=503)
    status = 503 if report.status in ("critical", "unknown") else 200
    if not _trusted(request):
        return JsonResponse({"status": report.status}, status=status)
    return JsonResponse(report.as_dict(), status=status)
