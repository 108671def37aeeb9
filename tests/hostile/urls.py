"""The endpoints the hostile requests are sent to: the health endpoints and limited views."""

from __future__ import annotations

from django.http import HttpRequest, JsonResponse
from django.urls import include, path

from django_redis_resilience import ratelimit

#: How many requests each client address gets in the limited views.
LIMIT = 3


@ratelimit(key="ip", rate=f"{LIMIT}/m", group="hostile-ip")
def by_ip(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"remaining": request.ratelimit.remaining})  # type: ignore[attr-defined]


@ratelimit(key="ip", rate=f"{LIMIT}/m", group="hostile-ip-async")
async def by_ip_async(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"remaining": request.ratelimit.remaining})  # type: ignore[attr-defined]


urlpatterns = [
    path("limited/", by_ip),
    path("limited/async/", by_ip_async),
    path("redis/", include("django_redis_resilience.urls")),
]
