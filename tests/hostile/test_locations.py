"""Malformed ``LOCATION`` values: the setting's name and the value, never the password.

Whatever the value, the system check (E003) and startup validation say which
setting is wrong and show its value with the password masked; parsing never
raises anything but ``InvalidLocation`` (an ``ImproperlyConfigured``), and no
message, in any form (raw, percent-encoded, percent-decoded), holds the
password. Nothing here opens a connection.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest
from django.core.cache import caches
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings
from hypothesis import given
from hypothesis import strategies as st

from django_redis_resilience.checks import check_settings
from django_redis_resilience.conf import conf
from django_redis_resilience.connection import parse_location
from django_redis_resilience.exceptions import InvalidLocation
from tests.cache.conftest import BACKEND
from tests.hostile._support import ANY_TEXT, examples, leaked

SETTING = "CACHES['default']['LOCATION']"
E003 = "django_redis_resilience.E003"


def _configured(location: Any, **options: Any) -> Any:
    return override_settings(
        CACHES={"default": {"BACKEND": BACKEND, "LOCATION": location, "OPTIONS": options}}
    )


def _leaks(text: str, password: str) -> list[str]:
    """Whether ``password`` (letters and digits: the same in every escaping) is in ``text``."""
    return leaked(text, [password])


def _check_says(location: Any) -> list[str]:
    """Every system-check message (and hint) about ``location``; must never raise."""
    with _configured(location):
        return [f"{m.id}: {m.msg} {m.hint or ''}" for m in check_settings()]


def _startup_says(location: Any) -> str | None:
    """What startup validation raises for ``location`` (``None``: it is valid)."""
    with _configured(location):
        try:
            conf.validate()
        except ImproperlyConfigured as exc:
            return str(exc)
    return None


def _parse_says(location: Any) -> str | None:
    try:
        parse_location(location, setting=SETTING)
    except InvalidLocation as exc:
        return str(exc)
    return None


def _shown_when_accepted(location: Any) -> str:
    """What an accepted location shows of itself: breaker names, logs, the health report
    and metric labels are made of the nodes' displays, socket paths and the service name."""
    try:
        topology = parse_location(location, setting=SETTING)
    except InvalidLocation:
        return ""
    nodes = [f"{node.display} {node.path} {node.host}" for node in topology.nodes]
    return " ".join([topology.display, str(topology.service_name), *nodes])


def _assert_reported_without_the_password(location: Any, password: str) -> None:
    shown = _shown_when_accepted(location)
    assert not _leaks(shown, password), f"{location!r} is accepted and shows {shown!r}"
    parsed = _parse_says(location)
    checked = _check_says(location)
    started = _startup_says(location)
    e003 = [m for m in checked if m.startswith(E003)]
    if parsed is None:
        assert not e003, (location, e003)
        assert started is None or E003 not in started
    else:
        assert parsed.startswith(f"{SETTING} = "), parsed
        assert len(e003) == 1, (location, checked)
        assert f"{E003}: {SETTING} = " in e003[0], e003[0]
        assert started is not None
        assert SETTING in started, started
    for text in [parsed or "", *checked, started or ""]:
        found = _leaks(text, password)
        assert not found, f"the password shows in: {text!r}"


# --- generated locations ------------------------------------------------------------------------

SCHEMES = st.sampled_from(
    ["redis", "rediss", "unix", "redis+sentinel", "redis+cluster", "rediss+cluster", "REDIS",
     "http", "", "redis+sentinel+cluster", "r\u00e9dis"]
)  # fmt: skip
SEPARATORS = st.sampled_from(["://", "://", "://", ":/", ":", "//", ":///", "", " :// "])
#: Characters that break URLs: what a password generator may well produce.
NASTY = st.text(st.sampled_from(list(",/?#@:%[] \t\n&=+;\\'\"é\u2028\x00")), max_size=3)
HOSTS = st.one_of(
    st.sampled_from(["127.0.0.1", "localhost", "[::1]", "[::1", "::1", "h1,h2", "", "exa mple"]),
    st.text(st.sampled_from(list("abc.-[]:0123456789")), max_size=12),
)
PORTS = st.one_of(
    st.sampled_from(
        ["", ":6379", ":0", ":65536", ":-1", ":x", ":\uff16\uff13\uff17\uff19", ":\u00b2", ":"]
    ),
    st.integers(0, 10**6).map(lambda p: f":{p}"),
)
TAILS = st.one_of(
    st.sampled_from(["", "/0", "/16", "/x", "/0/1", "/svc", "/svc/0", "?db=1", "/0?db=2",
                     "?password=PW", "?socket_timeout=abc", "?nope=1", "#frag", ",redis://h"]),
    ANY_TEXT.map(lambda t: t[:20]),
)  # fmt: skip


