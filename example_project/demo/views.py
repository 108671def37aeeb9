"""The example site: each page uses one feature of django-redis-resilience.

Every page keeps answering while Redis is down or frozen: the cache serves from
its fallback, the rate limit counts in the process, the lock follows its
``on_unavailable`` policy. ``/chaos/`` (only under ``manage.py demo``) breaks
the embedded servers to show it.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as ActionTimeout  # not the builtin before 3.11
from datetime import datetime
from typing import Any, cast

from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.views import redirect_to_login
from django.core.cache import cache
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBase, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.cache import cache_page, never_cache
from django.views.decorators.csrf import ensure_csrf_cookie
from django.views.decorators.http import require_GET, require_http_methods

from demo import embedded
from django_redis_resilience import views as health_views
from django_redis_resilience.connection import mask_url
from django_redis_resilience.locks import lock
from django_redis_resilience.ratelimiting import ratelimit
from django_redis_resilience.testing import HarnessError

#: Seconds the cached page is kept.
PAGE_SECONDS = 30
#: Seconds the expensive value is kept: after that the next request computes it again.
EXPENSIVE_SECONDS = 10
#: What the expensive query costs.
LOADER_SECONDS = 0.3
#: Concurrent callers in the stampede experiment.
STAMPEDE_CALLERS = 10
#: The job's lock: one run at a time across every process of the site.
JOB_LOCK = "example-job"
JOB_SECONDS = 1.0
API_RATE = "5/m"
ADMIN_HEALTH_URL = "/admin/django_redis_resilience/redishealth/"


def _redis_status(request: HttpRequest) -> dict[str, Any]:
    """What ``/redis/health/`` answers, from the same view: this process's breakers once its
    traffic has reached Redis (no I/O), the cached probe report before that."""
    response = health_views.health(request)
    status: dict[str, Any] = json.loads(response.content)
    return status


def _location() -> str:
    return str(mask_url(str(settings.CACHES["default"]["LOCATION"])))


@require_GET
def home(request: HttpRequest) -> HttpResponse:
    """Links to everything, and Redis's state as this process sees it."""
    context = {
        "status": _redis_status(request),
        "location": _location(),
        "embedded": embedded.current(),
        "admin_health_url": ADMIN_HEALTH_URL,
        "api_rate": API_RATE,
        "page_seconds": PAGE_SECONDS,
    }
    return render(request, "demo/home.html", context)


@require_GET
@cache_page(PAGE_SECONDS)
def cached(request: HttpRequest) -> HttpResponse:
    """A whole page from the cache: the time it shows stays put until the page expires."""
    context = {"rendered_at": timezone.now(), "page_seconds": PAGE_SECONDS}
    return render(request, "demo/cached.html", context)


# --- get_or_set with stampede protection ---------------------------------------------


class _Counted:
    """A loader that counts its runs, so a page can show that a stampede ran it once."""

    def __init__(self) -> None:
        self.calls = 0
        self._lock = threading.Lock()

    def __call__(self) -> dict[str, Any]:
        with self._lock:
            self.calls += 1
        time.sleep(LOADER_SECONDS)  # the expensive query
        return {"computed_at": timezone.now(), "answer": 42}

    async def acall(self) -> dict[str, Any]:
        self.calls += 1  # one event loop: no lock needed
        await asyncio.sleep(LOADER_SECONDS)
        return {"computed_at": timezone.now(), "answer": 42}


def _stampede(call: Callable[[str, _Counted], Any]) -> dict[str, Any]:
    """Many threads miss one fresh key at once; the loader should run once for all of them."""
    key = f"example:stampede:{uuid.uuid4().hex}"
    loader = _Counted()
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=STAMPEDE_CALLERS) as pool:
        for future in [pool.submit(call, key, loader) for _ in range(STAMPEDE_CALLERS)]:
            future.result()
    return {"callers": STAMPEDE_CALLERS, "runs": loader.calls, "ms": _ms_since(started)}


def _ms_since(started: float) -> float:
    return (time.perf_counter() - started) * 1000


def _expensive_context(
    value: dict[str, Any], loader: _Counted, ms: float, mode: str
) -> dict[str, Any]:
    return {
        "mode": mode,
        "value": value,
        "computed": loader.calls > 0,
        "ms": ms,
        "loader_ms": LOADER_SECONDS * 1000,
        "expensive_seconds": EXPENSIVE_SECONDS,
        "callers": STAMPEDE_CALLERS,
    }


@require_GET
def expensive(request: HttpRequest) -> HttpResponse:
    """``cache.get_or_set``: the 0.3 s loader runs on a miss, and only once per stampede."""
    loader = _Counted()
    started = time.perf_counter()
    value = cast(dict[str, Any], cache.get_or_set("example:expensive", loader, EXPENSIVE_SECONDS))
    context = _expensive_context(value, loader, _ms_since(started), "sync")
    if "stampede" in request.GET:
        context["stampede"] = _stampede(
            lambda key, counted: cache.get_or_set(key, counted, EXPENSIVE_SECONDS)
        )
    return render(request, "demo/expensive.html", context)


