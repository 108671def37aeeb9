"""``parse_rate``: every accepted spelling, and a clear error naming each rejected value."""

from __future__ import annotations

from typing import Any

import pytest

from django_redis_resilience.exceptions import ConfigurationError, InvalidRateLimit
from django_redis_resilience.ratelimiting import Rate, parse_rate

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