@st.composite
def locations(draw: st.DrawFn) -> tuple[Any, str]:
    """``(LOCATION, password)``: a URL-like value carrying a distinctive password."""
    password = "Pw" + draw(st.text("0123456789abcdef", min_size=12, max_size=12))
    secret = draw(NASTY) + password + draw(NASTY)
    if draw(st.booleans()):
        secret = quote(secret, safe="")  # written as the docs say
    user = draw(st.sampled_from(["", "", "app", "us:er", "u@ser", "default"]))
    tail = draw(TAILS).replace("PW", secret)
    url = f"{draw(SCHEMES)}{draw(SEPARATORS)}{user}:{secret}@{draw(HOSTS)}{draw(PORTS)}{tail}"
    shape = draw(st.sampled_from(["string", "string", "padded", "list", "list-of-junk"]))
    if shape == "padded":
        return f"  {url}\n", password
    if shape == "list":
        return ["redis://127.0.0.1:6379/0", url], password
    if shape == "list-of-junk":
        return [url, draw(st.sampled_from([None, 5, b"x"]))], password
    return url, password


@examples(150)
@given(case=locations())
def test_a_malformed_location_is_reported_by_name_without_its_password(
    case: tuple[Any, str],
) -> None:
    location, password = case
    _assert_reported_without_the_password(location, password)


@examples(60)
@given(value=st.one_of(ANY_TEXT, st.binary(), st.integers(), st.none(), st.lists(ANY_TEXT)))
def test_anything_at_all_is_a_location_or_e003_never_a_traceback(value: Any) -> None:
    _assert_reported_without_the_password(value, "no-password-in-these-values")


# --- a list of nasty ones ------------------------------------------------------------------------

