"""``REDIS_RESILIENCE["RATELIMIT"]`` and the keys of its middleware ``RULES``.

The rules are checked by compiling them as the middleware does, so a rule that passes
the checks is one the middleware accepts.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.conf import settings

from django_redis_resilience import _schema
from django_redis_resilience._problems import Problem
from django_redis_resilience._schema import REQUIRED, Section, Setting, importable, is_int
from django_redis_resilience.exceptions import ConfigurationError


def _networks(value: object) -> bool:
    """A list (or tuple) of IP addresses or networks, read as the ``ip`` key reads it."""
    from django_redis_resilience.ratelimiting._keys import proxy_networks

    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        return False
    try:
        proxy_networks(tuple(value))
    except ValueError:
        return False
    return True


def rules_problem(rules: object) -> str | None:
    """Why the middleware's rules are invalid, or ``None``."""
    from django_redis_resilience.ratelimiting._middleware import load_rules

    try:
        load_rules({"RULES": rules})
    except ConfigurationError as exc:
        return str(exc)
    return None


RATELIMIT = _schema.register(Section("RATELIMIT", (
    Setting(
        "TRUSTED_PROXY_HOPS",
        default=0,
        test=lambda v: is_int(v) and 0 <= v <= 10,
        need="an integer from 0 to 10",
        kind="integer 0 to 10",
        doc=(
            "how many proxies in front of Django append to `X-Forwarded-For`; the `ip` key then "
            "uses the n-th address from the right, never one a client could have written; `0` "
            "uses `REMOTE_ADDR`"
        ),
        ids="E002",
    ),
    Setting(
        "TRUSTED_PROXIES",
        default=None,
        test=lambda v: v is None or _networks(v),
        need="a list of the proxies' addresses or networks, such as ['10.0.0.0/8', '2001:db8::7']",
        kind="list of IP addresses or networks, or `None`",
        doc=(
            'the proxies in front of Django, by address (`["10.0.0.0/8", "2001:db8::7"]`), '
            "instead of a count: the `ip` key walks `X-Forwarded-For` back from the right while "
            "the address in hand is one of them, and uses the first that is not; a request from "
            "any other address is its `REMOTE_ADDR`. For apps reached both directly and through "
            "proxies, or through a varying number of them; not together with `TRUSTED_PROXY_HOPS`"
        ),
        ids="E002",
    ),
    Setting(
        "IPV4_PREFIX",
        default=32,
        test=lambda v: is_int(v) and 0 <= v <= 32,
        need="an integer from 0 to 32",
        kind="integer 0 to 32",
        doc="the `ip` key masks IPv4 addresses to this prefix length",
        ids="E002",
    ),
    Setting(
        "IPV6_PREFIX",
        default=64,
        test=lambda v: is_int(v) and 0 <= v <= 128,
        need="an integer from 0 to 128",
        kind="integer 0 to 128",
        doc="the `ip` key masks IPv6 addresses to this prefix length (a /64 is usually one client)",
        ids="E002",
    ),
    Setting(
        "VIEW",
        default=None,
        test=importable,
        need="a dotted path to a view (request, decision)",
        kind="dotted path or `None`",
        doc=(
            "a view `(request, decision)` answering refused requests instead of the built-in "
            "plain-text 429; used by the decorator, the mixin and the middleware"
        ),
        ids="E002",
    ),
    Setting(
        "CACHE",
        default=None,
        test=lambda v: isinstance(v, str),
        need="a CACHES alias of a ResilientRedisCache",
        kind="`CACHES` alias or `None`",
        doc=(
            'the `ResilientRedisCache` the middleware\'s rules use (`None`: `"default"`); '
            "decorators and `hit()` take `cache=` instead"
        ),
        ids="E002",
    ),
    Setting(
        "ON_UNAVAILABLE",
        default="local",
        test=lambda v: v in ("local", "allow", "deny"),
        need="'local', 'allow' or 'deny'",
        kind='`"local"`, `"allow"` or `"deny"`',
        doc=(
            "the middleware's policy while Redis is down; decorators and `hit()` take "
            "`on_unavailable=` instead"
        ),
        ids="E002",
    ),
    Setting(
        "FLEET",
        default=True,
        test=lambda v: isinstance(v, bool),
        need="True or False",
        kind="`True` or `False`",
        doc=(
            "each process writes its presence every 5 s in the background while Redis is up, "
            "so that during an outage `local` limiting divides every limit by the processes "
            "seen ([fleet-aware local limiting](ratelimits.md#fleet-aware-local-limiting)); "
            "`False`: no presence writes, each process limits alone during an outage"
        ),
        ids="E002",
    ),
    Setting(
        "RULES",
        default=[],
        check=rules_problem,
        kind="list of dicts",
        doc="the middleware's rules; keys [below](#ratelimitrules)",
        ids="E002",
    ),
)))  # fmt: skip