async def expensive_async(request: HttpRequest) -> HttpResponse:
    """The same with ``await cache.aget_or_set`` and an async loader, in the event loop."""
    if request.method != "GET":
        return HttpResponse(status=405, headers={"Allow": "GET"})
    loader = _Counted()
    started = time.perf_counter()
    value = cast(
        dict[str, Any],
        await cache.aget_or_set("example:expensive-async", loader.acall, EXPENSIVE_SECONDS),
    )
    context = _expensive_context(value, loader, _ms_since(started), "async")
    if "stampede" in request.GET:
        key = f"example:stampede:{uuid.uuid4().hex}"
        counted = _Counted()
        started = time.perf_counter()
        await asyncio.gather(
            *(
                cache.aget_or_set(key, counted.acall, EXPENSIVE_SECONDS)
                for _ in range(STAMPEDE_CALLERS)
            )
        )
        context["stampede"] = {
            "callers": STAMPEDE_CALLERS,
            "runs": counted.calls,
            "ms": _ms_since(started),
        }
    # The context processors read the session and the user from the database: sync code.
    response: HttpResponse = await sync_to_async(render)(request, "demo/expensive.html", context)
    return response


# --- rate limit ------------------------------------------------------------------------


@ratelimit(key="ip", rate=API_RATE, group="api")
@require_GET
def api(request: HttpRequest) -> JsonResponse:
    """A JSON endpoint limited per client address; refusals are 429 with ``Retry-After``."""
    decision = request.ratelimit  # type: ignore[attr-defined]
    return JsonResponse(
        {
            "served_at": timezone.now().isoformat(),
            "limit": decision.limit,
            "remaining": decision.remaining,
            "degraded": decision.degraded,
        }
    )


# --- lock --------------------------------------------------------------------------------


def _run_job() -> tuple[str, str]:
    """One run of the job under the lock: (message level, what happened)."""
    with lock(
        JOB_LOCK, timeout=10, wait=0, on_busy="skip", on_unavailable="skip", on_lost="log"
    ) as held:
        if not held:
            if held.degraded:
                return "warning", "Skipped: Redis is unavailable, so the lock could not be taken."
            return "warning", "Skipped: another run holds the lock."
        time.sleep(JOB_SECONDS)
        return "success", f"Ran for {JOB_SECONDS:.0f} s under the lock, fencing token {held.token}."


@require_http_methods(["GET", "POST"])
def job(request: HttpRequest) -> HttpResponseBase:
    """POST runs the job once, or twice at the same time to show the second one skipped."""
    if request.method == "POST":
        runs = 2 if request.POST.get("runs") == "2" else 1
        with ThreadPoolExecutor(max_workers=runs) as pool:
            outcomes = list(pool.map(lambda _: _run_job(), range(runs)))
        for level, text in outcomes:
            getattr(messages, level)(request, text)
        return redirect("job")
    return render(request, "demo/job.html", {"lock_name": JOB_LOCK, "job_seconds": JOB_SECONDS})


# --- chaos -------------------------------------------------------------------------------


@never_cache
@require_http_methods(["GET", "POST"])
def chaos(request: HttpRequest) -> HttpResponseBase:
    """Break the demo's embedded servers: staff only, and only under ``manage.py demo``."""
    env = embedded.current()
    if env is None:
        raise Http404("No embedded Redis: the chaos page exists under manage.py demo only.")
    user = request.user
    if not (user.is_active and getattr(user, "is_staff", False)):
        return redirect_to_login(request.get_full_path(), reverse("admin:login"))
    if request.method == "POST":
        _act(request, env)
        return redirect("chaos")
    context = {
        "env": env,
        "nodes": list(env.nodes.values()),
        "actions": embedded.ACTIONS,
        "admin_health_url": ADMIN_HEALTH_URL,
        "location": _location(),
    }
    return render(request, "demo/chaos.html", context)


def _act(request: HttpRequest, env: embedded.Embedded) -> None:
    name = request.POST.get("node", "")
    action = request.POST.get("action", "")
    node = env.nodes.get(name)
    if node is None or action not in embedded.ACTIONS:
        messages.error(request, f"Unknown node {name!r} or action {action!r}.")
        return
    try:
        env.act(name, action)
    except (HarnessError, ActionTimeout, OSError) as exc:
        messages.error(request, f"{action} {name} ({node.address}) failed: {exc}")
        return
    messages.success(request, f"{action}: {name} ({node.address}) is {node.state} now.")


@never_cache
@require_GET
def pulse(request: HttpRequest) -> HttpResponse:
    """Is the site still answering? A tiny page (refreshing itself) with one cache round trip."""
    started = time.perf_counter()
    fragment_from = cast(datetime, cache.get_or_set("example:pulse", timezone.now, 3))
    cache_ms = _ms_since(started)
    context = {
        "now": timezone.now(),
        "fragment_from": fragment_from,
        "cache_ms": cache_ms,
        "status": _redis_status(request),
        "stats": cache.stats(),  # type: ignore[attr-defined]
    }
    return render(request, "demo/pulse.html", context)


# --- read-your-writes --------------------------------------------------------------------

#: Seconds a value written through ``/kv/<key>/`` is kept.
KV_SECONDS = 600


@never_cache
@ensure_csrf_cookie
@require_http_methods(["GET", "POST"])
def kv(request: HttpRequest, key: str) -> JsonResponse:
    """Read-your-writes on one cache key: GET reads it, POST ``value`` writes it and reads it back.

    During an outage the value lives in the fallback store; when Redis is back
    the key is invalidated there before Redis is read again, so a value written
    here never comes back older than the last write. A GET sets the CSRF cookie
    that a POST sends back (no CSRF exemption).
    """
    cache_key = f"example:kv:{key}"
    if request.method == "POST":
        cache.set(cache_key, request.POST.get("value", ""), KV_SECONDS)
    return JsonResponse({"key": key, "value": cache.get(cache_key)})
