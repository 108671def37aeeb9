"""Rates from anywhere (settings, environment variables, user tiers): every value either means
the documented rate or raises ``InvalidRateLimit`` with a sentence naming it.

The reference below is written from the README's grammar, ``<count>/<period>``
with an optional multiple before the unit (``"100/m"``, ``"5/10s"``), and
independently of the package's regular expression. A value it rejects must be
rejected with ``InvalidRateLimit``: never another exception type, never a
silent default.
"""

from __future__ import annotations

import math
import sys
from contextlib import contextmanager
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from django_redis_resilience import ratelimit
from django_redis_resilience.exceptions import InvalidRateLimit
from django_redis_resilience.ratelimiting import Rate, parse_rate
from tests.hostile._support import ANY_TEXT, examples

YEAR = 366 * 86400
#: The unit words a rate may end with, and their seconds.
UNITS = {
    **dict.fromkeys(("s", "sec", "second", "seconds"), 1),
    **dict.fromkeys(("m", "min", "minute", "minutes"), 60),
    **dict.fromkeys(("h", "hour", "hours"), 3600),
    **dict.fromkeys(("d", "day", "days"), 86400),
}
#: Python refuses to turn longer digit strings into an int by default.
INT_DIGITS_LIMIT = sys.get_int_max_str_digits()


@contextmanager
def _any_int_length() -> Any:
    """Let the reference read a count of any length (the limit guards ``int()``, not rates)."""
    previous = sys.get_int_max_str_digits()
    sys.set_int_max_str_digits(0)
    try:
        yield
    finally:
        sys.set_int_max_str_digits(previous)


def _decimal(text: str) -> bool:
    return bool(text) and all(c.isdecimal() for c in text)


def reference(value: str) -> tuple[int, float] | None:
    """``(count, period)`` that ``value`` denotes, or ``None`` when it is not a rate.

    Whitespace may surround the value, the slash and the unit; digits are any
    decimal digits, as Python's ``int()`` reads them.
    """
    count_text, slash, rest = value.strip().partition("/")
    if not slash:
        return None
    count_text, rest = count_text.rstrip(), rest.lstrip()
    if not _decimal(count_text):
        return None
    number_end = next((i for i, c in enumerate(rest) if not (c.isdecimal() or c == ".")), None)
    if number_end is None:
        return None
    number, unit = rest[:number_end], rest[number_end:].lstrip()
    if not (unit.isascii() and unit.isalpha() and unit.lower() in UNITS):
        return None
    whole, dot, fraction = number.partition(".")
    if (whole and not _decimal(whole)) or (dot and not _decimal(fraction)):
        return None
    with _any_int_length():
        count = int(count_text)
    period = (float(number) if number else 1.0) * UNITS[unit.lower()]
    if count < 1 or not 0 < period <= YEAR:
        return None
    return count, period


def _outcome(value: Any) -> Rate | InvalidRateLimit:
    try:
        return parse_rate(value)
    except InvalidRateLimit as exc:
        return exc


def _safe_repr(value: Any) -> str | None:
    """``repr(value)``, or ``None`` when Python cannot write it (an int of 4301+ digits)."""
    try:
        return repr(value)
    except ValueError:
        return None


def _assert_rejected_by_name(value: Any, outcome: Rate | InvalidRateLimit) -> None:
    assert isinstance(outcome, InvalidRateLimit), f"{_safe_repr(value)} was taken as a rate"
    message = str(outcome)
    shown = _safe_repr(value)
    assert shown is None or shown in message, message
    assert message.endswith("."), message  # a sentence, not a bare fragment


# --- strings that look like rates ------------------------------------------------------------

_SPACE = st.sampled_from(["", "", " ", "\t", "  ", "\u3000", "\n"])
_COUNT = st.one_of(
    st.integers(-5, 10**6).map(str),
    st.sampled_from(["", "0", "00", "1", "007", "+5", "-1", "1_0", "5.0", "1e3", "\u0665", "x"]),
    # Around the length Python refuses to convert with int().
    st.integers(INT_DIGITS_LIMIT - 2, INT_DIGITS_LIMIT + 3).map(lambda n: "9" * n),
)
_MULTIPLE = st.one_of(
    st.sampled_from(["", "", "1", "10", "0", "00", "1.5", ".5", "1.", "0.0", "1.2.3", "-1"]),
    st.sampled_from(["1e3", "\u0663", "\uff15", "\u00b2", "inf", "nan", "9" * 400]),
    st.floats(0, 10**7, allow_nan=False).map(str),
    st.integers(0, 10**7).map(str),
)
_UNIT = st.one_of(
    st.sampled_from(sorted(UNITS)),
    st.sampled_from(sorted(UNITS)).map(str.upper),
    st.sampled_from(sorted(UNITS)).map(str.title),
    st.sampled_from(["", "ms", "w", "y", "mins", "hr", "\u212a", "\u017f", "m\u0130n", "se c"]),
)
_SLASH = st.sampled_from(["/", "/", "/", "//", "\\", " per ", "\u2215", ""])