#: The keys of one rule; ``load_rules`` checks them (a bad rule is reported under ``RULES``).
RULES = _schema.register(Section("RULES", (
    Setting(
        "PATH",
        default=REQUIRED,
        shown="required",
        kind="regular expression",
        doc="searched in `request.path_info` (anchor it with `^`)",
        ids="E002",
    ),
    Setting(
        "METHOD",
        default=None,
        kind="method name, list of them, or `None`",
        doc="the methods the rule applies to; `None`: all",
        ids="E002",
    ),
    Setting(
        "KEY",
        default=REQUIRED,
        shown="required",
        kind="key spec",
        doc=(
            "who a request counts as: `ip`, `user`, `user_or_ip`, `header:<name>`, `get:<name>`, "
            "`post:<name>`, or a dotted path to a function `(group, request)`"
        ),
        ids="E002",
    ),
    Setting(
        "RATE",
        default=REQUIRED,
        shown="required",
        kind="rate",
        doc='`"100/m"`, `"5/10s"`, `"1000/h"`, `"10/d"` or a `(count, seconds)` tuple',
        ids="E002",
    ),
    Setting(
        "ALGORITHM",
        default="gcra",
        kind="algorithm name",
        doc="`gcra`, `sliding_window`, `sliding_window_counter`, `fixed_window` or `concurrency`",
        ids="E002",
    ),
    Setting(
        "BURST",
        default=None,
        kind="integer ≥ 1 or `None`",
        doc="GCRA's burst (`None`: the rate's count)",
        ids="E002",
    ),
    Setting(
        "COST",
        default=1,
        kind="integer ≥ 1",
        doc="units each request consumes",
        ids="E002",
    ),
    Setting(
        "NAME",
        default="rule{index}",  # filled with the rule's index in RULES
        shown='`"rule<index>"`',
        kind="string",
        doc="the limit's group (what it counts) and its name in the `RateLimit` header fields",
        ids="—",
    ),
    Setting(
        "BLOCK",
        default=True,
        kind="`True` or `False`",
        doc="`False` only records the decision in `request.ratelimit`",
        ids="E002",
    ),
)))  # fmt: skip

_WHERE = "REDIS_RESILIENCE['RATELIMIT']"
_MIDDLEWARE = "django_redis_resilience.ratelimiting.RateLimitMiddleware"
_AUTH_MIDDLEWARE = "django.contrib.auth.middleware.AuthenticationMiddleware"


def _valid(given: Mapping[str, Any], name: str) -> bool:
    return name in given and RATELIMIT[name].problem(given[name]) is None


def combination_problems(given: Mapping[str, Any], aliases: list[str]) -> list[Problem]:
    """Valid values that do not go together, or name a cache rate limits cannot use."""
    found = []
    if (
        _valid(given, "TRUSTED_PROXIES")
        and given["TRUSTED_PROXIES"]
        and given.get("TRUSTED_PROXY_HOPS")
    ):
        found.append(Problem.of("E002", f"{_WHERE}['TRUSTED_PROXIES']", given["TRUSTED_PROXIES"],
                                "cannot be combined with TRUSTED_PROXY_HOPS: the two say "
                                "differently which X-Forwarded-For entry to trust",
                                hint="keep one of them"))  # fmt: skip
    if _valid(given, "CACHE") and given["CACHE"] not in aliases:
        found.append(Problem.of("E002", f"{_WHERE}['CACHE']", given["CACHE"],
                                "is not a ResilientRedisCache alias: rate limits need a Redis "
                                "that every process shares"))  # fmt: skip
    return found


def ratelimit_problems(raw: Mapping[str, Any], aliases: list[str]) -> list[Problem]:
    """E002 for combinations; W005 for the middleware placed before authentication."""
    given = _schema.section("global").read(raw, "RATELIMIT")
    if not isinstance(given, Mapping):
        return []  # reported as "must be a dict"
    found = combination_problems(given, aliases)
    middleware = list(getattr(settings, "MIDDLEWARE", None) or [])
    if (
        _MIDDLEWARE in middleware
        and _AUTH_MIDDLEWARE in middleware
        and middleware.index(_MIDDLEWARE) < middleware.index(_AUTH_MIDDLEWARE)
    ):
        found.append(Problem.of("W005", "MIDDLEWARE", _MIDDLEWARE,
                                "comes before AuthenticationMiddleware, so its 'user' and "
                                "'user_or_ip' keys never see a logged-in user",
                                hint="move it after AuthenticationMiddleware"))  # fmt: skip
    return found


_schema.add_finder("global", ratelimit_problems, order=20)
