"""Filters for the admin health panel: numbers written for CSS and SVG, times for people."""

from __future__ import annotations

import datetime as dt

from django import template
from django.utils import timezone
from django.utils.html import format_html

register = template.Library()


@register.filter
def drr_css(value: float | int | None) -> str:
    """A number as CSS and SVG read it: never localised (``12.5``, not ``12,5``)."""
    if value is None:
        return "0"
    return format(float(value), ".4g") if isinstance(value, float) else str(int(value))


def _moment(value: float | str | dt.datetime) -> dt.datetime:
    """A Unix time, an ISO 8601 string (as reports write them) or a datetime, in UTC."""
    if isinstance(value, dt.datetime):
        moment = value
    elif isinstance(value, str):
        moment = dt.datetime.fromisoformat(value)
    else:
        moment = dt.datetime.fromtimestamp(float(value), tz=dt.timezone.utc)
    if timezone.is_naive(moment):  # USE_TZ = False: Django stores local wall-clock times
        moment = timezone.make_aware(moment)
    return moment.astimezone(dt.timezone.utc)


@register.filter
def drr_clock(value: float | str | dt.datetime | None) -> str:
    """A moment as people read it, in UTC and labelled so, whatever the site's ``TIME_ZONE``
    (processes on several hosts compare by it), in a ``<time>`` element machines can read."""
    if value is None or value == "":
        return "—"
    moment = _moment(value)
    return format_html(
        '<time datetime="{}">{} UTC</time>',
        moment.isoformat(timespec="seconds"),
        moment.strftime("%Y-%m-%d %H:%M:%S"),
    )


@register.filter
def drr_duration(seconds: int | float | None) -> str:
    """``93784`` -> ``1 d 2 h``: the two largest units are enough for an uptime."""
    if seconds is None:
        return "—"
    left = int(seconds)
    parts: list[str] = []
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60), ("s", 1)):
        if left >= size or (unit == "s" and not parts):
            parts.append(f"{left // size} {unit}")
            left %= size
    return " ".join(parts[:2])


@register.filter
def drr_words(name: str) -> str:
    """``fallback_reads`` -> ``fallback reads``."""
    return str(name).replace("_", " ")
