"""Rates such as ``"100/m"``, ``"5/10s"``, ``(1000, 3600)``: parsed once, with a clear error."""

from __future__ import annotations

import math
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
#: Error messages show a value up to this many characters: enough for any rate Python's
#: ``int()`` reads (4300 digits by default), without copying a huge value into logs.
_SHOWN_MAX = 10_000


@dataclass(frozen=True)
class Rate:
    """``count`` requests per ``period`` seconds."""

    count: int
    period: float

    def __str__(self) -> str:
        return f"{shown(self.count)}/{self.period:g}s"

    @property
    def emission_interval(self) -> float:
        """Seconds between two requests at the steady rate (GCRA's T)."""
        return self.period / self.count


def parse_rate(value: Any) -> Rate:
    """A :class:`Rate` from ``"100/m"``, ``"5/10s"``, ``"1000/h"``, ``"10/d"``, a
    ``(count, seconds)`` tuple or a :class:`Rate`; :class:`InvalidRateLimit` otherwise."""
    if isinstance(value, Rate):
        rate = _numbers(value, value.count, value.period)
        if isinstance(value.period, float):
            rate = value  # unchanged, itself
    elif isinstance(value, tuple) and len(value) == 2:
        rate = _numbers(value, *value)
    elif isinstance(value, str):
        match = _RATE.match(value)
        if match is None or match.group(3).lower() not in _UNITS:
            raise _invalid(value, "expected '<count>/<period>' such as '100/m', '5/10s', "
                           "'1000/h' or '10/d'")  # fmt: skip
        try:
            count = int(match.group(1))
        except ValueError:  # more digits than int() reads (sys.get_int_max_str_digits())
            raise _invalid(value, "the count is too large") from None
        multiple = float(match.group(2)) if match.group(2) else 1.0
        rate = Rate(count, multiple * _UNITS[match.group(3).lower()])
    else:
        raise _invalid(value, "expected a string such as '100/m' or a (count, seconds) tuple")
    if rate.count < 1:
        raise _invalid(value, "the count must be at least 1")
    if not 0 < rate.period <= _MAX_PERIOD:
        raise _invalid(value, "the period must be more than 0 seconds and at most a year")
    return rate


def _numbers(value: Any, count: Any, period: Any) -> Rate:
    """The rate of a ``(count, seconds)`` pair, its types checked (``value`` names it)."""
    if not isinstance(count, int) or isinstance(count, bool):
        raise _invalid(value, "the count must be an integer")
    if not isinstance(period, int | float) or isinstance(period, bool):
        raise _invalid(value, "the period must be a number of seconds")
    if isinstance(period, int) and not 0 < period <= _MAX_PERIOD:
        # Checked before float(): an int can be too large for one.
        raise _invalid(value, "the period must be more than 0 seconds and at most a year")
    return Rate(count, float(period))


def _invalid(value: Any, reason: str) -> InvalidRateLimit:
    return InvalidRateLimit(f"Rate {shown(value)} is not valid: {reason}.")


def shown(value: Any) -> str:
    """``repr(value)`` for an error message, cut to :data:`_SHOWN_MAX` characters.

    Never raises: an int too long for ``repr()`` (more than 4300 digits by
    default) is described by its length instead, also inside a tuple.
    """
    if type(value) is tuple:
        inner = ", ".join(_shown_item(item) for item in value)
        text = f"({inner},)" if len(value) == 1 else f"({inner})"
    else:
        text = _shown_item(value)
    if len(text) > _SHOWN_MAX:
        text = f"{text[:_SHOWN_MAX]}... ({len(text)} characters)"
    return text


def _shown_item(value: Any) -> str:
    if isinstance(value, int) and _digits(value) > _SHOWN_MAX:  # not even converted
        return f"<an integer of about {_digits(value)} digits>"
    try:
        return repr(value)
    except Exception:  # a broken __repr__ must not hide the rate error either
        if isinstance(value, int):  # more digits than repr() writes
            return f"<an integer of about {_digits(value)} digits>"
        return f"<{type(value).__qualname__} object>"


def _digits(value: int) -> int:
    """How many decimal digits ``value`` has, give or take one, without converting it."""
    return math.floor(value.bit_length() * math.log10(2)) + 1
