"""JSON health endpoints: ``health/`` for load balancers, ``health/redis/`` for monitoring.

``health/`` reads this process's breakers, which cost nothing, once its traffic has
reached Redis; before that a closed breaker only means that nothing happened yet, so
it answers from the cached probe report instead (bounded by the probe timeout).
Anonymous callers learn the status only; staff users, or a caller presenting
``REDIS_RESILIENCE["HEALTH"]["TOKEN"]`` as a bearer token (compared in
constant time), get the details. The probe report is cached per process for
``CACHE_SECONDS`` so that probes cannot be used to hammer Redis.
"""

from __future__ import annotations

import hmac
import logging
from typing import Any

from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_safe

from django_redis_resilience.conf import conf
from django_redis_resilience.health import (
    CacheSnapshot,
    cached_report,
    forget_cached_report,
    process_label,
    report_cache,
    take_snapshot,
)

__all__ = ["cached_report", "forget_cached_report", "health", "redis_health"]

logger = logging.getLogger("django_redis_resilience")


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


def _from_traffic(cache: CacheSnapshot) -> str | None:
    """``degraded``/``ok`` from this process's breakers (no network), or ``None`` while traffic
    has not reached every endpoint that serves writes: an untouched breaker is closed because
    nothing happened, not because Redis answered."""
    endpoints = cache.endpoints
    if any(e.breaker != "closed" for e in endpoints):
        return "degraded"
    writers = endpoints if cache.is_cluster else [e for e in endpoints if e.role == "primary"]
    if writers and all(e.used for e in writers):
        return "ok"
    return None


def _from_probe(aliases: list[str]) -> dict[str, str]:
    """``degraded``/``ok`` from the cached probe report (bounded by the probe timeout, made at
    most once per ``CACHE_SECONDS``), ``unknown`` when it could not be made."""
    try:
        report = cached_report()
    except Exception:  # answered as "unknown"; logged once a minute, not once per probe
        if report_cache().failure_to_log():
            logger.exception("The health report for the load-balancer endpoint failed")
        return dict.fromkeys(aliases, "unknown")
    status = {c.alias: "degraded" if c.status == "critical" else "ok" for c in report.caches}
    return {alias: status.get(alias, "unknown") for alias in aliases}


def _states() -> tuple[dict[str, str], dict[str, str]]:
    """Each cache's state and where it came from (``traffic`` or ``probe``)."""
    snapshot = take_snapshot()
    aliases = [cache.alias for cache in snapshot.caches]
    seen = {cache.alias: _from_traffic(cache) for cache in snapshot.caches}
    untouched = [alias for alias, state in seen.items() if state is None]
    probed = _from_probe(untouched) if untouched else {}
    states = {alias: seen[alias] or probed[alias] for alias in aliases}
    sources = {alias: "probe" if alias in probed else "traffic" for alias in aliases}
    return states, sources


# Read-only: exempt from CSRF so that other methods get their 405, not a 403; HEAD is
# allowed because some load balancers probe with it.
@csrf_exempt
@never_cache
@require_safe
def health(request: HttpRequest) -> JsonResponse:
    """200 whenever Django can answer; Redis's state in the body: this process's breakers once
    its traffic has reached Redis, the cached probe report until then."""
    caches, sources = _states()
    values = set(caches.values())
    redis = next((s for s in ("degraded", "unknown") if s in values), "ok")
    body: dict[str, Any] = {"status": "ok", "redis": redis}
    if _trusted(request):
        body["caches"] = caches
        body["sources"] = sources
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
