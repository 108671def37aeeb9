"""Views limited every way a project limits them, for the decorator's tests."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.urls import path
from django.utils.decorators import method_decorator
from django.views import View

from django_redis_resilience import ratelimit
from django_redis_resilience.ratelimiting import RateLimitMixin


@ratelimit(key="ip", rate="3/m", group="fn")
def function_view(request: HttpRequest) -> HttpResponse:
    return HttpResponse("ok")


@ratelimit(key="user_or_ip", rate="2/m", group="async")
async def async_view(request: HttpRequest) -> HttpResponse:
    return HttpResponse("ok")


@ratelimit(key="ip", rate="1/m", group="annotate", block=False)
def annotate_view(request: HttpRequest) -> JsonResponse:
    decision = request.ratelimit  # type: ignore[attr-defined]
    return JsonResponse({"allowed": decision.allowed, "remaining": decision.remaining})


@ratelimit(key="ip", rate="1/m", group="post-only", method="POST")
def post_only_view(request: HttpRequest) -> HttpResponse:
    return HttpResponse("ok")


@ratelimit(key="header:x-api-key", rate="2/m", group="by-header")
@ratelimit(key="ip", rate="100/m", group="by-ip")
def two_limits_view(request: HttpRequest) -> HttpResponse:
    return HttpResponse("ok")


@ratelimit(key="ip", rate="2/m", group="deny", on_unavailable="deny")
def deny_view(request: HttpRequest) -> HttpResponse:
    return HttpResponse("ok")


@ratelimit(key="ip", rate="2/m", group="allow", on_unavailable="allow")
def allow_view(request: HttpRequest) -> HttpResponse:
    return HttpResponse("ok")


@ratelimit(key="ip", rate="1/30s", algorithm="concurrency", group="stream")
def streaming_view(request: HttpRequest) -> StreamingHttpResponse:
    return StreamingHttpResponse(iter([b"part1", b"part2"]))


@ratelimit(key="ip", rate="1/30s", algorithm="concurrency", group="failing")
def failing_view(request: HttpRequest) -> HttpResponse:
    raise ValueError("the view failed")


class MethodView(View):
    @method_decorator(ratelimit(key="ip", rate="2/m", group="cbv-method"))
    def get(self, request: HttpRequest) -> HttpResponse:
        return HttpResponse("ok")


class MixinView(RateLimitMixin, View):
    ratelimit_key = "ip"
    ratelimit_rate = "2/m"

    def get(self, request: HttpRequest) -> HttpResponse:
        return HttpResponse("ok")


class AsyncMixinView(RateLimitMixin, View):
    ratelimit_key = "ip"
    ratelimit_rate = "2/m"

    async def get(self, request: HttpRequest) -> HttpResponse:
        return HttpResponse("ok")


urlpatterns = [
    path("fn/", function_view),
    path("async/", async_view),
    path("annotate/", annotate_view),
    path("post-only/", post_only_view),
    path("two/", two_limits_view),
    path("deny/", deny_view),
    path("allow/", allow_view),
    path("cbv-method/", MethodView.as_view()),
    path("mixin/", MixinView.as_view()),
    path("async-mixin/", AsyncMixinView.as_view()),
    path("stream/", streaming_view),
    path("failing/", failing_view),
]


@ratelimit(key="user", rate="1/m", group="async-user")
async def async_user_view(request: HttpRequest) -> HttpResponse:
    return HttpResponse("ok")


def custom_refusal(request: HttpRequest, decision: object) -> HttpResponse:
    return JsonResponse({"error": "slow down"}, status=429)


@ratelimit(key="ip", rate="1/30s", algorithm="concurrency", group="etag")
def etag_view(request: HttpRequest) -> HttpResponse:
    response = HttpResponse("same content")
    response["ETag"] = '"v1"'
    return response


urlpatterns.append(path("async-user/", async_user_view))
urlpatterns.append(path("etag/", etag_view))
