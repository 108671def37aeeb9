"""The answer to a refused rate-limited call (``REDIS_RESILIENCE["RATELIMIT"]["VIEW"]``).

Kept apart from the views because the setting is imported and checked when the
app starts: this module imports nothing of the project.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from django.http import HttpRequest, JsonResponse

if TYPE_CHECKING:
    from django_redis_resilience.ratelimiting import Decision


def too_many_requests(request: HttpRequest, decision: Decision) -> JsonResponse:
    """429 in JSON; the decorator adds ``Retry-After`` and the ``RateLimit`` fields."""
    return JsonResponse(
        {
            "error": "too many requests",
            "limit": decision.limit,
            "retry_after_seconds": math.ceil(decision.retry_after),
            "degraded": decision.degraded,
        },
        status=429,
    )
