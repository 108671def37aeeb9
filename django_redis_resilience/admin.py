"""The admin's "Redis health" panel and the degradation-event log.

The panel is anchored on a proxy of :class:`DegradationEvent` (no table of its
own) so that it appears in the admin index with ordinary permissions: "Can
view Redis health" opens it, "Can change Redis health" allows its actions.
Everything shown comes from the cached health report (probes in parallel, each
with its own timeout), so a hung or dead node slows a page by at most the
probe timeout and never breaks it.

A project with a customised default ``admin.site`` gets the panel there; for
another site, call :func:`register`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse

from django_redis_resilience import events
from django_redis_resilience.clients import get_manager
from django_redis_resilience.conf import conf
from django_redis_resilience.connection import mask_url
from django_redis_resilience.health import (
    Report,
    cache_cards,
    cached_report,
    forget_cached_report,
    process_label,
    take_snapshot,
)
from django_redis_resilience.models import DegradationEvent, RedisHealth
from django_redis_resilience.templatetags.drr_health import drr_clock

logger = logging.getLogger("django_redis_resilience")

#: Events listed on the panel (the full log is the degradation-event changelist).
RECENT_EVENTS = 20
#: Fastest auto-refresh: the report is cached for ``CACHE_SECONDS`` anyway.
MIN_REFRESH_SECONDS = 2.0


class DegradationEventAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    """The persisted log, read-only: events are facts, written by the app."""

    list_display = ("when", "kind", "alias", "endpoint", "process", "outage", "message")
    list_filter = ("kind", "alias", "process")
    search_fields = ("message", "endpoint", "alias", "process")
    date_hierarchy = "created_at"
    list_per_page = 50

    @admin.display(description="when (UTC)", ordering="created_at")
    def when(self, event: DegradationEvent) -> str:
        """In UTC, as everywhere the app shows a moment: processes on several hosts compare
        by it, whatever the site's ``TIME_ZONE``."""
        return drr_clock(event.created_at)

    @admin.display(description="outage", ordering="outage_seconds")
    def outage(self, event: DegradationEvent) -> str:
        return "" if event.outage_seconds is None else f"{event.outage_seconds:.2f} s"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        """An audit log: operators' actions and outages stay on record (old rows are pruned
        after ``EVENT_MAX_AGE_DAYS`` by the app, not by hand)."""
        return False


class RedisHealthAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    """The panel: overview page, its refreshable part, and the actions."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def _name(self, page: str) -> str:
        """The URL name of one of the panel's pages (``changelist``, ``panel``, ``action``)."""
        return f"{self.opts.app_label}_{self.opts.model_name}_{page}"

    def _url(self, page: str) -> str:
        """Reversed through this admin site's own name, so any site can carry the panel."""
        return reverse(f"{self.admin_site.name}:{self._name(page)}")

    def get_urls(self) -> list[URLPattern]:
        wrap = self.admin_site.admin_view
        return [
            path("", wrap(self.overview_view), name=self._name("changelist")),
            path("panel/", wrap(self.panel_view), name=self._name("panel")),
            path("action/", wrap(self.action_view), name=self._name("action")),
        ]

    # --- pages -------------------------------------------------------------

    def overview_view(self, request: HttpRequest) -> HttpResponse:
        return self._render(request, "overview.html")

    def panel_view(self, request: HttpRequest) -> HttpResponse:
        """The refreshable part alone, fetched by the page's auto-refresh."""
        return self._render(request, "_panel.html")

    def _render(self, request: HttpRequest, template: str) -> HttpResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        report, error = _report()
        context = {
            **self.admin_site.each_context(request),
            "title": "Redis health",
            "subtitle": None,
            "opts": self.opts,
            "app_label": self.opts.app_label,
            "report": report,
            "report_error": error,
            "cards": cache_cards(report, clients=_clients(report)) if report is not None else [],
            **_events(),
            "events_url": reverse(
                f"{self.admin_site.name}:django_redis_resilience_degradationevent_changelist"
            ),
            "can_change": self.has_change_permission(request),
            "process": process_label(),
            "refresh_seconds": max(float(conf.HEALTH["CACHE_SECONDS"]), MIN_REFRESH_SECONDS),
            "panel_url": self._url("panel"),
            "action_url": self._url("action"),
        }
        templates = [
            f"admin/{self.opts.app_label}/{self.opts.model_name}/{template}",
            f"admin/{self.opts.app_label}/{template}",
        ]
        return TemplateResponse(request, templates, context)

    # --- actions -----------------------------------------------------------

    def action_view(self, request: HttpRequest) -> HttpResponse:
        """POST only, CSRF-checked (admin_view), behind the change permission."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not self.has_change_permission(request):
            raise PermissionDenied
        back = HttpResponseRedirect(self._url("changelist"))
        name = request.POST.get("action", "")
        alias = request.POST.get("alias", "")
        action = ACTIONS.get(name)
        if action is None:
            messages.error(request, f"Unknown action {_echo(name)}.")
            return back
        if alias not in conf.resilient_aliases() and not (name == "probe" and alias == ""):
            # Checked for every action: the alias is stored in the audit row.
            messages.error(request, f"{_echo(alias)} is not a cache that uses ResilientRedisCache.")
            return back
        try:
            level, text, endpoint = action(request, alias)
        except Exception as exc:  # a failed action is reported, logged, and the page stays up
            logger.exception("Redis health action %r on %r failed", name, alias)
            messages.error(request, f"{name} failed: {type(exc).__name__}: {mask_url(str(exc))}")
            return back
        messages.add_message(request, level, text)
        if endpoint is not None:  # the action ran (whatever its outcome): keep a record
            _record_action(request, alias, endpoint, text)
        return back


#: Posted text is echoed in a message up to this many characters (messages may live in a cookie).
ECHOED_CHARACTERS = 60


def _echo(posted: str) -> str:
    """``posted`` quoted for a message, cut short: any text can be posted."""
    if len(posted) <= ECHOED_CHARACTERS:
        return repr(posted)
    return repr(posted[:ECHOED_CHARACTERS])[:-1] + "...'"


def _report() -> tuple[Report | None, str | None]:
    try:
        return cached_report(), None
    except Exception as exc:  # the panel must render whatever happens to Redis
        logger.exception("The Redis health report could not be made")
        return None, f"{type(exc).__name__}: {mask_url(str(exc))}"


def _clients(report: Report) -> dict[str, dict[str, Any]]:
    """This process's breakers and counters now (memory only), not as cached."""
    return take_snapshot([c.alias for c in report.caches]).client_views()