@st.composite
def rate_like(draw: st.DrawFn) -> str:
    parts = [
        draw(_SPACE),
        draw(_COUNT),
        draw(_SPACE),
        draw(_SLASH),
        draw(_SPACE),
        draw(_MULTIPLE),
        draw(_SPACE),
        draw(_UNIT),
        draw(_SPACE),
    ]
    return "".join(parts)


@examples(200)
@given(st.one_of(rate_like(), ANY_TEXT))
@example("9" * (INT_DIGITS_LIMIT + 1) + "/s")  # more digits than int() reads by default
@example("\u0665/m")  # Arabic-Indic five: a decimal digit, as int() reads it
@example("5/\u212a")  # the Kelvin sign matches [a-z] case-insensitively
@example("1/" + "9" * 400 + "s")  # a period beyond a float
def test_a_rate_string_means_the_documented_rate_or_is_refused_by_name(value: str) -> None:
    expected = reference(value)
    outcome = _outcome(value)
    if expected is None:
        _assert_rejected_by_name(value, outcome)
        return
    count, period = expected
    if len(value.strip().partition("/")[0].strip()) > INT_DIGITS_LIMIT and isinstance(
        outcome, InvalidRateLimit
    ):
        # A count too long for int() to read: refusing it by name is as good as reading it.
        _assert_rejected_by_name(value, outcome)
        return
    assert outcome == Rate(count, period), value
    assert isinstance(outcome.period, float)


# --- (count, seconds) tuples and everything else ----------------------------------------------

_NUMBER = st.one_of(
    st.integers(-3, 10**6),
    st.integers(10**300, 10**400),  # beyond a float
    st.just(10**INT_DIGITS_LIMIT),  # beyond what repr() writes by default
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.none(),
    st.text(max_size=5),
    st.decimals(allow_nan=False, allow_infinity=False, places=2),
)


def tuple_reference(count: Any, period: Any) -> tuple[int, float] | None:
    """The rate a ``(count, seconds)`` tuple denotes, from the README: an integer count >= 1
    and a number of seconds in (0, a year]."""
    if not isinstance(count, int) or isinstance(count, bool) or count < 1:
        return None
    if not isinstance(period, int | float) or isinstance(period, bool):
        return None
    if isinstance(period, int) and period > YEAR:
        return None  # checked as an int: some are too large for a float
    if not (math.isfinite(period) and 0 < period <= YEAR):
        return None
    return count, float(period)


@examples(150)
@given(_NUMBER, _NUMBER)
@example(1, 10**400)  # an int period too large for a float
@example(10**INT_DIGITS_LIMIT, 0)  # a count repr() cannot write, and a bad period
@example(1, float("nan"))
@example(5, True)
def test_a_tuple_means_the_documented_rate_or_is_refused_by_name(count: Any, period: Any) -> None:
    value = (count, period)
    expected = tuple_reference(count, period)
    outcome = _outcome(value)
    if expected is None:
        _assert_rejected_by_name(value, outcome)
    else:
        assert outcome == Rate(*expected), value


@examples(60)
@given(
    st.one_of(
        st.none(),
        st.binary(max_size=8),
        st.lists(st.integers(0, 100), max_size=3),
        st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
        st.tuples(st.integers(1, 9)),
        st.tuples(st.integers(1, 9), st.integers(1, 9), st.integers(1, 9)),
        st.integers(),
        st.floats(),
        st.sets(st.integers(), max_size=2),
    )
)
@example(b"5/m")
@example([10, 60])
def test_anything_else_is_refused_by_name(value: Any) -> None:
    _assert_rejected_by_name(value, _outcome(value))


@examples(80)
@given(st.one_of(rate_like(), ANY_TEXT))
@example("9" * (INT_DIGITS_LIMIT + 1) + "/s")
def test_the_decorator_refuses_a_bad_rate_when_applied_never_otherwise(value: str) -> None:
    """The same grammar at decoration time: a bad rate fails at import, with its name."""

    def view(request: Any) -> None: ...

    refused: InvalidRateLimit | None = None
    try:
        ratelimit(key="ip", rate=value)(view)
    except InvalidRateLimit as exc:
        refused = exc
    if refused is None:
        assert reference(value) is not None, f"{value!r} was accepted by @ratelimit"
    else:
        # Refused: not a rate at all, or a rate the algorithm cannot honour (named too).
        assert reference(value) is None or "Rate " in str(refused), (value, str(refused))


@pytest.mark.parametrize(
    "value",
    [
        "9" * (INT_DIGITS_LIMIT + 1) + "/m",
        (1, 10**400),
        (10**INT_DIGITS_LIMIT, 0),
    ],
    ids=["count-longer-than-int-reads", "int-period-beyond-a-float", "count-repr-cannot-write"],
)
def test_oversized_numbers_are_refused_with_the_rate_error(value: Any) -> None:
    """Numbers too large for Python's conversions are still bad rates, not crashes."""
    with pytest.raises(InvalidRateLimit, match="is not valid"):
        parse_rate(value)


def test_the_decorator_refuses_an_oversized_tuple_with_the_rate_error() -> None:
    def view(request: Any) -> None: ...

    with pytest.raises(InvalidRateLimit):
        ratelimit(key="ip", rate=(10**INT_DIGITS_LIMIT, 60))(view)
