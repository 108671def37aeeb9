"""``parse_rate``: every accepted spelling, and a clear error naming each rejected value."""

from __future__ import annotations

import sys
from typing import Any

import pytest

from django_redis_resilience.exceptions import ConfigurationError, InvalidRateLimit
from django_redis_resilience.ratelimiting import Rate, parse_rate
from django_redis_resilience.ratelimiting._algorithms import Policy

YEAR = 366 * 86400


@pytest.mark.parametrize(
    ("value", "count", "period"),
    [
        ("100/m", 100, 60.0),
        ("5/10s", 5, 10.0),
        ("1000/h", 1000, 3600.0),
        ("10/d", 10, 86400.0),
        ("1/s", 1, 1.0),
        ("3/1.5s", 3, 1.5),
        ("2/5m", 2, 300.0),
        ("7/minute", 7, 60.0),
        ("7/hours", 7, 3600.0),
        (" 10 / 2 H ", 10, 7200.0),
        ((10, 60), 10, 60.0),
        ((3, 1.5), 3, 1.5),
        ((1, YEAR), 1, float(YEAR)),
    ],
)
def test_valid_rates(value: Any, count: int, period: float) -> None:
    rate = parse_rate(value)
    assert rate == Rate(count, period)
    assert isinstance(rate.period, float)
    assert rate.emission_interval == pytest.approx(period / count)


def test_a_rate_passes_through_unchanged() -> None:
    rate = Rate(5, 2.0)
    assert parse_rate(rate) is rate


def test_str_of_a_rate_is_count_per_seconds() -> None:
    assert str(parse_rate("100/m")) == "100/60s"
    assert str(parse_rate("3/1.5s")) == "3/1.5s"


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("", "expected '<count>/<period>'"),
        ("100", "expected '<count>/<period>'"),
        ("0/m", "the count must be at least 1"),
        ("-1/m", "expected '<count>/<period>'"),
        ("10/x", "expected '<count>/<period>'"),
        ("10/0s", "more than 0 seconds"),
        ("10/1.2.3s", "expected '<count>/<period>'"),
        ("1/367d", "at most a year"),
        ("1/9000h", "at most a year"),
        ((1, YEAR + 1), "at most a year"),
        ((1, 0), "more than 0 seconds"),
        ((1, -5), "more than 0 seconds"),
        ((0, 60), "the count must be at least 1"),
        ((1.5, 60), "the count must be an integer"),
        ((True, 60), "the count must be an integer"),
        ((10, "60"), "the period must be a number"),
        ((10, None), "the period must be a number"),
        ((10, 60, 1), "expected a string"),
        ([10, 60], "expected a string"),
        (None, "expected a string"),
        (10, "expected a string"),
        (Rate(0, 60.0), "the count must be at least 1"),
        (Rate(1, 0.0), "more than 0 seconds"),
    ],
)
def test_invalid_rates_name_the_value_and_the_reason(value: Any, reason: str) -> None:
    with pytest.raises(InvalidRateLimit) as excinfo:
        parse_rate(value)
    message = str(excinfo.value)
    assert f"Rate {value!r} is not valid" in message
    assert reason in message


def test_invalid_rate_is_a_configuration_error_and_a_value_error() -> None:
    with pytest.raises(InvalidRateLimit) as excinfo:
        parse_rate("100")
    assert isinstance(excinfo.value, ConfigurationError)
    assert isinstance(excinfo.value, ValueError)


# --- numbers too large for Python's conversions ---------------------------------------------

#: Python's ``int()`` and ``repr()`` refuse ints of more digits than this by default.
DIGITS = sys.get_int_max_str_digits()


def test_a_count_longer_than_int_reads_is_a_rate_error_naming_it() -> None:
    value = "9" * (DIGITS + 1) + "/m"
    with pytest.raises(InvalidRateLimit) as excinfo:
        parse_rate(value)
    message = str(excinfo.value)
    assert f"Rate {value!r} is not valid: the count is too large." == message
    assert excinfo.value.__cause__ is None  # the int() error is no part of it


