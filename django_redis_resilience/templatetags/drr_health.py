"""Filters for the admin health panel: numbers written for CSS and SVG, times for people."""

from __future__ import annotations

import datetime as dt

from django import template
from django.utils import timezone

register = template.Library()


@register.filter
def drr_css(value: float | int | None) -> str:
    """A number as CSS and SVG read it: never localised (``12.5``, not ``12,5``)."""
    if value is None:
        return "0"
    return format(float(value), ".4g") if isinstance(value, float) else str(int(value))


@register.filter
def drr_clock(value: float | None) -> str:
    """A Unix timestamp as the site's local date and time."""
    if value is None:
        return "—"
    moment = dt.datetime.fromtimestamp(float(value), tz=dt.timezone.utc)
    return timezone.localtime(moment).strftime("%Y-%m-%d %H:%M:%S")


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