def _events() -> dict[str, Any]:
    """The recent events: every process's from the database, or this process's from memory
    (``EVENT_STORE = "memory"``, or a database that cannot store them), labelled so."""
    listed, shared = events.recent(RECENT_EVENTS)
    return {
        "events": listed,
        "events_shared": shared,
        "events_scope": "all processes"
        if shared
        else f"this process, {process_label()}, in memory",
    }


def _record_action(request: HttpRequest, alias: str, endpoint: str, text: str) -> None:
    """Stored at once, not batched: an operator's action is an audit record."""
    user = getattr(request, "user", None)
    who = user.get_username() if user is not None else "?"
    events.record_now("admin_action", alias=alias, endpoint=endpoint, message=f"{who}: {text}")


#: Message level, message, and the endpoint acted on (``None``: nothing was done).
Outcome = tuple[int, str, str | None]


def _probe(request: HttpRequest, alias: str) -> Outcome:
    forget_cached_report()
    report = cached_report()
    nodes = sum(len(c.nodes) for c in report.caches)
    down = sum(1 for c in report.caches for n in c.nodes if not n.reachable)
    text = (
        f"Probed {nodes} node{'s' if nodes != 1 else ''} of {len(report.caches)} "
        f"cache{'s' if len(report.caches) != 1 else ''} in {report.duration_ms:.0f} ms: "
        f"status {report.status}, {down} down."
    )
    return (messages.SUCCESS if report.status == "ok" else messages.WARNING), text, ""


def _reset_breaker(request: HttpRequest, alias: str) -> Outcome:
    wanted = request.POST.get("endpoint", "")
    manager = get_manager(alias)
    for endpoint in manager.endpoints:
        if endpoint.display == wanted:
            before = endpoint.breaker.state.value
            if not endpoint.breaker.reset():
                text = (
                    f"Breaker of {wanted} ({alias}) in process {process_label()} is closed: "
                    "nothing to reset, nothing was done. Other processes keep their own "
                    "breakers."
                )
                return messages.INFO, text, None
            forget_cached_report()
            text = (
                f"Breaker of {wanted} ({alias}) reset in process {process_label()}: "
                f"it was {before}, it is {endpoint.breaker.state.value}. Other processes "
                "keep their own breakers."
            )
            return messages.SUCCESS, text, wanted
    return messages.ERROR, f"{alias} has no endpoint {_echo(wanted)} in this process.", None


def _refresh_topology(request: HttpRequest, alias: str) -> Outcome:
    router = get_manager(alias).cluster
    if router is None:
        return (
            messages.ERROR,
            f"{alias} is not a Redis Cluster: it has no topology to refresh.",
            None,
        )
    started = time.perf_counter()
    ok = router.refresh(reason="admin")
    elapsed = (time.perf_counter() - started) * 1000
    forget_cached_report()
    seeds = ", ".join(f"{host}:{port}" for host, port in router.seeds)
    if not ok:
        error = router.last_refresh_error
        text = (
            f"The cluster topology of {alias} could not be read in {elapsed:.0f} ms "
            f"({type(error).__name__ if error else 'no node answered'}): this process keeps "
            "its last slot map."
        )
        return messages.ERROR, text, seeds
    shards = len(router.shards())
    text = (
        f"Cluster topology of {alias} refreshed in process {process_label()} in "
        f"{elapsed:.0f} ms: {shards} shard{'s' if shards != 1 else ''}."
    )
    return messages.SUCCESS, text, seeds


ACTIONS: dict[str, Callable[[HttpRequest, str], Outcome]] = {
    "probe": _probe,
    "reset_breaker": _reset_breaker,
    "refresh_topology": _refresh_topology,
}


def register(site: admin.AdminSite) -> None:
    """Add the panel and the event log to an admin site other than the default one."""
    site.register(DegradationEvent, DegradationEventAdmin)
    site.register(RedisHealth, RedisHealthAdmin)


register(admin.site)