@pytest.mark.parametrize(
    "period", [10**400, 10**DIGITS, -(10**400)], ids=["beyond-float", "beyond-repr", "negative"]
)
def test_an_int_period_beyond_a_float_is_a_rate_error(period: int) -> None:
    with pytest.raises(InvalidRateLimit, match="more than 0 seconds and at most a year"):
        parse_rate((1, period))


def test_an_int_period_beyond_a_float_is_named_in_full() -> None:
    value = (1, 10**400)
    with pytest.raises(InvalidRateLimit) as excinfo:
        parse_rate(value)
    assert f"Rate {value!r} is not valid" in str(excinfo.value)


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ((10**DIGITS, 0), "more than 0 seconds"),
        ((-(10**DIGITS), 60), "the count must be at least 1"),
        ((5, 10**DIGITS), "at most a year"),
        (Rate(10**DIGITS, 0.0), "more than 0 seconds"),
    ],
    ids=["count", "negative-count", "period", "rate-object"],
)
def test_an_int_repr_cannot_write_is_described_by_its_length(value: Any, reason: str) -> None:
    with pytest.raises(InvalidRateLimit) as excinfo:
        parse_rate(value)
    message = str(excinfo.value)
    assert reason in message
    assert message.startswith("Rate ")
    assert message.endswith(".")
    if isinstance(value, tuple):
        assert f"<an integer of about {DIGITS + 1} digits>" in message


def test_a_huge_count_is_a_valid_rate_and_prints() -> None:
    """The grammar has no upper bound on the count: the policy refuses it, by name."""
    rate = parse_rate((10**DIGITS, 60))
    assert rate.count == 10**DIGITS
    assert str(rate) == f"<an integer of about {DIGITS + 1} digits>/60s"


@pytest.mark.parametrize(
    ("rate", "burst", "fragment"),
    [
        (Rate(10**DIGITS, 60.0), None, "is too large"),
        (Rate(5, 60.0), 10**DIGITS, "is too large"),
        (Rate(5, 60.0), -(10**DIGITS), "burst=<an integer of about"),
    ],
    ids=["count", "burst", "negative-burst"],
)
def test_a_policy_refuses_huge_counts_and_bursts_by_name(
    rate: Rate, burst: int | None, fragment: str
) -> None:
    with pytest.raises(InvalidRateLimit, match=fragment):
        Policy.build(rate, "gcra", burst)


def test_a_policy_refuses_an_algorithm_that_is_not_a_name() -> None:
    with pytest.raises(InvalidRateLimit, match=r"Algorithm \['gcra'\] is not known"):
        Policy.build(Rate(5, 60.0), ["gcra"], None)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (Rate("5", 60.0), "the count must be an integer"),  # type: ignore[arg-type]
        (Rate(5, "60"), "the period must be a number"),  # type: ignore[arg-type]
        (Rate(5, 10**400), "at most a year"),  # type: ignore[arg-type]
    ],
    ids=["text-count", "text-period", "int-period-beyond-a-float"],
)
def test_a_rate_object_is_checked_like_a_tuple(value: Rate, reason: str) -> None:
    with pytest.raises(InvalidRateLimit, match=reason):
        parse_rate(value)


def test_a_rate_with_an_int_period_gets_a_float_one() -> None:
    rate = parse_rate(Rate(5, 60))
    assert rate == Rate(5, 60.0)
    assert isinstance(rate.period, float)


def test_a_very_long_value_is_cut_in_the_message() -> None:
    value = "x" * 50_000
    with pytest.raises(InvalidRateLimit) as excinfo:
        parse_rate(value)
    message = str(excinfo.value)
    assert len(message) < 11_000
    assert f"... ({len(repr(value))} characters)" in message


def test_a_value_whose_repr_fails_is_still_refused_by_name() -> None:
    class Odd:
        def __repr__(self) -> str:
            raise RuntimeError("no repr")

    with pytest.raises(InvalidRateLimit, match=r"Rate <.*Odd object> is not valid"):
        parse_rate(Odd())