PASSWORD = "Pw5ecret77"
NASTY_LOCATIONS = [
    pytest.param(f"redis://:{PASSWORD}@127.0.0.1:notaport/0", id="port-not-a-number"),
    pytest.param(f"redis://:{PASSWORD}@127.0.0.1:70000/0", id="port-out-of-range"),
    pytest.param(f"redis://:{PASSWORD}@[::1/0", id="ipv6-unclosed"),
    pytest.param(f"redis://:{PASSWORD}@127.0.0.1:6379/notadb", id="db-not-a-number"),
    pytest.param(f"redis://:{PASSWORD}@127.0.0.1:6379/0?db=1", id="db-twice"),
    pytest.param(
        f"redis://:{PASSWORD}@127.0.0.1:6379/0?password={PASSWORD}&nope=1", id="query-password"
    ),
    pytest.param(
        f"redis://127.0.0.1:6379/0?password={PASSWORD}&socket_timeout=soon",
        id="query-password-and-bad-timeout",
    ),
    pytest.param(f"redis://:{PASSWORD}/x@127.0.0.1:6379/0", id="unescaped-slash"),
    pytest.param(f"redis://:{PASSWORD}?x@127.0.0.1:6379/0", id="unescaped-question-mark"),
    pytest.param(f"redis://:{PASSWORD}#x@127.0.0.1:6379/0", id="unescaped-hash"),
    pytest.param(f"redis://:a,{PASSWORD}@127.0.0.1:6379/0", id="unescaped-comma-before"),
    pytest.param(f"redis://:{PASSWORD},b@127.0.0.1:6379/0", id="unescaped-comma-after"),
    pytest.param(f"http://:{PASSWORD}@127.0.0.1:6379/0", id="wrong-scheme"),
    pytest.param(f":{PASSWORD}@127.0.0.1:6379/0", id="scheme-forgotten"),
    pytest.param(f"default:{PASSWORD}@127.0.0.1:6379/0", id="scheme-forgotten-with-user"),
    pytest.param(f"redis:/:{PASSWORD}@127.0.0.1:6379/0", id="one-slash-short"),
    pytest.param(f"redis//:{PASSWORD}@127.0.0.1:6379/0", id="colon-forgotten"),
    pytest.param(f"redis ://:{PASSWORD}@127.0.0.1:6379/0", id="space-before-separator"),
    pytest.param(f"://:{PASSWORD}@127.0.0.1:6379/0", id="empty-scheme"),
    pytest.param(f"unix://:?{PASSWORD}@/tmp/redis.sock", id="unix-unescaped-question-mark"),
    pytest.param(f"redis://:{PASSWORD}://x@127.0.0.1:6379/0", id="separator-in-password"),
    pytest.param(
        f"redis://:@{PASSWORD}@127.0.0.1:6379/0?password=@{PASSWORD}", id="at-sign-in-query"
    ),
    pytest.param(f"redis+sentinel://:{PASSWORD}@127.0.0.1:26379", id="sentinel-no-service"),
    pytest.param(
        f"redis+sentinel://:{PASSWORD}@127.0.0.1:26379/svc/0/extra", id="sentinel-extra-path"
    ),
    pytest.param(f"redis+cluster://:{PASSWORD}@127.0.0.1:7000/3", id="cluster-with-db"),
    pytest.param(f"redis+cluster://:{PASSWORD}@", id="cluster-no-host"),
    pytest.param(f"unix://:{PASSWORD}@", id="unix-no-path"),
    pytest.param(f"unix://:Ab3/{PASSWORD}@/run/redis.sock", id="unix-unescaped-slash"),
    pytest.param(f"unix://:Ab3@{PASSWORD}/x@/run/redis.sock", id="unix-at-and-slash"),
    pytest.param(f"unix://:Ab3@/{PASSWORD}@/run/redis.sock", id="unix-at-in-path"),
    pytest.param(f"unix://:Ab3/{PASSWORD}", id="unix-no-at"),
    pytest.param(f"unix:/:{PASSWORD}@127.0.0.1", id="unix-one-slash"),
    pytest.param(f"unix:{PASSWORD}@127.0.0.1", id="unix-no-slash"),
    pytest.param(f"redis+sentinel://a:26379/{PASSWORD}@h1:26379/0", id="sentinel-slash-port"),
    pytest.param(f"redis+sentinel://a:1/{PASSWORD}@h1", id="sentinel-slash-no-service"),
    pytest.param(
        f"rediss://:{PASSWORD}@127.0.0.1:6379/0?ssl_check_hostname=perhaps", id="tls-bad-bool"
    ),
    pytest.param(
        f"redis://:{PASSWORD}@127.0.0.1:6379/0?ssl_ca_certs=/nonexistent.pem",
        id="tls-option-without-tls",
    ),
    pytest.param(f"  redis://:{PASSWORD}@127.0.0.1:bad  ", id="padded"),
    pytest.param(
        f"redis://:{quote(PASSWORD + '/?#@,', safe='')}@127.0.0.1:x/0", id="percent-encoded"
    ),
    pytest.param(
        [f"redis://:{PASSWORD}@127.0.0.1:6379/0", f"redis://:{PASSWORD}@127.0.0.1:bad/0"],
        id="list-one-bad",
    ),
    pytest.param([f"redis://:{PASSWORD}@127.0.0.1:6379/0", 5], id="list-with-a-number"),
    pytest.param((f"redis://:{PASSWORD}@127.0.0.1:6379/0".encode(),), id="tuple-of-bytes"),
    pytest.param({"url": f"redis://:{PASSWORD}@127.0.0.1:6379/0"}, id="dict"),
    pytest.param(
        f"redis://:{PASSWORD}@127.0.0.1:6379/0,redis+sentinel://h/s", id="mixed-list-string"
    ),
]


@pytest.mark.parametrize("location", NASTY_LOCATIONS)
def test_a_nasty_location_is_e003_naming_the_setting_with_the_password_masked(
    location: Any,
) -> None:
    said = " | ".join(_check_says(location))
    assert said, f"{location!r} passed the system checks"
    assert leaked(said, [PASSWORD]) == [], said
    assert SETTING in said, said
    started = _startup_says(location)
    assert started is not None, f"{location!r} passed startup validation"
    assert PASSWORD not in started, started
    assert SETTING in started, started
    parsed = _parse_says(location)
    if parsed is not None:  # E004 problems (TLS files, options) are not parse errors
        assert PASSWORD not in parsed, parsed
        assert parsed.startswith(f"{SETTING} = "), parsed


@pytest.fixture
def nasty_cache_settings() -> Iterator[None]:
    location = f"redis://:{PASSWORD},b@127.0.0.1:6379/0"
    with _configured(location):
        yield


def test_using_a_cache_with_a_malformed_location_raises_the_masked_error(
    nasty_cache_settings: None,
) -> None:
    """Settings changed without a restart (tests, ``override_settings``) skip startup
    validation: the first use raises the same clear, masked configuration error."""
    with pytest.raises(ImproperlyConfigured) as info:
        caches["default"].get("k")
    message = str(info.value)
    assert SETTING in message, message
    assert PASSWORD not in message, message
