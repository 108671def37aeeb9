"""Rates such as ``"100/m"``, ``"5/10s"``, ``(1000, 3600)``: parsed once, with a clear error."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from django_redis_resilience.exceptions import InvalidRateLimit

_UNITS = {
    "s": 1, "sec": 1, "second": 1, "seconds": 1,
    "m": 60, "min": 60, "minute": 60, "minutes": 60,
    "h": 3600, "hour": 3600, "hours": 3600,
    "d": 86400, "day": 86400, "days": 86400,
}  # fmt: skip
_RATE = re.compile(r"^\s*(\d+)\s*/\s*(\d*(?:\.\d+)?)\s*([a-z]+)\s*$", re.IGNORECASE)
#: One request per this many seconds at most, and periods of at most a year: a
#: rate outside these bounds is almost certainly a typo.
_MAX_PERIOD = 366 * 86400


@dataclass(frozen=True)
class Rate:
    """``count`` requests per ``period`` seconds."""

    count: int
    period: float

    def __str__(self) -> str:
        return f"{self.count}/{self.period:g}s"

    @property
    def emission_interval(self) -> float:
        """Seconds between two requests at the steady rate (GCRA's T)."""
        return self.period / self.count


def parse_rate(value: Any) -> Rate:
    """A :class:`Rate` from ``"100/m"``, ``"5/10s"``, ``"1000/h"``, ``"10/d"``, a
    ``(count, seconds)`` tuple or a :class:`Rate`; :class:`InvalidRateLimit` otherwise."""
    if isinstance(value, Rate):
        rate = value
    elif isinstance(value, tuple) and len(value) == 2:
        count, period = value
        if not isinstance(count, int) or isinstance(count, bool):
            raise _invalid(value, "the count must be an integer")
        if not isinstance(period, int | float) or isinstance(period, bool):
            raise _invalid(value, "the period must be a number of seconds")
        rate = Rate(count, float(period))
    elif isinstance(value, str):
        match = _RATE.match(value)
        if match is None or match.group(3).lower() not in _UNITS:
            raise _invalid(value, "expected '<count>/<period>' such as '100/m', '5/10s', "
                           "'1000/h' or '10/d'")  # fmt: skip
        multiple = float(match.group(2)) if match.group(2) else 1.0
        rate = Rate(int(match.group(1)), multiple * _UNITS[match.group(3).lower()])
    else:
        raise _invalid(value, "expected a string such as '100/m' or a (count, seconds) tuple")
    if rate.count < 1:
        raise _invalid(value, "the count must be at least 1")
    if not 0 < rate.period <= _MAX_PERIOD:
        raise _invalid(value, "the period must be more than 0 seconds and at most a year")
    return rate


def _invalid(value: Any, reason: str) -> InvalidRateLimit:
    return InvalidRateLimit(f"Rate {value!r} is not valid: {reason}.")
