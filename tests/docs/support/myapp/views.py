"""Views the documentation's settings examples name by dotted path."""

from __future__ import annotations

from django.http import HttpRequest, JsonResponse

from django_redis_resilience.ratelimiting import Decision


def too_many_requests(request: HttpRequest, decision: Decision) -> JsonResponse:
    """``REDIS_RESILIENCE["RATELIMIT"]["VIEW"]``: refusals as JSON."""
    return JsonResponse({"retry_after": decision.retry_after}, status=429)
